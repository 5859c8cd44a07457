package collective

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ringtrain/ringtrain/collective/transport"
)

// checkAllFail checks that every rank failed, that errors.As finds want's type where the
// fabric keeps error values (memtransport) and that the text contains every fragment.
func checkAllFail(t *testing.T, f fabric, errs []error, fragments ...string) {
	t.Helper()
	for r, err := range errs {
		if err == nil {
			t.Fatalf("rank %d: no error", r)
		}
		for _, frag := range fragments {
			if !strings.Contains(err.Error(), frag) {
				t.Fatalf("rank %d: error %q does not mention %q", r, err, frag)
			}
		}
	}
}

func TestCountMismatch(t *testing.T) {
	noLeaks(t)
	for _, f := range fabrics() {
		for _, n := range fabricSizes(f, []int{2, 4}) {
			t.Run(name(f, n), func(t *testing.T) {
				j := startJob(t, f, n, Options{})
				// Rank 0 calls with 99 elements, the others with 100: rank 1 (its right
				// neighbour) detects it and every rank must fail with the same story.
				errs := j.each(func(r int, g *Group) error {
					count := 100
					if r == 0 {
						count = 99
					}
					return g.AllReduce(ctxT(t), make([]float32, count), Sum)
				})
				// Whichever side detects it, the error names both calls.
				checkAllFail(t, f, errs, "op mismatch: rank ", "AllReduce(count=100, fp32, sum)", "AllReduce(count=99, fp32, sum)")
				if f.name == "mem" {
					for r, err := range errs {
						var me *MismatchError
						// The ring's neighbours detect it; other algorithms (GORUN_ALGO) may detect
						// it at any partner of rank 0.
						ring := j.groups[0].Algorithm(100) == "ring"
						if !errors.As(err, &me) || ring && !(me.Rank == 1 && me.PeerRank == 0 || me.Rank == 0 && me.PeerRank == n-1) || !ring && me.Rank != 0 && me.PeerRank != 0 {
							t.Fatalf("rank %d: %v is not the MismatchError between rank 0 and a neighbour", r, err)
						}
					}
				}
				// Every later op fails with the same error.
				later := j.each(func(r int, g *Group) error { return g.Barrier(ctxT(t)) })
				for r := range later {
					if later[r] == nil || later[r].Error() != errs[r].Error() {
						t.Fatalf("rank %d: later op returned %v, want the original %v", r, later[r], errs[r])
					}
				}
			})
		}
	}
}

func TestOpMismatch(t *testing.T) {
	noLeaks(t)
	cases := []struct {
		name string
		odd  func(ctx context.Context, g *Group, buf []float32) error
		want []string // both calls; either neighbour of rank 2 may be the one to detect it
	}{
		{"broadcast-vs-allreduce", func(ctx context.Context, g *Group, buf []float32) error { return g.Broadcast(ctx, buf, 0) },
			[]string{"called AllReduce(count=64, fp32, sum)", "rank 2 called Broadcast(count=64, fp32, root=0)"}},
		{"fp16-vs-fp32", func(ctx context.Context, g *Group, buf []float32) error { return g.AllReduce(ctx, buf, Sum, FP16) },
			[]string{"called AllReduce(count=64, fp32, sum)", "rank 2 called AllReduce(count=64, fp16, sum)"}},
		{"max-vs-sum", func(ctx context.Context, g *Group, buf []float32) error { return g.AllReduce(ctx, buf, Max) },
			[]string{"called AllReduce(count=64, fp32, sum)", "rank 2 called AllReduce(count=64, fp32, max)"}},
		{"skipped-op", func(ctx context.Context, g *Group, buf []float32) error {
			g.seq++ // as if this rank had issued one more op before
			return g.AllReduce(ctx, buf, Sum)
		}, []string{"called AllReduce(count=64, fp32, sum) [op #0]", "rank 2 called AllReduce(count=64, fp32, sum) [op #1]"}},
	}
	for _, f := range fabrics() {
		for _, c := range cases {
			t.Run(f.name+"/"+c.name, func(t *testing.T) {
				j := startJob(t, f, 4, Options{})
				errs := j.each(func(r int, g *Group) error {
					buf := make([]float32, 64)
					if r == 2 {
						return c.odd(ctxT(t), g, buf)
					}
					return g.AllReduce(ctxT(t), buf, Sum)
				})
				checkAllFail(t, f, errs, append([]string{"op mismatch: rank "}, c.want...)...)
			})
		}
	}
}

// TestKilledPeer kills one rank in the middle of a large AllReduce: every other rank must fail
// promptly (long before Options.Timeout) with an error naming the dead rank, and later ops
// must fail the same way.
func TestKilledPeer(t *testing.T) {
	noLeaks(t)
	for _, f := range fabrics() {
		if f.start == nil {
			continue
		}
		for _, n := range fabricSizes(f, []int{2, 4, 5}) {
			t.Run(name(f, n), func(t *testing.T) {
				j := startJob(t, f, n, Options{ChunkBytes: 4 << 10, Timeout: time.Minute})
				victim := n - 1
				var started sync.WaitGroup
				started.Add(n - 1)
				start := time.Now()
				errs := j.each(func(r int, g *Group) error {
					if r == victim {
						started.Wait()
						time.Sleep(20 * time.Millisecond)
						j.kill(r)
						return nil
					}
					buf := make([]float32, 4<<20)
					w := g.AllReduceAsync(context.Background(), buf, Sum)
					started.Done()
					return w.Wait(ctxT(t))
				})
				if el := time.Since(start); el > 20*time.Second {
					t.Fatalf("ranks took %v to notice the dead peer", el)
				}
				for r, err := range errs {
					if r == victim {
						continue
					}
					var pe *transport.PeerError
					if err == nil || !errors.As(err, &pe) {
						t.Fatalf("rank %d: %v; want an error wrapping *transport.PeerError", r, err)
					}
					if f.name == "mem" && pe.Rank != victim {
						t.Fatalf("rank %d: error names rank %d, want %d: %v", r, pe.Rank, victim, err)
					}
					if err2 := j.groups[r].AllReduce(context.Background(), make([]float32, 8), Sum); err2 == nil {
						t.Fatalf("rank %d: op after the failure succeeded", r)
					}
				}
			})
		}
	}
}

// TestTimeoutNamesSilentPeer: a rank that never joins an op (alive but stuck) makes the others
// fail after Options.Timeout with ErrTimeout naming a neighbour.
func TestTimeoutNamesSilentPeer(t *testing.T) {
	noLeaks(t)
	const n = 3
	j := startJob(t, memFabric, n, Options{Timeout: time.Second})
	start := time.Now()
	errs := j.each(func(r int, g *Group) error {
		if r == 2 {
			return nil // never calls
		}
		return g.AllReduce(ctxT(t), make([]float32, 1000), Sum)
	})
	el := time.Since(start)
	for r := range 2 {
		var pe *transport.PeerError
		if !errors.Is(errs[r], ErrTimeout) && !errors.As(errs[r], &pe) {
			t.Fatalf("rank %d: %v; want a timeout naming a peer", r, errs[r])
		}
	}
	if !errors.Is(errs[0], ErrTimeout) || !strings.Contains(errs[0].Error(), "rank 2") {
		t.Fatalf("rank 0 (waiting on rank 2): %v", errs[0])
	}
	if el > 10*time.Second {
		t.Fatalf("timeout of 1s took %v", el)
	}
}

// TestCancelFailsGroup: cancelling an op's context while it waits for a peer fails it and the
// group, promptly.
func TestCancelFailsGroup(t *testing.T) {
	noLeaks(t)
	j := startJob(t, memFabric, 2, Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	err := j.groups[0].AllReduce(ctx, make([]float32, 10), Sum)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("AllReduce with expiring ctx: %v", err)
	}
	if err2 := j.groups[0].Barrier(context.Background()); err2 == nil || err2.Error() != err.Error() {
		t.Fatalf("later op: %v; want %v", err2, err)
	}
	// The peer learns of it through the transport abort.
	err = j.groups[1].AllReduce(ctxT(t), make([]float32, 10), Sum)
	var pe *transport.PeerError
	if !errors.As(err, &pe) || pe.Rank != 0 {
		t.Fatalf("peer: %v; want a PeerError naming rank 0", err)
	}
	// An already cancelled context is refused without issuing anything.
	j2 := startJob(t, memFabric, 2, Options{})
	done, cancel2 := context.WithCancel(context.Background())
	cancel2()
	if err := j2.groups[0].AllReduce(done, make([]float32, 4), Sum); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled ctx: %v", err)
	}
	if err := j2.groups[0].Err(); err != nil {
		t.Fatalf("a never-issued op failed the group: %v", err)
	}
}

// TestCloseWithOpsInFlight: Close while ops are queued and running returns promptly, fails
// them, and leaves no goroutine behind.
func TestCloseWithOpsInFlight(t *testing.T) {
	noLeaks(t)
	j := startJob(t, memFabric, 3, Options{})
	g := j.groups[0]
	var works []*Work
	for range 5 {
		works = append(works, g.AllReduceAsync(context.Background(), make([]float32, 1<<16), Sum))
	}
	time.Sleep(10 * time.Millisecond)
	g.Close()
	for i, w := range works {
		select {
		case <-w.Done():
			if w.Err() == nil {
				t.Fatalf("op %d succeeded although its peers never ran it", i)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("op %d still pending after Close", i)
		}
	}
	if err := g.AllReduce(context.Background(), make([]float32, 4), Sum); !errors.Is(err, ErrClosed) {
		t.Fatalf("op after Close: %v", err)
	}
	g.Close() // idempotent
}

// TestShutdownThenClose: Shutdown is the collective, flushing end (it waits for the ops
// already issued, then for both neighbours' goodbyes), Close the local, prompt one. Close alone
// used to wait for the neighbours to close too, up to Options.Timeout (10 s at most): it must
// now return at once.
func TestShutdownThenClose(t *testing.T) {
	noLeaks(t)
	for _, f := range fabrics() {
		t.Run(f.name, func(t *testing.T) {
			j := startJob(t, f, 3, Options{Timeout: 20 * time.Second})
			j.mustEach(func(r int, g *Group) error {
				// Shutdown right after issuing: the op still completes, then the goodbyes.
				buf := make([]float32, 1<<16)
				for i := range buf {
					buf[i] = 1
				}
				w := g.AllReduceAsync(ctxT(t), buf, Sum)
				if err := g.Shutdown(ctxT(t)); err != nil {
					return err
				}
				if err := w.Wait(ctxT(t)); err != nil {
					return fmt.Errorf("op issued before Shutdown: %v", err)
				}
				if buf[len(buf)-1] != 3 {
					return fmt.Errorf("op issued before Shutdown: got %v, want 3", buf[len(buf)-1])
				}
				if err := g.Barrier(ctxT(t)); !errors.Is(err, ErrClosed) {
					return fmt.Errorf("op after Shutdown: %v, want ErrClosed", err)
				}
				start := time.Now()
				g.Close()
				if el := time.Since(start); el > time.Second {
					return fmt.Errorf("Close after Shutdown took %v", el)
				}
				return nil
			})

			// Close alone is local and prompt, whatever the neighbours do.
			j2 := startJob(t, f, 2, Options{Timeout: 2 * time.Second})
			start := time.Now()
			j2.groups[0].Close()
			if el := time.Since(start); el > 500*time.Millisecond {
				t.Fatalf("Close alone took %v; want it prompt (the neighbour never closes)", el)
			}

			// Shutdown whose neighbour never shuts down gives up when its context ends,
			// naming the neighbour.
			j3 := startJob(t, f, 2, Options{})
			ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
			defer cancel()
			err := j3.groups[0].Shutdown(ctx)
			if err == nil || !strings.Contains(err.Error(), "rank 1's goodbye") {
				t.Fatalf("Shutdown without the neighbour: %v; want an error naming rank 1", err)
			}
		})
	}
}

// TestConcurrentClose: Close from several goroutines at once, with a subgroup, returns in all
// of them and leaves nothing running.
func TestConcurrentClose(t *testing.T) {
	noLeaks(t)
	j := startJob(t, memFabric, 2, Options{Timeout: time.Second})
	subs := make([]*Group, 2)
	j.mustEach(func(r int, g *Group) error {
		var err error
		subs[r], err = g.Subgroup(ctxT(t), []int{0, 1})
		return err
	})
	j.mustEach(func(r int, g *Group) error {
		var wg sync.WaitGroup
		for range 3 {
			wg.Go(func() { g.Close() })
			wg.Go(func() { subs[r].Close() })
		}
		wg.Wait()
		if !errors.Is(subs[r].Err(), ErrClosed) || !errors.Is(g.Err(), ErrClosed) {
			return fmt.Errorf("after Close: Err() = %v, %v", g.Err(), subs[r].Err())
		}
		return nil
	})
}
