//go:build unix

package ddp

import (
	"context"
	"log/slog"
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
