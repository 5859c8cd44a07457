package collective

import (
	"fmt"
)

// Hierarchical (2D) AllReduce (algoHier), for groups spread over H > 1 hosts with the same
// number L > 1 of members on each (Topology.Regular; other layouts run the ring: the tuner
// never picks hier for them, and Options.Algorithm / GORUN_ALGO = "hier" falls back to the
// ring there, the same way on every rank since the topology is agreed).
//
//  1. reduce-scatter inside each host, over a ring of the L members of the host (shared
//     memory where available): local rank l ends holding segment l of L (the ring's segment
//     arithmetic, any count), reduced over its host;
//  2. AllReduce of segment l across the hosts, among the H members with local rank l: L
//     groups of H ranks run in parallel, one per local rank, so every member's links and
//     cores work. This inner AllReduce is an ordinary one: the tuner of that group picks ring,
//     rd or rhd for it (its members are all on different hosts);
//  3. all-gather inside the host (float32: the bytes stay on the host).
//
// Latency 2(L−1) + (2(H−1) for a ring, log2 H for rd) steps instead of 2(LH−1); each host
// sends as many bytes across as with the flat ring.
//
// The two phases run on two internal groups made on the first hierarchical op (channels
// named after this group, ".hier.local" and ".hier.cross"); they are shut down and closed with
// it. Avg is run as Sum and divided once, on each segment's owner, before the all-gather.
// FP16 and Feedback apply to phases 1 and 2 (each position is encoded once by its
// responsible rank: in phase 1 if it lies outside this member's segment, in phase 2
// otherwise), so Feedback works as on the ring; phase 3 copies float32 values, keeping
// every rank bit-identical.

// hierApplicable reports whether the hierarchical algorithm can run on topo.
func hierApplicable(topo Topology) bool {
	return topo.NumHosts() > 1 && topo.LocalSize() > 1
}

// hierGroups returns the internal groups, making them on first use.
func (a *algoState) hierGroups(w *Work) (local, cross *Group, err error) {
	a.mu.Lock()
	local, cross = a.local, a.cross
	a.mu.Unlock()
	if local != nil {
		return local, cross, nil
	}
	g := a.g
	topo := a.topo
	if !hierApplicable(topo) {
		return nil, nil, fmt.Errorf("collective: hierarchical AllReduce needs the same number (>1) of members on every host (>1): %v", topo)
	}
	h, l := topo.HostOf[g.rank], topo.LocalRank[g.rank]
	localW := make([]int, 0, topo.LocalSize())
	for _, gr := range topo.Hosts[h] {
		localW = append(localW, g.ranks[gr])
	}
	crossW := make([]int, 0, topo.NumHosts())
	for _, members := range topo.Hosts {
		crossW = append(crossW, g.ranks[members[l]])
	}
	lo := g.opts
	lo.Algorithm = "ring"
	co := g.opts
	co.Algorithm = g.alg.tuner.mode.String()
	if co.Algorithm == "hier" {
		co.Algorithm = "auto"
	}
	co.Tuner = g.alg.tuner.table
	lo.Tuner = g.alg.tuner.table
	if local, err = newGroup(w.ctx, g.t, lo, g.name+".hier.local", localW); err != nil {
		return nil, nil, err
	}
	if cross, err = newGroup(w.ctx, g.t, co, g.name+".hier.cross", crossW); err != nil {
		local.Close()
		return nil, nil, err
	}
	// The inner groups inherit the link kinds this group agreed on.
	local.alg.tuner.kinds = a.tuner.kinds
	cross.alg.tuner.kinds = a.tuner.kinds
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.closed {
		local.Close()
		cross.Close()
		return nil, nil, ErrClosed
	}
	a.local, a.cross = local, cross
	return local, cross, nil
}

func (a *algoState) hier(w *Work) error {
	local, cross, err := a.hierGroups(w)
	if err != nil {
		return err
	}
	buf := w.buf
	op := w.h.reduce
	inner := op
	if op == Avg {
		inner = Sum
	}
	comp := w.h.compression
	// Phase 1: reduce-scatter on the host; the ring leaves local rank l segment l.
	rs := &Work{h: local.dataHeader(kindReduceScatter, len(buf), inner, comp, 0), buf: buf, residual: w.residual}
	if err := local.issue(w.ctx, rs).wait(); err != nil {
		return err
	}
	L := local.Size()
	l := local.Rank()
	lo, hi := len(buf)*l/L, len(buf)*(l+1)/L
	// Phase 2: AllReduce of the segment across hosts.
	var opts []ReduceOption
	if comp != NoCompression {
		opts = append(opts, comp)
	}
	if w.residual != nil {
		opts = append(opts, Feedback(w.residual[lo:hi]))
	}
	if err := cross.AllReduceAsync(w.ctx, buf[lo:hi], inner, opts...).wait(); err != nil {
		return err
	}
	if op == Avg {
		divideBy(buf[lo:hi], float32(len(a.g.ranks)))
	}
	// Phase 3: all-gather on the host.
	ag := &Work{h: local.dataHeader(kindAllGather, len(buf), 0, NoCompression, 0), buf: buf}
	return local.issue(w.ctx, ag).wait()
}
