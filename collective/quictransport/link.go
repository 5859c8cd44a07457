package quictransport

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/ringtrain/ringtrain/collective/transport"
)

// link is one QUIC stream carrying one channel to one peer.
type link struct {
	t       *Transport
	peer    *peer
	channel string
	str     *quic.Stream
}

var _ transport.Link = (*link)(nil)

func (l *link) Peer() int { return l.peer.rank }

// Read reads from the stream. io.EOF means the peer closed the link; other errors wrap a
// *transport.PeerError when the peer failed, or os.ErrDeadlineExceeded after SetDeadline.
func (l *link) Read(p []byte) (int, error) {
	n, err := l.str.Read(p)
	if err != nil && err != io.EOF {
		err = l.t.linkErr(l.peer.rank, l.channel, "read", err, nil)
	}
	return n, err
}

// Write writes all of p (quic-go sends straight from p, without copying it first) or fails
// like Read.
func (l *link) Write(p []byte) (int, error) {
	n, err := l.str.Write(p)
	if err != nil {
		err = l.t.linkErr(l.peer.rank, l.channel, "write", err, nil)
	}
	return n, err
}

// SetDeadline bounds blocked and future Reads and Writes (zero: no deadline).
func (l *link) SetDeadline(t time.Time) error { return l.str.SetDeadline(t) }

// Close ends both directions: the peer reads the data already sent and then io.EOF, and its
// further writes fail. A later Link call for the same channel opens a fresh stream, so both
// sides must have closed before reusing the name.
func (l *link) Close() error {
	p := l.peer
	p.mu.Lock()
	if s, ok := p.links[l.channel]; ok && s.link == l {
		delete(p.links, l.channel)
	}
	p.mu.Unlock()
	l.str.CancelRead(streamCodeLinkClosed)
	return l.str.Close()
}

// linkErr explains err from an operation on a stream to rank; ctx, if not nil, is the
// context the operation ran under.
func (t *Transport) linkErr(rank int, channel, op string, err error, ctx context.Context) error {
	prefix := fmt.Sprintf("quictransport: %s on channel %q with rank %d", op, channel, rank)
	if ctx != nil && ctx.Err() != nil {
		return fmt.Errorf("%s: %w", prefix, context.Cause(ctx))
	}
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return fmt.Errorf("%s: %w", prefix, err)
	}
	var se *quic.StreamError
	if errors.As(err, &se) {
		if se.Remote {
			return fmt.Errorf("%s: %w", prefix, &transport.PeerError{Rank: rank, Err: fmt.Errorf("closed channel %q", channel)})
		}
		return fmt.Errorf("%s: %w", prefix, transport.ErrClosed)
	}
	if errors.Is(err, quic.ErrStreamClosed) {
		return fmt.Errorf("%s: %w", prefix, transport.ErrClosed)
	}
	var ae *quic.ApplicationError
	var ie *quic.IdleTimeoutError
	var he *quic.HandshakeTimeoutError
	var sr *quic.StatelessResetError
	if errors.As(err, &ae) || errors.As(err, &ie) || errors.As(err, &he) || errors.As(err, &sr) {
		return fmt.Errorf("%s: %w", prefix, t.classify(rank, err))
	}
	return fmt.Errorf("%s: %w", prefix, &transport.PeerError{Rank: rank, Err: err})
}
