package collective

import (
	"context"
	"fmt"
)

// The collectives for every element type. The methods of Group (g.AllReduce, g.Broadcast,
// g.Send, ...) are the float32 forms the package started with; the functions below take a
// slice of any Number type and the group as their second argument:
//
//	err := collective.AllReduce(ctx, g, counts, collective.Sum)   // counts []int64
//	err := collective.Gather(ctx, g, mine, all, 0)                 // all on rank 0 only
//
// Each has an Async form returning a *Work. Every member must call the same function with
// the same element type: the op header carries the type, and a member that passes []float64
// where another passes []float32 fails with a *MismatchError like any other mismatch.
//
// Reductions: Sum, Max and Min for every type (integer sums wrap around on overflow, as in
// Go); Avg for float32 and float64 only (refused for integers: see checkReduction). FP16
// compression (and Feedback) applies to float32 AllReduce and ReduceScatter only, and is
// refused for other types. AllReduce of a type other than float32 always runs the ring
// (Options.Algorithm and the tuner choose among float32 algorithms).

// AllReduce is Group.AllReduce for any Number type.
func AllReduce[T Number](ctx context.Context, g *Group, buf []T, op Op, opts ...ReduceOption) error {
	return AllReduceAsync(ctx, g, buf, op, opts...).wait()
}

// AllReduceAsync is Group.AllReduceAsync for any Number type.
func AllReduceAsync[T Number](ctx context.Context, g *Group, buf []T, op Op, opts ...ReduceOption) *Work {
	return g.reduceOp(ctx, kindAllReduce, vecOf(buf), op, opts)
}

// ReduceScatter is Group.ReduceScatter for any Number type.
func ReduceScatter[T Number](ctx context.Context, g *Group, buf []T, op Op, opts ...ReduceOption) error {
	return ReduceScatterAsync(ctx, g, buf, op, opts...).wait()
}

// ReduceScatterAsync is Group.ReduceScatterAsync for any Number type.
func ReduceScatterAsync[T Number](ctx context.Context, g *Group, buf []T, op Op, opts ...ReduceOption) *Work {
	return g.reduceOp(ctx, kindReduceScatter, vecOf(buf), op, opts)
}

// AllGather is Group.AllGather for any Number type.
func AllGather[T Number](ctx context.Context, g *Group, buf []T) error {
	return AllGatherAsync(ctx, g, buf).wait()
}

// AllGatherAsync is Group.AllGatherAsync for any Number type.
func AllGatherAsync[T Number](ctx context.Context, g *Group, buf []T) *Work {
	return g.allGather(ctx, vecOf(buf))
}

// Broadcast is Group.Broadcast for any Number type.
func Broadcast[T Number](ctx context.Context, g *Group, buf []T, root int) error {
	return BroadcastAsync(ctx, g, buf, root).wait()
}

// BroadcastAsync is Group.BroadcastAsync for any Number type.
func BroadcastAsync[T Number](ctx context.Context, g *Group, buf []T, root int) *Work {
	return g.broadcast(ctx, vecOf(buf), root)
}

// Reduce leaves in root's buf (root is a group rank) the element-wise reduction op of all
// members' bufs. All members pass the same len(buf), op and root. On the other members buf
// is scratch: it may hold partial reductions afterwards.
//
// It runs a pipelined chain around the ring that ends at the root (see ring.go): each member
// sends the buffer once, in about (k + n-2) chunk times for k chunks, where a ring
// reduce-scatter followed by sending the segments to the root would move the buffer through
// the root's link twice.
func Reduce[T Number](ctx context.Context, g *Group, buf []T, op Op, root int) error {
	return ReduceAsync(ctx, g, buf, op, root).wait()
}

// ReduceAsync issues Reduce and returns at once.
func ReduceAsync[T Number](ctx context.Context, g *Group, buf []T, op Op, root int) *Work {
	return g.reduce(ctx, vecOf(buf), op, root)
}

// Gather collects every member's send into root's recv (root is a group rank): recv is
// Size() blocks of len(send) elements, block q holding member q's send. All members pass the
// same len(send); only the root's recv is used (the others may pass nil), and it must hold
// Size()·len(send) elements. Members send straight to the root (see peerops.go).
func Gather[T Number](ctx context.Context, g *Group, send, recv []T, root int) error {
	return GatherAsync(ctx, g, send, recv, root).wait()
}

// GatherAsync issues Gather and returns at once.
func GatherAsync[T Number](ctx context.Context, g *Group, send, recv []T, root int) *Work {
	return g.gatherOp(ctx, vecOf(send), vecOf(recv), root)
}

// Scatter is Gather's inverse: root's send is Size() blocks of len(recv) elements, and
// member q receives block q into its recv. All members pass the same len(recv); only the
// root's send is read (the others may pass nil), and it must hold Size()·len(recv) elements.
func Scatter[T Number](ctx context.Context, g *Group, send, recv []T, root int) error {
	return ScatterAsync(ctx, g, send, recv, root).wait()
}

// ScatterAsync issues Scatter and returns at once.
func ScatterAsync[T Number](ctx context.Context, g *Group, send, recv []T, root int) *Work {
	return g.scatterOp(ctx, vecOf(send), vecOf(recv), root)
}

// AllToAll sends block q of send to member q and receives member q's block for this member
// into block q of recv: send and recv are Size() blocks of len(send)/Size() elements, and
// every member passes the same len(send) == len(recv), a multiple of Size(). It runs Size()-1
// rounds of pairwise exchange (see peerops.go).
func AllToAll[T Number](ctx context.Context, g *Group, send, recv []T) error {
	return AllToAllAsync(ctx, g, send, recv).wait()
}

// AllToAllAsync issues AllToAll and returns at once.
func AllToAllAsync[T Number](ctx context.Context, g *Group, send, recv []T) *Work {
	return g.allToAll(ctx, vecOf(send), nil, vecOf(recv), nil)
}

// AllToAllV is AllToAll with blocks of varying sizes: send holds sendCounts[q] elements for
// each member q, one block after the other in member order, and recv receives recvCounts[q]
// elements from each member q, in the same order. Both count slices have Size() entries that
// sum to len(send) and len(recv), and sendCounts[Rank()] == recvCounts[Rank()]. Member q's
// sendCounts[p] must equal member p's recvCounts[q]; a member that expects another size than
// its peer sends fails with a *MismatchError naming both, before reading the message.
func AllToAllV[T Number](ctx context.Context, g *Group, send []T, sendCounts []int, recv []T, recvCounts []int) error {
	return AllToAllVAsync(ctx, g, send, sendCounts, recv, recvCounts).wait()
}

// AllToAllVAsync issues AllToAllV and returns at once.
func AllToAllVAsync[T Number](ctx context.Context, g *Group, send []T, sendCounts []int, recv []T, recvCounts []int) *Work {
	return g.allToAll(ctx, vecOf(send), sendCounts, vecOf(recv), recvCounts)
}

// Send is Group.Send for any Number type; the receiver must Recv the same type.
func Send[T Number](ctx context.Context, g *Group, buf []T, peer, tag int) error {
	return g.send(ctx, vecOf(buf), peer, tag)
}

// Recv is Group.Recv for any Number type.
func Recv[T Number](ctx context.Context, g *Group, buf []T, peer, tag int) error {
	return g.recv(ctx, vecOf(buf), peer, tag)
}

// peerHeader is the header of a peer op: no reduction and no chunk framing (peer messages
// are framed by their headers' counts alone).
func (g *Group) peerHeader(kind opKind, dt dtype, count, root int) header {
	return header{kind: kind, dtype: dt, algo: algoRing, count: uint64(count), arg: int64(root)}
}

func (g *Group) gatherOp(ctx context.Context, send, recv vec, root int) *Work {
	if err := g.checkPeer("Gather root", root); err != nil {
		return failedWork(err)
	}
	if g.rank == root && recv.n != len(g.ranks)*send.n {
		return failedWork(fmt.Errorf("collective: Gather: the root's recv has %d elements, want Size()·len(send) = %d·%d", recv.n, len(g.ranks), send.n))
	}
	return g.issue(ctx, &Work{h: g.peerHeader(kindGather, send.dt, send.n, root), raw: send.raw, out: recv.raw})
}

func (g *Group) scatterOp(ctx context.Context, send, recv vec, root int) *Work {
	if err := g.checkPeer("Scatter root", root); err != nil {
		return failedWork(err)
	}
	if g.rank == root && send.n != len(g.ranks)*recv.n {
		return failedWork(fmt.Errorf("collective: Scatter: the root's send has %d elements, want Size()·len(recv) = %d·%d", send.n, len(g.ranks), recv.n))
	}
	return g.issue(ctx, &Work{h: g.peerHeader(kindScatter, recv.dt, recv.n, root), raw: send.raw, out: recv.raw})
}

// allToAll issues AllToAll (counts nil) or AllToAllV.
func (g *Group) allToAll(ctx context.Context, send vec, sendCounts []int, recv vec, recvCounts []int) *Work {
	n := len(g.ranks)
	if sendCounts == nil && recvCounts == nil {
		if send.n != recv.n || send.n%n != 0 {
			return failedWork(fmt.Errorf("collective: AllToAll: len(send)=%d and len(recv)=%d must be equal and a multiple of the group size %d", send.n, recv.n, n))
		}
		return g.issue(ctx, &Work{h: g.peerHeader(kindAllToAll, send.dt, send.n, 0), raw: send.raw, out: recv.raw})
	}
	for _, c := range []struct {
		name   string
		counts []int
		n      int
	}{{"sendCounts", sendCounts, send.n}, {"recvCounts", recvCounts, recv.n}} {
		if len(c.counts) != n {
			return failedWork(fmt.Errorf("collective: AllToAllV: %s has %d entries, want one per member (%d)", c.name, len(c.counts), n))
		}
		sum := 0
		for q, k := range c.counts {
			if k < 0 {
				return failedWork(fmt.Errorf("collective: AllToAllV: %s[%d] = %d is negative", c.name, q, k))
			}
			sum += k
		}
		if sum != c.n {
			return failedWork(fmt.Errorf("collective: AllToAllV: %s sum to %d but the buffer has %d elements", c.name, sum, c.n))
		}
	}
	if sendCounts[g.rank] != recvCounts[g.rank] {
		return failedWork(fmt.Errorf("collective: AllToAllV: sendCounts[%d] = %d but recvCounts[%d] = %d (this member's block to itself)", g.rank, sendCounts[g.rank], g.rank, recvCounts[g.rank]))
	}
	w := &Work{h: g.peerHeader(kindAllToAllV, send.dt, 0, 0), raw: send.raw, out: recv.raw}
	w.counts = [2][]int{append([]int(nil), sendCounts...), append([]int(nil), recvCounts...)}
	return g.issue(ctx, w)
}
