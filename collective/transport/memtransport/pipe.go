package memtransport

import (
	"io"
	"os"
	"sync"
	"time"

	"github.com/ringtrain/ringtrain/collective/transport"
)

// pipe is one direction of a link: a fixed-size ring buffer with one reader and one writer.
// Blocked sides wait on a one-slot signal channel, so that they can also wait on their
// transport failing and on their deadline in the same select.
type pipe struct {
	mu       sync.Mutex
	buf      []byte
	r, n     int   // read position and number of buffered bytes
	eof      bool  // writer closed: the reader drains, then sees io.EOF
	readErr  error // reader closed: writes fail with this
	err      error // broken (peer crashed): both sides fail with this at once
	readable chan struct{}
	writable chan struct{}
}

func newPipe(window int) *pipe {
	return &pipe{
		buf:      make([]byte, window),
		readable: make(chan struct{}, 1),
		writable: make(chan struct{}, 1),
	}
}

func signal(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

func (p *pipe) wakeAll() {
	signal(p.readable)
	signal(p.writable)
}

func (p *pipe) fail(err error) {
	p.mu.Lock()
	if p.err == nil {
		p.err = err
	}
	p.mu.Unlock()
	p.wakeAll()
}

func (p *pipe) closeWrite() {
	p.mu.Lock()
	p.eof = true
	p.mu.Unlock()
	p.wakeAll()
}

func (p *pipe) closeRead(err error) {
	p.mu.Lock()
	if p.readErr == nil {
		p.readErr = err
	}
	p.mu.Unlock()
	p.wakeAll()
}

// tryRead copies buffered bytes into b. It returns (0, nil) when the caller must wait.
func (p *pipe) tryRead(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.err != nil {
		return 0, p.err
	}
	if p.n == 0 {
		if p.eof {
			return 0, io.EOF
		}
		return 0, nil
	}
	total := 0
	for p.n > 0 && len(b) > 0 {
		end := min(p.r+p.n, len(p.buf))
		c := copy(b, p.buf[p.r:end])
		b = b[c:]
		p.r = (p.r + c) % len(p.buf)
		p.n -= c
		total += c
	}
	signal(p.writable)
	return total, nil
}

// tryWrite copies as much of b as fits. It returns (0, nil) when the caller must wait.
func (p *pipe) tryWrite(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.err != nil {
		return 0, p.err
	}
	if p.readErr != nil {
		return 0, p.readErr
	}
	if p.eof {
		return 0, transport.ErrClosed
	}
	total := 0
	for p.n < len(p.buf) && len(b) > 0 {
		w := (p.r + p.n) % len(p.buf)
		end := len(p.buf)
		if w < p.r {
			end = p.r
		}
		c := copy(p.buf[w:end], b)
		b = b[c:]
		p.n += c
		total += c
	}
	if total > 0 {
		signal(p.readable)
	}
	return total, nil
}

// link is one rank's end of a pair. It implements transport.Link.
type link struct {
	t      *Transport
	peer   int
	rd, wr *pipe
	dl     deadline

	closeOnce sync.Once
	closed    chan struct{}
}

var _ transport.Link = (*link)(nil)

func (l *link) Peer() int { return l.peer }

func (l *link) SetDeadline(t time.Time) error {
	l.dl.set(t)
	return nil
}

// check returns the error that fails every call on this end, if any.
func (l *link) check() error {
	select {
	case <-l.closed:
		return transport.ErrClosed
	default:
	}
	select {
	case <-l.t.done:
		return l.t.Err()
	default:
	}
	return nil
}

func (l *link) Read(b []byte) (int, error) {
	if len(b) == 0 {
		return 0, l.check()
	}
	for {
		if err := l.check(); err != nil {
			return 0, err
		}
		n, err := l.rd.tryRead(b)
		if n > 0 || err != nil {
			return n, err
		}
		select {
		case <-l.rd.readable:
		case <-l.t.done:
		case <-l.closed:
		case <-l.dl.wait():
			return 0, os.ErrDeadlineExceeded
		}
	}
}

func (l *link) Write(b []byte) (int, error) {
	written := 0
	for {
		if err := l.check(); err != nil {
			return written, err
		}
		if len(b) == 0 {
			return written, nil
		}
		n, err := l.wr.tryWrite(b)
		written += n
		b = b[n:]
		if err != nil {
			return written, err
		}
		if n > 0 {
			continue
		}
		select {
		case <-l.wr.writable:
		case <-l.t.done:
		case <-l.closed:
		case <-l.dl.wait():
			return written, os.ErrDeadlineExceeded
		}
	}
}

// Close closes this end: the peer reads what is buffered and then io.EOF, and its writes fail.
func (l *link) Close() error {
	l.closeOnce.Do(func() {
		close(l.closed)
		l.wr.closeWrite()
		l.rd.closeRead(&transport.PeerError{Rank: l.t.rank, Err: errPeerClosed})
	})
	return nil
}

// deadline turns a settable point in time into a channel that is closed when it passes. The
// channel stays the same while the deadline moves within the future, so a blocked call sees a
// deadline set after it blocked.
type deadline struct {
	mu    sync.Mutex
	timer *time.Timer
	ch    chan struct{}
	fired bool
	gen   uint64 // bumped by every set, so that a stale timer cannot fire a newer deadline
}

func (d *deadline) init() { d.ch = make(chan struct{}) }

func (d *deadline) set(t time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.gen++
	if d.timer != nil {
		d.timer.Stop()
		d.timer = nil
	}
	if d.fired {
		d.ch = make(chan struct{})
		d.fired = false
	}
	if t.IsZero() {
		return
	}
	dur := time.Until(t)
	if dur <= 0 {
		close(d.ch)
		d.fired = true
		return
	}
	gen := d.gen
	d.timer = time.AfterFunc(dur, func() {
		d.mu.Lock()
		defer d.mu.Unlock()
		if d.gen == gen && !d.fired {
			close(d.ch)
			d.fired = true
		}
	})
}

func (d *deadline) wait() <-chan struct{} {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.ch
}

// drained reports whether the reader has taken every byte written, or can no longer.
func (p *pipe) drained() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.n == 0 || p.readErr != nil || p.err != nil
}
