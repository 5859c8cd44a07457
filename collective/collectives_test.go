package collective

import (
	"context"
	"fmt"
	"math"
	"sync/atomic"
	"testing"
)

var allSizes = []int{1, 2, 3, 4, 5, 8}

// chunkOpts exercises pipelining: 1 KiB chunks make a 100003-element buffer dozens of chunks
// per segment, while small counts run with one chunk.
var chunkOpts = Options{ChunkBytes: 1 << 10}

func TestAllReduce(t *testing.T) {
	noLeaks(t)
	for _, f := range fabrics() {
		for _, n := range fabricSizes(f, allSizes) {
			t.Run(name(f, n), func(t *testing.T) {
				j := startJob(t, f, n, chunkOpts)
				for ci, count := range testCounts(n) {
					for _, op := range []Op{Sum, Avg, Max, Min} {
						inputs := make([][]float32, n)
						for r := range inputs {
							inputs[r] = randomInput(uint64(ci*10+int(op)), r, count)
						}
						ref, abs := reference(inputs, op)
						bufs := make([][]float32, n)
						j.mustEach(func(r int, g *Group) error {
							bufs[r] = clone(inputs[r])
							return g.AllReduce(ctxT(t), bufs[r], op)
						})
						what := fmt.Sprintf("AllReduce(count=%d, %v)", count, op)
						checkFP32(t, what, bufs[0], ref, abs, n)
						sameBits(t, what, bufs)
					}
				}
			})
		}
	}
}

func TestReduceScatter(t *testing.T) {
	noLeaks(t)
	for _, f := range fabrics() {
		for _, n := range fabricSizes(f, allSizes) {
			t.Run(name(f, n), func(t *testing.T) {
				j := startJob(t, f, n, chunkOpts)
				for ci, block := range []int{0, 1, n - 1, 13, largeCount() / n} {
					for _, op := range []Op{Sum, Avg, Max, Min} {
						count := block * n
						inputs := make([][]float32, n)
						for r := range inputs {
							inputs[r] = randomInput(uint64(100+ci*10+int(op)), r, count)
						}
						ref, abs := reference(inputs, op)
						j.mustEach(func(r int, g *Group) error {
							buf := clone(inputs[r])
							if err := g.ReduceScatter(ctxT(t), buf, op); err != nil {
								return err
							}
							lo, hi := r*block, (r+1)*block
							checkFP32(t, fmt.Sprintf("rank %d ReduceScatter(count=%d, %v)", r, count, op), buf[lo:hi], ref[lo:hi], abs[lo:hi], n)
							return nil
						})
					}
				}
				// A length that is not a multiple of the size is refused on the spot.
				if n > 1 {
					if err := j.groups[0].ReduceScatter(ctxT(t), make([]float32, n+1), Sum); err == nil {
						t.Fatal("ReduceScatter accepted a length not divisible by the group size")
					}
				}
			})
		}
	}
}

func TestAllGather(t *testing.T) {
	noLeaks(t)
	for _, f := range fabrics() {
		for _, n := range fabricSizes(f, allSizes) {
			t.Run(name(f, n), func(t *testing.T) {
				j := startJob(t, f, n, chunkOpts)
				for ci, block := range []int{0, 1, n - 1, 13, largeCount() / n} {
					inputs := make([][]float32, n)
					for r := range inputs {
						inputs[r] = randomInput(uint64(200+ci), r, block)
					}
					bufs := make([][]float32, n)
					j.mustEach(func(r int, g *Group) error {
						bufs[r] = make([]float32, block*n)
						for i := range bufs[r] {
							bufs[r][i] = float32(math.NaN()) // must all be overwritten
						}
						copy(bufs[r][r*block:], inputs[r])
						return g.AllGather(ctxT(t), bufs[r])
					})
					for r := range bufs {
						for src := range n {
							for i, want := range inputs[src] {
								if got := bufs[r][src*block+i]; got != want {
									t.Fatalf("AllGather(block=%d): rank %d has %g at block %d index %d, want %g", block, r, got, src, i, want)
								}
							}
						}
					}
				}
			})
		}
	}
}

func TestBroadcast(t *testing.T) {
	noLeaks(t)
	for _, f := range fabrics() {
		for _, n := range fabricSizes(f, allSizes) {
			t.Run(name(f, n), func(t *testing.T) {
				j := startJob(t, f, n, chunkOpts)
				for ci, count := range testCounts(n) {
					for root := range n {
						want := randomInput(uint64(300+ci), root, count)
						j.mustEach(func(r int, g *Group) error {
							buf := make([]float32, count)
							if r == root {
								copy(buf, want)
							}
							if err := g.Broadcast(ctxT(t), buf, root); err != nil {
								return err
							}
							for i := range buf {
								if buf[i] != want[i] {
									return fmt.Errorf("Broadcast(count=%d, root=%d): element %d = %g, want %g", count, root, i, buf[i], want[i])
								}
							}
							return nil
						})
					}
				}
				if err := j.groups[0].Broadcast(ctxT(t), nil, n); err == nil {
					t.Fatal("Broadcast accepted an out-of-range root")
				}
			})
		}
	}
}

func TestBarrier(t *testing.T) {
	noLeaks(t)
	for _, f := range fabrics() {
		for _, n := range fabricSizes(f, allSizes) {
			t.Run(name(f, n), func(t *testing.T) {
				j := startJob(t, f, n, Options{})
				for round := range 5 {
					var arrived atomic.Int32
					j.mustEach(func(r int, g *Group) error {
						// Stagger arrivals so that a barrier that lets anyone through early is caught.
						if (r+round)%n == 0 {
							spin(2e6)
						}
						arrived.Add(1)
						if err := g.Barrier(ctxT(t)); err != nil {
							return err
						}
						if a := arrived.Load(); a != int32(n) {
							return fmt.Errorf("left the barrier when only %d of %d ranks had arrived", a, n)
						}
						return nil
					})
				}
			})
		}
	}
}

// spin burns CPU for about iters iterations (a delay that does not depend on the scheduler).
func spin(iters int) {
	x := 0.0
	for i := range iters {
		x += math.Sqrt(float64(i))
	}
	sink.Store(math.Float64bits(x))
}

var sink atomic.Uint64

// TestAsyncOpsInOrder issues several collectives asynchronously before waiting for any:
// they must run in issue order and not mix their data.
func TestAsyncOpsInOrder(t *testing.T) {
	noLeaks(t)
	for _, f := range fabrics() {
		n := 4
		t.Run(name(f, n), func(t *testing.T) {
			j := startJob(t, f, n, chunkOpts)
			const ops = 8
			inputs := make([][][]float32, ops)
			for k := range inputs {
				inputs[k] = make([][]float32, n)
				for r := range n {
					inputs[k][r] = randomInput(uint64(400+k), r, 1000+k*997)
				}
			}
			results := make([][][]float32, n)
			j.mustEach(func(r int, g *Group) error {
				ctx := ctxT(t)
				var works []*Work
				results[r] = make([][]float32, ops)
				for k := range ops {
					results[r][k] = clone(inputs[k][r])
					switch k % 3 {
					case 0, 1:
						works = append(works, g.AllReduceAsync(ctx, results[r][k], Sum))
					case 2:
						works = append(works, g.BroadcastAsync(ctx, results[r][k], k%n))
					}
				}
				for k := len(works) - 1; k >= 0; k-- { // wait out of order
					if err := works[k].Wait(ctx); err != nil {
						return fmt.Errorf("op %d: %w", k, err)
					}
					<-works[k].Done()
					if works[k].Err() != nil {
						return works[k].Err()
					}
				}
				return nil
			})
			for k := range ops {
				if k%3 == 2 {
					for r := range n {
						for i, v := range results[r][k] {
							if v != inputs[k][k%n][i] {
								t.Fatalf("op %d (Broadcast): rank %d element %d = %g, want %g", k, r, i, v, inputs[k][k%n][i])
							}
						}
					}
					continue
				}
				ref, abs := reference(inputs[k], Sum)
				for r := range n {
					checkFP32(t, fmt.Sprintf("op %d rank %d", k, r), results[r][k], ref, abs, n)
				}
			}
		})
	}
}

// TestSingleRankIdentity: a group of one returns its input for every op.
func TestSingleRankIdentity(t *testing.T) {
	noLeaks(t)
	j := startJob(t, memFabric, 1, Options{})
	g := j.groups[0]
	ctx := ctxT(t)
	in := randomInput(9, 0, 100)
	buf := clone(in)
	for _, op := range []Op{Sum, Avg, Max, Min} {
		if err := g.AllReduce(ctx, buf, op, FP16); err != nil {
			t.Fatal(err)
		}
	}
	if err := g.Broadcast(ctx, buf, 0); err != nil {
		t.Fatal(err)
	}
	if err := g.Barrier(ctx); err != nil {
		t.Fatal(err)
	}
	for i := range in {
		if buf[i] != in[i] {
			t.Fatalf("element %d changed: %g -> %g", i, in[i], buf[i])
		}
	}
	if err := g.Send(ctx, buf, 0, 0); err == nil {
		t.Fatal("Send to oneself accepted")
	}
	if err := g.AllReduce(context.Background(), buf, Op(42)); err == nil {
		t.Fatal("invalid Op accepted")
	}
}
