package ddp

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ringtrain/ringtrain/collective"
	"github.com/ringtrain/ringtrain/collective/quictransport"
	"github.com/ringtrain/ringtrain/models"
	"github.com/ringtrain/ringtrain/models/data"
	"github.com/ringtrain/ringtrain/timeline"
)

// TestTimeline: a 2-rank job over QUIC whose groups record into a timeline per rank. The
// DDP records into its group's timeline by default; each rank's trace passes the format
// check, has every phase of every step, and shows a bucket's AllReduce running while a
// later layer's backward computes.
func TestTimeline(t *testing.T) {
	const n, steps = 2, 3
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	logger := slog.New(slog.DiscardHandler)
	ts, err := quictransport.StartLocal(ctx, n, quictransport.Config{Logger: logger, PeerTimeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	recs := make([]*timeline.Recorder, n)
	gs := make([]*collective.Group, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for r := range n {
		recs[r] = timeline.New(timeline.Config{Rank: r})
		wg.Go(func() {
			gs[r], errs[r] = collective.New(ctx, ts[r], collective.Options{Timeout: 20 * time.Second, Logger: logger, Timeline: recs[r]})
		})
	}
	wg.Wait()
	t.Cleanup(func() {
		var wg sync.WaitGroup
		for r, g := range gs {
			wg.Go(func() {
				if g != nil {
					g.Close()
				}
				ts[r].Close()
			})
		}
		wg.Wait()
	})
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	var nb int
	mustRanks(t, n, func(ctx context.Context, r int) error {
		m := smallModel(t, 40, 1)
		d, err := Wrap(ctx, m, gs[r], tinyCaps)
		if err != nil {
			return err
		}
		nb = len(d.Buckets())
		opt := sgd(t, m)
		for s := range steps {
			x, labels := sample(shard(globalBatch(s, 16), r, n))
			if _, err := d.TrainStep(ctx, opt, Batch{X: x, Labels: labels}); err != nil {
				return err
			}
		}
		return nil
	})
	for r, rec := range recs {
		var buf bytes.Buffer
		if _, err := rec.WriteTo(&buf); err != nil {
			t.Fatal(err)
		}
		tr, err := timeline.Parse(&buf)
		if err != nil {
			t.Fatal(err)
		}
		if err := timeline.Check(tr); err != nil {
			t.Fatalf("rank %d: %v", r, err)
		}
		count := map[string]int{}
		var layers, reduces []timeline.Event
		for _, e := range tr.Slices() {
			name := e.Name
			switch {
			case strings.HasPrefix(name, "backward ") && name != "backward (no sync)":
				layers = append(layers, e)
				name = "backward <layer>"
			case strings.HasPrefix(name, "launch bucket"):
				name = "launch bucket"
			case strings.HasPrefix(name, "wait bucket"):
				name = "wait bucket"
			case name == "AllReduce":
				reduces = append(reduces, e)
			}
			count[name]++
		}
		for name, want := range map[string]int{
			"step": steps, "forward": steps, "loss": steps, "backward": steps, "wait": steps, "optimizer": steps,
			"backward <layer>": 5 * steps, "launch bucket": nb * steps, "wait bucket": nb * steps,
			"AllReduce": nb * steps, "Broadcast": 6, // Wrap's: one per parameter
		} {
			if count[name] != want {
				t.Errorf("rank %d: %d %q events, want %d (all: %v)", r, count[name], name, want, count)
			}
		}
		if !overlaps(reduces, layers) {
			t.Errorf("rank %d: no AllReduce overlaps a layer's backward", r)
		}
	}
}

// overlaps reports whether an interval of as intersects one of bs (on the same process).
func overlaps(as, bs []timeline.Event) bool {
	for _, a := range as {
		for _, b := range bs {
			if *a.Pid == *b.Pid && a.Start() < b.End() && b.Start() < a.End() {
				return true
			}
		}
	}
	return false
}

// BenchmarkTimelineOverhead trains two 2-rank jobs over QUIC in this process, one whose
// groups (and so DDPs) record a timeline and one without, alternating rounds of 20 steps
// between them so both see the same machine load, and reports the process CPU time of the
// traced rounds over the untraced ones (cpu-on/off; 1 means no overhead). CPU time, not
// wall time: on a shared machine the wall clock mostly measures the neighbours.
//
//	go test -run=^$ -bench=TimelineOverhead -benchtime=10x ./ddp
func BenchmarkTimelineOverhead(b *testing.B) {
	ctx := context.Background()
	logger := slog.New(slog.DiscardHandler)
	src, err := data.NewSynthetic(4096, models.ImageShape(), models.NumClasses, 1)
	if err != nil {
		b.Fatal(err)
	}
	x, labels, err := src.Gather(seq(0, 64))
	if err != nil {
		b.Fatal(err)
	}
	type rank struct {
		d   *DDP
		opt models.Optimizer
	}
	job := func(on bool) []rank {
		ts, err := quictransport.StartLocal(ctx, 2, quictransport.Config{Logger: logger})
		if err != nil {
			b.Fatal(err)
		}
		out := make([]rank, 2)
		errs := make([]error, 2)
		var wg sync.WaitGroup
		for r := range 2 {
			wg.Go(func() {
				var rec *timeline.Recorder
				if on {
					rec = timeline.New(timeline.Config{Rank: r})
				}
				g, err := collective.New(ctx, ts[r], collective.Options{Timeline: rec, Logger: logger})
				if err != nil {
					errs[r] = err
					return
				}
				b.Cleanup(func() { g.Close(); ts[r].Close() })
				m, err := models.Build("mlp", 1)
				if err != nil {
					errs[r] = err
					return
				}
				buildMu.Lock() // the first forward builds gorgonia graphs (see buildMu)
				_, _, err = m.Forward(x, true)
				buildMu.Unlock()
				if err != nil {
					errs[r] = err
					return
				}
				out[r].d, errs[r] = Wrap(ctx, m, g, Options{BucketCapMB: 0.5})
				out[r].opt, _ = models.NewSGD(m.Params(), models.SGDConfig{LR: 0.01})
			})
		}
		wg.Wait()
		for _, err := range errs {
			if err != nil {
				b.Fatal(err)
			}
		}
		return out
	}
	jobs := map[bool][]rank{true: job(true), false: job(false)}
	cpu := func() time.Duration {
		var ru syscall.Rusage
		syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
		return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	sum := map[bool]time.Duration{}
	round := func(on bool) {
		c0 := cpu()
		var wg sync.WaitGroup
		for _, r := range jobs[on] {
			wg.Go(func() {
				for range 20 {
					if _, err := r.d.TrainStep(ctx, r.opt, Batch{X: x, Labels: labels}); err != nil {
						b.Error(err)
						return
					}
				}
			})
		}
		wg.Wait()
		sum[on] += cpu() - c0
	}
	round(true) // warm both: first steps grow heaps and caches
	round(false)
	sum = map[bool]time.Duration{}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		first := i%2 == 0
		round(first)
		round(!first)
	}
	b.ReportMetric(float64(sum[true])/float64(sum[false]), "cpu-on/off")
	b.ReportMetric(float64(sum[false].Milliseconds())/float64(b.N), "cpu-ms/round-off")
	b.ReportMetric(float64(sum[true].Milliseconds())/float64(b.N), "cpu-ms/round-on")
}
