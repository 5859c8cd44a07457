package collective

import (
	"context"
	"fmt"
	"testing"
)

// TestAllReduceAllocs shows that AllReduce allocates a small constant per op and nothing per
// chunk: an op moving hundreds of chunks allocates no more than one moving a single chunk.
// (testing.AllocsPerRun counts the whole process: all ranks and the transport.)
func TestAllReduceAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are checked without -race (the same code, ten times faster)")
	}
	noLeaks(t)
	const n = 3
	// The ring's allocations (the other algorithms, which the tuner picks for small
	// buffers, start a goroutine or two per op).
	j := startJob(t, memFabric, n, Options{ChunkBytes: 4 << 10, Algorithm: "ring"})
	for _, comp := range []Compression{NoCompression, FP16} {
		for _, ctx := range []context.Context{context.Background(), ctxT(t)} {
			measure := func(count int) float64 {
				bufs := make([][]float32, n)
				for r := range bufs {
					bufs[r] = randomInput(1, r, count)
				}
				start := make([]chan struct{}, n)
				res := make(chan error, n)
				for r := 1; r < n; r++ {
					start[r] = make(chan struct{})
					go func() {
						for range start[r] {
							res <- j.groups[r].AllReduce(ctx, bufs[r], Avg, comp)
						}
					}()
				}
				var failed error
				allocs := testing.AllocsPerRun(10, func() {
					for r := 1; r < n; r++ {
						start[r] <- struct{}{}
					}
					if err := j.groups[0].AllReduce(ctx, bufs[0], Avg, comp); err != nil {
						failed = err
					}
					for r := 1; r < n; r++ {
						if err := <-res; err != nil {
							failed = err
						}
					}
				})
				for r := 1; r < n; r++ {
					close(start[r])
				}
				if failed != nil {
					t.Fatal(failed)
				}
				return allocs
			}
			small := measure(64)      // one chunk per segment
			large := measure(1 << 18) // 1024-element chunks: 86 per segment, 688 transfers
			t.Logf("%v, ctx with deadline %v: %.1f allocations per op (all %d ranks) for 64 elements, %.1f for 256Ki elements",
				comp, ctx.Done() != nil, small, n, large)
			if large > small+1 {
				t.Errorf("%v: allocations grow with the number of chunks: %.1f for 256Ki elements vs %.1f for 64", comp, large, small)
			}
			if small > float64(8*n) {
				t.Errorf("%v: %.1f allocations per op for %d ranks; want a small constant", comp, small, n)
			}
		}
	}
}

func benchKernel(b *testing.B, n int, f func(dst, src []float32)) {
	dst, src := randomInput(1, 0, n), randomInput(2, 0, n)
	b.SetBytes(int64(4 * n)) // bytes of dst processed
	for b.Loop() {
		f(dst, src)
	}
}

// The reduction kernels against copy (the memory-bandwidth ceiling for a pass over dst).
// 64 Ki elements = 256 KiB, the default chunk: in cache, as in the ring.
func BenchmarkKernelCopy(b *testing.B) {
	benchKernel(b, 64<<10, func(d, s []float32) { copy(d, s) })
}
func BenchmarkKernelSum(b *testing.B) { benchKernel(b, 64<<10, sumInto) }
func BenchmarkKernelMax(b *testing.B) { benchKernel(b, 64<<10, maxInto) }
func BenchmarkKernelSumNaive(b *testing.B) {
	benchKernel(b, 64<<10, func(d, s []float32) {
		for i := range d {
			d[i] += s[i]
		}
	})
}

// BenchmarkAllReduceMem measures the algorithm over the in-process transport (no network):
// it shows the cost of the ring machinery itself.
func BenchmarkAllReduceMem(b *testing.B) {
	for _, n := range []int{2, 4} {
		for _, count := range []int{1 << 10, 16 << 20} {
			for _, comp := range []Compression{NoCompression, FP16} {
				b.Run(fmt.Sprintf("N=%d/bytes=%d/%v", n, 4*count, comp), func(b *testing.B) {
					j := startJob(b, memFabric, n, Options{})
					bufs := make([][]float32, n)
					for r := range bufs {
						bufs[r] = randomInput(1, r, count)
					}
					b.SetBytes(int64(4 * count))
					b.ResetTimer()
					j.each(func(r int, g *Group) error {
						for range b.N {
							if err := g.AllReduce(context.Background(), bufs[r], Avg, comp); err != nil {
								return err
							}
						}
						return nil
					})
				})
			}
		}
	}
}
