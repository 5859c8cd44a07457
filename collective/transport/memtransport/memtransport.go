// Package memtransport is an in-process implementation of transport.Transport: every rank of a
// job lives in the same Go process and its links are byte pipes in memory.
//
// It exists so that the collective algorithms can be tested quickly and deterministically
// without sockets, and it is the reference for what a Transport must do:
//
//   - Links buffer a bounded number of bytes per direction (Options.Window), like a
//     flow-control window. A Write larger than what the reader has drained blocks, so an
//     algorithm that would deadlock over a real network with bounded buffers deadlocks here too.
//   - SetDeadline bounds blocked Reads and Writes and may be changed while they are blocked.
//   - Abort on one rank fails every other rank's transport with an error that still names the
//     guilty peer (errors.As finds the *transport.PeerError of the original cause, if any).
//   - Kill simulates a crash: the killed rank's links break at once and its peers' Reads and
//     Writes on links to it fail with a *transport.PeerError naming it. Nothing else changes for
//     the peers, as over a real network where only the neighbours notice a lost connection.
//   - Close is a graceful exit: the peer reads what was already buffered, then io.EOF.
//
// Link never blocks waiting for the peer: a link is usable as soon as either side asks for it,
// and bytes written before the peer asks are buffered (up to the window) until it does.
package memtransport

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/ringtrain/ringtrain/collective/transport"
)

// DefaultWindow is the per-direction buffering of a link when Options.Window is zero.
const DefaultWindow = 64 << 10

// ErrKilled is the error a killed rank sees on its own transport and links.
var ErrKilled = errors.New("memtransport: rank killed")

// ErrPeerLost is wrapped in the *transport.PeerError that peers of a killed rank see.
var ErrPeerLost = errors.New("connection lost")

// errPeerClosed is wrapped in the *transport.PeerError a writer sees once its peer closed.
var errPeerClosed = errors.New("peer closed the link")

// Options configures a set of in-process transports.
type Options struct {
	// Window is the number of bytes a link buffers in each direction before Write blocks.
	// Zero means DefaultWindow (64 KiB). Tests use small windows to make sure algorithms
	// do not depend on buffering.
	Window int
}

// New returns the transports of an n-rank in-process job with default options; element i is
// rank i. It panics if n < 1, which is a programming error in a test.
func New(n int) []*Transport { return NewWithOptions(n, Options{}) }

// NewWithOptions is New with explicit options.
func NewWithOptions(n int, opts Options) []*Transport {
	if n < 1 {
		panic(fmt.Sprintf("memtransport: New(%d): need at least one rank", n))
	}
	w := opts.Window
	if w <= 0 {
		w = DefaultWindow
	}
	nw := &network{window: w, pairs: make(map[pairKey]*pair)}
	nw.ranks = make([]*Transport, n)
	for i := range nw.ranks {
		nw.ranks[i] = &Transport{nw: nw, rank: i, done: make(chan struct{})}
	}
	return nw.ranks
}

// AsTransports converts the result of New to the interface type, for APIs that take
// []transport.Transport.
func AsTransports(ts []*Transport) []transport.Transport {
	out := make([]transport.Transport, len(ts))
	for i, t := range ts {
		out[i] = t
	}
	return out
}

type pairKey struct {
	lo, hi  int
	channel string
}

// pair is one named channel between two ranks: a pipe in each direction.
type pair struct {
	toHi, toLo *pipe
	ends       [2]*link // ends[0] belongs to lo, ends[1] to hi
}

type network struct {
	window int
	ranks  []*Transport

	mu    sync.Mutex
	pairs map[pairKey]*pair
}

// endsOf returns rank r's end of every pair it is part of.
func (nw *network) endsOf(r int) []*link {
	nw.mu.Lock()
	defer nw.mu.Unlock()
	var out []*link
	for k, p := range nw.pairs {
		switch r {
		case k.lo:
			out = append(out, p.ends[0])
		case k.hi:
			out = append(out, p.ends[1])
		}
	}
	return out
}

// Transport is one rank's view of an in-process job. It implements transport.Transport.
type Transport struct {
	nw   *network
	rank int

	mu     sync.Mutex
	done   chan struct{}
	err    error
	killed bool
}

var _ transport.Transport = (*Transport)(nil)

// Rank is this transport's world rank.
func (t *Transport) Rank() int { return t.rank }

// Size is the number of ranks in the job.
func (t *Transport) Size() int { return len(t.nw.ranks) }

// Done is closed once the transport has failed, been aborted, killed or closed.
func (t *Transport) Done() <-chan struct{} { return t.done }

// Err says why Done was closed; nil while the transport is healthy.
func (t *Transport) Err() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.err
}

// Link returns this rank's end of the channel named channel to peer. It does not wait for the
// peer: the link is usable at once.
func (t *Transport) Link(ctx context.Context, peer int, channel string) (transport.Link, error) {
	if peer < 0 || peer >= len(t.nw.ranks) || peer == t.rank {
		return nil, fmt.Errorf("memtransport: rank %d: Link to invalid peer %d (job has %d ranks)", t.rank, peer, len(t.nw.ranks))
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := t.Err(); err != nil {
		return nil, err
	}
	k := pairKey{lo: min(t.rank, peer), hi: max(t.rank, peer), channel: channel}
	nw := t.nw
	nw.mu.Lock()
	p := nw.pairs[k]
	if p == nil {
		p = &pair{toHi: newPipe(nw.window), toLo: newPipe(nw.window)}
		p.ends[0] = &link{t: nw.ranks[k.lo], peer: k.hi, rd: p.toLo, wr: p.toHi}
		p.ends[1] = &link{t: nw.ranks[k.hi], peer: k.lo, rd: p.toHi, wr: p.toLo}
		for _, e := range p.ends {
			e.dl.init()
			e.closed = make(chan struct{})
		}
		nw.pairs[k] = p
		// A pair created after a peer died or closed must show that at once.
		for i, e := range p.ends {
			other := nw.ranks[p.ends[1-i].t.rank]
			other.mu.Lock()
			dead, closed := other.killed, other.err != nil
			other.mu.Unlock()
			if dead {
				e.rd.fail(&transport.PeerError{Rank: other.rank, Err: ErrPeerLost})
				e.wr.fail(&transport.PeerError{Rank: other.rank, Err: ErrPeerLost})
			} else if closed {
				e.rd.closeWrite()
				e.wr.closeRead(&transport.PeerError{Rank: other.rank, Err: errPeerClosed})
			}
		}
	}
	nw.mu.Unlock()
	if t.rank == k.lo {
		return p.ends[0], nil
	}
	return p.ends[1], nil
}

// fail marks t failed with err unless it already failed; it reports whether it did.
func (t *Transport) fail(err error, killed bool) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.err != nil {
		return false
	}
	t.err = err
	t.killed = killed
	close(t.done)
	return true
}

// Abort fails this transport with cause and every other live rank's transport with an error
// naming this rank (or, when cause already wraps a *transport.PeerError, keeping that one, so
// that the rank at the origin of a cascade stays the one errors.As finds).
func (t *Transport) Abort(cause error) {
	if cause == nil {
		cause = errors.New("aborted")
	}
	if !t.fail(cause, false) {
		return
	}
	var pe *transport.PeerError
	var remote error
	if errors.As(cause, &pe) {
		remote = fmt.Errorf("rank %d aborted the job: %w", t.rank, cause)
	} else {
		remote = &transport.PeerError{Rank: t.rank, Err: fmt.Errorf("aborted the job: %w", cause)}
	}
	for _, o := range t.nw.ranks {
		if o != t {
			o.fail(remote, false)
		}
	}
}

// Kill simulates a crash of this rank: its own transport fails with ErrKilled and every link
// to it breaks; peers reading or writing such a link get a *transport.PeerError naming this
// rank with ErrPeerLost. Buffered bytes are lost, as on a crash.
func (t *Transport) Kill() {
	if !t.fail(ErrKilled, true) {
		return
	}
	for _, e := range t.nw.endsOf(t.rank) {
		pe := &transport.PeerError{Rank: t.rank, Err: ErrPeerLost}
		e.rd.fail(pe)
		e.wr.fail(pe)
	}
}

// Close shuts this rank down gracefully: its links are closed (peers read what was buffered,
// then io.EOF; their Writes fail with a *transport.PeerError) and its own calls fail with
// transport.ErrClosed. Close is idempotent.
func (t *Transport) Close() error {
	if !t.fail(transport.ErrClosed, false) {
		return nil
	}
	for _, e := range t.nw.endsOf(t.rank) {
		e.Close()
	}
	return nil
}

var _ transport.Shutdowner = (*Transport)(nil)

// Shutdown waits until the peers have read every byte this rank wrote on its links (or
// closed their ends, or the links broke), or until ctx ends (see transport.Shutdowner). Close
// never drops buffered bytes here, so Shutdown is only needed for the same semantics as
// transports whose Close does.
func (t *Transport) Shutdown(ctx context.Context) error {
	if err := t.Err(); err != nil {
		return err
	}
	delay := 100 * time.Microsecond
	for {
		pending := 0
		for _, e := range t.nw.endsOf(t.rank) {
			if !e.wr.drained() {
				pending++
			}
		}
		if pending == 0 {
			return nil
		}
		timer := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			timer.Stop()
			return fmt.Errorf("memtransport: rank %d: Shutdown: %d links still hold unread bytes: %w", t.rank, pending, context.Cause(ctx))
		case <-t.done:
			timer.Stop()
			return t.Err()
		case <-timer.C:
		}
		delay = min(2*delay, 10*time.Millisecond)
	}
}
