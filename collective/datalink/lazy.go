package datalink

import (
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ringtrain/ringtrain/collective/transport"
)

// lazyLink is what Link returns: the link whose setup may still be running. Link never waits
// for the peer, so code that opens its links one after another works as over the base
// transport; the first Read or Write waits for the setup instead, within the deadline.
type lazyLink struct {
	peer int
	e    *entry

	real atomic.Pointer[transport.Link]

	mu       sync.Mutex
	deadline time.Time
	changed  chan struct{} // closed (and replaced) when the deadline changes or Close is called
	closed   bool
}

var _ transport.Link = (*lazyLink)(nil)

func newLazyLink(peer int, e *entry) *lazyLink {
	return &lazyLink{peer: peer, e: e, changed: make(chan struct{})}
}

// settle hands the set-up link over (with the deadline set meanwhile), or closes it if the
// lazy link was closed first. Called before e.ready closes.
func (z *lazyLink) settle() {
	z.mu.Lock()
	defer z.mu.Unlock()
	if z.e.err != nil {
		return
	}
	l := z.e.link
	if z.closed {
		l.Close()
		return
	}
	if !z.deadline.IsZero() {
		l.SetDeadline(z.deadline)
	}
	z.real.Store(&l)
}

func (z *lazyLink) wait() (transport.Link, error) {
	if l := z.real.Load(); l != nil {
		return *l, nil
	}
	for {
		z.mu.Lock()
		dl, changed, closed := z.deadline, z.changed, z.closed
		z.mu.Unlock()
		if closed {
			return nil, transport.ErrClosed
		}
		var timeout <-chan time.Time
		if !dl.IsZero() {
			d := time.Until(dl)
			if d <= 0 {
				return nil, os.ErrDeadlineExceeded
			}
			t := time.NewTimer(d)
			defer t.Stop()
			timeout = t.C
		}
		select {
		case <-z.e.ready:
			if z.e.err != nil {
				return nil, z.e.err
			}
			if l := z.real.Load(); l != nil {
				return *l, nil
			}
			return nil, transport.ErrClosed
		case <-changed:
		case <-timeout:
			return nil, os.ErrDeadlineExceeded
		}
	}
}

func (z *lazyLink) Read(p []byte) (int, error) {
	l, err := z.wait()
	if err != nil {
		return 0, err
	}
	return l.Read(p)
}

func (z *lazyLink) Write(p []byte) (int, error) {
	l, err := z.wait()
	if err != nil {
		return 0, err
	}
	return l.Write(p)
}

func (z *lazyLink) SetDeadline(t time.Time) error {
	z.mu.Lock()
	defer z.mu.Unlock()
	z.deadline = t
	close(z.changed)
	z.changed = make(chan struct{})
	if l := z.real.Load(); l != nil {
		return (*l).SetDeadline(t)
	}
	return nil
}

func (z *lazyLink) Peer() int { return z.peer }

func (z *lazyLink) Close() error {
	z.mu.Lock()
	defer z.mu.Unlock()
	if z.closed {
		return nil
	}
	z.closed = true
	close(z.changed)
	z.changed = make(chan struct{})
	if l := z.real.Load(); l != nil {
		return (*l).Close()
	}
	return nil
}

// Kind says what carries this link once set up ("" before).
func (z *lazyLink) Kind() string {
	select {
	case <-z.e.ready:
		return z.e.kind
	default:
		return ""
	}
}
