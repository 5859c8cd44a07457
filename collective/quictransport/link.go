package quictransport

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/ringtrain/ringtrain/collective/transport"
)

// settleGrace bounds how long a link waits, after its peer ended the stream (FIN or reset),
// for the connection to end too, so that an abort reason sent right behind the stream's end
// is reported instead of a bare io.EOF (see link.settle). Capped at Config.PeerTimeout.
const settleGrace = 250 * time.Millisecond

// link is one QUIC stream carrying one channel to one peer.
type link struct {
	t       *Transport
	peer    *peer
	conn    *quic.Conn
	channel string
	str     *quic.Stream

	written     atomic.Int64 // bytes Write has handed to the stream
	consumed    atomic.Int64 // bytes Read has returned
	closedLocal atomic.Bool  // Close was called (or the stream was refused)

	// settled caches what settle concluded about the end of the read side, so that Reads
	// after the first io.EOF do not wait again.
	settleOnce sync.Once
	settledErr error // nil: the EOF stands
}

var _ transport.Link = (*link)(nil)

func (l *link) Peer() int { return l.peer.rank }

// Read reads from the stream. io.EOF means the peer closed the link in order; other errors
// wrap a *transport.PeerError when the peer failed, or os.ErrDeadlineExceeded after
// SetDeadline.
//
// quic-go reports io.EOF for a stream whose FIN arrived even when the connection then closes
// with an abort reason, and a failing peer's FIN can leave just before its abort reason. So on
// io.EOF Read waits briefly (settleGrace) for the connection to end: if it ends with a
// failure, Read reports that failure, naming the guilty rank, instead of io.EOF.
func (l *link) Read(p []byte) (int, error) {
	n, err := l.str.Read(p)
	l.consumed.Add(int64(n))
	if err == nil {
		return n, nil
	}
	if err == io.EOF {
		l.settleOnce.Do(func() { l.settledErr = l.settle("read", err) })
		if l.settledErr != nil {
			return n, l.settledErr
		}
		return n, io.EOF
	}
	return n, l.fault("read", err)
}

// Write writes all of p (quic-go sends straight from p, without copying it first) or fails
// like Read.
func (l *link) Write(p []byte) (int, error) {
	n, err := l.str.Write(p)
	l.written.Add(int64(n))
	if err != nil {
		err = l.fault("write", err)
	}
	return n, err
}

// SetDeadline bounds blocked and future Reads and Writes (zero: no deadline).
func (l *link) SetDeadline(t time.Time) error { return l.str.SetDeadline(t) }

// Close ends both directions. While the transport is healthy (or closed in order) it is an
// orderly close: the peer reads the data already sent and then io.EOF, and its further
// writes fail. Once the transport has failed or aborted, Close resets the stream instead,
// with an error code naming the guilty rank, so that the peer never mistakes the end of a
// failing rank's stream for an orderly one. A later Link call for the same channel opens a
// fresh stream, so both sides must have closed before reusing the name.
func (l *link) Close() error {
	p := l.peer
	l.closedLocal.Store(true)
	p.mu.Lock()
	if s, ok := p.links[l.channel]; ok && s.link == l {
		delete(p.links, l.channel)
	}
	p.mu.Unlock()
	if guilty, failed := l.t.failedGuilty(); failed {
		code := abortStreamCode(guilty)
		l.str.CancelWrite(code)
		l.str.CancelRead(code)
		return nil
	}
	l.str.CancelRead(streamCodeLinkClosed)
	return l.str.Close()
}

// fault explains err from a Read or Write on the stream. A remote end of the stream (a
// reset, or the peer no longer reading) is settled first, like io.EOF in Read.
func (l *link) fault(op string, err error) error {
	var se *quic.StreamError
	if errors.As(err, &se) && se.Remote {
		if settled := l.settle(op, err); settled != nil {
			return settled
		}
	}
	return l.t.linkErr(l.peer.rank, l.channel, op, err, nil)
}

// settle is called when the peer ended the stream (end, a reset with code
// streamCode, STOP_SENDING). It waits up to settleGrace for the connection to end as well
// and returns the failure it ended with, or nil if the connection stayed up or closed in
// order. A reset with an abort code names the guilty rank by itself: if the connection's
// reason does not follow in time, the transport fails with that rank.
func (l *link) settle(op string, err error) error {
	t := l.t
	guilty, aborting := -1, false
	var se *quic.StreamError
	if errors.As(err, &se) && se.Remote {
		guilty, aborting = parseAbortStreamCode(se.ErrorCode, t.cfg.Size)
	}
	grace := min(settleGrace, t.cfg.PeerTimeout)
	timer := time.NewTimer(grace)
	defer timer.Stop()
	select {
	case <-l.conn.Context().Done():
		cause := context.Cause(l.conn.Context())
		var ae *quic.ApplicationError
		if errors.As(cause, &ae) && ae.Remote && ae.ErrorCode == codeClosed {
			return nil // closed in order: the end of the stream stands
		}
		if errors.As(cause, &ae) && !ae.Remote {
			// We closed it: a failure if the transport failed, else the end stands.
			if ferr := t.failure(); ferr != nil {
				return fmt.Errorf("quictransport: %s on channel %q with rank %d: %w", op, l.channel, l.peer.rank, ferr)
			}
			return nil
		}
		return t.linkErr(l.peer.rank, l.channel, op, cause, nil)
	case <-t.done:
		if ferr := t.failure(); ferr != nil {
			return fmt.Errorf("quictransport: %s on channel %q with rank %d: %w", op, l.channel, l.peer.rank, ferr)
		}
		return nil
	case <-timer.C:
	}
	if !aborting {
		return nil
	}
	pe := &transport.PeerError{Rank: guilty, Err: &abortError{by: l.peer.rank, msg: fmt.Sprintf("aborted (reset channel %q; no reason received within %v)", l.channel, grace)}}
	t.fail(pe)
	return fmt.Errorf("quictransport: %s on channel %q with rank %d: %w", op, l.channel, l.peer.rank, pe)
}

// linkErr explains err from an operation on a stream to rank; ctx, if not nil, is the
// context the operation ran under. An error that shows the connection ended with a failure
// fails the transport before linkErr returns, so that whatever the caller does next (closing
// its other links, say) cannot overtake the abort notice to the other peers.
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
			if guilty, ok := parseAbortStreamCode(se.ErrorCode, t.cfg.Size); ok {
				return fmt.Errorf("%s: %w", prefix, &transport.PeerError{Rank: guilty, Err: &abortError{by: rank, msg: fmt.Sprintf("aborted (reset channel %q)", channel)}})
			}
			return fmt.Errorf("%s: %w", prefix, &transport.PeerError{Rank: rank, Err: fmt.Errorf("closed channel %q", channel)})
		}
		if ferr := t.failure(); ferr != nil {
			return fmt.Errorf("%s: %w", prefix, ferr)
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
		return fmt.Errorf("%s: %w", prefix, t.connEnded(t.peers[rank], err))
	}
	return fmt.Errorf("%s: %w", prefix, &transport.PeerError{Rank: rank, Err: err})
}
