package collective

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"

	"github.com/ringtrain/ringtrain/collective/transport"
	"github.com/ringtrain/ringtrain/collective/transport/memtransport"
)

// raggedTransport hands out links whose Reads return at most a few bytes at a time (1 to 13,
// at random), so that the ring's streamed receive (recvStream) sees reads that end inside
// elements and inside chunks, as TCP reads may.
type raggedTransport struct {
	transport.Transport
	seed uint64
}

func (t raggedTransport) Link(ctx context.Context, peer int, channel string) (transport.Link, error) {
	l, err := t.Transport.Link(ctx, peer, channel)
	if err != nil {
		return nil, err
	}
	return &raggedLink{Link: l, rng: rand.New(rand.NewPCG(t.seed, uint64(peer)))}, nil
}

type raggedLink struct {
	transport.Link
	mu  sync.Mutex
	rng *rand.Rand
}

func (l *raggedLink) Read(p []byte) (int, error) {
	l.mu.Lock()
	n := 1 + l.rng.IntN(13)
	l.mu.Unlock()
	return l.Link.Read(p[:min(len(p), n)])
}

var raggedFabric = fabric{
	name: "ragged",
	start: func(t testing.TB, n int) ([]transport.Transport, func(int)) {
		ms := memtransport.NewWithOptions(n, memtransport.Options{Window: 4096})
		t.Cleanup(func() {
			for _, tr := range ms {
				tr.Close()
			}
		})
		ts := memtransport.AsTransports(ms)
		for r := range ts {
			ts[r] = raggedTransport{Transport: ts[r], seed: uint64(r)}
		}
		return ts, func(r int) { ms[r].Kill() }
	},
}

// TestRingStreamRaggedReads runs the ring's uncompressed ops over links that return a few
// bytes per Read, for 4- and 8-byte elements, counts that leave chunks and segments uneven
// or empty, and Avg (divided per chunk as chunks complete), and checks the results exactly.
func TestRingStreamRaggedReads(t *testing.T) {
	for _, n := range []int{2, 3, 4} {
		for _, count := range []int{0, 1, 5, 37, 1000} {
			t.Run(fmt.Sprintf("N=%d/count=%d", n, count), func(t *testing.T) {
				j := startJob(t, raggedFabric, n, Options{ChunkBytes: 24, Algorithm: "ring"})
				defer j.closeAll()
				ctx := ctxT(t)
				f32 := make([][]float32, n)
				i64 := make([][]int64, n)
				f64 := make([][]float64, n)
				for r := range n {
					f32[r] = make([]float32, count)
					i64[r] = make([]int64, count)
					f64[r] = make([]float64, count)
					for i := range count {
						f32[r][i] = float32(r*count + i) // small integers: float sums are exact
						i64[r][i] = int64(r)<<40 + int64(i)
						f64[r][i] = float64(r*count+i) * float64(n)
					}
				}
				j.mustEach(func(r int, g *Group) error {
					if err := g.AllReduce(ctx, f32[r], Sum); err != nil {
						return err
					}
					if err := AllReduce(ctx, g, i64[r], Max); err != nil {
						return err
					}
					return AllReduce(ctx, g, f64[r], Avg)
				})
				for r := range n {
					for i := range count {
						wantF := float32(n*i + count*n*(n-1)/2)
						wantI := int64(n-1)<<40 + int64(i)
						wantD := float64(n*i+count*n*(n-1)/2) * float64(n) / float64(n)
						if f32[r][i] != wantF || i64[r][i] != wantI || f64[r][i] != wantD {
							t.Fatalf("rank %d element %d: fp32 Sum %v (want %v), int64 Max %d (want %d), fp64 Avg %v (want %v)",
								r, i, f32[r][i], wantF, i64[r][i], wantI, f64[r][i], wantD)
						}
					}
				}
			})
		}
	}
}
