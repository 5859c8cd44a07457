package collective

import (
	"context"
	"fmt"
)

// AllReduce replaces buf, on every member, by the element-wise reduction op of all members'
// bufs. All members must pass the same len(buf), op and options; any length works, including
// 0 and lengths not divisible by Size().
//
// It runs a chunked, pipelined ring: a reduce-scatter (Size()-1 steps) then an all-gather
// (Size()-1 steps), each rank sending 2(Size()-1)/Size() of the buffer. The result is
// bit-identical on every member.
//
// With FP16 compression (g.AllReduce(ctx, buf, op, FP16)) values travel as binary16 with a
// power-of-two scale per chunk and are accumulated in float32. Each value is quantized at
// most n = Size() times: once per reduce-scatter hop (n-1) and once when its fully reduced
// chunk starts the all-gather (the all-gather forwards those bytes unchanged). A quantization errs by at most
// 2^-11·M, where M is the largest magnitude of the chunk being sent (see fp16.go), and the
// float32 addition at each hop by 2^-24 of its result. With u = 2^-11 + 2^-24 and
//
//	A = max over the elements j of the chunk holding element i of Σ_ranks |x_rank[j]|,
//
// every chunk sent carries magnitudes at most A·(1+u)^h after h hops, so summing the
// per-hop errors, for Sum:
//
//	|result[i] − Σ_ranks x_rank[i]|  ≤  ((1+u)^n − 1)·A  +  n·2^-137
//
// (≈ n·2^-11·A for small n: about 0.05% of A per member). For Avg the bound is that divided
// by n, plus float32's 2^-24 relative rounding of the division. For Max and Min, A is the
// largest |x| of the chunk and the same bound holds. The 2^-137 term only matters when A is
// below 2^-97, where the scale exponent is clamped. Chunks are the ring's pipelining units
// (Options.ChunkBytes); a value's error depends only on magnitudes within its own chunk, so
// small gradients next to large ones in another chunk keep their precision. NaN and ±Inf in
// the input reach the result as they would in float32; finite inputs never become Inf or
// NaN through the encoding (a finite float32 sum can still overflow, as without compression).
// Each op's error stays within that bound; over many ops over the same data layout, pass
// Feedback(residual) so that the errors do not accumulate (see Feedback).
// FP16 keeps, per group, a store of the all-gather's wire bytes (half the buffer's size),
// grown to the largest buffer seen, so that chunks are forwarded without encoding them again.
//
// With BF16 compression values travel as bfloat16 (no scale) and are accumulated in float32;
// each of the same n roundings errs by at most 2^-8 of the value rounded, so the bound
// above holds with u = 2^-8 + 2^-24, A = Σ_ranks |x_rank[i]| of the element itself, and
// n·2^-134 in place of n·2^-137 (see bf16.go). Feedback works with BF16 as with FP16.
func (g *Group) AllReduce(ctx context.Context, buf []float32, op Op, opts ...ReduceOption) error {
	return g.AllReduceAsync(ctx, buf, op, opts...).wait()
}

// AllReduceAsync issues AllReduce and returns at once. buf must not be touched until the
// Work is done.
func (g *Group) AllReduceAsync(ctx context.Context, buf []float32, op Op, opts ...ReduceOption) *Work {
	return g.reduceOp(ctx, kindAllReduce, vecOf(buf), op, opts)
}

// ReduceScatter reduces buf across the members and leaves each member its block: buf is
// Size() blocks of len(buf)/Size() elements, and on return block Rank(),
// buf[Rank()·m : (Rank()+1)·m] with m = len(buf)/Size(), holds the element-wise reduction of
// that block over all members. The other blocks are used as scratch and hold partial
// results. len(buf) must be a multiple of Size(). With FP16 each value is quantized at most
// Size()-1 times; the bound of AllReduce holds with n-1 in place of n.
func (g *Group) ReduceScatter(ctx context.Context, buf []float32, op Op, opts ...ReduceOption) error {
	return g.ReduceScatterAsync(ctx, buf, op, opts...).wait()
}

// ReduceScatterAsync issues ReduceScatter and returns at once.
func (g *Group) ReduceScatterAsync(ctx context.Context, buf []float32, op Op, opts ...ReduceOption) *Work {
	return g.reduceOp(ctx, kindReduceScatter, vecOf(buf), op, opts)
}

// reduceOp issues an AllReduce or ReduceScatter of any dtype.
func (g *Group) reduceOp(ctx context.Context, kind opKind, v vec, op Op, opts []ReduceOption) *Work {
	if kind == kindReduceScatter && v.n%len(g.ranks) != 0 {
		return failedWork(fmt.Errorf("collective: ReduceScatter: len(buf)=%d is not a multiple of the group size %d", v.n, len(g.ranks)))
	}
	if err := checkReduction(kind.String(), v.dt, op); err != nil {
		return failedWork(err)
	}
	var rc reduceConfig
	for _, o := range opts {
		if o != nil {
			o.applyReduce(&rc)
		}
	}
	switch rc.compression {
	case NoCompression, FP16, BF16:
	default:
		return failedWork(fmt.Errorf("collective: %v: unknown compression %v", kind, rc.compression))
	}
	if rc.compression != NoCompression && v.dt != dtF32 {
		return failedWork(fmt.Errorf("collective: %v: %v compression needs float32 data, got %v", kind, rc.compression, v.dt))
	}
	if rc.feedback {
		switch {
		case rc.compression == NoCompression:
			return failedWork(fmt.Errorf("collective: %v: Feedback needs FP16 or BF16 compression, got %v", kind, rc.compression))
		case op != Sum && op != Avg:
			return failedWork(fmt.Errorf("collective: %v: Feedback needs Sum or Avg, got %v", kind, op))
		case len(rc.residual) != v.n:
			return failedWork(fmt.Errorf("collective: %v: Feedback residual has %d elements for a buffer of %d", kind, len(rc.residual), v.n))
		}
	}
	h := g.typedHeader(kind, v.dt, v.n, op, rc.compression, 0)
	if kind == kindAllReduce && v.dt == dtF32 {
		// The algorithms other than the ring work on float32 only; other dtypes take the
		// ring (the dtype is in the header, so every rank of a correct call decides alike).
		h.algo = g.alg.tuner.choose(v.n, rc.compression, rc.feedback) // tuner.go
	}
	return g.issue(ctx, &Work{h: h, buf: v.f32, raw: v.raw, residual: rc.residual})
}

// AllGather gathers every member's block into every member's buf: buf is Size() blocks of
// len(buf)/Size() elements; block Rank() is this member's input, and on return every block
// holds the corresponding member's input. len(buf) must be a multiple of Size().
func (g *Group) AllGather(ctx context.Context, buf []float32) error {
	return g.AllGatherAsync(ctx, buf).wait()
}

// AllGatherAsync issues AllGather and returns at once.
func (g *Group) AllGatherAsync(ctx context.Context, buf []float32) *Work {
	return g.allGather(ctx, vecOf(buf))
}

func (g *Group) allGather(ctx context.Context, v vec) *Work {
	if v.n%len(g.ranks) != 0 {
		return failedWork(fmt.Errorf("collective: AllGather: len(buf)=%d is not a multiple of the group size %d", v.n, len(g.ranks)))
	}
	return g.issue(ctx, &Work{h: g.typedHeader(kindAllGather, v.dt, v.n, 0, NoCompression, 0), buf: v.f32, raw: v.raw})
}

// Broadcast copies root's buf into every other member's buf (root is a group rank). The data
// is pipelined in chunks along a chain root → root+1 → … around the ring.
func (g *Group) Broadcast(ctx context.Context, buf []float32, root int) error {
	return g.BroadcastAsync(ctx, buf, root).wait()
}

// BroadcastAsync issues Broadcast and returns at once.
func (g *Group) BroadcastAsync(ctx context.Context, buf []float32, root int) *Work {
	return g.broadcast(ctx, vecOf(buf), root)
}

func (g *Group) broadcast(ctx context.Context, v vec, root int) *Work {
	if err := g.checkPeer("Broadcast root", root); err != nil {
		return failedWork(err)
	}
	return g.issue(ctx, &Work{h: g.typedHeader(kindBroadcast, v.dt, v.n, 0, NoCompression, root), buf: v.f32, raw: v.raw})
}

// reduce issues a Reduce (see the generic Reduce).
func (g *Group) reduce(ctx context.Context, v vec, op Op, root int) *Work {
	if err := g.checkPeer("Reduce root", root); err != nil {
		return failedWork(err)
	}
	if err := checkReduction("Reduce", v.dt, op); err != nil {
		return failedWork(err)
	}
	return g.issue(ctx, &Work{h: g.typedHeader(kindReduce, v.dt, v.n, op, NoCompression, root), buf: v.f32, raw: v.raw})
}

// Barrier returns once every member has called it (it is ordered with the other
// collectives: it also waits for this member's earlier ops).
func (g *Group) Barrier(ctx context.Context) error {
	return g.issue(ctx, &Work{h: header{kind: kindBarrier, dtype: dtNone}}).wait()
}

// dataHeader is the header of a float32 collective: its chunk size frames the payload (the
// ring cuts segments, Broadcast its buffer, into chunks of g.chunk elements, and fp16 sends a
// scale per chunk), so it is part of what the ranks must agree on.
func (g *Group) dataHeader(kind opKind, count int, op Op, c Compression, arg int) header {
	return g.typedHeader(kind, dtF32, count, op, c, arg)
}

// typedHeader is dataHeader for any dtype: chunks are Options.ChunkBytes of the type's
// elements (the header carries the chunk in elements).
func (g *Group) typedHeader(kind opKind, dt dtype, count int, op Op, c Compression, arg int) header {
	return header{kind: kind, dtype: dt, reduce: op, compression: c, algo: algoRing,
		count: uint64(count), arg: int64(arg), chunk: uint32(g.chunkOf(dt))}
}

// chunkOf is the elements per chunk for dt: g.chunk for 4-byte types, half as many for
// 8-byte ones, so that a chunk of any dtype fits the group's one-chunk scratch buffers.
func (g *Group) chunkOf(dt dtype) int {
	if dt.size() <= 4 {
		return g.chunk
	}
	return max(1, g.chunk*4/dt.size())
}
