package collective

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/ringtrain/ringtrain/collective/transport"
)

// Gather, Scatter, AllToAll and AllToAllV move each member's data straight to the member that
// needs it, over the group's peer links: one link per pair of members (channel "<group>.peer",
// opened on first use by both ends, so shared memory between processes of one host and the
// transport's data links elsewhere, like any link), distinct from the ring's links and from
// Send/Recv's. A ring would forward every block through the members in between, which costs
// their links and cores bytes that a direct link does not.
//
// They are ordered with the group's other collectives (the worker runs them in issue order)
// and take part in the ring's header check: while the data moves, every member sends the
// op's header to its right ring neighbour and checks its left one's (as the algorithms of
// algo.go do), so a member that called another collective, even one that never talks to the
// peer links, is caught. Besides, every message on a peer link starts with a header the
// receiver checks before it reads the payload, so a payload is never framed by a count the
// sender did not announce:
//
//   - Gather: every member sends header+block to the root, which checks each header, stores
//     each block, and answers every member with its own header once it has checked them all.
//     A member returns only after that answer, so no member succeeds unless the root agreed
//     with every member.
//   - Scatter: the root sends header+block to every member, which checks the header, reads
//     its block and answers with its own header; once all have answered, the root answers
//     every member in turn, which returns only then (as in Gather: nobody succeeds unless
//     the root agreed with every member).
//   - AllToAll, AllToAllV: n-1 rounds of pairwise exchange. In round i member r sends its
//     block for r+i to r+i and receives the block of r-i from r-i, both at once (so the
//     exchange cannot deadlock on bounded buffers: whoever r waits for in round i is itself
//     sending to r in round i). Each message carries a header, so a member that returns has
//     checked the call of every other member. AllToAllV's headers carry each message's count:
//     a member whose recvCounts[j] differs from member j's sendCounts[me] fails with a
//     *MismatchError naming both. Since a member cannot see whether the messages it sent
//     fitted, AllToAllV ends with one more round: every member sends every other a header
//     saying that all it received checked out, and returns once it has all of them (one α).
//
// Costs, with α the latency and β the time per byte of one link, m the bytes of one member's
// block (AllToAllV: the largest message), n members:
//
//	Gather, Scatter:     the root moves (n-1)·m through its links, in parallel over n-1 links:
//	                     about α + (n-1)·m·β where the root's port is the bottleneck, plus α
//	                     for the answers (2α in Scatter); each other member sends or
//	                     receives m.
//	AllToAll(V):         (n-1) rounds of α + m·β, each member sending and receiving (n-1)·m;
//	                     the bandwidth optimum, since every byte leaves its member once
//	                     (AllToAllV: one more α for the confirmations).

// peerLinks are a group's direct links to its members (group rank -> link).
type peerLinks struct {
	mu     sync.Mutex
	links  map[int]transport.Link
	closed bool
}

// open returns the links to peers, opening those not open yet, all at once: both ends of a
// pair ask for its link in the same op, and a transport may make each wait for the other.
func (g *Group) openPeers(ctx context.Context, peers []int) ([]transport.Link, error) {
	if g.opts.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, g.opts.Timeout)
		defer cancel()
	}
	out := make([]transport.Link, len(peers))
	errs := make([]error, len(peers))
	var wg sync.WaitGroup
	for i, p := range peers {
		g.peers.mu.Lock()
		l, closed := g.peers.links[p], g.peers.closed
		g.peers.mu.Unlock()
		switch {
		case closed:
			return nil, ErrClosed
		case l != nil:
			out[i] = l
			continue
		}
		wg.Go(func() {
			l, err := g.t.Link(ctx, g.ranks[p], g.name+".peer")
			if err != nil {
				errs[i] = &transport.PeerError{Rank: g.ranks[p], Err: fmt.Errorf("opening the peer link: %w", err)}
				return
			}
			out[i] = l
		})
	}
	wg.Wait()
	g.peers.mu.Lock()
	defer g.peers.mu.Unlock()
	if g.peers.links == nil {
		g.peers.links = make(map[int]transport.Link)
	}
	for i, p := range peers {
		if errs[i] == nil && out[i] != nil {
			g.peers.links[p] = out[i]
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if g.peers.closed {
		return nil, ErrClosed
	}
	return out, nil
}

// close closes the peer links (Group.Close).
func (p *peerLinks) close() {
	p.mu.Lock()
	p.closed = true
	links := p.links
	p.links = nil
	p.mu.Unlock()
	for _, l := range links {
		l.Close()
	}
}

// peerRun is one peer op in flight.
type peerRun struct {
	g    *Group
	w    *Work
	n, r int
	es   int

	mu      sync.Mutex
	waiting []bool // by group rank: a readMsg from that member is under way
}

// wait records that this member starts (on) or ends (!on) waiting for a message from p, and
// points the watchdog at the first member still awaited: the one to blame if nothing moves.
func (x *peerRun) wait(p int, on bool) {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.waiting[p] = on
	b := int64(0)
	for q, w := range x.waiting {
		if w {
			b = int64(x.g.ranks[q]) + 1
			break
		}
	}
	x.g.run.blame.Store(b)
}

// executePeer runs a Gather, Scatter, AllToAll or AllToAllV (on the group's worker).
func (g *Group) executePeer(w *Work) error {
	x := &peerRun{g: g, w: w, n: len(g.ranks), r: g.rank, es: w.h.dtype.size(), waiting: make([]bool, len(g.ranks))}
	x.copySelf()
	if x.n == 1 {
		return nil
	}
	g.wd.start(w)
	defer g.wd.stop()
	g.run.headerIn.Store(false)
	g.run.recvFinished.Store(false)
	g.run.blame.Store(0)
	defer g.run.blame.Store(0)
	// algo.go: the ring's header check.
	if _, err := g.alg.startLap(w); err != nil {
		return g.fail(w.h.describe(showSeq), err)
	}
	var err error
	switch w.h.kind {
	case kindGather:
		err = x.gather()
	case kindScatter:
		err = x.scatter()
	default:
		err = x.allToAll()
	}
	if err != nil {
		err = g.fail(w.h.describe(showSeq), err)
	}
	if lerr := g.alg.finishLap(err == nil); lerr != nil && err == nil {
		err = lerr
	}
	return err
}

// sendCount and recvCount are the elements this member sends to, and receives from, member p.
func (x *peerRun) sendCount(p int) int {
	switch x.w.h.kind {
	case kindAllToAllV:
		return x.w.counts[0][p]
	case kindAllToAll:
		return int(x.w.h.count) / x.n
	}
	return int(x.w.h.count)
}

func (x *peerRun) recvCount(p int) int {
	switch x.w.h.kind {
	case kindAllToAllV:
		return x.w.counts[1][p]
	case kindAllToAll:
		return int(x.w.h.count) / x.n
	}
	return int(x.w.h.count)
}

// part returns block p of b, whose blocks hold count(q) elements each, in member order.
func (x *peerRun) part(b []byte, count func(int) int, p int) []byte {
	off := 0
	for q := range p {
		off += count(q)
	}
	return b[off*x.es : (off+count(p))*x.es]
}

// sendPart is what this member sends to p: its whole buffer in a Gather, block p otherwise.
func (x *peerRun) sendPart(p int) []byte {
	if x.w.h.kind == kindGather {
		return x.w.raw
	}
	return x.part(x.w.raw, x.sendCount, p)
}

// recvPart is where what p sends lands: block p of the output, or all of it in a Scatter.
func (x *peerRun) recvPart(p int) []byte {
	if x.w.h.kind == kindScatter {
		return x.w.out
	}
	return x.part(x.w.out, x.recvCount, p)
}

// copySelf moves this member's own block, which no link carries.
func (x *peerRun) copySelf() {
	root := int(x.w.h.arg)
	switch x.w.h.kind {
	case kindGather, kindScatter:
		if x.r == root {
			copy(x.recvPart(root), x.sendPart(root))
		}
	default:
		copy(x.recvPart(x.r), x.sendPart(x.r))
	}
}

// header of the message to p: the op's, with the message's count for AllToAllV.
func (x *peerRun) msgHeader(count int) header {
	h := x.w.h
	if h.kind == kindAllToAllV {
		h.count = uint64(count)
	}
	return h
}

// writeMsg sends a header, then payload in chunks (each one progress for the watchdog).
func (x *peerRun) writeMsg(l transport.Link, h header, payload []byte) error {
	var hb [headerSize]byte
	h.encode(&hb)
	if len(payload) <= coalesceMax {
		// One write (one packet, one wake-up of the reader) for small messages, as the ring
		// does for its first chunk: what latency-bound AllToAlls pay for.
		b := append(hb[:], payload...)
		_, err := l.Write(b)
		x.g.run.progress.Add(1)
		return err
	}
	if _, err := l.Write(hb[:]); err != nil {
		return err
	}
	step := 4 * x.g.chunk
	for len(payload) > 0 {
		n := min(step, len(payload))
		if _, err := l.Write(payload[:n]); err != nil {
			return err
		}
		payload = payload[n:]
		x.g.run.progress.Add(1)
	}
	return nil
}

// readMsg reads member p's header, checks it against want, then reads the payload into dst
// (whose length is what this member expects). final says the message is one that p sends
// only once every member has done its part (the root's answer in Gather and Scatter, a
// confirmation of AllToAllV): waiting for it is not waiting for p, so the watchdog keeps its
// ring rule (blame the left neighbour if it never joined, else wait longer), and the member
// that waits for the late one directly fails first and names it.
func (x *peerRun) readMsg(l transport.Link, p int, want header, dst []byte, final bool) error {
	g := x.g
	if !final {
		x.wait(p, true)
		defer x.wait(p, false)
	}
	var hb [headerSize]byte
	if err := readFull(l, hb[:]); err != nil {
		return err
	}
	if err := checkPeerHeader(g.worldRank, &want, g.ranks[p], hb[:]); err != nil {
		return err
	}
	g.run.progress.Add(1)
	step := 4 * g.chunk
	for len(dst) > 0 {
		n := min(step, len(dst))
		if err := readFull(l, dst[:n]); err != nil {
			return err
		}
		dst = dst[n:]
		g.run.progress.Add(1)
	}
	return nil
}

// checkPeerHeader decodes the header b that world rank peer sent ahead of a message and
// checks it against want, the header this member (world rank rank) expects.
func checkPeerHeader(rank int, want *header, peer int, b []byte) error {
	var h header
	if err := h.decode(b); err != nil {
		return fmt.Errorf("from rank %d: %w", peer, err)
	}
	if same := h; want.kind == kindAllToAllV && h.count != want.count {
		if same.count = want.count; same == *want { // the calls agree but for this message's size
			return &MismatchError{
				Rank: rank, Call: fmt.Sprintf("AllToAllV(%v) receiving %d elements from rank %d (recvCounts)", want.dtype, want.count, peer),
				PeerRank: peer, PeerCall: fmt.Sprintf("AllToAllV(%v) sending %d elements to rank %d (sendCounts)", h.dtype, h.count, rank),
				Field: "split sizes"}
		}
	}
	return mismatch(rank, want, peer, &h)
}

// others returns the group ranks other than this member's, in order.
func (x *peerRun) others() []int {
	out := make([]int, 0, x.n-1)
	for p := range x.n {
		if p != x.r {
			out = append(out, p)
		}
	}
	return out
}

// fail fails the group at once with err, so that exchanges with other peers that wait for
// something that will not come end too (the transport aborts), and returns err.
func (x *peerRun) fail(err error) error {
	if err != nil {
		x.g.fail(x.w.h.describe(showSeq), err)
	}
	return err
}

// open opens the links to peers (peerLinks), the watchdog blaming the first that never does.
func (x *peerRun) open(peers []int) ([]transport.Link, error) {
	for _, p := range peers {
		x.wait(p, true)
	}
	defer func() {
		for _, p := range peers {
			x.wait(p, false)
		}
	}()
	return x.g.openPeers(x.w.ctx, peers)
}

// each runs f for every peer at once and returns the first error by peer order; the first
// failure fails the group, which ends the others.
func (x *peerRun) each(peers []int, links []transport.Link, f func(p int, l transport.Link) error) error {
	errs := make([]error, len(peers))
	var wg sync.WaitGroup
	for i, p := range peers {
		wg.Go(func() { errs[i] = x.fail(f(p, links[i])) })
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

func (x *peerRun) gather() error {
	w, root := x.w, int(x.w.h.arg)
	if x.r != root {
		links, err := x.open([]int{root})
		if err != nil {
			return err
		}
		if err := x.writeMsg(links[0], w.h, w.raw); err != nil {
			return err
		}
		return x.readMsg(links[0], root, w.h, nil, true) // the root's answer: it checked everyone
	}
	peers := x.others()
	links, err := x.open(peers)
	if err != nil {
		return err
	}
	if err := x.each(peers, links, func(p int, l transport.Link) error {
		return x.readMsg(l, p, w.h, x.recvPart(p), false)
	}); err != nil {
		return err
	}
	return x.each(peers, links, func(p int, l transport.Link) error { return x.writeMsg(l, w.h, nil) })
}

func (x *peerRun) scatter() error {
	w, root := x.w, int(x.w.h.arg)
	if x.r != root {
		links, err := x.open([]int{root})
		if err != nil {
			return err
		}
		if err := x.readMsg(links[0], root, w.h, w.out, false); err != nil {
			return err
		}
		if err := x.writeMsg(links[0], w.h, nil); err != nil { // this member checked and received
			return err
		}
		return x.readMsg(links[0], root, w.h, nil, true) // the root's answer: so did everyone
	}
	peers := x.others()
	links, err := x.open(peers)
	if err != nil {
		return err
	}
	if err := x.each(peers, links, func(p int, l transport.Link) error {
		if err := x.writeMsg(l, w.h, x.sendPart(p)); err != nil {
			return err
		}
		return x.readMsg(l, p, w.h, nil, false)
	}); err != nil {
		return err
	}
	return x.each(peers, links, func(p int, l transport.Link) error { return x.writeMsg(l, w.h, nil) })
}

func (x *peerRun) allToAll() error {
	w := x.w
	peers := x.others()
	opened, err := x.open(peers)
	if err != nil {
		return err
	}
	links := make([]transport.Link, x.n) // by group rank
	for i, p := range peers {
		links[p] = opened[i]
	}
	wrote := make(chan error, 1)
	for i := 1; i < x.n; i++ {
		to, from := mod(x.r+i, x.n), mod(x.r-i, x.n)
		go func() { wrote <- x.fail(x.writeMsg(links[to], x.msgHeader(x.sendCount(to)), x.sendPart(to))) }()
		// On a failure the other side may wait for a peer that will not come: failing the
		// group at once aborts the transport, which ends it.
		rerr := x.fail(x.readMsg(links[from], from, x.msgHeader(x.recvCount(from)), x.recvPart(from), false))
		werr := <-wrote
		if err := errors.Join(rerr, werr); err != nil {
			if rerr != nil {
				return rerr
			}
			return werr
		}
	}
	if w.h.kind != kindAllToAllV {
		return nil // every member checked every other member's header, all equal to its own
	}
	// AllToAllV: a member's headers are checked by their receivers only. Each member now tells
	// every other that it checked all it received, and returns once it heard that from all:
	// so no member returns success unless every pair of members agreed on its split.
	return x.each(peers, opened, func(p int, l transport.Link) error {
		if err := x.writeMsg(l, x.msgHeader(0), nil); err != nil {
			return err
		}
		return x.readMsg(l, p, x.msgHeader(0), nil, true)
	})
}
