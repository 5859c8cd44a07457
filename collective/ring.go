package collective

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync/atomic"
	"time"
)

// ringRun is one collective in flight on a group's ring. Ops run one at a time, so a group
// owns a single ringRun and reuses it: steady-state ops allocate nothing here.
//
// Two goroutines drive it: the group's worker receives from the left neighbour (reducing or
// copying into the buffer) and the group's sender sends to the right one. They must be
// separate: with bounded buffering, a rank that wrote a whole chunk before reading would wait
// for its right neighbour, which waits for its own right neighbour, and so on around the ring.
// The receiving side never waits for the sending side to make room on the wire, so the ring
// always drains; the sending side waits only for data the receiving side has finished
// (recvDone). One wait goes the other way, and never blocks a correct ring: an all-gather
// overwrites chunks this rank sent during the reduce-scatter, and the ring's data flow orders
// that write after the send's Write returned, but only through the network, which neither
// the memory model nor the race detector can see (and a faulty peer could break). So the
// receiving side checks sendDone before it overwrites a chunk (waitSent).
type ringRun struct {
	g *Group
	w *Work

	n, r   int // group size and this member's group rank
	count  int // elements
	dt     dtype
	es     int       // bytes per element
	raw    []byte    // the buffer's memory, any dtype
	buf    []float32 // the same memory when dt is fp32 (compression works on it), else nil
	chunkN int       // elements per chunk (the header's chunk)
	op     Op
	fp16   bool        // values travel compressed (FP16 or BF16: wire says which)
	wire   Compression // the op's compression
	res    []float32   // error feedback residual (Feedback), or nil

	// Byte ops (BroadcastBytes, AllGatherBytes): messages framed by their length.
	bytesOp bool
	data    []byte   // BroadcastBytes: the root's message (received into on the others)
	parts   [][]byte // AllGatherBytes: every member's message, by group rank
	lenOut  [8]byte  // the length frame being sent
	lenIn   [8]byte  // the length frame being received

	// AllReduce, ReduceScatter, AllGather: the buffer is cut into n segments, segment j being
	// [count·j/n, count·(j+1)/n) (sizes differ by at most one, any count works, some may be
	// empty), and each segment into k chunks the same way, so that chunk c of every segment
	// has (nearly) the same size and the pipeline stays balanced. Broadcast cuts the whole
	// buffer into k chunks.
	k                int
	rsSteps, agSteps int

	hdrOut, hdrIn [headerSize]byte
	// hdrPending: the header has not been written yet. A small first chunk travels in the
	// same Write as the header (one packet and one wake-up instead of two per hop, which is
	// what latency-bound small ops pay for); coalesce holds the two together.
	hdrPending bool
	coalesce   [headerSize + coalesceMax]byte

	recvDone     atomic.Int64 // chunks (or barrier rounds) the receiving side has completed
	recvFinished atomic.Bool
	headerIn     atomic.Bool   // the left neighbour's header for this op arrived
	blame        atomic.Int64  // peer ops: 1 + the world rank this member waits for, 0 for the ring's rule (peerops.go)
	sendDone     atomic.Int64  // ring chunk indices the sending side has finished (sendRing)
	progress     atomic.Int64  // chunks moved in either direction, for the watchdog
	wake         chan struct{} // the receiving side completed a chunk
	sentWake     chan struct{} // the sending side finished a chunk
}

func (x *ringRun) reset(w *Work) {
	g := x.g
	x.w = w
	x.n, x.r = len(g.ranks), g.rank
	x.count = int(w.h.count)
	x.dt, x.es = w.h.dtype, w.h.dtype.size()
	x.raw = w.bytes()
	x.buf = w.buf
	x.chunkN = max(1, int(w.h.chunk))
	x.op = w.h.reduce
	x.wire = w.h.compression
	x.fp16 = x.wire != NoCompression
	x.res = w.residual
	x.bytesOp = w.h.dtype == dtBytes
	x.data, x.parts = w.data, w.parts
	x.recvDone.Store(0)
	x.sendDone.Store(0)
	x.recvFinished.Store(false)
	x.headerIn.Store(false)
	for _, c := range []chan struct{}{x.wake, x.sentWake} {
		select {
		case <-c:
		default:
		}
	}
	x.rsSteps, x.agSteps = 0, 0
	switch w.h.kind {
	case kindAllReduce:
		x.rsSteps, x.agSteps = x.n-1, x.n-1
	case kindReduceScatter:
		x.rsSteps = x.n - 1
	case kindAllGather:
		x.agSteps = x.n - 1
	}
	switch w.h.kind {
	case kindBroadcastBytes, kindAllGatherBytes:
		x.k = 0 // known once the length frame is
	case kindBroadcast, kindReduce:
		x.k = ceilDiv(x.count, x.chunkN)
	default:
		x.k = ceilDiv(ceilDiv(x.count, x.n), x.chunkN)
	}
	w.h.encode(&x.hdrOut)
	x.hdrPending = true
	if x.fp16 && x.agSteps > 0 {
		// The all-gather's fp16 store (see gatherSlot), grown to the largest op seen and
		// reused: steady-state ops allocate nothing.
		if need := 2*x.count + 4*x.n*x.k; len(g.gather) < need {
			g.gather = f32Bytes(make([]float32, (need+3)/4))
		}
	}
}

// flushHeader writes the op header if it has not gone out with data yet. The sending side
// calls it before it waits for anything, so the header is never held up.
func (x *ringRun) flushHeader() error {
	if !x.hdrPending {
		return nil
	}
	x.hdrPending = false
	_, err := x.g.right.Write(x.hdrOut[:])
	return err
}

// write sends p to the right neighbour, preceded by the header if it is still pending.
func (x *ringRun) write(p []byte) error {
	if x.hdrPending && len(p) <= coalesceMax {
		x.hdrPending = false
		n := copy(x.coalesce[headerSize:], p)
		copy(x.coalesce[:], x.hdrOut[:])
		_, err := x.g.right.Write(x.coalesce[:headerSize+n])
		return err
	}
	if err := x.flushHeader(); err != nil {
		return err
	}
	_, err := x.g.right.Write(p)
	return err
}

// coalesceMax is the largest first chunk sent together with the op header.
const coalesceMax = 16 << 10

func ceilDiv(a, b int) int { return (a + b - 1) / b }

func mod(a, n int) int {
	a %= n
	if a < 0 {
		a += n
	}
	return a
}

// elems returns the bytes of elements [lo, hi) of the buffer.
func (x *ringRun) elems(lo, hi int) []byte { return x.raw[lo*x.es : hi*x.es] }

// chunk returns the element range of chunk c of segment seg.
func (x *ringRun) chunk(seg, c int) (lo, hi int) {
	a, b := x.count*seg/x.n, x.count*(seg+1)/x.n
	l := b - a
	return a + l*c/x.k, a + l*(c+1)/x.k
}

// Ring schedule of reduce-scatter and all-gather, for member r of n (all indices mod n).
//
// Reduce-scatter, steps s = 0 .. n-2:
//
//	send    segment r-1-s (at s = 0 this rank's own data, later what it reduced at step s-1)
//	receive segment r-2-s from the left neighbour, and reduce it into the local copy.
//
// The left neighbour r-1 sends its segment (r-1)-1-s = r-2-s at step s, which is what r
// receives. Segment r-2-s carries the contributions of ranks r-1-s .. r-1 (s+1 of them, one
// more per hop); r adds its own, making s+2. At the last step, s = n-2, r receives segment
// r-n = r with n-1 contributions and adds the last one: rank r ends owning segment r fully
// reduced. (That is where ReduceScatter leaves block r, and where Avg divides by n.)
//
// All-gather, steps s = 0 .. n-2:
//
//	send    segment r-s (at s = 0 the segment this rank owns, later what it received at s-1)
//	receive segment r-1-s from the left neighbour, and overwrite the local copy.
//
// The left neighbour sends (r-1)-s = r-1-s, which is what r receives. After n-1 steps r has
// received segments r-1 .. r-n+1, every segment but its own.
//
// Each rank thus sends (n-1) segments in each phase, 2(n-1)/n of the buffer: the bandwidth
// optimum for an all-reduce.
//
// Pipelining. Steps are cut into k chunks and both sides walk the same order: index
// i = s·k + c over all steps of both phases. The data sent at step s > 0, chunk c, is what
// the receiving side completed at step s-1, chunk c, that is index i-k. So the sender waits
// only until recvDone > i-k, which lets it send chunk c of step s while the receiver takes
// chunk c+1 of step s-1 off the wire and reduces it. At the phase boundary this still
// holds: all-gather step 0 sends segment r, finished at the last reduce-scatter step.

func (x *ringRun) sendSeg(s int) int {
	if s < x.rsSteps {
		return mod(x.r-1-s, x.n)
	}
	return mod(x.r-(s-x.rsSteps), x.n)
}

func (x *ringRun) recvSeg(s int) int {
	if s < x.rsSteps {
		return mod(x.r-2-s, x.n)
	}
	return mod(x.r-1-(s-x.rsSteps), x.n)
}

// waitRecv blocks until the receiving side has completed need chunks or the group fails.
func (x *ringRun) waitRecv(need int64) error { return x.waitFor(&x.recvDone, x.wake, need) }

// waitSent blocks until the sending side has finished need chunk indices or the group fails.
func (x *ringRun) waitSent(need int64) error { return x.waitFor(&x.sendDone, x.sentWake, need) }

// waitFor blocks until *count reaches need, rechecking whenever wake fires, or the group fails.
func (x *ringRun) waitFor(count *atomic.Int64, wake <-chan struct{}, need int64) error {
	for count.Load() < need {
		select {
		case <-wake:
		case <-x.g.failed:
			return x.g.failure()
		}
	}
	return nil
}

func (x *ringRun) recvDoneOne() {
	x.recvDone.Add(1)
	x.progress.Add(1)
	signal(x.wake)
}

// send is the sending side of the op in flight (on the group's sender goroutine).
func (x *ringRun) send() error {
	var err error
	switch x.w.h.kind {
	case kindBroadcast, kindBroadcastBytes, kindReduce:
		err = x.sendChain()
	case kindAllGatherBytes:
		err = x.sendGatherBytes()
	case kindBarrier:
		err = x.sendBarrier()
	default:
		err = x.sendRing()
	}
	if err != nil {
		return err
	}
	return x.flushHeader() // ops that sent no data at all
}

func (x *ringRun) sendRing() error {
	i := 0
	for s := 0; s < x.rsSteps+x.agSteps; s++ {
		seg := x.sendSeg(s)
		for c := 0; c < x.k; {
			if s > 0 {
				if err := x.flushHeader(); err != nil {
					return err
				}
				if err := x.waitRecv(int64(i - x.k + 1)); err != nil {
					return err
				}
			}
			e := x.sendSpan(s, seg, c) // chunks c .. e-1 go out now
			lo, _ := x.chunk(seg, c)
			if _, hi := x.chunk(seg, e-1); hi > lo {
				if err := x.sendValues(s, seg, c, lo, hi); err != nil {
					return err
				}
			}
			x.progress.Add(int64(e - c))
			x.sendDone.Add(int64(e - c))
			signal(x.sentWake)
			i += e - c
			c = e
		}
	}
	return nil
}

// sendSpan returns the end of the run of chunks c, c+1, ... of step s that go out in one
// Write: compressed chunks one by one (each is encoded on its own); uncompressed ones, which
// lie back to back in the buffer, as many as are ready (at step 0 all, later those the
// receiving side has completed in step s-1), up to sendSpanMax bytes. Fewer, larger writes
// mean fewer system calls and fewer of the scheduler hand-offs that a long write costs a
// rank running on one P.
func (x *ringRun) sendSpan(s, seg, c int) int {
	if x.fp16 {
		return c + 1
	}
	ready := x.k
	if s > 0 {
		ready = min(x.k, int(x.recvDone.Load())-(s-1)*x.k)
	}
	lo, hi := x.chunk(seg, c)
	e := c + 1
	for ; e < ready; e++ {
		_, h := x.chunk(seg, e)
		if (h-lo)*x.es > sendSpanMax && hi > lo {
			break
		}
		hi = h
	}
	return e
}

// sendSpanMax bounds one Write of the ring's sending side, so that the chunks it finishes
// (sendDone, which the receiving side's all-gather waits for) are not held back for long.
const sendSpanMax = 4 << 20

// gatherSlot is where the fp16 wire bytes of chunk c of segment seg live during an
// all-gather: the owner encodes its segment there once, the other ranks receive into it, and
// the sending side forwards from it, so no chunk is encoded twice. Slots are laid out in
// (segment, chunk) order, 4+2·len bytes each: chunk (seg, c) starting at element lo sits at
// byte 2·lo + 4·(seg·k + c).
func (x *ringRun) gatherSlot(seg, c int) []byte {
	lo, hi := x.chunk(seg, c)
	off := 2*lo + x.wire.prefixBytes()*(seg*x.k+c)
	return x.g.gather[off : off+x.wire.wireBytes(hi-lo)]
}

func (x *ringRun) sendValues(s, seg, c, lo, hi int) error {
	if !x.fp16 {
		return x.write(x.elems(lo, hi)) // the buffer's own memory, any dtype
	}
	v := x.buf[lo:hi]
	if s == x.rsSteps && x.rsSteps > 0 {
		// This rank's fully reduced chunk starts the all-gather: encode it once into its
		// slot (the other ranks receive into theirs and forward from there), send it, and
		// keep exactly what every other rank will decode. (Done here rather than on the
		// receiving side, which has the reduction to do, to balance the two goroutines.)
		b := x.gatherSlot(seg, c)
		x.encode(b, seg, c, v)
		if err := x.write(b); err != nil {
			return err
		}
		return x.wire.decode(x.op, true, v, b)
	}
	if s > x.rsSteps {
		return x.write(x.gatherSlot(seg, c))
	}
	// A reduce-scatter hop: this rank's own values at s = 0, its partial sums later.
	// v is scratch from here on (this rank does not read these positions again before
	// the all-gather overwrites them), so feedback may add its residual in place.
	b := x.g.sendScratch[:x.wire.wireBytes(len(v))]
	x.encode(b, seg, c, v)
	return x.write(b)
}

// encode writes chunk c of segment seg, whose values are v, as a compressed wire chunk, with
// error feedback if the op has a residual (see Feedback).
func (x *ringRun) encode(dst []byte, seg, c int, v []float32) {
	if x.res == nil {
		x.wire.encode(dst, v, nil)
		return
	}
	lo, hi := x.chunk(seg, c)
	x.wire.encode(dst, v, x.res[lo:hi])
}

// recv is the receiving side of the op in flight (on the group's worker goroutine).
func (x *ringRun) recv() error {
	if err := x.recvHeader(); err != nil {
		return err
	}
	switch x.w.h.kind {
	case kindBroadcast, kindBroadcastBytes, kindReduce:
		return x.recvChain()
	case kindAllGatherBytes:
		return x.recvGatherBytes()
	case kindBarrier:
		return x.recvBarrier()
	}
	for s := 0; s < x.rsSteps+x.agSteps; s++ {
		seg := x.recvSeg(s)
		rs := s < x.rsSteps
		final := rs && s == x.rsSteps-1
		if !x.fp16 {
			if err := x.recvStream(s, seg, rs, final); err != nil {
				return err
			}
			continue
		}
		for c := 0; c < x.k; c++ {
			if s >= x.rsSteps && x.rsSteps > 0 {
				// All-gather step s overwrites segment seg, which the sending side sent at
				// reduce-scatter step s-rsSteps (sendSeg); see the type's comment.
				if err := x.waitSent(int64((s-x.rsSteps)*x.k + c + 1)); err != nil {
					return err
				}
			}
			if err := x.recvChunk(seg, c, rs, final); err != nil {
				return err
			}
			x.recvDoneOne()
		}
	}
	return nil
}

// recvStream receives step s (segment seg) of an uncompressed op as its bytes arrive instead
// of chunk by chunk: each Read asks for the rest of the segment, so it takes whatever the
// socket holds in one call (in the all-gather straight into place; in the reduce-scatter into
// the scratch, as much as it holds), and the reduce-scatter adds each read's elements into
// the buffer at once, while they are still in cache. The segment's chunks are contiguous in
// the buffer, so only the bookkeeping stays per chunk: a chunk counts as received (recvDone,
// which the sending side waits for) once its last byte is in place, and the all-gather
// overwrites only chunks the sending side has finished with (waitSent). Compressed ops keep
// recvChunk: their wire chunks carry a scale each and are decoded whole.
func (x *ringRun) recvStream(s, seg int, rs, final bool) error {
	if x.k == 0 {
		return nil // an empty buffer
	}
	g := x.g
	lo, _ := x.chunk(seg, 0)
	_, hi := x.chunk(seg, x.k-1)
	pos, end := lo*x.es, hi*x.es // bytes of x.raw in place (received, and reduced in rs)
	c := 0                       // the next chunk to complete
	complete := func() {
		for ; c < x.k; c++ {
			lo, hi := x.chunk(seg, c)
			if hi*x.es > pos {
				return
			}
			if final && x.op == Avg && hi > lo {
				divideBytes(x.dt, x.elems(lo, hi), x.n)
			}
			x.recvDoneOne()
		}
	}
	complete() // empty chunks
	carry := 0 // rs: bytes of a partial element at the head of the scratch
	for pos < end {
		var n int
		var err error
		if rs {
			sc := g.recvScratch
			n, err = g.left.Read(sc[carry : carry+min(len(sc)-carry, end-pos-carry)])
			have := carry + n
			m := have - have%x.es
			reduceBytes(x.dt, x.op, x.raw[pos:pos+m], sc[:m])
			carry = copy(sc, sc[m:have])
			pos += m
		} else {
			lim := end
			if x.rsSteps > 0 {
				// All-gather step s overwrites segment seg, which the sending side sent at
				// reduce-scatter step s-rsSteps (sendSeg); see the type's comment.
				base := int64((s - x.rsSteps) * x.k)
				if x.sendDone.Load()-base <= int64(c) {
					if err := x.waitSent(base + int64(c) + 1); err != nil {
						return err
					}
				}
				sent := min(int(x.sendDone.Load()-base), x.k)
				_, h := x.chunk(seg, sent-1)
				lim = h * x.es
			}
			n, err = g.left.Read(x.raw[pos:lim])
			pos += n
		}
		complete()
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return err
		}
	}
	return nil
}

// recvChunk receives chunk c of segment seg from the left neighbour: in the reduce-scatter
// (rs) it reduces it into the buffer, dividing for Avg at the last step (final), in the
// all-gather it overwrites the buffer's chunk.
func (x *ringRun) recvChunk(seg, c int, rs, final bool) error {
	lo, hi := x.chunk(seg, c)
	if hi <= lo {
		return nil
	}
	g := x.g
	var err error
	switch {
	case x.fp16 && !rs:
		// All-gather: keep the wire bytes, the sending side forwards them as they are.
		b := x.gatherSlot(seg, c)
		if err = readFull(g.left, b); err == nil {
			err = x.wire.decode(x.op, true, x.buf[lo:hi], b)
		}
	case x.fp16:
		b := g.recvScratch[:x.wire.wireBytes(hi-lo)]
		if err = readFull(g.left, b); err == nil {
			err = x.wire.decode(x.op, false, x.buf[lo:hi], b)
		}
	case rs:
		b := g.recvScratch[:x.es*(hi-lo)]
		if err = readFull(g.left, b); err == nil {
			reduceBytes(x.dt, x.op, x.elems(lo, hi), b)
		}
	default:
		err = readFull(g.left, x.elems(lo, hi)) // all-gather: straight into place
	}
	if err == nil && final && x.op == Avg {
		divideBytes(x.dt, x.elems(lo, hi), x.n)
	}
	return err
}

// recvHeader reads the left neighbour's header and checks it against this rank's call.
func (x *ringRun) recvHeader() error {
	g := x.g
	if err := readFull(g.left, x.hdrIn[:]); err != nil {
		return err
	}
	left := g.ranks[mod(x.r-1, x.n)]
	var h header
	if err := h.decode(x.hdrIn[:]); err != nil {
		return fmt.Errorf("from rank %d: %w", left, err)
	}
	if err := mismatch(g.worldRank, &x.w.h, left, &h); err != nil {
		return err
	}
	x.headerIn.Store(true)
	return nil
}

// Broadcast: a chain from the root around the ring. Member r sits at position
// p = r-root (mod n); position 0 (the root) only sends, position n-1 only receives, the
// others forward each chunk as soon as it arrived. The chunks overlap along the chain, so a
// large broadcast takes about (k + n-2) chunk times instead of k·(n-1). BroadcastBytes runs
// the same chain with a length frame (8 bytes) ahead of the chunks, since only the root
// knows the length, and chunks of Options.ChunkBytes bytes.
//
// Every rank must fail when any two disagree, yet along a chain position p's data depends
// only on positions before it. So the headers make a lap and a half:
//
//   - a non-root position sends its header on only once its own check of its left
//     neighbour's header passed (the receiving side counts that check as unit 1, the length
//     frame of BroadcastBytes as unit 2, and chunk c as unit base+1+c);
//   - position n-1 sends its header to the root only after it received every chunk: that
//     header proves to the root that every position checked its neighbour and got the data;
//   - the root then sends a completion token (its header again) down the chain, which
//     positions 1 .. n-2 need (unit base+k+1) before they return.
//
// The lap costs n small messages of latency: a Broadcast is an initialisation op (parameters,
// checkpoints), where a rank returning success beside ranks that failed is worse than that.
//
// Reduce runs the same chain the other way round (NCCL's ring Reduce): it starts at root+1
// (position 0, which sends its own buffer) and ends at the root (position n-1); every
// position in between adds each chunk it receives into its own buffer's chunk and forwards
// the partial result, so the root receives each chunk reduced over all other members and adds
// its own (dividing for Avg). Each member sends the buffer once: about (k + n-2) chunk times,
// like Broadcast; the headers make the same lap and a half, so a mismatch fails every rank.

func (x *ringRun) chainPos() int { return mod(x.r-x.chainStart(), x.n) }

// chainPatience is the time the watchdog adds, in a chain (Broadcast, Reduce), to a member's
// limit before it blames its left neighbour. Along a chain a member forwards its header only
// once its own left neighbour's arrived, so when the member at position j never joins, every
// position after j sees no header and stalls: only position j+1 is right to blame its left
// neighbour, and it must fire first. So the limit grows with the position (by p/n of it), the
// chain's start (whose left header comes last of all) waits longest, and a member whose left
// header arrived (it waits on someone further away) waits a whole limit more.
func chainPatience(h *header, rank, n int, headerIn bool, limit time.Duration) time.Duration {
	start := int(h.arg)
	switch h.kind {
	case kindReduce:
		start++
	case kindBroadcast, kindBroadcastBytes:
	default:
		return 0
	}
	q := mod(rank-start, n)
	if q == 0 {
		q = n
	}
	extra := limit * time.Duration(q) / time.Duration(n)
	if headerIn {
		extra += limit / 2 // with the ring's half: a whole limit in all
	}
	return extra
}

// chainStart is the group rank at position 0: the root of a Broadcast, the member after the
// root of a Reduce.
func (x *ringRun) chainStart() int {
	if x.w.h.kind == kindReduce {
		return int(x.w.h.arg) + 1
	}
	return int(x.w.h.arg)
}

// chainBase is the number of receive units before the first chunk.
func (x *ringRun) chainBase() int64 {
	if x.bytesOp {
		return 2
	}
	return 1
}

// chainChunks is the number of chunks; for BroadcastBytes known on a non-root position once
// its length frame arrived (unit 2).
func (x *ringRun) chainChunks() int {
	if x.bytesOp {
		return ceilDiv(len(x.data), 4*x.g.chunk)
	}
	return x.k
}

// chainBytes returns the bytes of chunk c.
func (x *ringRun) chainBytes(c, k int) []byte {
	if x.bytesOp {
		l := len(x.data)
		return x.data[l*c/k : l*(c+1)/k]
	}
	return x.elems(x.count*c/k, x.count*(c+1)/k)
}

// needsToken: position p waits for the root's completion token.
func (x *ringRun) needsToken(p int) bool { return p > 0 && p < x.n-1 }

func (x *ringRun) sendChain() error {
	p := x.chainPos()
	base := x.chainBase()
	if p != 0 {
		if err := x.waitRecv(base); err != nil {
			return err
		}
	}
	k := x.chainChunks()
	if p == x.n-1 {
		if err := x.waitRecv(base + int64(k)); err != nil {
			return err
		}
		return x.flushHeader()
	}
	if x.bytesOp {
		binary.LittleEndian.PutUint64(x.lenOut[:], uint64(len(x.data)))
		if err := x.write(x.lenOut[:]); err != nil {
			return err
		}
	}
	for c := 0; c < k; c++ {
		if p != 0 {
			if err := x.flushHeader(); err != nil {
				return err
			}
			if err := x.waitRecv(base + 1 + int64(c)); err != nil {
				return err
			}
		}
		if err := x.write(x.chainBytes(c, k)); err != nil {
			return err
		}
		x.progress.Add(1)
	}
	if err := x.flushHeader(); err != nil {
		return err
	}
	// The completion token: the root sends it once the last position's header arrived (its
	// unit 1), the others forward it to the next position that waits for it.
	need := base + int64(k) + 1
	if p == 0 {
		need = 1
	}
	if !x.needsToken(p + 1) {
		return nil
	}
	if err := x.waitRecv(need); err != nil {
		return err
	}
	_, err := x.g.right.Write(x.hdrOut[:])
	return err
}

func (x *ringRun) recvChain() error {
	p := x.chainPos()
	x.recvDoneOne() // the header, checked (at the root: the last position's, closing the chain)
	if p == 0 {
		return nil
	}
	if x.bytesOp {
		b, err := x.recvLength()
		if err != nil {
			return err
		}
		x.data = b
		x.w.data = b
		x.recvDoneOne()
	}
	k := x.chainChunks()
	for c := 0; c < k; c++ {
		dst := x.chainBytes(c, k)
		if x.w.h.kind != kindReduce {
			if err := readFull(x.g.left, dst); err != nil {
				return err
			}
		} else {
			b := x.g.recvScratch[:len(dst)]
			if err := readFull(x.g.left, b); err != nil {
				return err
			}
			reduceBytes(x.dt, x.op, dst, b)
			if p == x.n-1 && x.op == Avg {
				divideBytes(x.dt, dst, x.n)
			}
		}
		x.recvDoneOne()
	}
	if x.needsToken(p) {
		if err := x.recvHeader(); err != nil {
			return err
		}
		x.recvDoneOne()
	}
	return nil
}

// MaxBytesMessage bounds the length of one member's message in BroadcastBytes and
// AllGatherBytes: a length frame above it is treated as a corrupt stream rather than
// allocated.
const MaxBytesMessage = 1 << 36

// recvLength reads a length frame from the left neighbour and allocates the message.
func (x *ringRun) recvLength() ([]byte, error) {
	if err := readFull(x.g.left, x.lenIn[:]); err != nil {
		return nil, err
	}
	l := binary.LittleEndian.Uint64(x.lenIn[:])
	if l > MaxBytesMessage {
		return nil, fmt.Errorf("from rank %d: %w: message length %d exceeds MaxBytesMessage (%d)", x.g.ranks[mod(x.r-1, x.n)], ErrBadHeader, l, uint64(MaxBytesMessage))
	}
	return make([]byte, l), nil
}

// AllGatherBytes: the ring's all-gather with one length-framed message per member instead of
// segments: at step s member r sends message r-s (its own at s = 0, later the one it received
// at step s-1) and receives message r-1-s. Messages are forwarded whole; these are small
// control messages (agreement, configuration), not bulk data.

func (x *ringRun) sendGatherBytes() error {
	for s := 0; s < x.n-1; s++ {
		if s > 0 {
			if err := x.flushHeader(); err != nil {
				return err
			}
			if err := x.waitRecv(int64(s)); err != nil {
				return err
			}
		}
		m := x.parts[mod(x.r-s, x.n)]
		binary.LittleEndian.PutUint64(x.lenOut[:], uint64(len(m)))
		if err := x.write(x.lenOut[:]); err != nil {
			return err
		}
		if len(m) > 0 {
			if err := x.write(m); err != nil {
				return err
			}
		}
		x.progress.Add(1)
	}
	return nil
}

func (x *ringRun) recvGatherBytes() error {
	for s := 0; s < x.n-1; s++ {
		b, err := x.recvLength()
		if err != nil {
			return err
		}
		if err := readFull(x.g.left, b); err != nil {
			return err
		}
		x.parts[mod(x.r-1-s, x.n)] = b
		x.recvDoneOne()
	}
	return nil
}

// Barrier: n-1 rounds of passing the header to the right. The header a rank sends in round
// s > 0 leaves only after it received round s-1 from the left, so the header received in
// round s proves that rank r-1-s has entered the barrier (by induction along the chain);
// after n-1 rounds every other rank has. The first round (sent by send) is the usual check.

func (x *ringRun) sendBarrier() error {
	if err := x.flushHeader(); err != nil {
		return err
	}
	for s := 1; s < x.n-1; s++ {
		if err := x.waitRecv(int64(s)); err != nil {
			return err
		}
		if _, err := x.g.right.Write(x.hdrOut[:]); err != nil {
			return err
		}
		x.progress.Add(1)
	}
	return nil
}

func (x *ringRun) recvBarrier() error {
	x.recvDoneOne() // round 0 was the header recv already checked
	for s := 1; s < x.n-1; s++ {
		if err := x.recvHeader(); err != nil {
			return err
		}
		x.recvDoneOne()
	}
	return nil
}
