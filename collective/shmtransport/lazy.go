package shmtransport

import (
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ringtrain/ringtrain/collective/transport"
)

// lazyLink is what Link returns: the link whose setup (the exchange over the base link that
// picks shared memory or the base link) may still be running. Link itself never waits for the
// peer, so code that opens its links one after another (right neighbour, then left) works as
// it does over a base transport that only makes the lower rank's Link return at once; the
// first Read or Write waits for the setup instead, within the deadline.
type lazyLink struct {
	peer int
	e    *linkEntry

	real atomic.Pointer[transport.Link] // set once the setup succeeded

	mu       sync.Mutex
	deadline time.Time
	changed  chan struct{} // closed (and replaced) when the deadline changes or Close is called
	closed   bool
}

var _ transport.Link = (*lazyLink)(nil)

func newLazyLink(peer int, e *linkEntry) *lazyLink {
	return &lazyLink{peer: peer, e: e, changed: make(chan struct{})}
}

// settle is called by the setup once e.link and e.err are final (before e.ready closes):
// it hands the link over, with the deadline set meanwhile, or closes it if the lazy link was
// closed first.
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

// wait returns the set-up link, waiting for the setup within the deadline.
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
			return nil, transport.ErrClosed // closed while the setup finished
		case <-changed:
		case <-timeout:
			return nil, os.ErrDeadlineExceeded
		}
	}
}

// Read reads from the link once it is set up.
func (z *lazyLink) Read(p []byte) (int, error) {
	l, err := z.wait()
	if err != nil {
		return 0, err
	}
	return l.Read(p)
}

// Write writes to the link once it is set up.
func (z *lazyLink) Write(p []byte) (int, error) {
	l, err := z.wait()
	if err != nil {
		return 0, err
	}
	return l.Write(p)
}

// SetDeadline bounds blocked Reads and Writes, including the wait for the setup.
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

// Peer is the world rank at the other end.
func (z *lazyLink) Peer() int { return z.peer }

// Close closes the link, now or as soon as its setup ends.
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
