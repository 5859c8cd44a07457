package transport

import (
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// Lazy is a Link whose setup may still be running: what a layered transport (shared memory,
// data links) hands out from Link so that Link never waits for the peer. Code that opens its
// links one after another then works as over the base transport; the first Read or Write
// waits for the setup instead, within the deadline. The layer calls Settle exactly once.
type Lazy struct {
	peer  int
	ready chan struct{} // closed by Settle
	err   error         // the setup's error, final before ready closes

	real atomic.Pointer[Link] // set once the setup succeeded

	mu       sync.Mutex
	deadline time.Time
	changed  chan struct{} // closed (and replaced) when the deadline changes or Close is called
	closed   bool
}

var _ Link = (*Lazy)(nil)

// NewLazy returns the lazy link to peer, not yet settled.
func NewLazy(peer int) *Lazy {
	return &Lazy{peer: peer, ready: make(chan struct{}), changed: make(chan struct{})}
}

// Settle ends the setup: it hands l over (with the deadline set meanwhile), or closes it if
// the lazy link was closed first; with err, Reads and Writes fail with err.
func (z *Lazy) Settle(l Link, err error) {
	z.mu.Lock()
	defer z.mu.Unlock()
	z.err = err
	defer close(z.ready)
	if err != nil {
		return
	}
	if z.closed {
		l.Close()
		return
	}
	if !z.deadline.IsZero() {
		l.SetDeadline(z.deadline)
	}
	z.real.Store(&l)
}

// Wait returns the set-up link, waiting for the setup within the deadline.
func (z *Lazy) Wait() (Link, error) {
	if l := z.real.Load(); l != nil {
		return *l, nil
	}
	for {
		z.mu.Lock()
		dl, changed, closed := z.deadline, z.changed, z.closed
		z.mu.Unlock()
		if closed {
			return nil, ErrClosed
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
		case <-z.ready:
			if z.err != nil {
				return nil, z.err
			}
			if l := z.real.Load(); l != nil {
				return *l, nil
			}
			return nil, ErrClosed // closed while the setup finished
		case <-changed:
		case <-timeout:
			return nil, os.ErrDeadlineExceeded
		}
	}
}

// Read reads from the link once it is set up.
func (z *Lazy) Read(p []byte) (int, error) {
	l, err := z.Wait()
	if err != nil {
		return 0, err
	}
	return l.Read(p)
}

// Write writes to the link once it is set up.
func (z *Lazy) Write(p []byte) (int, error) {
	l, err := z.Wait()
	if err != nil {
		return 0, err
	}
	return l.Write(p)
}

// SetDeadline bounds blocked Reads and Writes, including the wait for the setup.
func (z *Lazy) SetDeadline(t time.Time) error {
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
func (z *Lazy) Peer() int { return z.peer }

// Close closes the link, now or as soon as its setup ends.
func (z *Lazy) Close() error {
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
