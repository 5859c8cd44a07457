// Package transport is the seam between the collective algorithms and the wires that carry
// their bytes. The algorithms in package collective only ever see a Link (an ordered, reliable
// byte stream to one peer) obtained from a Transport; QUIC (package quictransport) is one
// implementation, and a same-host shared-memory link can slot in beside it without the ring
// code changing. This mirrors Gloo's split between algorithms and transport pairs.
package transport

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"
)

// Link is one end of a named channel between two ranks: an ordered, reliable, bidirectional
// byte stream. Both ranks obtain it from Transport.Link with the same channel name.
//
// Read follows io.Reader. Write writes all of p or returns an error. One goroutine may Read
// while another Writes; neither direction is safe for use by several goroutines at once.
// SetDeadline bounds every blocked Read and Write (the zero time means no deadline), so that a
// context's cancellation can be turned into a prompt error.
type Link interface {
	io.Reader
	io.Writer
	SetDeadline(t time.Time) error
	// Peer is the world rank at the other end.
	Peer() int
	// Close releases the link; the peer's pending Read sees an error or io.EOF.
	Close() error
}

// Transport makes Links between the ranks of one job and watches the peers' health.
type Transport interface {
	// Rank and Size are this process's world rank and the number of ranks in the job.
	Rank() int
	Size() int
	// Link returns this rank's end of the channel named channel to peer. Both ranks must ask
	// for the same (peer, channel) pair; the call blocks until the link is usable or ctx ends.
	// Asking again for a channel already open returns the same Link.
	Link(ctx context.Context, peer int, channel string) (Link, error)
	// Abort tears every connection down and tells each connected peer cause, so that a failure
	// seen by one rank reaches the others promptly instead of after a timeout.
	Abort(cause error)
	// Done is closed once the transport has failed or been closed; Err then says why.
	Done() <-chan struct{}
	Err() error
	// Close releases every connection, socket and goroutine the transport owns. It is prompt
	// and local: bytes written but not yet consumed by a peer may be dropped (QUIC does; see
	// Shutdowner for a transport that can flush them first).
	Close() error
}

// Shutdowner is implemented by transports that can flush: Shutdown waits until every byte
// this rank has written so far, on every link, has been consumed by the peer's Read (or the
// peer closed that link or its transport in order), or until ctx ends. It neither closes nor
// aborts anything: the transport stays usable, and bytes written while Shutdown runs may or
// may not be covered. It returns nil when everything was consumed, the transport's error if
// it had failed or was closed, an error wrapping a *PeerError if a peer failed meanwhile, and
// an error wrapping context.Cause(ctx) if ctx ended first.
//
// The three ways to end, as in NCCL: Shutdown then Close is Finalize then Destroy (flush,
// then free: no data of a completed op is lost, and nobody waits for slow neighbours to call
// Close); Close alone is Destroy (prompt and local: data still in flight may be dropped,
// peers see the links end in order); Abort kills in-flight work and tells every peer why.
//
// It is a separate interface so that wrappers of a Transport (shared memory over QUIC) keep
// compiling; callers check for it with a type assertion and fall back to their own barrier.
type Shutdowner interface {
	Shutdown(ctx context.Context) error
}

// ErrClosed is returned by operations on a transport or link that was closed locally.
var ErrClosed = errors.New("transport: closed")

// ErrPeerClosed is wrapped (in a *PeerError naming the peer) in the errors a rank sees once a
// peer closed its whole transport in order (Close, not Abort and not a crash). Such a peer is
// done with the job's data, so layers above (a data link's Shutdown, say) take it as an
// orderly end rather than a failure.
var ErrPeerClosed = errors.New("closed its transport")

// PeerError reports that the rank Rank failed, vanished or aborted. Errors returned by links
// and by the collectives wrap one, so callers can find the guilty rank with errors.As.
type PeerError struct {
	Rank int   // world rank of the peer at fault
	Err  error // what was observed
}

func (e *PeerError) Error() string { return fmt.Sprintf("rank %d: %v", e.Rank, e.Err) }
func (e *PeerError) Unwrap() error { return e.Err }
