package collective

import (
	"errors"
	"fmt"
	"runtime"

	"github.com/ringtrain/ringtrain/collective/transport"
)

// One-shot AllReduce (algoOneShot), for tiny buffers: every rank sends its whole buffer to
// every other rank and reduces the n contributions itself, in rank order
// (c_0 ⊕ c_1 ⊕ … ⊕ c_{n−1}), so that every rank performs the same operations on the same
// operands and all end bit-identical (Max and Min included: the operand order is fixed). One
// latency step instead of recursive doubling's log2 n (plus its fold), at the price of n−1
// messages of the whole buffer per rank: the tuner picks it only where its α-β model says
// that pays, and never when a rank would send more than oneShotMaxBytes.
//
// The schedule is a shift: in step s = 1 .. n−1 rank r sends to r+s and receives from r−s
// (mod n). A writer goroutine sends in that order while the op's goroutine receives in that
// order, so each step's messages meet each other and nothing deadlocks on links that buffer
// less than a message (memtransport's 4 KiB test windows): once every rank finished step
// s−1, the step-s write of r is the step-s read of r+s.
//
// Step 1 runs over the ring links (to the right neighbour, from the left one) and replaces
// the header lap of the other algorithms (algo.go): every message starts with the op's
// header, which the receiver checks before the payload, and the receiving side reads its
// left neighbour's message before it waits on anything else. So a rank that runs another
// op finds this one's header in its lap (or its ring op's header check), and a rank running
// this one finds the other's header first thing, as with the lap. Steps 2 .. n−1 use the
// recursive-doubling links (opened on the first one-shot op, in ascending peer order on
// every rank, so that transports whose Link waits for the peer cannot deadlock; the writer
// waits for them). Every rank checks every other rank's header.
//
// FP16/BF16: a rank rounds its own buffer to what it sends (encode, then decode in place),
// and every rank then reduces the same rounded contributions in float32: each value is
// quantized once. Feedback is refused (the tuner never picks the one-shot with it, and a
// forced one falls back to the ring): its residuals would follow another pattern than the
// ring's and rhd's (each rank rounding its whole buffer, no segment owner), which ddp's
// error-feedback accounting assumes (ddp's TestFP16WithinBound).

// oneShotMaxBytes bounds what one rank sends in a one-shot AllReduce ((n−1) × its wire
// bytes, the same bound for rd+oneshot's cross-host phase, H−1 copies): the one-shot was
// measured on small buffers only (4 KiB, benchmarks/results/scale/latency/), and the
// receive scratch (n−1 messages) stays small.
const oneShotMaxBytes = 64 << 10

// oneShotFits reports whether an AllReduce of count values on n ranks may run one-shot.
func oneShotFits(n, count int, comp Compression) bool {
	wire := 4 * count
	if comp != NoCompression {
		wire = 2 * count
	}
	return n >= 2 && (n-1)*wire <= oneShotMaxBytes
}

// oneShot runs an algoOneShot AllReduce.
func (a *algoState) oneShot(w *Work) error {
	g := a.g
	n, r := len(g.ranks), g.rank
	if w.residual != nil {
		return errors.New("collective: the one-shot AllReduce does not support Feedback")
	}
	x := rdCall{a: a, w: w, buf: w.buf, op: w.h.reduce, fp16: w.h.compression != NoCompression, n: n}
	count := len(x.buf)
	whole := layout{count: count, nseg: 1, chunk: g.chunk, sLo: 0, sHi: 1, wire: w.h.compression}
	w.h.encode(&a.msgHdr)
	msg, second := x.payload(whole, x.fp16, false)
	if x.fp16 {
		// Round this rank's own values to what the others will decode.
		if err := x.decode(msg[headerSize:], whole, true); err != nil {
			return err
		}
	}
	size := headerSize + whole.wireBytes(x.fp16)

	// The writer: step 1 at once, the others once the links are open.
	opened := a.osOpened
	var ready chan struct{}
	if !opened && n > 2 {
		ready = make(chan struct{})
	}
	wrote := a.wrote
	go func() {
		err := x.writeLink(g.right, msg, second)
		if err == nil && ready != nil {
			<-ready
			if !a.osOpened {
				err = errors.New("the one-shot links did not open")
			}
		}
		for s := 2; s < n && err == nil; s++ {
			var l transport.Link
			if l, err = a.link(w.ctx, (r+s)%n); err == nil {
				err = x.writeLink(l, msg, second)
			}
		}
		wrote <- err
	}()
	// Let the writer go first: the others may be waiting for these messages, and with one
	// thread per rank (GOMAXPROCS=1) it would otherwise run only once a read blocks.
	runtime.Gosched()
	rerr := a.oneShotRecv(&x, size, ready)
	werr := <-wrote
	if rerr != nil {
		return rerr
	}
	if werr != nil {
		return werr
	}
	return a.oneShotReduce(&x, whole, size, n, r)
}

// oneShotRecv reads the n−1 messages, step s's into slot s−1 of the receive scratch, and
// checks their headers. It opens the links (then closes ready) on the first one-shot op.
func (a *algoState) oneShotRecv(x *rdCall, size int, ready chan struct{}) error {
	g := a.g
	n, r := len(g.ranks), g.rank
	in := a.grow(&a.scratchIn, (n-1)*size)
	err := a.oneShotRead(x, g.left, mod(r-1, n), in[:size])
	if ready != nil {
		// Ascending peer order on every rank, after step 1 (see above).
		for p := 0; p < n && err == nil; p++ {
			if p != r {
				_, err = a.link(x.w.ctx, p)
			}
		}
		a.osOpened = err == nil
		close(ready)
	}
	for s := 2; s < n && err == nil; s++ {
		peer := mod(r-s, n)
		var l transport.Link
		if l, err = a.link(x.w.ctx, peer); err == nil {
			err = a.oneShotRead(x, l, peer, in[(s-1)*size:s*size])
		}
	}
	return err
}

// oneShotRead reads one message of group rank peer from l into b and checks its header.
func (a *algoState) oneShotRead(x *rdCall, l transport.Link, peer int, b []byte) error {
	g := a.g
	if err := readFull(l, b[:headerSize]); err != nil {
		return err
	}
	var h header
	if err := h.decode(b[:headerSize]); err != nil {
		return fmt.Errorf("from rank %d: %w", g.ranks[peer], err)
	}
	if err := mismatch(g.worldRank, &x.w.h, g.ranks[peer], &h); err != nil {
		return err
	}
	if peer == mod(g.rank-1, len(g.ranks)) {
		g.run.headerIn.Store(true) // the watchdog's "the left neighbour joined"
	}
	if err := readFull(l, b[headerSize:]); err != nil {
		return err
	}
	g.run.progress.Add(1)
	return nil
}

// writeLink writes one message (first, then second if any) on l.
func (x *rdCall) writeLink(l transport.Link, first, second []byte) error {
	if _, err := l.Write(first); err != nil {
		return err
	}
	if len(second) > 0 {
		if _, err := l.Write(second); err != nil {
			return err
		}
	}
	x.a.g.run.progress.Add(1)
	return nil
}

// oneShotReduce reduces the k contributions of a one-shot exchange among k members, in
// member order, into the buffer: member me's is the buffer itself, member j's came in step
// s = me−j (mod k), in slot s−1 of the receive scratch. Avg divides by the group's size.
func (a *algoState) oneShotReduce(x *rdCall, whole layout, size, k, me int) error {
	count := len(x.buf)
	in := a.scratchIn[:(k-1)*size]
	own := x.buf
	acc := f32View(a.grow(&a.scratchF32, 8*count))[: 2*count : 2*count]
	tmp := acc[count:]
	acc = acc[:count]
	values := func(j int) ([]float32, error) {
		if j == me {
			return own, nil
		}
		s := mod(me-j, k)
		b := in[(s-1)*size+headerSize : s*size]
		if !x.fp16 {
			return f32View(b)[:count], nil
		}
		x.buf = tmp
		err := x.decode(b, whole, true)
		x.buf = own
		return tmp, err
	}
	for j := range k {
		v, err := values(j)
		if err != nil {
			return fmt.Errorf("from the one-shot's member %d: %w", j, err)
		}
		if j == 0 {
			copy(acc, v)
		} else {
			reduceInto(x.op, acc, v)
		}
	}
	if x.op == Avg {
		divideBy(acc, float32(x.n))
	}
	copy(own, acc)
	return nil
}

// rdOneShotApplicable reports whether the topology suits algoRDOneShot: several hosts,
// the same power of two (> 1) of members on each.
func rdOneShotApplicable(topo Topology) bool {
	L := topo.LocalSize()
	return topo.NumHosts() > 1 && L > 1 && L&(L-1) == 0
}

// rdOneShot runs an algoRDOneShot AllReduce: recursive doubling among the L members of
// each host (log2 L steps over shared memory, where a step is cheap), which leaves every
// member of a host with the host's reduction, then a one-shot exchange among the members
// with the same local rank on every host (one step across hosts instead of log2 H; each
// member sends H−1 messages). Every rank then reduces the same host contributions in host
// order: all end bit-identical (within a host the rd steps already are, see rdouble.go).
// The header lap (algo.go) runs beside it as for rd. Feedback is refused as by rd (a
// position is rounded at every step); the tuner never picks it with Feedback.
func (a *algoState) rdOneShot(w *Work) error {
	g := a.g
	topo := a.topo
	if !rdOneShotApplicable(topo) {
		return fmt.Errorf("collective: rd+oneshot AllReduce needs the same power of two (>1) of members on every host (>1): %v", topo)
	}
	if w.residual != nil {
		return errors.New("collective: rd+oneshot AllReduce does not support Feedback")
	}
	x := rdCall{a: a, w: w, buf: w.buf, op: w.h.reduce, fp16: w.h.compression != NoCompression, n: len(g.ranks)}
	w.h.encode(&a.msgHdr)
	whole := layout{count: len(x.buf), nseg: 1, chunk: g.chunk, sLo: 0, sHi: 1, wire: w.h.compression}
	h, li := topo.HostOf[g.rank], topo.LocalRank[g.rank]
	for d := 1; d < topo.LocalSize(); d *= 2 {
		if err := x.exchange(topo.Hosts[h][li^d], whole, whole, true, false); err != nil {
			return err
		}
	}
	k := topo.NumHosts()
	if len(a.osMembers) != k {
		a.osMembers = make([]int, k)
		for j := range k {
			a.osMembers[j] = topo.Hosts[j][li]
		}
	}
	members := a.osMembers
	if !a.osCrossOpened {
		// Ascending group rank on every member (a transport whose Link waits for the
		// peer cannot deadlock), before any message.
		for p := range len(g.ranks) {
			if p != g.rank && topo.LocalRank[p] == li {
				if _, err := a.link(w.ctx, p); err != nil {
					return err
				}
			}
		}
		a.osCrossOpened = true
	}
	msg, second := x.payload(whole, x.fp16, false)
	if x.fp16 {
		if err := x.decode(msg[headerSize:], whole, true); err != nil {
			return err
		}
	}
	size := headerSize + whole.wireBytes(x.fp16)
	wrote := a.wrote
	go func() {
		var err error
		for s := 1; s < k && err == nil; s++ {
			var l transport.Link
			if l, err = a.link(w.ctx, members[(h+s)%k]); err == nil {
				err = x.writeLink(l, msg, second)
			}
		}
		wrote <- err
	}()
	runtime.Gosched() // the writer first (see oneShot)
	in := a.grow(&a.scratchIn, (k-1)*size)
	var rerr error
	for s := 1; s < k && rerr == nil; s++ {
		peer := members[mod(h-s, k)]
		var l transport.Link
		if l, rerr = a.link(w.ctx, peer); rerr == nil {
			rerr = a.oneShotRead(&x, l, peer, in[(s-1)*size:s*size])
		}
	}
	werr := <-wrote
	if rerr != nil {
		return rerr
	}
	if werr != nil {
		return werr
	}
	return a.oneShotReduce(&x, whole, size, k, h)
}
