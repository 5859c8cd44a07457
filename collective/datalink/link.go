package datalink

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ringtrain/ringtrain/collective/transport"
)

// dataLink is a link whose bytes travel over one or more TCP connections (TLS or plain)
// while its base link stays open as the control channel.
//
// How a link ends in order: each end's Close closes its connections and sends a closing
// frame on the control link saying how many bytes it read, so that the peer's Shutdown
// (drain) still learns it once nobody is left to answer a drain request. The control link
// itself is closed once this end has sent its closing frame and read the peer's (or the
// peer ended the control link), never before: the base transport's own Shutdown counts every
// control byte, and a closing frame left unread would read as data lost.
type dataLink struct {
	t      *Transport
	peer   int
	mode   Mode
	bl     transport.Link
	conns  []net.Conn
	stripe uint64

	wOff, rOff     uint64 // stripe positions (one writer, one reader at a time)
	written, nread atomic.Uint64

	mu          sync.Mutex
	closed      bool // Close has begun
	closingSent bool // this end's closing frame was written (or could not be)
	peerEnded   bool // the peer's closing frame or the control link's orderly end arrived
	blClosed    bool // the control link was closed
	failErr     error
	failed      chan struct{} // closed by fail
	orderly     chan struct{} // closed when the peer ended the link in order (peerEnded)
	ctlDone     chan struct{}
	ctlWMu      sync.Mutex
	acked       atomic.Uint64 // bytes the peer confirmed it read (drain answers, its closing frame)
	ackNote     chan struct{} // buffered: an ack arrived
	// peerClosedTransport: the control link ended because the peer closed its whole
	// transport in order (its closing frame may have been dropped with the connection).
	peerClosedTransport atomic.Bool
	segments            [][][]byte // per stream, reused by striped writes
}

var _ transport.Link = (*dataLink)(nil)

func (t *Transport) newDataLink(peer int, mode Mode, bl transport.Link, conns []net.Conn) *dataLink {
	return &dataLink{
		t: t, peer: peer, mode: mode, bl: bl, conns: conns, stripe: uint64(t.opts.StripeBytes),
		failed: make(chan struct{}), orderly: make(chan struct{}), ctlDone: make(chan struct{}),
		ackNote: make(chan struct{}, 1), segments: make([][][]byte, len(conns)),
	}
}

func (l *dataLink) start() { go l.ctlLoop() }

// Peer is the world rank at the other end.
func (l *dataLink) Peer() int { return l.peer }

// Write writes all of p, striped over the link's connections.
func (l *dataLink) Write(p []byte) (int, error) {
	if len(l.conns) == 1 {
		n, err := l.conns[0].Write(p)
		l.written.Add(uint64(n))
		if err != nil {
			return n, l.mapErr(err)
		}
		return n, nil
	}
	return l.writeStriped(p)
}

// writeStriped cuts p at StripeBytes boundaries of the stream's byte offset (block k goes to
// connection k mod Streams) and writes each connection's share in parallel.
func (l *dataLink) writeStriped(p []byte) (int, error) {
	s := uint64(len(l.conns))
	for i := range l.segments {
		l.segments[i] = l.segments[i][:0]
	}
	off := l.wOff
	for rest := p; len(rest) > 0; {
		k := int(off / l.stripe % s)
		n := min(uint64(len(rest)), l.stripe-off%l.stripe)
		l.segments[k] = append(l.segments[k], rest[:n])
		rest = rest[n:]
		off += n
	}
	errs := make([]error, len(l.conns))
	var wg sync.WaitGroup
	for k, segs := range l.segments {
		if len(segs) == 0 {
			continue
		}
		wg.Go(func() {
			for _, seg := range segs {
				if _, err := l.conns[k].Write(seg); err != nil {
					errs[k] = err
					return
				}
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		// The stream is out of step now; the link is unusable.
		return 0, l.mapErr(err)
	}
	l.wOff = off
	l.written.Add(uint64(len(p)))
	return len(p), nil
}

// Read reads from the connection that carries the next bytes of the stream.
func (l *dataLink) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	c := l.conns[0]
	if s := uint64(len(l.conns)); s > 1 {
		c = l.conns[l.rOff/l.stripe%s]
		p = p[:min(uint64(len(p)), l.stripe-l.rOff%l.stripe)]
	}
	n, err := c.Read(p)
	l.rOff += uint64(n)
	l.nread.Add(uint64(n))
	if err != nil {
		if n > 0 {
			return n, nil // the error comes again with the next Read
		}
		return 0, l.mapErr(err)
	}
	return n, nil
}

// SetDeadline bounds blocked Reads and Writes on every connection of the link.
func (l *dataLink) SetDeadline(t time.Time) error {
	var errs []error
	for _, c := range l.conns {
		errs = append(errs, c.SetDeadline(t))
	}
	return errors.Join(errs...)
}

func (l *dataLink) failure() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.failErr
}

// fail makes every pending and later Read and Write return err.
func (l *dataLink) fail(err error) {
	l.mu.Lock()
	if l.failErr != nil || l.closed {
		l.mu.Unlock()
		return
	}
	l.failErr = err
	close(l.failed)
	l.mu.Unlock()
	for _, c := range l.conns {
		c.Close()
	}
}

// mapErr turns a connection's error into the link's: the transport's failure (naming the
// guilty rank) if there is one, io.EOF for a peer that closed in order, a deadline as it
// is, and otherwise (the connection broke without a word) a failure of the peer, which
// aborts the transport so that every rank learns it.
func (l *dataLink) mapErr(err error) error {
	if f := l.failure(); f != nil {
		return f
	}
	l.mu.Lock()
	closed := l.closed
	l.mu.Unlock()
	if closed {
		return transport.ErrClosed
	}
	if errors.Is(err, os.ErrDeadlineExceeded) || errors.Is(err, transport.ErrPeerClosed) {
		return err // a peer that closed its transport in order is no failure of the job
	}
	timer := time.NewTimer(l.t.opts.BrokenGrace)
	defer timer.Stop()
	select {
	case <-l.orderly:
		if errors.Is(err, io.EOF) {
			return io.EOF
		}
		return fmt.Errorf("datalink: rank %d closed the link: %w", l.peer, err)
	case <-l.t.base.Done():
		return l.t.base.Err()
	case <-l.failed:
		return l.failure()
	case <-timer.C:
	}
	pe := &transport.PeerError{Rank: l.peer, Err: fmt.Errorf("datalink: %s connection to rank %d broke without an orderly close: %v", l.mode, l.peer, err)}
	l.t.log.Warn("datalink: broken data link", "peer", l.peer, "err", err.Error())
	l.t.Abort(pe)
	if e := l.t.base.Err(); e != nil {
		return e
	}
	return pe
}

// Close ends the link in order: the connections, then a closing frame on the control link,
// which closes once the peer's closing frame is in too (at the latest when the transport
// closes). It does not wait for the peer.
func (l *dataLink) Close() error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil
	}
	l.closed = true
	l.mu.Unlock()
	var errs []error
	for _, c := range l.conns {
		errs = append(errs, c.Close())
	}
	if l.failure() == nil {
		// Bounded: a peer that stopped reading its control link must not hold up Close.
		l.bl.SetDeadline(time.Now().Add(closingFrameTimeout))
		l.writeCtl(ctlClosing, l.nread.Load())
		l.bl.SetDeadline(time.Time{})
	}
	l.mu.Lock()
	l.closingSent = true
	l.mu.Unlock()
	select {
	case <-l.failed:
		errs = append(errs, l.closeControl())
	default:
		errs = append(errs, l.closeControlIfDone())
	}
	for _, e := range errs {
		if e != nil && !errors.Is(e, net.ErrClosed) {
			return e
		}
	}
	return nil
}

// closeControlIfDone closes the control link once both ends are done with it: this end sent
// its closing frame and the peer's has arrived (or the control link ended).
func (l *dataLink) closeControlIfDone() error {
	l.mu.Lock()
	done := l.closingSent && l.peerEnded
	l.mu.Unlock()
	if !done {
		return nil // ctlLoop closes it when the peer's closing frame arrives
	}
	return l.closeControl()
}

func (l *dataLink) closeControl() error {
	l.mu.Lock()
	if l.blClosed {
		l.mu.Unlock()
		return nil
	}
	l.blClosed = true
	l.mu.Unlock()
	return l.bl.Close()
}

// peerEnd records that the peer ended the link in order (its closing frame, or the control
// link's end).
func (l *dataLink) peerEnd() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.peerEnded {
		l.peerEnded = true
		close(l.orderly)
	}
}

// ctlLoop reads the control link: drain requests and answers, the peer's closing frame,
// and the link's end.
func (l *dataLink) ctlLoop() {
	defer close(l.ctlDone)
	var b [ctlFrameLen]byte
	for {
		if _, err := io.ReadFull(l.bl, b[:]); err != nil {
			// The peer ended the control link, or closed its whole transport (the base then
			// reports that instead of the stream's end, which may not have been sent): both
			// are orderly.
			if errors.Is(err, transport.ErrPeerClosed) {
				l.peerClosedTransport.Store(true)
			}
			if errors.Is(err, io.EOF) || errors.Is(err, transport.ErrPeerClosed) {
				l.peerEnd()
			}
			l.mu.Lock()
			closed := l.closed
			l.mu.Unlock()
			if closed {
				l.closeControl()
			}
			return
		}
		kind, v, err := decodeCtl(b[:])
		if err != nil {
			l.t.log.Warn("datalink: bad control frame", "peer", l.peer, "err", err.Error())
			return
		}
		switch kind {
		case ctlDrainReq:
			go l.answerDrain(v)
		case ctlDrainAck, ctlClosing:
			for {
				old := l.acked.Load()
				if v <= old || l.acked.CompareAndSwap(old, v) {
					break
				}
			}
			select {
			case l.ackNote <- struct{}{}:
			default:
			}
			if kind == ctlClosing {
				l.peerEnd()
				l.closeControlIfDone()
				// Keep reading: a drain request or the control link's end may still come.
			}
		}
	}
}

func (l *dataLink) writeCtl(kind byte, v uint64) error {
	var b [ctlFrameLen]byte
	l.ctlWMu.Lock()
	defer l.ctlWMu.Unlock()
	_, err := l.bl.Write(encodeCtl(&b, kind, v))
	return err
}

// answerDrain answers once this rank has read n bytes, or with what it read if it closed
// the link first (its closing frame says the same).
func (l *dataLink) answerDrain(n uint64) {
	for wait := 10 * time.Microsecond; l.nread.Load() < n; wait = min(2*wait, time.Millisecond) {
		l.mu.Lock()
		closed := l.closed
		l.mu.Unlock()
		if closed {
			break
		}
		select {
		case <-l.failed:
			return
		case <-l.ctlDone:
			return
		case <-time.After(wait):
		}
	}
	l.writeCtl(ctlDrainAck, min(n, l.nread.Load()))
}

// drain waits until the peer has read every byte written so far, or closed in order.
func (l *dataLink) drain(ctx context.Context) error {
	l.mu.Lock()
	closed := l.closed
	l.mu.Unlock()
	if closed {
		return nil
	}
	if f := l.failure(); f != nil {
		return f
	}
	target := l.written.Load()
	if target == 0 || l.acked.Load() >= target {
		return nil
	}
	if err := l.writeCtl(ctlDrainReq, target); err != nil {
		if errors.Is(err, transport.ErrPeerClosed) {
			return nil // done with the data, as quictransport's Shutdown takes it
		}
		// The peer may have closed the link in order just now: its closing frame (how much
		// it read) and the link's end are on their way.
		select {
		case <-l.ctlDone:
		case <-time.After(l.t.opts.BrokenGrace):
		}
		select {
		case <-l.orderly:
			return l.closedHaving(target)
		default:
			return l.mapErr(err)
		}
	}
	for l.acked.Load() < target {
		select {
		case <-l.ackNote:
		case <-l.orderly:
			return l.closedHaving(target)
		case <-l.failed:
			return l.failure()
		case <-l.ctlDone:
			select {
			case <-l.orderly: // closed before ctlDone; the select above may pick either
				return l.closedHaving(target)
			default:
			}
			if e := l.t.base.Err(); e != nil {
				return e
			}
			return fmt.Errorf("datalink: control link to rank %d ended during Shutdown", l.peer)
		case <-ctx.Done():
			return fmt.Errorf("datalink: rank %d has not read the last %d bytes written to it: %w",
				l.peer, target-min(target, l.acked.Load()), context.Cause(ctx))
		}
	}
	return nil
}

// closingFrameTimeout bounds Close's write of the closing frame.
const closingFrameTimeout = time.Second

// closedHaving is drain's verdict once the peer ended the link in order: fine if its closing
// frame (or an earlier answer) covers target bytes, else the bytes it will never read. A
// peer whose whole transport closed in order is done with the data (see ctlLoop), as
// quictransport's Shutdown takes it.
func (l *dataLink) closedHaving(target uint64) error {
	if got := l.acked.Load(); got < target && !l.peerClosedTransport.Load() {
		return fmt.Errorf("datalink: rank %d closed the link having read %d of the %d bytes written to it", l.peer, got, target)
	}
	return nil
}
