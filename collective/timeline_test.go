package collective

import (
	"bytes"
	"context"
	"sync"
	"testing"

	"github.com/ringtrain/ringtrain/collective/transport/memtransport"
	"github.com/ringtrain/ringtrain/timeline"
)

// tracedJob makes an n-rank job over memtransport whose rank r records into recs[r] (nil:
// no timeline).
func tracedJob(t *testing.T, recs []*timeline.Recorder) []*Group {
	t.Helper()
	n := len(recs)
	ts := memtransport.AsTransports(memtransport.New(n))
	groups := make([]*Group, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for r := range n {
		// The ring, pinned: the wants below name the algorithm each op records.
		wg.Go(func() {
			groups[r], errs[r] = New(ctxT(t), ts[r], Options{Timeline: recs[r], ChunkBytes: 1 << 10, Algorithm: "ring"})
		})
	}
	wg.Wait()
	for r, err := range errs {
		if err != nil {
			t.Fatalf("rank %d: %v", r, err)
		}
	}
	t.Cleanup(func() {
		for _, g := range groups {
			wg.Go(func() { g.Close() })
		}
		wg.Wait()
		for _, tr := range ts {
			tr.Close()
		}
	})
	return groups
}

// TestTimelineRecordsOps: every op of every rank appears once, queued before it started,
// with its kind, bytes, dtype, algorithm and sequence number, and the trace passes Check.
func TestTimelineRecordsOps(t *testing.T) {
	const n = 3
	recs := make([]*timeline.Recorder, n)
	for r := range recs {
		recs[r] = timeline.New(timeline.Config{Rank: r})
	}
	groups := tracedJob(t, recs)
	errs := eachGroup(t, groups, func(r int, g *Group) error {
		ctx := context.Background()
		a, b := make([]float32, 1000), make([]float32, 7)
		w1 := g.AllReduceAsync(ctx, a, Sum)
		w2 := g.AllReduceAsync(ctx, b, Max, FP16)
		if err := g.Broadcast(ctx, b, 1); err != nil {
			return err
		}
		if err := g.Barrier(ctx); err != nil {
			return err
		}
		if _, err := g.AllGatherBytes(ctx, []byte("hello")); err != nil {
			return err
		}
		if err := w1.Wait(ctx); err != nil {
			return err
		}
		return w2.Wait(ctx)
	})
	for r, err := range errs {
		if err != nil {
			t.Fatalf("rank %d: %v", r, err)
		}
	}
	type want struct {
		name, dtype, algo, comp string
		bytes                   int64
	}
	wants := []want{
		{"AllReduce", "fp32", "ring", "none", 4000},
		{"AllReduce", "fp32", "ring", "fp16", 28},
		{"Broadcast", "fp32", "chain", "none", 28},
		{"Barrier", "none", "ring", "none", 0},
		{"AllGatherBytes", "bytes", "ring", "none", 15},
	}
	for r, rec := range recs {
		tr, err := timeline.Checked(rec)
		if err != nil {
			t.Fatalf("rank %d: %v", r, err)
		}
		queued := map[int64]float64{}
		seen := 0
		for _, e := range tr.TraceEvents {
			var seq int64
			if e.Ph == "i" && e.Arg("seq", &seq) {
				queued[seq] = *e.Ts
			}
		}
		for _, e := range tr.TraceEvents {
			if e.Ph != "X" || e.Cat != "collective" {
				continue
			}
			var seq, nb int64
			var dtype, algo, comp, status, links string
			if !e.Arg("seq", &seq) || !e.Arg("bytes", &nb) || !e.Arg("dtype", &dtype) || !e.Arg("algorithm", &algo) ||
				!e.Arg("compression", &comp) || !e.Arg("status", &status) || !e.Arg("links", &links) {
				t.Fatalf("rank %d: op event without its args: %+v %s", r, e, e.Args)
			}
			if seq < 0 || seq >= int64(len(wants)) {
				t.Fatalf("rank %d: op seq %d", r, seq)
			}
			w := wants[seq]
			if e.Name != w.name || dtype != w.dtype || algo != w.algo || comp != w.comp || nb != w.bytes || status != "ok" {
				t.Errorf("rank %d op %d: %s %s %s %s %d bytes %s, want %+v", r, seq, e.Name, dtype, algo, comp, nb, status, w)
			}
			q, ok := queued[seq]
			if !ok || q > *e.Ts {
				t.Errorf("rank %d op %d: queued at %v (found %v), started at %v", r, seq, q, ok, *e.Ts)
			}
			seen++
		}
		if seen != len(wants) {
			t.Errorf("rank %d: %d op events, want %d", r, seen, len(wants))
		}
	}
}

// TestTimelineAddsNoAllocations: an AllReduce allocates as much with a timeline as
// without one (the recorder's ring and inline arguments), and so certainly nothing more
// when it is off (a nil check). (AllocsPerRun counts the whole process: both ranks.)
func TestTimelineAddsNoAllocations(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are checked without -race")
	}
	measure := func(recs []*timeline.Recorder) float64 {
		groups := tracedJob(t, recs)
		bufs := [][]float32{make([]float32, 4096), make([]float32, 4096)}
		ctx := context.Background()
		start, res := make(chan struct{}), make(chan error)
		go func() {
			for range start {
				res <- groups[1].AllReduce(ctx, bufs[1], Sum)
			}
		}()
		defer close(start)
		op := func() {
			start <- struct{}{}
			if err := groups[0].AllReduce(ctx, bufs[0], Sum); err != nil {
				t.Error(err)
			}
			if err := <-res; err != nil {
				t.Error(err)
			}
		}
		for range 100 { // warm: the ring of events grows to its size here, once
			op()
		}
		return testing.AllocsPerRun(50, op)
	}
	off := measure([]*timeline.Recorder{nil, nil})
	on := measure([]*timeline.Recorder{timeline.New(timeline.Config{MaxEvents: 64}), timeline.New(timeline.Config{MaxEvents: 64})})
	t.Logf("allocations per AllReduce (both ranks): %.1f without a timeline, %.1f with one", off, on)
	if on > off {
		t.Errorf("a timeline adds allocations: %.1f per op with it, %.1f without", on, off)
	}
}

// TestTimelineShowsPendingOp: an op a peer never joins is in the trace as queued (and
// started on the worker's row only once it ends): a hung job's timeline says where.
func TestTimelineShowsPendingOp(t *testing.T) {
	rec := timeline.New(timeline.Config{Rank: 0})
	groups := tracedJob(t, []*timeline.Recorder{rec, nil})
	w := groups[0].AllReduceAsync(context.Background(), make([]float32, 10), Sum)
	var buf bytes.Buffer
	if _, err := rec.WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	tr, err := timeline.Parse(&buf)
	if err != nil {
		t.Fatal(err)
	}
	var queued, done int
	for _, e := range tr.TraceEvents {
		switch {
		case e.Ph == "i" && e.Name == "queued AllReduce":
			queued++
		case e.Ph == "X" && e.Name == "AllReduce":
			done++
		}
	}
	if queued != 1 || done != 0 {
		t.Fatalf("while rank 1 has not joined: %d queued and %d finished AllReduce events, want 1 and 0", queued, done)
	}
	select {
	case <-w.Done():
		t.Fatalf("the AllReduce completed without rank 1: %v", w.Err())
	default:
	}
}
