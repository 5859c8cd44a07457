package collective

import (
	"fmt"
	"runtime"
)

// Recursive doubling (algoRD) and recursive halving/doubling (algoRHD, Rabenseifner) for
// AllReduce, any group size.
//
// Let p be the largest power of two ≤ n and rem = n − p. The standard fold (MPICH) makes p
// participants out of n ranks: among ranks 0 .. 2·rem−1, each even rank r sends its whole
// buffer to r+1, which reduces it into its own, and then waits; the odd one takes part as
// participant r/2. Ranks from 2·rem on take part as participant r − rem. At the end each odd
// rank of the fold sends the result back to r−1. That costs two steps more than a power of
// two (one when rem = 0: none).
//
// rd (latency-optimal, for small buffers): for d = 1, 2, .., p/2, participant q exchanges its
// whole buffer with q XOR d and reduces the two: log2(p) steps of the whole buffer. After
// step d a participant holds the reduction over its block of 2d participants, exactly the
// one its partner holds, computed as a ⊕ b on one side and b ⊕ a on the other: float32
// addition (and max, min) being commutative, every rank ends bit-identical.
//
// rhd (Rabenseifner; bandwidth-optimal like the ring, 2·log2(p) steps): the buffer is cut
// into p segments (segment j = [count·j/p, count·(j+1)/p), as the ring cuts n). The
// reduce-scatter halves a window of segments, starting with all p: for d = p/2, p/4, .., 1
// participant q exchanges with q XOR d, keeps the lower half of its window if q's bit d is 0
// (the upper half otherwise), sends the other half and reduces the partner's copy of the half
// it keeps. After log2(p) steps q's window is segment q, fully reduced. The all-gather runs
// the same steps backwards (d = 1, 2, .., p/2): q sends its window, receives the partner's
// (the adjacent aligned block of the same size) and the window doubles. Each rank sends
// 2·(p−1)/p of the buffer, plus the fold.
//
// Every message is preceded by the op's header, which the receiver checks against its own
// call before reading the payload, so mismatched calls never exchange framed data.
//
// FP16. Both algorithms compress every message. rd: before each step a rank rounds its own
// buffer to what it sends (encode, then decode into place), so both partners add the same two
// rounded operands and stay bit-identical; a value is quantized at most log2(p) + 1 times
// (fold included), fewer than the ring's n, so the ring's bound (see AllReduce) holds with
// that count in place of n. The fold's result goes back to the even ranks as float32
// (exact). rd refuses Feedback: a rank re-encodes each position at every step, and one
// residual per position cannot carry that; the tuner never picks rd for a call with Feedback.
// rhd: a rank encodes each position at most once with its own rounding (a reduce-scatter
// half it gives away, or the owned segment once reduced, which it rounds in place before
// the all-gather), so Feedback works as on the ring; all-gather messages re-encode values
// that are already decoded fp16 of the same chunk, which is exact (TestFP16ReencodeExact),
// so every rank ends bit-identical, and the fold's result travels back in fp16 exactly too.
// BF16 runs the same way (x.fp16 then means "compressed"; layout.wire picks the codec):
// re-encoding a decoded bfloat16 is trivially exact.
// Chunks (one scale each) are cut per segment, Options.ChunkBytes at most, so that the same
// values are always encoded in the same chunk.

// pof2Below returns the largest power of two ≤ n (n ≥ 1).
func pof2Below(n int) int {
	p := 1
	for p*2 <= n {
		p *= 2
	}
	return p
}

// layout says how a run of segments [sLo, sHi) of a buffer cut into nseg segments is framed:
// each segment is split into pieces of at most chunk elements, each an fp16 chunk.
type layout struct {
	count, nseg, chunk int
	sLo, sHi           int
	wire               Compression // the chunks' encoding when compressed (FP16 or BF16)
}

func (l layout) segBounds(j int) (lo, hi int) {
	return l.count * j / l.nseg, l.count * (j + 1) / l.nseg
}

// elems returns the element range the layout covers (contiguous).
func (l layout) elems() (lo, hi int) {
	lo, _ = l.segBounds(l.sLo)
	_, hi = l.segBounds(l.sHi - 1)
	return
}

// pieces calls f for every fp16 chunk of the layout, in order.
func (l layout) pieces(f func(lo, hi int)) {
	for j := l.sLo; j < l.sHi; j++ {
		a, b := l.segBounds(j)
		for lo := a; lo < b; lo += l.chunk {
			f(lo, min(lo+l.chunk, b))
		}
	}
}

// wireBytes is the payload size of the layout.
func (l layout) wireBytes(fp16 bool) int {
	lo, hi := l.elems()
	if !fp16 {
		return 4 * (hi - lo)
	}
	n := 0
	l.pieces(func(lo, hi int) { n += l.wire.wireBytes(hi - lo) })
	return n
}

// rdCall is one recursive-doubling op in flight.
type rdCall struct {
	a    *algoState
	w    *Work
	buf  []float32
	op   Op
	fp16 bool
	res  []float32 // Feedback residual, or nil
	n, p int
}

// recursive runs an algoRD or algoRHD AllReduce.
func (a *algoState) recursive(w *Work) error {
	g := a.g
	x := rdCall{a: a, w: w, buf: w.buf, op: w.h.reduce, fp16: w.h.compression != NoCompression, res: w.residual, n: len(g.ranks)}
	x.p = pof2Below(x.n)
	w.h.encode(&a.msgHdr)
	rem := x.n - x.p
	r := g.rank
	count := len(x.buf)
	whole := layout{count: count, nseg: 1, chunk: g.chunk, sLo: 0, sHi: 1, wire: w.h.compression}
	if w.h.algo == algoRHD {
		whole = layout{count: count, nseg: x.p, chunk: g.chunk, sLo: 0, sHi: x.p, wire: w.h.compression}
	}
	// The fold.
	var q int
	switch {
	case r < 2*rem && r%2 == 0:
		if err := x.send(r+1, whole, x.res != nil); err != nil {
			return err
		}
		// The result: fp32 for rd (its values are sums, not decoded fp16), fp16 for rhd
		// (decoded values of the same chunks: exact).
		back := x.fp16 && w.h.algo == algoRHD
		return x.recv(r+1, whole, back, false)
	case r < 2*rem:
		if err := x.recv(r-1, whole, x.fp16, true); err != nil {
			return err
		}
		q = r / 2
	default:
		q = r - rem
	}
	var err error
	if w.h.algo == algoRD {
		err = x.doubling(q, rem, whole)
	} else {
		err = x.halvingDoubling(q, rem)
	}
	if err != nil {
		return err
	}
	if r < 2*rem {
		return x.send(r-1, whole, false, w.h.algo == algoRD)
	}
	return nil
}

// rank returns the group rank of participant q.
func (x *rdCall) rank(q, rem int) int {
	if q < rem {
		return 2*q + 1
	}
	return q + rem
}

func (x *rdCall) doubling(q, rem int, whole layout) error {
	for d := 1; d < x.p; d *= 2 {
		peer := x.rank(q^d, rem)
		if err := x.exchange(peer, whole, whole, true, false); err != nil {
			return err
		}
	}
	if x.op == Avg {
		divideBy(x.buf, float32(x.n))
	}
	return nil
}

func (x *rdCall) halvingDoubling(q, rem int) error {
	count := len(x.buf)
	lay := func(lo, hi int) layout {
		return layout{count: count, nseg: x.p, chunk: x.a.g.chunk, sLo: lo, sHi: hi, wire: x.w.h.compression}
	}
	lo, hi := 0, x.p
	for d := x.p / 2; d >= 1; d /= 2 {
		mid := (lo + hi) / 2
		keep, give := lay(lo, mid), lay(mid, hi)
		if q&d != 0 {
			keep, give = give, keep
		}
		if err := x.exchange(x.rank(q^d, rem), give, keep, true, x.res != nil); err != nil {
			return err
		}
		lo, hi = keep.sLo, keep.sHi
	}
	own := lay(q, q+1)
	if x.op == Avg {
		a, b := own.elems()
		divideBy(x.buf[a:b], float32(x.n))
	}
	if x.fp16 {
		x.round(own)
	}
	for d := 1; d < x.p; d *= 2 {
		size := hi - lo
		theirs := lay(lo+size, hi+size)
		if q&d != 0 {
			theirs = lay(lo-size, lo)
		}
		if err := x.exchange(x.rank(q^d, rem), lay(lo, hi), theirs, false, false); err != nil {
			return err
		}
		lo, hi = min(lo, theirs.sLo), max(hi, theirs.sHi)
	}
	return nil
}

// round replaces the values of l by their fp16 encoding's (with this op's feedback).
func (x *rdCall) round(l layout) {
	b := x.a.grow(&x.a.scratchOut, l.wireBytes(true))
	x.encode(b, l, x.res != nil)
	x.decode(b, l, true)
}

// encode writes the values of l as fp16 chunks into b.
func (x *rdCall) encode(b []byte, l layout, feedback bool) {
	off := 0
	l.pieces(func(lo, hi int) {
		m := l.wire.wireBytes(hi - lo)
		if feedback {
			l.wire.encode(b[off:off+m], x.buf[lo:hi], x.res[lo:hi])
		} else {
			l.wire.encode(b[off:off+m], x.buf[lo:hi], nil)
		}
		off += m
	})
}

// decode reduces (or copies) the fp16 chunks of l in b into the buffer.
func (x *rdCall) decode(b []byte, l layout, copyOnly bool) error {
	off := 0
	var err error
	l.pieces(func(lo, hi int) {
		m := l.wire.wireBytes(hi - lo)
		if err == nil {
			err = l.wire.decode(x.op, copyOnly, x.buf[lo:hi], b[off:off+m])
		}
		off += m
	})
	return err
}

// payload prepares the message for l: header and data in one slice when they fit the
// scratch (fp16 always; fp32 up to coalesceMax), else the header alone and the data apart.
func (x *rdCall) payload(l layout, fp16, feedback bool) (first, second []byte) {
	a := x.a
	lo, hi := l.elems()
	if fp16 {
		m := l.wireBytes(true)
		b := a.grow(&a.scratchOut, headerSize+m)
		copy(b, a.msgHdr[:])
		x.encode(b[headerSize:], l, feedback)
		return b, nil
	}
	data := f32Bytes(x.buf[lo:hi])
	if len(data) <= coalesceMax {
		b := a.grow(&a.scratchOut, headerSize+len(data))
		copy(b, a.msgHdr[:])
		copy(b[headerSize:], data)
		return b, nil
	}
	return a.msgHdr[:], data
}

func (x *rdCall) write(peer int, first, second []byte) error {
	l, err := x.a.link(x.w.ctx, peer)
	if err != nil {
		return err
	}
	return x.writeLink(l, first, second)
}

// send sends the values of l to group rank peer; fp32 forces float32 on the wire.
func (x *rdCall) send(peer int, l layout, feedback bool, fp32 ...bool) error {
	fp16 := x.fp16 && !(len(fp32) > 0 && fp32[0])
	first, second := x.payload(l, fp16, feedback)
	return x.write(peer, first, second)
}

// readMsg reads one message for l from peer into the receive scratch and checks its header.
func (x *rdCall) readMsg(peer int, l layout, fp16 bool) ([]byte, error) {
	a := x.a
	g := a.g
	link, err := a.link(x.w.ctx, peer)
	if err != nil {
		return nil, err
	}
	b := a.grow(&a.scratchIn, headerSize+l.wireBytes(fp16))
	if err := readFull(link, b[:headerSize]); err != nil {
		return nil, err
	}
	var h header
	if err := h.decode(b[:headerSize]); err != nil {
		return nil, fmt.Errorf("from rank %d: %w", g.ranks[peer], err)
	}
	if err := mismatch(g.worldRank, &x.w.h, g.ranks[peer], &h); err != nil {
		return nil, err
	}
	if err := readFull(link, b[headerSize:]); err != nil {
		return nil, err
	}
	g.run.progress.Add(1)
	return b[headerSize:], nil
}

// recv receives the values of l from peer, reducing them into the buffer or (copy) not.
func (x *rdCall) recv(peer int, l layout, fp16, reduce bool) error {
	b, err := x.readMsg(peer, l, fp16)
	if err != nil {
		return err
	}
	return x.apply(b, l, fp16, !reduce)
}

func (x *rdCall) apply(b []byte, l layout, fp16, copyOnly bool) error {
	if fp16 {
		return x.decode(b, l, copyOnly)
	}
	lo, hi := l.elems()
	if copyOnly {
		copy(x.buf[lo:hi], f32View(b))
	} else {
		reduceInto(x.op, x.buf[lo:hi], f32View(b))
	}
	return nil
}

// exchange sends out to peer while receiving in from it, then reduces (or copies) what
// came into the buffer. Both messages are complete before the buffer changes: out and in
// may overlap (rd exchanges the whole buffer both ways).
func (x *rdCall) exchange(peer int, out, in layout, reduce, feedback bool) error {
	first, second := x.payload(out, x.fp16, feedback)
	if x.fp16 && reduce && out == in {
		// rd: round this rank's own values to what it sent, so both partners reduce the
		// same two operands.
		if err := x.decode(first[headerSize:], out, true); err != nil {
			return err
		}
	}
	wrote := x.a.wrote
	go func() { wrote <- x.write(peer, first, second) }()
	// Let the writer go first (with one thread per rank, GOMAXPROCS=1, it would otherwise
	// wait until the read below blocks): the partner may be waiting for this message.
	runtime.Gosched()
	b, rerr := x.readMsg(peer, in, x.fp16)
	werr := <-wrote
	if rerr != nil {
		return rerr
	}
	if werr != nil {
		return werr
	}
	if reduce && out == in && in.sLo == 0 && in.nseg == 1 && (x.op == Max || x.op == Min) && peer < x.a.g.rank {
		return x.applyPeerFirst(b, in)
	}
	return x.apply(b, in, x.fp16, !reduce)
}

// applyPeerFirst reduces the peer's values b with this rank's as max(peer, mine) (min),
// where apply computes max(mine, peer). Max and Min are commutative except in which of two
// equal-comparing values they keep (−0 and +0, NaNs of different payloads), so both
// partners of an rd step put the lower rank's operand first to end bit-identical.
func (x *rdCall) applyPeerFirst(b []byte, l layout) error {
	lo, hi := l.elems()
	mine := x.buf[lo:hi]
	tmp := f32View(x.a.grow(&x.a.scratchF32, 4*(hi-lo)))[:hi-lo]
	if x.fp16 {
		// decode writes at the layout's offsets into x.buf: point it at tmp meanwhile (rd's
		// layout is the whole buffer, lo = 0, so the offsets match).
		orig := x.buf
		x.buf = tmp
		err := x.decode(b, l, true)
		x.buf = orig
		if err != nil {
			return err
		}
	} else {
		copy(tmp, f32View(b))
	}
	reduceInto(x.op, tmp, mine)
	copy(mine, tmp)
	return nil
}

// grow returns (*s)[:n], reallocating when too short.
func (a *algoState) grow(s *[]byte, n int) []byte {
	if cap(*s) < n {
		*s = f32Bytes(make([]float32, (n+3)/4))
	}
	return (*s)[:n]
}
