package shmtransport_test

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/ringtrain/ringtrain/collective"
	"github.com/ringtrain/ringtrain/collective/quictransport"
	"github.com/ringtrain/ringtrain/collective/shmtransport"
	"github.com/ringtrain/ringtrain/collective/transport"
)

const jobDeadline = 45 * time.Second

// fabric says how each rank's links are chosen over a QUIC-formed job.
type fabric struct {
	name string
	opts func(rank int) shmtransport.Options
	// kind is the transport expected on the edge between ranks a and b.
	kind func(a, b int) string
}

var fabrics = []fabric{
	{"shm", func(int) shmtransport.Options { return shmtransport.Options{Mode: shmtransport.ModeShm} },
		func(a, b int) string { return "shm" }},
	{"quic", func(int) shmtransport.Options { return shmtransport.Options{Mode: shmtransport.ModeQUIC} },
		func(a, b int) string { return "quic" }},
	// The edge 0-1 is forced onto QUIC by both ends; the others use shared memory.
	{"mixed", func(rank int) shmtransport.Options {
		return shmtransport.Options{PeerMode: func(peer int) shmtransport.Mode {
			if rank+peer == 1 {
				return shmtransport.ModeQUIC
			}
			return shmtransport.ModeAuto
		}}
	}, func(a, b int) string {
		if a+b == 1 {
			return "quic"
		}
		return "shm"
	}},
}

// startJob starts an n-rank QUIC job in this process, wraps every rank's transport with
// f's options (files in a private directory of /dev/shm), and makes the world groups.
func startJob(t *testing.T, f fabric, n int) ([]*shmtransport.Transport, []*collective.Group) {
	t.Helper()
	if f.name != "quic" {
		needShm(t)
	}
	dir, err := os.MkdirTemp(shmtransport.DefaultDir, "rtshm-test-")
	if err != nil {
		t.Skip(err)
	}
	t.Cleanup(func() {
		names, _ := os.ReadDir(dir)
		if len(names) != 0 {
			t.Errorf("files left in %s: %v", dir, names)
		}
		os.RemoveAll(dir)
	})
	ctx, cancel := context.WithTimeout(context.Background(), jobDeadline)
	defer cancel()
	base, err := quictransport.StartLocal(ctx, n, quictransport.Config{PeerTimeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	ts := make([]*shmtransport.Transport, n)
	for r := range n {
		o := f.opts(r)
		o.Dir = dir
		if ts[r], err = shmtransport.Wrap(base[r], o); err != nil {
			t.Fatal(err)
		}
	}
	groups := make([]*collective.Group, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for r := range n {
		wg.Go(func() { groups[r], errs[r] = collective.New(ctx, ts[r], collective.Options{ChunkBytes: 64 << 10}) })
	}
	wg.Wait()
	for r, err := range errs {
		if err != nil {
			t.Fatalf("rank %d: collective.New: %v", r, err)
		}
	}
	t.Cleanup(func() {
		var wg sync.WaitGroup
		for r := range n {
			wg.Go(func() { groups[r].Close(); ts[r].Close() })
		}
		wg.Wait()
	})
	return ts, groups
}

// each runs f on every rank at once and fails the test on an error or after the deadline.
func each(t *testing.T, groups []*collective.Group, f func(r int, g *collective.Group) error) {
	t.Helper()
	errs := make([]error, len(groups))
	var wg sync.WaitGroup
	for r, g := range groups {
		wg.Go(func() { errs[r] = f(r, g) })
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(jobDeadline):
		t.Fatalf("ranks did not finish within %v", jobDeadline)
	}
	for r, err := range errs {
		if err != nil {
			t.Fatalf("rank %d: %v", r, err)
		}
	}
}

func input(seed uint64, r, count int) []float32 {
	rng := rand.New(rand.NewPCG(seed, uint64(r)))
	v := make([]float32, count)
	for i := range v {
		v[i] = float32(rng.NormFloat64() * math.Pow(10, float64(rng.IntN(4)-2)))
	}
	return v
}

// TestCollectivesOverFabrics runs the collectives of package collective, unchanged, over
// shared memory, over QUIC and over a ring mixing both, for 2 to 4 ranks, and checks every
// result against a float64 reference.
func TestCollectivesOverFabrics(t *testing.T) {
	const count = 100003 // prime: segments and chunks of uneven sizes
	for _, f := range fabrics {
		for _, n := range []int{2, 3, 4} {
			t.Run(fmt.Sprintf("%s/n=%d", f.name, n), func(t *testing.T) {
				ts, groups := startJob(t, f, n)
				ctx, cancel := context.WithTimeout(context.Background(), jobDeadline)
				defer cancel()
				inputs := make([][]float32, n)
				for r := range n {
					inputs[r] = input(uint64(n), r, count)
				}
				want := make([]float64, count)
				abs := make([]float64, count) // Σ|x| per element: bounds float32 rounding
				amax := 0.0                   // largest Σ|x|: bounds the fp16 error
				for i := range want {
					for r := range n {
						want[i] += float64(inputs[r][i])
						abs[i] += math.Abs(float64(inputs[r][i]))
					}
					amax = max(amax, abs[i])
				}
				// AllReduce fp32 and fp16.
				for _, comp := range []collective.Compression{collective.NoCompression, collective.FP16} {
					each(t, groups, func(r int, g *collective.Group) error {
						buf := append([]float32(nil), inputs[r]...)
						if err := g.AllReduce(ctx, buf, collective.Sum, comp); err != nil {
							return err
						}
						// fp16: the bound documented on collective.AllReduce; fp32: n roundings
						// of at most 2^-24 of a partial sum.
						u := math.Pow(2, -11) + math.Pow(2, -24)
						tol16 := (math.Pow(1+u, float64(n)) - 1) * amax
						for i, v := range buf {
							e := math.Abs(float64(v) - want[i])
							tol := tol16
							if comp == collective.NoCompression {
								tol = float64(n) * math.Pow(2, -24) * abs[i]
							}
							if e > tol {
								return fmt.Errorf("AllReduce %v: element %d = %v, want %v (error %g > %g)", comp, i, v, want[i], e, tol)
							}
						}
						return nil
					})
				}
				// AllGather: block r comes from rank r.
				m := count / n
				each(t, groups, func(r int, g *collective.Group) error {
					buf := make([]float32, m*n)
					copy(buf[r*m:], inputs[r][:m])
					if err := g.AllGather(ctx, buf); err != nil {
						return err
					}
					for q := range n {
						for i := range m {
							if buf[q*m+i] != inputs[q][i] {
								return fmt.Errorf("AllGather: block %d element %d = %v, want %v", q, i, buf[q*m+i], inputs[q][i])
							}
						}
					}
					return nil
				})
				// Broadcast from the last rank.
				root := n - 1
				each(t, groups, func(r int, g *collective.Group) error {
					buf := make([]float32, count)
					if r == root {
						copy(buf, inputs[root])
					}
					if err := g.Broadcast(ctx, buf, root); err != nil {
						return err
					}
					for i, v := range buf {
						if v != inputs[root][i] {
							return fmt.Errorf("Broadcast: element %d = %v, want %v", i, v, inputs[root][i])
						}
					}
					return nil
				})
				// Send/Recv between every pair, both ways at once (Send in its own goroutine).
				each(t, groups, func(r int, g *collective.Group) error {
					errc := make(chan error, n)
					for p := range n {
						if p == r {
							continue
						}
						go func() { errc <- g.Send(ctx, inputs[r][:1000+p], p, 7) }()
					}
					for p := range n {
						if p == r {
							continue
						}
						buf := make([]float32, 1000+r)
						if err := g.Recv(ctx, buf, p, 7); err != nil {
							return err
						}
						for i, v := range buf {
							if v != inputs[p][i] {
								return fmt.Errorf("Recv from %d: element %d = %v, want %v", p, i, v, inputs[p][i])
							}
						}
					}
					for p := range n {
						if p != r {
							if err := <-errc; err != nil {
								return err
							}
						}
					}
					return nil
				})
				// Every edge used the transport the fabric promises.
				for r := range n {
					for _, p := range []int{(r + 1) % n, (r + n - 1) % n} {
						if got, want := ts[r].Kind(p), f.kind(r, p); got != want {
							t.Errorf("rank %d -> %d: Kind %q, want %q", r, p, got, want)
						}
					}
				}
			})
		}
	}
}

var _ transport.Transport = (*shmtransport.Transport)(nil)

// needShm skips a test where shared-memory links cannot exist.
func needShm(t testing.TB) {
	if runtime.GOOS != "linux" {
		t.Skip("shared-memory links need Linux")
	}
}
