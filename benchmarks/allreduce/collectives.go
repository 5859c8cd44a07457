package main

import (
	"context"
	"fmt"
	"unsafe"

	"github.com/ringtrain/ringtrain/collective"
)

// collectives are the values of --collective, with the nccl-tests bus-bandwidth factor of
// each (busbw = algbw × factor(N)), bytes being the size of the buffer the figure is for:
//
//	allreduce      2(N-1)/N   bytes: the buffer each rank reduces
//	reducescatter  (N-1)/N    bytes: the whole buffer (N blocks); each rank keeps one block
//	allgather      (N-1)/N    bytes: the whole buffer (N blocks); each rank contributes one
//	broadcast      1          bytes: the buffer
//	reduce         1          bytes: the buffer
//	gather         (N-1)/N    bytes: the root's receive buffer (N blocks)
//	scatter        (N-1)/N    bytes: the root's send buffer (N blocks)
//	alltoall       (N-1)/N    bytes: each rank's send buffer (N blocks, one per rank)
//
// With these factors busbw is the rate at which the busiest link (or port) carries data
// for an optimal algorithm, comparable across collectives, rank counts and with link_gbs.
var collectives = []string{"allreduce", "reducescatter", "allgather", "broadcast", "reduce", "gather", "scatter", "alltoall"}

func busFactor(coll string, n int) float64 {
	switch coll {
	case "allreduce":
		return 2 * float64(n-1) / float64(n)
	case "broadcast", "reduce":
		return 1
	}
	return float64(n-1) / float64(n)
}

// algoOf names what runs a collective other than the float32 AllReduce (whose algorithm the
// group reports): see the collective package's doc.
func algoOf(coll string) string {
	switch coll {
	case "allreduce", "reducescatter", "allgather":
		return "ring"
	case "broadcast", "reduce":
		return "chain"
	case "gather", "scatter":
		return "direct"
	}
	return "pairwise"
}

// dtypes of --dtype: fp16 is float32 data with FP16 wire compression (AllReduce and
// ReduceScatter only).
var dtypes = []string{"fp32", "fp16", "bf16", "fp64", "int32", "int64"}

// compressed says whether --dtype dt names a wire compression of float32 AllReduce (fp16,
// bf16) rather than an element type.
func compressed(dt string) bool { return dt == "fp16" || dt == "bf16" }

// newRunner prepares collective coll over about size bytes of dtype on g: run times one op;
// bytes is the size the op actually moves (rounded down to whole blocks of N elements where
// the collective cuts the buffer in N), and the op is run once first and its result checked
// exactly against a reference (the inputs are small integers, so sums are exact in every
// type): a wrong result is an error on every rank.
func newRunner(ctx context.Context, g *collective.Group, coll, dtype string, size int64, op collective.Op) (run func() error, bytes int64, err error) {
	switch dtype {
	case "fp64":
		return typedRunner[float64](ctx, g, coll, size, op)
	case "int32":
		return typedRunner[int32](ctx, g, coll, size, op)
	case "int64":
		return typedRunner[int64](ctx, g, coll, size, op)
	}
	return typedRunner[float32](ctx, g, coll, size, op)
}

// benchInput is rank r's element i: a small integer.
func benchInput[T collective.Number](r, i int) T { return T((i*131+r*71)%101 - 50) }

func typedRunner[T collective.Number](ctx context.Context, g *collective.Group, coll string, size int64, op collective.Op) (func() error, int64, error) {
	n, r := g.Size(), g.Rank()
	var z T
	es := int(unsafe.Sizeof(z))
	elems := int(size) / es
	if coll != "allreduce" && coll != "broadcast" && coll != "reduce" {
		elems -= elems % n
	}
	m := elems / n // block elements
	buf := make([]T, elems)
	var send, recv []T
	const root = 0
	fill := func() {
		switch coll {
		case "allgather":
			for i := range m {
				buf[r*m+i] = benchInput[T](r, i)
			}
		case "gather", "scatter", "alltoall":
		default:
			for i := range buf {
				buf[i] = benchInput[T](r, i)
			}
		}
	}
	var run func() error
	switch coll {
	case "allreduce":
		run = func() error { return collective.AllReduce(ctx, g, buf, op) }
	case "reducescatter":
		run = func() error { return collective.ReduceScatter(ctx, g, buf, op) }
	case "allgather":
		run = func() error { return collective.AllGather(ctx, g, buf) }
	case "broadcast":
		run = func() error { return collective.Broadcast(ctx, g, buf, root) }
	case "reduce":
		run = func() error { return collective.Reduce(ctx, g, buf, op, root) }
	case "gather":
		send = make([]T, m)
		for i := range send {
			send[i] = benchInput[T](r, i)
		}
		if r == root {
			recv = buf
		}
		run = func() error { return collective.Gather(ctx, g, send, recv, root) }
	case "scatter":
		if r == root {
			send = buf
			for i := range send {
				send[i] = benchInput[T](i/max(m, 1), i%max(m, 1))
			}
		}
		recv = make([]T, m)
		run = func() error { return collective.Scatter(ctx, g, send, recv, root) }
	case "alltoall":
		send = make([]T, elems)
		for i := range send {
			send[i] = benchInput[T](r, i)
		}
		recv = buf
		run = func() error { return collective.AllToAll(ctx, g, send, recv) }
	default:
		return nil, 0, fmt.Errorf("unknown collective %q", coll)
	}
	fill()
	if err := run(); err != nil {
		return nil, 0, err
	}
	bad := int32(0)
	if i, ok := checkResult(coll, op, n, r, m, buf, recv); !ok {
		bad = int32(i + 1)
	}
	flag := []int32{bad}
	if err := collective.AllReduce(ctx, g, flag, collective.Max); err != nil {
		return nil, 0, err
	}
	if flag[0] != 0 {
		return nil, 0, fmt.Errorf("%s: wrong result (element %d on some rank)", coll, flag[0]-1)
	}
	return run, int64(elems * es), nil
}

// checkResult compares this rank's result with the reference and returns the first wrong
// element's index and false, or true.
func checkResult[T collective.Number](coll string, op collective.Op, n, r, m int, buf, recv []T) (int, bool) {
	reduced := func(i int) T {
		acc := benchInput[T](0, i)
		for q := 1; q < n; q++ {
			x := benchInput[T](q, i)
			switch op {
			case collective.Max:
				acc = max(acc, x)
			case collective.Min:
				acc = min(acc, x)
			default:
				acc += x
			}
		}
		if op == collective.Avg {
			acc /= T(n)
		}
		return acc
	}
	var got []T
	var want func(i int) T
	switch coll {
	case "allreduce":
		got, want = buf, reduced
	case "reducescatter":
		got, want = buf[r*m:(r+1)*m], func(i int) T { return reduced(r*m + i) }
	case "allgather":
		got, want = buf, func(i int) T { return benchInput[T](i/m, i%m) }
	case "broadcast":
		got, want = buf, func(i int) T { return benchInput[T](0, i) }
	case "reduce":
		if r != 0 {
			return 0, true
		}
		got, want = buf, reduced
	case "gather":
		if r != 0 {
			return 0, true
		}
		got, want = recv, func(i int) T { return benchInput[T](i/m, i%m) }
	case "scatter":
		got, want = recv, func(i int) T { return benchInput[T](r, i) }
	case "alltoall":
		// Block q came from rank q: its block r, elements r·m.. of its send buffer.
		got, want = recv, func(i int) T { return benchInput[T](i/m, r*m+i%m) }
	}
	for i, v := range got {
		if v != want(i) {
			return i, false
		}
	}
	return 0, true
}
