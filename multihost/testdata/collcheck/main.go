// Command collcheck runs every collective for every element type on the job it joins
// (collective.InitFromEnv, so through gorun with the job's real transports) and checks each
// result exactly against what the inputs imply. Inputs are small integers, exact in every
// type, so any lost, duplicated, misplaced or misreduced element shows. It prints
// "collcheck: rank R ok: N checks" and exits 0, or names the first wrong element and exits 1.
// The multihost tests run it across network-namespace hosts.
package main

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/ringtrain/ringtrain/collective"
)

func main() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	g, err := collective.InitFromEnv(ctx)
	if err != nil {
		fail(-1, "join: %v", err)
	}
	defer g.Close()
	c := &checker{ctx: ctx, g: g}
	run[float32](c, "float32")
	run[float64](c, "float64")
	run[int32](c, "int32")
	run[int64](c, "int64")
	if err := g.Barrier(ctx); err != nil {
		fail(g.Rank(), "final barrier: %v", err)
	}
	fmt.Printf("collcheck: rank %d ok: %d checks\n", g.Rank(), c.checks)
}

type checker struct {
	ctx    context.Context
	g      *collective.Group
	checks int
}

func fail(rank int, format string, args ...any) {
	fmt.Fprintf(os.Stderr, "collcheck: rank %d: %s\n", rank, fmt.Sprintf(format, args...))
	os.Exit(1)
}

// val is member r's input at element i: 1..7 times (r+1), exact in every type.
func val[T collective.Number](r, i int) T { return T((r + 1) * (i%7 + 1)) }

// expect checks got[i] == want(i) for every i.
func expect[T collective.Number](c *checker, what string, got []T, want func(i int) T) {
	for i, v := range got {
		if w := want(i); v != w {
			fail(c.g.Rank(), "%s: element %d is %v, want %v", what, i, v, w)
		}
	}
	c.checks++
}

func must(c *checker, what string, err error) {
	if err != nil {
		fail(c.g.Rank(), "%s: %v", what, err)
	}
}

func run[T collective.Number](c *checker, name string) {
	g, ctx := c.g, c.ctx
	n, r := g.Size(), g.Rank()
	tri := n * (n + 1) / 2 // Σ_r (r+1)
	for _, count := range []int{0, 1, 13, 1000 * n, 70001} {
		what := func(op string) string { return fmt.Sprintf("%s %s count=%d", name, op, count) }
		fill := func() []T {
			b := make([]T, count)
			for i := range b {
				b[i] = val[T](r, i)
			}
			return b
		}
		// AllReduce: sum, max, min (every type), avg (floats).
		b := fill()
		must(c, what("AllReduce sum"), collective.AllReduce(ctx, g, b, collective.Sum))
		expect(c, what("AllReduce sum"), b, func(i int) T { return T(tri * (i%7 + 1)) })
		b = fill()
		must(c, what("AllReduce max"), collective.AllReduce(ctx, g, b, collective.Max))
		expect(c, what("AllReduce max"), b, func(i int) T { return T(n * (i%7 + 1)) })
		b = fill()
		must(c, what("AllReduce min"), collective.AllReduce(ctx, g, b, collective.Min))
		expect(c, what("AllReduce min"), b, func(i int) T { return T(i%7 + 1) })
		if name == "float32" || name == "float64" {
			b = fill()
			must(c, what("AllReduce avg"), collective.AllReduce(ctx, g, b, collective.Avg))
			expect(c, what("AllReduce avg"), b, func(i int) T { return T(float64(tri*(i%7+1)) / float64(n)) })
		}
		// Broadcast from the last member.
		b = fill()
		must(c, what("Broadcast"), collective.Broadcast(ctx, g, b, n-1))
		expect(c, what("Broadcast"), b, func(i int) T { return val[T](n-1, i) })
		// Reduce to member 1 (sum).
		root := 1 % n
		b = fill()
		must(c, what("Reduce"), collective.Reduce(ctx, g, b, collective.Sum, root))
		if r == root {
			expect(c, what("Reduce"), b, func(i int) T { return T(tri * (i%7 + 1)) })
		}
		// Blocked collectives: count elements per member.
		m := count
		all := func(src func(q, i int) T) []T {
			b := make([]T, n*m)
			for q := 0; q < n; q++ {
				for i := 0; i < m; i++ {
					b[q*m+i] = src(q, i)
				}
			}
			return b
		}
		// ReduceScatter: block q of member p is val(p, q*m+i); member r keeps block r summed.
		b = all(func(q, i int) T { return val[T](r, q*m+i) })
		must(c, what("ReduceScatter"), collective.ReduceScatter(ctx, g, b, collective.Sum))
		expect(c, what("ReduceScatter"), b[r*m:(r+1)*m], func(i int) T { return T(tri * ((r*m+i)%7 + 1)) })
		// AllGather: member q contributes val(q, i) in block q.
		b = make([]T, n*m)
		copy(b[r*m:], fill()[:m])
		must(c, what("AllGather"), collective.AllGather(ctx, g, b))
		expect(c, what("AllGather"), b, func(j int) T { return val[T](j/max(m, 1), j%max(m, 1)) })
		// Gather to member 0, Scatter from member 0.
		recv := make([]T, n*m)
		must(c, what("Gather"), collective.Gather(ctx, g, fill()[:m], recv, 0))
		if r == 0 {
			expect(c, what("Gather"), recv, func(j int) T { return val[T](j/max(m, 1), j%max(m, 1)) })
		}
		var send []T
		if r == 0 {
			send = all(func(q, i int) T { return val[T](q, i) + 1 })
		}
		got := make([]T, m)
		must(c, what("Scatter"), collective.Scatter(ctx, g, send, got, 0))
		expect(c, what("Scatter"), got, func(i int) T { return val[T](r, i) + 1 })
		// AllToAll: member p's block q is (p+1)·1000 + q·10 + i%10 (fits int32 for small n).
		send = all(func(q, i int) T { return T((r+1)*1000 + q*10 + i%10) })
		recv = make([]T, n*m)
		must(c, what("AllToAll"), collective.AllToAll(ctx, g, send, recv))
		expect(c, what("AllToAll"), recv, func(j int) T { q, i := j/max(m, 1), j%max(m, 1); return T((q+1)*1000 + r*10 + i%10) })
		// AllToAllV: member p sends (p+q)%3 + count%5 elements to member q.
		size := func(p, q int) int { return (p+q)%3 + count%5 }
		sc, rc := make([]int, n), make([]int, n)
		var sv, want []T
		for q := 0; q < n; q++ {
			sc[q], rc[q] = size(r, q), size(q, r)
			for i := 0; i < sc[q]; i++ {
				sv = append(sv, T(r*100+q*10+i))
			}
			for i := 0; i < rc[q]; i++ {
				want = append(want, T(q*100+r*10+i))
			}
		}
		rv := make([]T, len(want))
		must(c, what("AllToAllV"), collective.AllToAllV(ctx, g, sv, sc, rv, rc))
		expect(c, what("AllToAllV"), rv, func(i int) T { return want[i] })
	}
}
