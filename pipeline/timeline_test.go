package pipeline_test

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/ringtrain/ringtrain/collective"
	"github.com/ringtrain/ringtrain/collective/quictransport"
	"github.com/ringtrain/ringtrain/pipeline"
	"github.com/ringtrain/ringtrain/timeline"
)

// TestTimeline: a 2-stage pipeline over QUIC whose groups record into a timeline per rank:
// every action of the schedule appears (forward and backward per micro-batch, the
// receives of the second stage's inputs, the sends), and the traces pass the format check.
func TestTimeline(t *testing.T) {
	const n, micro, steps = 2, 4, 2
	ctx, cancel := context.WithTimeout(context.Background(), testLimit)
	defer cancel()
	logger := slog.New(slog.DiscardHandler)
	ts, err := quictransport.StartLocal(ctx, n, quictransport.Config{Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	recs := make([]*timeline.Recorder, n)
	groups := make([]*collective.Group, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	src := testData(t)
	for r := range n {
		recs[r] = timeline.New(timeline.Config{Rank: r})
		wg.Go(func() {
			g, err := collective.New(ctx, ts[r], collective.Options{Timeout: 20 * time.Second, Logger: logger, Timeline: recs[r]})
			if err != nil {
				errs[r] = err
				return
			}
			groups[r] = g // closed once every rank is done: rank 1's last send must arrive
			cfg := pipeline.Config{Stages: n, MicroBatches: micro, Batch: 16, InputShape: testInput}
			e, err := pipeline.New(ctx, testModel(t, 1, microSizes(16, micro)...), g, cfg)
			if err != nil {
				errs[r] = err
				return
			}
			defer e.Close()
			opt, err := newSGD(e.Params())
			if err != nil {
				errs[r] = err
				return
			}
			for step := range steps {
				x, y, err := replicaBatch(src, cfg.Batch, 1, 0, step)
				if err == nil {
					_, err = e.Step(ctx, x, y, opt)
				}
				if err != nil {
					errs[r] = err
					return
				}
			}
		})
	}
	wg.Wait()
	for r := range n {
		wg.Go(func() {
			if groups[r] != nil {
				groups[r].Close()
			}
			ts[r].Close()
		})
	}
	wg.Wait()
	for r, err := range errs {
		if err != nil {
			t.Fatalf("rank %d: %v", r, err)
		}
	}
	for r, rec := range recs {
		tr, err := timeline.Checked(rec)
		if err != nil {
			t.Fatalf("rank %d: %v", r, err)
		}
		count := map[string]int{}
		for _, e := range tr.TraceEvents {
			if e.Ph == "X" {
				count[e.Name]++
			}
		}
		want := map[string]int{"optimizer": steps}
		for m := range micro {
			want[fmt.Sprintf("forward %d", m)] = steps
			want[fmt.Sprintf("backward %d", m)] = steps
			if r == 0 {
				want[fmt.Sprintf("send activation %d", m)] = steps
				want[fmt.Sprintf("recv gradient %d", m)] = steps
			} else {
				want[fmt.Sprintf("recv activation %d", m)] = steps
				want[fmt.Sprintf("send gradient %d", m)] = steps
			}
		}
		for name, w := range want {
			if count[name] != w {
				t.Errorf("rank %d: %d %q events, want %d (all: %v)", r, count[name], name, w, count)
			}
		}
	}
}
