package shmtransport

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/ringtrain/ringtrain/collective/transport"
)

// Memory ordering. Each direction is a single-producer/single-consumer ring: only the producer
// stores head and only the consumer stores tail, both as byte counts that never wrap (2^64
// bytes is centuries of traffic), so head-tail is always the number of unread bytes. The
// producer copies bytes into the ring with ordinary stores and then publishes them with an
// atomic store of head; the consumer loads head atomically and only then reads those bytes.
// The atomic store is a release and the atomic load an acquire: the bytes written before the
// store are visible after the load. The same holds between processes, since the ordering is
// the hardware's (LOCK-ed or fenced stores on amd64, stlr/ldar on arm64) and not something the
// Go runtime adds. The consumer's release of bytes (tail) mirrors this, so the producer never
// overwrites bytes still being copied out.
//
// The sleep protocol below needs more than release/acquire: each side stores one word and
// then loads the word the other side stored (a Dekker pair), which is only safe if the store
// cannot be ordered after the load. Go's memory model makes every sync/atomic operation
// sequentially consistent, but the race detector's runtime implements atomic.Store as a plain
// release store (ThreadSanitizer's __tsan_go_atomic*_store uses mo_release: a bare MOV on
// amd64), so under -race the store can sit in the CPU's store buffer while the following load
// reads the old value, on both sides at once: that is how wake-ups were lost under -race.
// Every store that is the first half of a Dekker pair therefore goes through storeSC, an
// atomic exchange, which is a full barrier in every build (XCHG on amd64, as atomic.Store
// compiles to anyway without -race).
//
// Sleeping without losing a wake-up (the waiter is the consumer waiting for data; the producer
// waiting for space is symmetric):
//
//	waiter                               publisher
//	s := load(seq)                       store(head)
//	store(waiting, 1)                    if load(waiting) == 1 {
//	if load(head) moved: return              add(seq, 1); futex_wake(seq)
//	futex_wait(seq, s)                   }
//
// With sequentially consistent operations, either the waiter's load of head sees the new head,
// or the publisher's load of waiting sees 1 and bumps seq after the waiter read s, in which
// case futex_wait returns at once (seq != s) or is woken. A publisher pays one uncontended
// load per publish while nobody sleeps. Both stores in the figure (waiting, head) are storeSC:
// with a store that may pass the following load, the waiter can read the old head while the
// publisher reads the old waiting = 0, and both go on as if the other had seen it.

// dirView is one direction of the mapping as seen from one end.
type dirView struct {
	head, tail                 *uint64
	readerWant, writerWant     *uint64
	writerBusy                 *uint32
	dataSeq, readerWaiting     *uint32
	spaceSeq, writerWaiting    *uint32
	writerClosed, readerClosed *uint32
	data                       []byte
	size, mask                 uint64
}

func word64(mem []byte, off int) *uint64 { return (*uint64)(unsafe.Pointer(&mem[off])) }
func word32(mem []byte, off int) *uint32 { return (*uint32)(unsafe.Pointer(&mem[off])) }

// storeSC stores v in *p so that no later load of this goroutine is performed before the
// store is visible to the other process: an atomic exchange, a full barrier in every build.
// atomic.Store is that too in a normal build (XCHG on amd64, STLR before LDAR on arm64), but
// not under -race, where it is a release store that a later load may overtake (see the
// memory-ordering note above). Use it for the first store of every store-then-load pair the
// sleep protocol depends on: head and tail (the publishers) and the waiting words and the
// writer-busy flag (the sleepers).
func storeSC(p *uint32, v uint32)   { atomic.SwapUint32(p, v) }
func storeSC64(p *uint64, v uint64) { atomic.SwapUint64(p, v) }

func viewDir(mem []byte, d int, ringBytes uint64) dirView {
	c := dirCtlOff + d*dirCtlSize
	data := headerBytes + d*int(ringBytes)
	return dirView{
		head:          word64(mem, c+offHead),
		tail:          word64(mem, c+offTail),
		readerWant:    word64(mem, c+offReaderWant),
		writerWant:    word64(mem, c+offWriterWant),
		writerBusy:    word32(mem, c+offWriterBusy),
		dataSeq:       word32(mem, c+offDataSeq),
		readerWaiting: word32(mem, c+offReaderWaiting),
		spaceSeq:      word32(mem, c+offSpaceSeq),
		writerWaiting: word32(mem, c+offWriterWaiting),
		writerClosed:  word32(mem, c+offWriterClosed),
		readerClosed:  word32(mem, c+offReaderClosed),
		data:          mem[data : data+int(ringBytes) : data+int(ringBytes)],
		size:          ringBytes,
		mask:          ringBytes - 1,
	}
}

// linkConfig is the part of Options a link uses.
type linkConfig struct {
	futex   bool // sleep on futexes in the mapping rather than on the wake-up sockets
	wait    Wait
	spin    time.Duration
	poll    time.Duration
	publish uint64
	// abortCause waits (briefly) for the base transport to report why the job was aborted
	// and returns that error, or nil. A peer's abort word names only the rank to blame; the
	// reason (a mismatch, say) travels on the base transport.
	abortCause func() error
}

// Errors seen on shared-memory links. Those about the peer come wrapped in a
// *transport.PeerError naming it.
var (
	// ErrPeerClosed: the peer closed its end while this side still wrote.
	ErrPeerClosed = errors.New("shmtransport: peer closed its end of the link")
	// ErrPeerAborted: the peer aborted its transport.
	ErrPeerAborted = errors.New("shmtransport: peer aborted")
	// ErrPeerExited: the peer's process is gone (seen from the same host).
	ErrPeerExited = errors.New("shmtransport: peer process exited")
	// ErrCorrupt: the ring's positions in the mapping are impossible.
	ErrCorrupt = errors.New("shmtransport: shared-memory ring corrupt")
)

// shmLink is this rank's end of a shared-memory link. It implements transport.Link.
type shmLink struct {
	peer int
	seg  *segment
	tx   dirView // this side produces
	rx   dirView // this side consumes

	myAbort, peerAbort *uint32

	peerID   identity
	watchPID bool
	cfg      linkConfig
	ctl      transport.Link // the base link the setup ran over; its loss means the peer is gone

	// Wake-up sockets (wake_linux.go), by direction: the writer goroutine sleeps on and
	// wakes through txConn, the reader goroutine rxConn. Nil when the link has none (then
	// waiters sleep on futexes).
	txConn, rxConn *net.UnixConn
	txBuf, rxBuf   [64]byte // read buffers of the writer and of the reader

	// Errors made once so that failing paths hot in a loop do not allocate.
	errClosedByPeer, errExited error

	_    [64]byte
	head uint64 // producer's own copy of tx head (writer goroutine only)
	_    [120]byte
	tail uint64 // consumer's own copy of rx tail (reader goroutine only)
	_    [120]byte

	deadline atomic.Int64 // unix nanoseconds; 0 = none
	closed   atomic.Bool
	active   atomic.Int32 // Read/Write/watcher calls inside the mapping; Close waits for 0
	failure  atomic.Pointer[error]

	closeOnce   sync.Once
	closeErr    error
	watcherDone chan struct{}
}

// newShmLink builds this side's link over seg. The creator produces into direction 0.
func newShmLink(seg *segment, creator bool, peer int, ringBytes uint64, self, peerID identity, cfg linkConfig, ctl transport.Link, wake [2]*net.UnixConn) *shmLink {
	l := &shmLink{
		peer:   peer,
		seg:    seg,
		peerID: peerID,
		cfg:    cfg,
		ctl:    ctl,
	}
	d0, d1 := viewDir(seg.mem, 0, ringBytes), viewDir(seg.mem, 1, ringBytes)
	a0, a1 := word32(seg.mem, abortOff), word32(seg.mem, abortOff+128)
	if creator {
		l.tx, l.rx, l.myAbort, l.peerAbort = d0, d1, a0, a1
		l.txConn, l.rxConn = wake[0], wake[1]
	} else {
		l.tx, l.rx, l.myAbort, l.peerAbort = d1, d0, a1, a0
		l.txConn, l.rxConn = wake[1], wake[0]
	}
	if l.txConn == nil || l.rxConn == nil {
		l.cfg.futex = true
	}
	l.watchPID = peerID.canWatchPID(self)
	l.errClosedByPeer = &transport.PeerError{Rank: peer, Err: ErrPeerClosed}
	l.errExited = &transport.PeerError{Rank: peer, Err: fmt.Errorf("%w (pid %d)", ErrPeerExited, peerID.pid)}
	if ctl != nil {
		l.watcherDone = make(chan struct{})
		go l.watchCtl()
	}
	return l
}

// Peer returns the world rank at the other end.
func (l *shmLink) Peer() int { return l.peer }

// Kind returns "shm".
func (l *shmLink) Kind() string { return "shm" }

// enter registers a call that will touch the mapping; false once the link is closed. The
// Dekker-style pairing with Close (increment, then check closed; Close sets closed, then waits
// for zero) guarantees the mapping is never unmapped under a running call.
func (l *shmLink) enter() bool {
	l.active.Add(1)
	if l.closed.Load() {
		l.active.Add(-1)
		return false
	}
	return true
}

func (l *shmLink) leave() { l.active.Add(-1) }

// SetDeadline bounds every blocked Read and Write; the zero time removes the bound. A call
// already blocked is woken to re-check.
func (l *shmLink) SetDeadline(t time.Time) error {
	if t.IsZero() {
		l.deadline.Store(0)
	} else {
		l.deadline.Store(max(t.UnixNano(), 1))
	}
	if l.enter() {
		if l.failure.Load() == nil { // a failed link keeps its sockets' deadline in the past
			l.setSocketDeadline(t)
		}
		l.wakeLocal()
		l.leave()
	}
	return nil
}

// Write copies all of p into the ring, publishing every cfg.publish bytes so that the reader
// can start on them while the rest is copied.
func (l *shmLink) Write(p []byte) (int, error) {
	n, err := l.write(p)
	if err != nil {
		err = l.explain(err)
	}
	return n, err
}

func (l *shmLink) write(p []byte) (int, error) {
	if !l.enter() {
		return 0, transport.ErrClosed
	}
	defer l.leave()
	d := &l.tx
	atomic.StoreUint32(d.writerBusy, 1)
	defer l.endWrite()
	written := 0
	for written < len(p) {
		if err := l.writeErr(); err != nil {
			return written, err
		}
		used := l.head - atomic.LoadUint64(d.tail)
		if used > d.size {
			return written, l.corrupt("tail")
		}
		free := d.size - used
		rest := uint64(len(p) - written)
		if step := min(rest, l.cfg.publish, d.size/2); free < step {
			// Too little room for a worthwhile piece: wait until the reader has made
			// room for the rest (up to half the ring), so that each wake-up moves a lot.
			if err := l.await(false, min(rest, d.size/2), step); err != nil {
				return written, err
			}
			continue
		}
		n := int(min(free, l.cfg.publish, rest))
		off := l.head & d.mask
		c := copy(d.data[off:], p[written:written+n])
		if c < n {
			copy(d.data, p[written+c:written+n])
		}
		l.head += uint64(n)
		raceRelease()
		storeSC64(d.head, l.head)
		written += n
		// Wake a sleeping reader only once it has what it asked for; the end of the
		// Write (endWrite) wakes it in any case.
		if atomic.LoadUint32(d.readerWaiting) != 0 && l.head-atomic.LoadUint64(d.tail) >= atomic.LoadUint64(d.readerWant) {
			l.wakePeer(d.readerWaiting, d.dataSeq, l.txConn)
		}
	}
	return written, nil
}

// endWrite tells the reader that no more bytes are on their way, waking it if it sleeps
// waiting for more than the Write brought.
func (l *shmLink) endWrite() {
	storeSC(l.tx.writerBusy, 0)
	if atomic.LoadUint32(l.tx.readerWaiting) != 0 {
		l.wakePeer(l.tx.readerWaiting, l.tx.dataSeq, l.txConn)
	}
}

// Values of a waiting word: how the waiter sleeps, so that the other side wakes it the same
// way (each side chooses on its own).
const (
	sleepsOnFutex  = 1
	sleepsOnSocket = 2
)

// wakePeer wakes the other side's waiter whose waiting word is waiting, if it sleeps: a
// futex waiter by bumping seq, a socket waiter by one byte on conn. The CAS hands the socket
// waiter's word back to 0 so that one sleep gets one byte.
func (l *shmLink) wakePeer(waiting, seq *uint32, conn *net.UnixConn) {
	switch atomic.LoadUint32(waiting) {
	case sleepsOnFutex:
		l.wake(seq)
	case sleepsOnSocket:
		if atomic.CompareAndSwapUint32(waiting, sleepsOnSocket, 0) {
			conn.Write(wakeByte) // an error means the peer is gone; its waiters no longer matter
		}
	}
}

var wakeByte = []byte{1}

func (l *shmLink) wake(seq *uint32) {
	atomic.AddUint32(seq, 1)
	futexWake(seq)
}

// Read copies into p what the peer has published (at least one byte, at most len(p)),
// waiting if there is nothing yet. After the peer closed the link and every byte was read
// it returns io.EOF; if the peer closed its whole transport instead, a *transport.PeerError
// wrapping transport.ErrPeerClosed (as over QUIC: a rank left while this one still reads).
func (l *shmLink) Read(p []byte) (int, error) {
	n, err := l.read(p)
	if err != nil {
		err = l.explain(err)
	}
	return n, err
}

// explain replaces a peer's bare abort (the abort word names a rank, not a reason) by the
// base transport's error, which carries the reason, once it arrives. It runs outside the
// mapping (after leave), as it may wait.
func (l *shmLink) explain(err error) error {
	if !errors.Is(err, ErrPeerAborted) || l.cfg.abortCause == nil {
		return err
	}
	if cause := l.cfg.abortCause(); cause != nil {
		return cause
	}
	return err
}

func (l *shmLink) read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	if !l.enter() {
		return 0, transport.ErrClosed
	}
	defer l.leave()
	d := &l.rx
	for {
		avail := atomic.LoadUint64(d.head) - l.tail
		if avail > d.size {
			return 0, l.corrupt("head")
		}
		if avail > 0 {
			raceAcquire()
			total := int(min(avail, uint64(len(p))))
			done := 0
			for done < total {
				n := min(total-done, int(l.cfg.publish))
				off := l.tail & d.mask
				c := copy(p[done:done+n], d.data[off:])
				if c < n {
					copy(p[done+c:done+n], d.data)
				}
				l.tail += uint64(n)
				storeSC64(d.tail, l.tail)
				done += n
				if atomic.LoadUint32(d.writerWaiting) != 0 &&
					d.size-(atomic.LoadUint64(d.head)-l.tail) >= atomic.LoadUint64(d.writerWant) {
					l.wakePeer(d.writerWaiting, d.spaceSeq, l.rxConn)
				}
			}
			return total, nil
		}
		if atomic.LoadUint32(d.writerClosed) != 0 {
			// The producer stores head before writerClosed, so a second look at head
			// after seeing the flag is final.
			if atomic.LoadUint64(d.head) == l.tail {
				// A peer that aborted (its abort word is stored before it closes) did not
				// end the stream in order: report its abort, which names the rank to
				// blame, rather than a plain EOF.
				if v := atomic.LoadUint32(l.peerAbort); v != 0 {
					return 0, l.peerAborted(v)
				}
				raceAcquire()
				return 0, io.EOF
			}
			continue
		}
		if err := l.stateErr(); err != nil {
			return 0, err
		}
		if err := l.deadlineErr(time.Now().UnixNano()); err != nil {
			return 0, err
		}
		if err := l.await(true, min(uint64(len(p)), d.size/2), 1); err != nil {
			return 0, err
		}
	}
}

// writeErr says why a Write cannot go on, or nil.
func (l *shmLink) writeErr() error {
	if err := l.stateErr(); err != nil {
		return err
	}
	if atomic.LoadUint32(l.tx.readerClosed) != 0 {
		return l.errClosedByPeer
	}
	if l.deadline.Load() != 0 {
		return l.deadlineErr(time.Now().UnixNano())
	}
	return nil
}

// stateErr reports a local close, a recorded failure or the peer's abort.
func (l *shmLink) stateErr() error {
	if l.closed.Load() {
		return transport.ErrClosed
	}
	if e := l.failure.Load(); e != nil {
		return *e
	}
	if v := atomic.LoadUint32(l.peerAbort); v != 0 {
		return l.peerAborted(v)
	}
	return nil
}

func (l *shmLink) deadlineErr(now int64) error {
	if dl := l.deadline.Load(); dl != 0 && now >= dl {
		return os.ErrDeadlineExceeded
	}
	return nil
}

func (l *shmLink) corrupt(which string) error {
	err := &transport.PeerError{Rank: l.peer, Err: fmt.Errorf("%w: %s out of range", ErrCorrupt, which)}
	l.fail(err)
	return err
}

// ready reports whether a blocked reader (data) or writer (!data) should go on: the ring
// holds want bytes (reader) or has want bytes free (writer), or there is an end condition to
// report. A reader also goes on with fewer bytes once the writer has left its Write, since no
// more are on their way.
func (l *shmLink) ready(data bool, want uint64) bool {
	if data {
		avail := atomic.LoadUint64(l.rx.head) - l.tail
		return avail >= want || (avail > 0 && atomic.LoadUint32(l.rx.writerBusy) == 0) ||
			atomic.LoadUint32(l.rx.writerClosed) != 0
	}
	return l.tx.size-(l.head-atomic.LoadUint64(l.tx.tail)) >= want || atomic.LoadUint32(l.tx.readerClosed) != 0
}

// await waits, following cfg.wait, until ready, an error, or the deadline. While spinning it
// settles for spinWant; before sleeping it publishes want, the amount whose arrival is worth
// a wake-up, so that the peer wakes it once per large step rather than once per publish.
//
// Why a reader and a writer of one ring never both sleep: the reader sleeps only while fewer
// than want_r <= size/2 bytes are in the ring, the writer only while fewer than
// want_w <= size/2 are free, and used + free = size.
func (l *shmLink) await(data bool, want, spinWant uint64) error {
	seq, waiting, wantWord := l.tx.spaceSeq, l.tx.writerWaiting, l.tx.writerWant
	if data {
		seq, waiting, wantWord = l.rx.dataSeq, l.rx.readerWaiting, l.rx.readerWant
	}
	now := time.Now().UnixNano()
	lastLive := now
	if l.cfg.wait != WaitBlock {
		spinUntil := now + int64(l.cfg.spin)
		for i := 1; ; i++ {
			if l.ready(data, spinWant) {
				return nil
			}
			if i&15 == 0 {
				if err := l.stateErr(); err != nil {
					return err
				}
				now = time.Now().UnixNano()
				if err := l.deadlineErr(now); err != nil {
					return err
				}
				if l.cfg.wait == WaitSpin {
					if now-lastLive >= int64(l.cfg.poll) {
						lastLive = now
						if err := l.checkPeer(); err != nil {
							return err
						}
					}
				} else if now >= spinUntil {
					break
				}
			}
			runtime.Gosched()
		}
	}
	atomic.StoreUint64(wantWord, want)
	if l.cfg.futex {
		return l.sleepFutex(data, want, seq, waiting, now, lastLive)
	}
	return l.sleepSocket(data, want, waiting)
}

// sleepSocket sleeps in a Read on the direction's wake-up socket (see wake_linux.go): the
// goroutine parks and the rank's other goroutines keep the processor. Deadlines reach the
// Read through the socket's read deadline (SetDeadline); a local failure sets it in the past.
//
// No lost wake-up: the waiter stores its waiting word, then checks the ring; the other side
// publishes, then loads the word (and CASes it to 0 before writing a byte). As with the
// futex, one of the two sees the other's store.
func (l *shmLink) sleepSocket(data bool, want uint64, waiting *uint32) error {
	conn, buf := l.txConn, l.txBuf[:]
	if data {
		conn, buf = l.rxConn, l.rxBuf[:]
	}
	for {
		storeSC(waiting, sleepsOnSocket)
		if l.ready(data, want) {
			atomic.StoreUint32(waiting, 0) // a byte already on its way only costs a spurious wake
			return nil
		}
		if err := l.stateErr(); err != nil {
			atomic.StoreUint32(waiting, 0)
			return err
		}
		if err := l.deadlineErr(time.Now().UnixNano()); err != nil {
			atomic.StoreUint32(waiting, 0)
			return err
		}
		_, err := conn.Read(buf)
		if err == nil {
			continue // woken (the waker reset the word)
		}
		atomic.StoreUint32(waiting, 0)
		if errors.Is(err, os.ErrDeadlineExceeded) {
			if err := l.stateErr(); err != nil {
				return err // a failure sets the deadline in the past to wake us
			}
			if l.deadline.Load() != 0 {
				return os.ErrDeadlineExceeded // trust the netpoller's (monotonic) clock
			}
			continue // the deadline was lifted meanwhile
		}
		if l.ready(data, want) {
			return nil
		}
		if err := l.stateErr(); err != nil {
			return err
		}
		// The socket ended, and the peer neither closed the link in order nor aborted:
		// its process is gone (the kernel closed its sockets).
		if !l.peerClosed() {
			l.fail(l.errExited)
			return l.stateErr()
		}
	}
}

// sleepFutex sleeps on the direction's futex word in the mapping.
func (l *shmLink) sleepFutex(data bool, want uint64, seq, waiting *uint32, now, lastLive int64) error {
	for {
		s := atomic.LoadUint32(seq)
		storeSC(waiting, sleepsOnFutex)
		if l.ready(data, want) {
			atomic.StoreUint32(waiting, 0)
			return nil
		}
		if err := l.stateErr(); err != nil {
			atomic.StoreUint32(waiting, 0)
			return err
		}
		timeout := l.cfg.poll
		if dl := l.deadline.Load(); dl != 0 {
			rem := time.Duration(dl - now)
			if rem <= 0 {
				atomic.StoreUint32(waiting, 0)
				return os.ErrDeadlineExceeded
			}
			timeout = min(timeout, rem)
		}
		futexWait(seq, s, timeout)
		atomic.StoreUint32(waiting, 0)
		if l.ready(data, want) {
			return nil
		}
		now = time.Now().UnixNano()
		if now-lastLive >= int64(l.cfg.poll) {
			lastLive = now
			if err := l.checkPeer(); err != nil {
				return err
			}
		}
	}
}

// peerClosed reports whether the peer closed its end in order (it sets both flags first).
func (l *shmLink) peerClosed() bool {
	return atomic.LoadUint32(l.rx.writerClosed) != 0 && atomic.LoadUint32(l.tx.readerClosed) != 0
}

// checkPeer fails the link if the peer's process on this host has exited without closing it.
func (l *shmLink) checkPeer() error {
	if l.watchPID && !l.peerClosed() && processGone(l.peerID.pid, l.peerID.start) {
		l.fail(l.errExited)
	}
	return l.stateErr()
}

// watchCtl waits on the base link the setup ran over. The peer sends nothing more on it, so
// its end (an error, or EOF without the peer having closed the shared-memory link in order)
// means the peer's process or connection is gone.
func (l *shmLink) watchCtl() {
	defer close(l.watcherDone)
	var b [1]byte
	n, err := l.ctl.Read(b[:])
	if !l.enter() {
		return // closed locally
	}
	defer l.leave()
	if l.peerClosed() {
		return
	}
	switch {
	case n > 0:
		err = errors.New("unexpected bytes on the control link")
	case err == nil || errors.Is(err, io.EOF):
		err = errors.New("control link closed before the shared-memory link")
	}
	var pe *transport.PeerError
	if errors.As(err, &pe) {
		l.fail(fmt.Errorf("shmtransport: control link to rank %d: %w", l.peer, err))
	} else {
		l.fail(&transport.PeerError{Rank: l.peer, Err: fmt.Errorf("control link lost: %w", err)})
	}
}

// fail records err as the link's failure (the first one wins) and wakes local waiters.
func (l *shmLink) fail(err error) {
	if l.failure.CompareAndSwap(nil, &err) {
		l.setSocketDeadline(time.Unix(1, 0))
		l.wakeLocal()
	}
}

// setSocketDeadline bounds (or, with a past time, ends) the local sleeps on the wake-up
// sockets.
func (l *shmLink) setSocketDeadline(t time.Time) {
	if l.txConn != nil {
		l.txConn.SetReadDeadline(t)
		l.rxConn.SetReadDeadline(t)
	}
}

// shutdownSockets ends the peer's sleeps on the wake-up sockets with EOF; it then finds out
// why from the mapping (closed flags or abort word).
func (l *shmLink) shutdownSockets() {
	if l.txConn != nil {
		l.txConn.CloseWrite()
		l.rxConn.CloseWrite()
	}
}

// abort fails the link with cause and tells the peer through the mapping. The abort word
// carries the rank to blame plus one: the rank a *transport.PeerError in cause names (the
// original culprit), or this rank, so that the peer does not blame the messenger.
func (l *shmLink) abort(cause error, self int) {
	if !l.enter() {
		return
	}
	defer l.leave()
	culprit := self
	var pe *transport.PeerError
	if errors.As(cause, &pe) && pe.Rank >= 0 {
		culprit = pe.Rank
	}
	atomic.StoreUint32(l.myAbort, uint32(culprit)+1)
	l.fail(cause)
	l.wakeAll()
	l.shutdownSockets()
}

// abortClosed in an abort word says that the peer closed its whole transport (not just this
// link): see Read.
const abortClosed = ^uint32(0)

// markTransportClosed tells the peer that this rank is closing its transport (Transport.Close,
// before it closes the links).
func (l *shmLink) markTransportClosed() {
	if !l.enter() {
		return
	}
	defer l.leave()
	atomic.CompareAndSwapUint32(l.myAbort, 0, abortClosed)
}

// peerAborted records and returns the failure for an abort word v set by the peer.
func (l *shmLink) peerAborted(v uint32) error {
	culprit := int(v - 1)
	var err error
	if v == abortClosed {
		err = &transport.PeerError{Rank: l.peer, Err: transport.ErrPeerClosed}
	} else if culprit == l.peer {
		err = &transport.PeerError{Rank: l.peer, Err: ErrPeerAborted}
	} else {
		err = &transport.PeerError{Rank: culprit, Err: fmt.Errorf("%w (reported by rank %d)", ErrPeerAborted, l.peer)}
	}
	l.fail(err)
	return *l.failure.Load()
}

// wakeLocal wakes this side's reader and writer.
func (l *shmLink) wakeLocal() {
	atomic.AddUint32(l.rx.dataSeq, 1)
	futexWake(l.rx.dataSeq)
	atomic.AddUint32(l.tx.spaceSeq, 1)
	futexWake(l.tx.spaceSeq)
}

// wakeAll wakes the reader and writer on both sides.
func (l *shmLink) wakeAll() {
	l.wakeLocal()
	atomic.AddUint32(l.tx.dataSeq, 1)
	futexWake(l.tx.dataSeq)
	atomic.AddUint32(l.rx.spaceSeq, 1)
	futexWake(l.rx.spaceSeq)
}

// Close tells the peer (its Read sees io.EOF after the bytes already written, its Write an
// error), wakes local callers, waits for them to leave the mapping, removes the file if it is
// still there, and unmaps it.
func (l *shmLink) Close() error {
	l.closeOnce.Do(func() {
		// Only Close unmaps, and closeOnce serialises it, so the mapping is valid here.
		raceRelease()
		atomic.StoreUint32(l.tx.writerClosed, 1)
		atomic.StoreUint32(l.rx.readerClosed, 1)
		l.closed.Store(true)
		l.wakeAll()
		l.shutdownSockets()
		l.setSocketDeadline(time.Unix(1, 0))
		var errs []error
		if l.ctl != nil {
			l.ctl.SetDeadline(time.Unix(1, 0)) // wake our own watcher's Read
			if err := l.ctl.Close(); err != nil && !errors.Is(err, transport.ErrClosed) {
				errs = append(errs, err)
			}
		}
		for l.active.Load() != 0 {
			l.wakeLocal()
			time.Sleep(20 * time.Microsecond)
		}
		if l.watcherDone != nil {
			select {
			case <-l.watcherDone:
			case <-time.After(5 * time.Second):
				errs = append(errs, fmt.Errorf("shmtransport: control link to rank %d did not unblock on close", l.peer))
			}
		}
		if l.txConn != nil {
			errs = append(errs, l.txConn.Close(), l.rxConn.Close())
		}
		errs = append(errs, l.seg.unlink(), l.seg.unmap())
		l.closeErr = errors.Join(errs...)
	})
	return l.closeErr
}

// drain waits until the peer has read every byte published on this link's sending side
// before the call (its tail reached that head), or has closed its end (it will read no
// more: an orderly end), or until the link fails or ctx ends. It polls: it runs once, at
// the end of a job.
func (l *shmLink) drain(ctx context.Context) error {
	if !l.enter() {
		return nil // closed locally: its data was flushed or given up by Close
	}
	defer l.leave()
	target := atomic.LoadUint64(l.tx.head)
	timer := time.NewTimer(0)
	defer timer.Stop()
	<-timer.C
	for wait := 10 * time.Microsecond; ; wait = min(2*wait, time.Millisecond) {
		tail := atomic.LoadUint64(l.tx.tail)
		if int64(tail-target) >= 0 || atomic.LoadUint32(l.tx.readerClosed) != 0 {
			return nil
		}
		if err := l.stateErr(); err != nil {
			return err
		}
		timer.Reset(wait)
		select {
		case <-ctx.Done():
			return fmt.Errorf("shmtransport: rank %d has not read the last %d bytes written to it: %w",
				l.peer, target-tail, context.Cause(ctx))
		case <-timer.C:
		}
	}
}
