package ddp

import (
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ringtrain/ringtrain/collective"
	"github.com/ringtrain/ringtrain/collective/quictransport"
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
		tr, err := timeline.Checked(rec)
		if err != nil {
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
