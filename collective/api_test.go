package collective

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"
)

// The suite of the collectives added with the element types (Reduce, Gather, Scatter,
// AllToAll, AllToAllV) and of every collective for every Number type, over the in-process
// transport, QUIC, and shared memory between the ranks (shmtransport over QUIC).
//
// Inputs are small integers, so that sums are exact in every type and any order: results are
// compared exactly with a reference computed in the element type itself.

// apiFabrics adds shared memory (shmFabric, suite_algo_test.go) to the suite's fabrics.
func apiFabrics() []fabric { return append(fabrics(), shmFabric) }

// intsOf returns rank r's input: integers in [-50, 50] in the element type.
func intsOf[T Number](seed uint64, r, n int) []T {
	rng := rand.New(rand.NewPCG(seed, uint64(r)))
	v := make([]T, n)
	for i := range v {
		v[i] = T(rng.IntN(101) - 50)
	}
	return v
}

// refReduce reduces inputs element-wise in T's own arithmetic.
func refReduce[T Number](inputs [][]T, op Op) []T {
	out := slices.Clone(inputs[0])
	for _, in := range inputs[1:] {
		for i, x := range in {
			switch op {
			case Max:
				out[i] = max(out[i], x)
			case Min:
				out[i] = min(out[i], x)
			default:
				out[i] += x
			}
		}
	}
	if op == Avg {
		for i := range out {
			out[i] /= T(len(inputs))
		}
	}
	return out
}

func equal[T Number](t testing.TB, what string, got, want []T) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d elements, want %d", what, len(got), len(want))
	}
	for i := range got {
		if got[i] != want[i] {
			t.Fatalf("%s: element %d = %v, want %v", what, i, got[i], want[i])
		}
	}
}

func opsFor[T Number]() []Op {
	if dtypeOf[T]().float() {
		return []Op{Sum, Avg, Max, Min}
	}
	return []Op{Sum, Max, Min}
}

// suite runs every collective for element type T on j's groups.
func suite[T Number](t *testing.T, j *job) {
	n := len(j.groups)
	counts := testCounts(n)
	large := counts[len(counts)-1]
	for ci, count := range counts {
		ops := opsFor[T]()
		roots := []int{0, n - 1}
		if count == large {
			ops, roots = ops[:1], roots[1:] // the large count: one op, one root (time)
		}
		seed := uint64(1000 * ci)
		inputs := make([][]T, n)
		for r := range n {
			inputs[r] = intsOf[T](seed, r, count)
		}
		for _, op := range ops {
			want := refReduce(inputs, op)
			j.mustEach(func(r int, g *Group) error {
				buf := slices.Clone(inputs[r])
				if err := AllReduce(ctxT(t), g, buf, op); err != nil {
					return err
				}
				equal(t, fmt.Sprintf("rank %d AllReduce(count=%d, %v)", r, count, op), buf, want)
				return nil
			})
			for _, root := range roots {
				j.mustEach(func(r int, g *Group) error {
					buf := slices.Clone(inputs[r])
					if err := Reduce(ctxT(t), g, buf, op, root); err != nil {
						return err
					}
					if r == root {
						equal(t, fmt.Sprintf("Reduce(count=%d, %v, root=%d)", count, op, root), buf, want)
					}
					return nil
				})
			}
			// ReduceScatter over the largest multiple of n.
			m := count / n
			rsIn := make([][]T, n)
			for r := range n {
				rsIn[r] = inputs[r][:m*n]
			}
			rsWant := refReduce(rsIn, op)
			j.mustEach(func(r int, g *Group) error {
				buf := slices.Clone(rsIn[r])
				if err := ReduceScatter(ctxT(t), g, buf, op); err != nil {
					return err
				}
				equal(t, fmt.Sprintf("rank %d ReduceScatter(count=%d, %v)", r, m*n, op), buf[r*m:(r+1)*m], rsWant[r*m:(r+1)*m])
				return nil
			})
		}
		// AllGather, Gather: block q is member q's first `count` inputs.
		var all []T
		for r := range n {
			all = append(all, inputs[r]...)
		}
		j.mustEach(func(r int, g *Group) error {
			buf := make([]T, n*count)
			copy(buf[r*count:], inputs[r])
			if err := AllGather(ctxT(t), g, buf); err != nil {
				return err
			}
			equal(t, fmt.Sprintf("rank %d AllGather(count=%d)", r, count), buf, all)
			return nil
		})
		for _, root := range roots {
			j.mustEach(func(r int, g *Group) error {
				var recv []T
				if r == root {
					recv = make([]T, n*count)
				}
				if err := Gather(ctxT(t), g, inputs[r], recv, root); err != nil {
					return err
				}
				if r == root {
					equal(t, fmt.Sprintf("Gather(count=%d, root=%d)", count, root), recv, all)
				}
				return nil
			})
			// Scatter: the root's inputs of all members, block q to member q.
			j.mustEach(func(r int, g *Group) error {
				var send []T
				if r == root {
					send = all
				}
				recv := make([]T, count)
				if err := Scatter(ctxT(t), g, send, recv, root); err != nil {
					return err
				}
				equal(t, fmt.Sprintf("rank %d Scatter(count=%d, root=%d)", r, count, root), recv, inputs[r])
				return nil
			})
			j.mustEach(func(r int, g *Group) error {
				buf := make([]T, count)
				if r == root {
					copy(buf, inputs[root])
				}
				if err := Broadcast(ctxT(t), g, buf, root); err != nil {
					return err
				}
				equal(t, fmt.Sprintf("rank %d Broadcast(count=%d, root=%d)", r, count, root), buf, inputs[root])
				return nil
			})
		}
		// AllToAll: member r's block q is inputs[r] cut into n blocks of count/n.
		m := count / n
		j.mustEach(func(r int, g *Group) error {
			recv := make([]T, m*n)
			if err := AllToAll(ctxT(t), g, inputs[r][:m*n], recv); err != nil {
				return err
			}
			for q := range n {
				equal(t, fmt.Sprintf("rank %d AllToAll(count=%d) block %d", r, m*n, q), recv[q*m:(q+1)*m], inputs[q][r*m:(r+1)*m])
			}
			return nil
		})
		allToAllV(t, j, inputs)
		sendRecv(t, j, inputs)
	}
}

// vcount is how many elements member from sends to member to in the AllToAllV test: uneven,
// zero for some pairs, never more than the inputs hold.
func vcount(from, to, n, count int) int {
	if (from+2*to)%3 == 0 {
		return 0
	}
	return min(count/n, (from*7+to*3)%(count/n+1)+to)
}

func allToAllV[T Number](t *testing.T, j *job, inputs [][]T) {
	n, count := len(j.groups), len(inputs[0])
	if count < n {
		return
	}
	j.mustEach(func(r int, g *Group) error {
		sc, rc := make([]int, n), make([]int, n)
		var send []T
		for q := range n {
			sc[q], rc[q] = vcount(r, q, n, count), vcount(q, r, n, count)
			send = append(send, inputs[r][q*(count/n):q*(count/n)+sc[q]]...)
		}
		recv := make([]T, sumInts(rc))
		if err := AllToAllV(ctxT(t), g, send, sc, recv, rc); err != nil {
			return err
		}
		off := 0
		for q := range n {
			want := inputs[q][r*(count/n) : r*(count/n)+rc[q]]
			equal(t, fmt.Sprintf("rank %d AllToAllV from %d", r, q), recv[off:off+rc[q]], want)
			off += rc[q]
		}
		return nil
	})
}

func sumInts(s []int) int {
	t := 0
	for _, v := range s {
		t += v
	}
	return t
}

// sendRecv sends every member's input to its right neighbour (one ring step of Send/Recv).
func sendRecv[T Number](t *testing.T, j *job, inputs [][]T) {
	n := len(j.groups)
	if n == 1 {
		return
	}
	j.mustEach(func(r int, g *Group) error {
		errc := make(chan error, 1)
		go func() { errc <- Send(ctxT(t), g, inputs[r], (r+1)%n, 3) }()
		buf := make([]T, len(inputs[r]))
		if err := Recv(ctxT(t), g, buf, (r+n-1)%n, 3); err != nil {
			return err
		}
		equal(t, fmt.Sprintf("rank %d Recv", r), buf, inputs[(r+n-1)%n])
		return <-errc
	})
}

func TestEveryCollectiveEveryDtype(t *testing.T) {
	noLeaks(t)
	for _, f := range apiFabrics() {
		sizes := allSizes
		if f.name != "mem" {
			sizes = []int{1, 2, 3, 4}
		}
		for _, n := range fabricSizes(f, sizes) {
			t.Run(name(f, n), func(t *testing.T) {
				j := startJob(t, f, n, chunkOpts)
				t.Run("float32", func(t *testing.T) { suite[float32](t, j) })
				t.Run("int64", func(t *testing.T) { suite[int64](t, j) })
				if raceEnabled && f.name != "mem" {
					// The race run keeps to one 4-byte float and one 8-byte integer type over
					// the network fabrics (CI's time); the plain run covers all four.
					return
				}
				t.Run("float64", func(t *testing.T) { suite[float64](t, j) })
				t.Run("int32", func(t *testing.T) { suite[int32](t, j) })
			})
		}
	}
}

// TestNewCollectivesSubgroupsAsync runs the new collectives on two disjoint subgroups at
// once, issued asynchronously in a mix with the old ones, and waits for them out of order.
func TestNewCollectivesSubgroupsAsync(t *testing.T) {
	noLeaks(t)
	for _, f := range apiFabrics() {
		n := 4
		t.Run(name(f, n), func(t *testing.T) {
			j := startJob(t, f, n, chunkOpts)
			const count = 1009 // prime
			j.mustEach(func(r int, g *Group) error {
				ctx := ctxT(t)
				members := []int{r % 2, r%2 + 2} // {0,2} and {1,3}
				sg, err := g.Subgroup(ctx, members)
				if err != nil {
					return err
				}
				me, peer := sg.Rank(), 1-sg.Rank()
				in := intsOf[int64](7, r, count)
				peerIn := intsOf[int64](7, members[peer], count)
				red := slices.Clone(in)
				gath := make([]int64, 2*count)
				a2aIn := intsOf[float64](8, r, 2*count)
				a2aOut := make([]float64, 2*count)
				ar := intsOf[float32](9, r, count)
				works := []*Work{
					ReduceAsync(ctx, sg, red, Sum, 0),
					GatherAsync(ctx, sg, in, gath, 1),
					AllToAllAsync(ctx, sg, a2aIn, a2aOut),
					sg.AllReduceAsync(ctx, ar, Max),
					AllReduceAsync(ctx, g, slices.Clone(in), Min), // the world group meanwhile
				}
				for k := len(works) - 1; k >= 0; k-- {
					if err := works[k].Wait(ctx); err != nil {
						return fmt.Errorf("op %d: %w", k, err)
					}
				}
				if me == 0 {
					equal(t, "subgroup Reduce", red, refReduce([][]int64{in, peerIn}, Sum))
				} else {
					equal(t, "subgroup Gather", gath, slices.Concat(peerIn, in))
				}
				peerA2A := intsOf[float64](8, members[peer], 2*count)
				equal(t, "subgroup AllToAll own block", a2aOut[me*count:(me+1)*count], a2aIn[me*count:(me+1)*count])
				equal(t, "subgroup AllToAll peer block", a2aOut[peer*count:(peer+1)*count], peerA2A[me*count:(me+1)*count])
				equal(t, "subgroup AllReduce", ar, refReduce([][]float32{intsOf[float32](9, members[0], count), intsOf[float32](9, members[1], count)}, Max))
				return nil
			})
		})
	}
}

// TestAPIRefusals: calls that cannot be right fail on the spot with an error naming the
// problem, and issue nothing (the group stays usable).
func TestAPIRefusals(t *testing.T) {
	noLeaks(t)
	j := startJob(t, memFabric, 3, Options{})
	g := j.groups[0]
	ctx := ctxT(t)
	i32 := make([]int32, 6)
	f64 := make([]float64, 6)
	for _, tc := range []struct {
		err  error
		want string
	}{
		{AllReduce(ctx, g, i32, Avg), "Avg is not defined for int32"},
		{Reduce(ctx, g, make([]int64, 3), Avg, 0), "Avg is not defined for int64"},
		{AllReduce(ctx, g, f64, Sum, FP16), "fp16 compression needs float32 data, got fp64"},
		{ReduceScatter(ctx, g, i32, Sum, FP16), "fp16 compression needs float32 data, got int32"},
		{Reduce(ctx, g, f64, Sum, 3), "Reduce root: rank 3 out of range"},
		{Gather(ctx, g, f64[:2], f64[:5], 0), "the root's recv has 5 elements, want Size()·len(send) = 3·2"},
		{Scatter(ctx, g, f64[:5], f64[:2], 0), "the root's send has 5 elements, want Size()·len(recv) = 3·2"},
		{AllToAll(ctx, g, f64[:4], f64[:4]), "must be equal and a multiple of the group size 3"},
		{AllToAllV(ctx, g, f64[:2], []int{1, 1}, f64[:2], []int{1, 1, 0}), "sendCounts has 2 entries, want one per member (3)"},
		{AllToAllV(ctx, g, f64[:2], []int{1, 1, 1}, f64[:3], []int{1, 1, 1}), "sendCounts sum to 3 but the buffer has 2 elements"},
		{AllToAllV(ctx, g, f64[:2], []int{1, 2, -1}, f64[:2], []int{1, 1, 0}), "sendCounts[2] = -1 is negative"},
		{AllToAllV(ctx, g, f64[:2], []int{2, 0, 0}, f64[:2], []int{1, 1, 0}), "sendCounts[0] = 2 but recvCounts[0] = 1"},
		{AllReduce(ctx, g, f64, Op(9)), "invalid reduction"},
	} {
		if tc.err == nil || !strings.Contains(tc.err.Error(), tc.want) {
			t.Errorf("got %v, want an error containing %q", tc.err, tc.want)
		}
	}
	// Nothing was issued: the group still runs collectives.
	j.mustEach(func(r int, g *Group) error { return AllReduce(ctxT(t), g, []int64{int64(r)}, Sum) })
}

// TestNewCollectivesMismatch: members that disagree on the kind, count, root, dtype or
// splits of a new collective all fail, with a *MismatchError where the transport carries it
// (in process), naming what differs; none returns success.
func TestNewCollectivesMismatch(t *testing.T) {
	noLeaks(t)
	const n = 3
	cases := []struct {
		name string
		call func(ctx context.Context, r int, g *Group) error
		want string // in the MismatchError's text
	}{
		{"Reduce root", func(ctx context.Context, r int, g *Group) error {
			return Reduce(ctx, g, make([]float32, 10), Sum, min(r, 1))
		}, "root="},
		{"Gather count", func(ctx context.Context, r int, g *Group) error {
			return Gather(ctx, g, make([]int32, 4+r/2), make([]int32, n*(4+r/2)), 0)
		}, "Gather(count="},
		{"Scatter root", func(ctx context.Context, r int, g *Group) error {
			return Scatter(ctx, g, make([]int64, 3*n), make([]int64, 3), r%2)
		}, "Scatter(count=3, int64, root="},
		{"AllToAll dtype", func(ctx context.Context, r int, g *Group) error {
			if r == 2 {
				return AllToAll(ctx, g, make([]float64, 6), make([]float64, 6))
			}
			return AllToAll(ctx, g, make([]int64, 6), make([]int64, 6))
		}, "AllToAll(count=6, fp64)"},
		{"AllToAll vs AllGather", func(ctx context.Context, r int, g *Group) error {
			if r == 1 {
				return AllGather(ctx, g, make([]float32, 6))
			}
			return AllToAll(ctx, g, make([]float32, 6), make([]float32, 6))
		}, "AllGather(count=6, fp32)"},
		{"AllReduce dtype", func(ctx context.Context, r int, g *Group) error {
			if r == 2 {
				return AllReduce(ctx, g, make([]int32, 6), Sum)
			}
			return g.AllReduce(ctx, make([]float32, 6), Sum)
		}, "AllReduce(count=6, int32, sum)"},
		{"Broadcast dtype", func(ctx context.Context, r int, g *Group) error {
			if r == 0 {
				return Broadcast(ctx, g, make([]int64, 6), 1)
			}
			return Broadcast(ctx, g, make([]float64, 6), 1)
		}, "Broadcast(count=6, int64, root=1)"},
		{"AllToAllV splits", func(ctx context.Context, r int, g *Group) error {
			sc, rc := []int{1, 1, 1}, []int{1, 1, 1}
			if r == 0 {
				rc = []int{1, 2, 1} // expects 2 from rank 1, which sends 1
			}
			return AllToAllV(ctx, g, make([]float32, sumInts(sc)), sc, make([]float32, sumInts(rc)), rc)
		}, "split sizes"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			j := startJob(t, memFabric, n, Options{Timeout: 20 * time.Second})
			errs := j.each(func(r int, g *Group) error { return tc.call(ctxT(t), r, g) })
			found := false
			for r, err := range errs {
				if err == nil {
					t.Fatalf("rank %d returned success from a mismatched call", r)
				}
				var me *MismatchError
				if errors.As(err, &me) && strings.Contains(err.Error(), tc.want) {
					found = true
				}
			}
			if !found {
				t.Fatalf("no rank reports a MismatchError containing %q: %v", tc.want, errs)
			}
		})
	}
}

// TestNewCollectivesDeadRank: a member that dies during a new collective fails the op on
// every survivor, naming it.
func TestNewCollectivesDeadRank(t *testing.T) {
	noLeaks(t)
	calls := map[string]func(ctx context.Context, r int, g *Group) error{
		"Reduce": func(ctx context.Context, r int, g *Group) error {
			return Reduce(ctx, g, make([]float64, 1<<16), Sum, 0)
		},
		"Gather": func(ctx context.Context, r int, g *Group) error {
			return Gather(ctx, g, make([]int32, 1<<16), make([]int32, 4<<16), 0)
		},
		"Scatter": func(ctx context.Context, r int, g *Group) error {
			return Scatter(ctx, g, make([]int32, 4<<16), make([]int32, 1<<16), 0)
		},
		"AllToAll": func(ctx context.Context, r int, g *Group) error {
			return AllToAll(ctx, g, make([]int64, 4<<14), make([]int64, 4<<14))
		},
	}
	for _, f := range fabrics() {
		for what, call := range calls {
			t.Run(f.name+"/"+what, func(t *testing.T) {
				const n, dead = 4, 2
				j := startJob(t, f, n, Options{Timeout: 20 * time.Second})
				errs := j.each(func(r int, g *Group) error {
					if r == dead {
						// A few ops in, the rank dies: the others are in the next one, or
						// about to start it.
						for range 3 {
							if err := call(ctxT(t), r, g); err != nil {
								return err
							}
						}
						j.kill(dead)
						return nil
					}
					for range 20 {
						if err := call(ctxT(t), r, g); err != nil {
							return err
						}
					}
					return nil
				})
				for r, err := range errs {
					if r == dead {
						continue
					}
					if err == nil {
						t.Fatalf("rank %d: no error although rank %d died", r, dead)
					}
					if !strings.Contains(err.Error(), fmt.Sprintf("rank %d", dead)) {
						t.Errorf("rank %d: error does not name the dead rank %d: %v", r, dead, err)
					}
				}
			})
		}
	}
}

// TestNewCollectivesLateRank: a member that never joins a peer op (alive, but busy elsewhere)
// fails it on every other member after Options.Timeout, naming that member.
func TestNewCollectivesLateRank(t *testing.T) {
	noLeaks(t)
	calls := map[string]func(ctx context.Context, g *Group) error{
		"Gather": func(ctx context.Context, g *Group) error {
			return Gather(ctx, g, make([]int32, 10), make([]int32, 40), 0)
		},
		"Scatter": func(ctx context.Context, g *Group) error {
			return Scatter(ctx, g, make([]int32, 40), make([]int32, 10), 0)
		},
		"AllToAll": func(ctx context.Context, g *Group) error { return AllToAll(ctx, g, make([]int64, 8), make([]int64, 8)) },
		"AllToAllV": func(ctx context.Context, g *Group) error {
			return AllToAllV(ctx, g, make([]int64, 4), []int{1, 1, 1, 1}, make([]int64, 4), []int{1, 1, 1, 1})
		},
		"Reduce":    func(ctx context.Context, g *Group) error { return Reduce(ctx, g, make([]float64, 10), Sum, 0) },
		"Reduce1":   func(ctx context.Context, g *Group) error { return Reduce(ctx, g, make([]float64, 10), Sum, 1) },
		"Broadcast": func(ctx context.Context, g *Group) error { return Broadcast(ctx, g, make([]int32, 10), 0) },
	}
	for what, call := range calls {
		t.Run(what, func(t *testing.T) {
			t.Parallel()
			const n, late = 4, 2
			// Long enough that the watchdog's margins between members (Timeout/n apart along a
			// chain) exceed the scheduling noise of a loaded machine.
			j := startJob(t, memFabric, n, Options{Timeout: time.Second})
			errs := j.each(func(r int, g *Group) error {
				if r == late {
					return nil
				}
				return call(ctxT(t), g)
			})
			timeouts := 0
			for r, err := range errs {
				if r == late {
					continue
				}
				if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("rank %d", late)) {
					t.Errorf("rank %d: %v; want an error naming rank %d", r, err, late)
				}
				if errors.Is(err, ErrTimeout) {
					timeouts++
				}
			}
			if timeouts == 0 {
				t.Errorf("no member reports ErrTimeout: %v", errs)
			}
		})
	}
}

// TestNewCollectivesContext: a peer op whose context ends before the op completes (here
// because a member is late) fails at once on that member with the context's error, and on
// the others, long before Options.Timeout.
func TestNewCollectivesContext(t *testing.T) {
	noLeaks(t)
	const n, late = 4, 3
	// Timeout beyond the test's deadline (each fails the test after testDeadline): only the
	// context can end this op in time.
	j := startJob(t, memFabric, n, Options{Timeout: 2 * testDeadline})
	errs := j.each(func(r int, g *Group) error {
		if r == late {
			return nil
		}
		ctx := ctxT(t)
		if r == 0 {
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(ctx, 200*time.Millisecond)
			defer cancel()
		}
		return Scatter(ctx, g, make([]float64, 4*5), make([]float64, 5), 1)
	})
	if !errors.Is(errs[0], context.DeadlineExceeded) {
		t.Errorf("rank 0: %v, want the context's error", errs[0])
	}
	for r, err := range errs {
		if r != late && err == nil {
			t.Errorf("rank %d: no error", r)
		}
	}
}
