package collective

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/ringtrain/ringtrain/collective/transport"
)

// Point-to-point messages travel on channels of their own, one per (sender, receiver, tag):
// messages with different tags never queue behind each other, so a Recv for tag 5 is not
// held up or confused by a tag 6 message that arrived first, without the receiver having to
// buffer unexpected messages. Within one (sender, receiver, tag) messages arrive in order.
// Each message is a header (kind Send, a per-channel message number, count, tag) and the
// float32 payload.

type p2pKey struct {
	peer, tag int
	send      bool
}

type p2pLink struct {
	sem  chan struct{} // held by the one Send (or Recv) using the link
	link transport.Link
	seq  uint64
	hdr  [headerSize]byte
}

// acquire returns the link for (peer, tag, direction), opening it if needed, with its
// semaphore held; release it with <-pl.sem.
func (g *Group) acquire(ctx context.Context, peer, tag int, send bool) (*p2pLink, error) {
	key := p2pKey{peer: peer, tag: tag, send: send}
	g.p2pMu.Lock()
	pl := g.p2pLinks[key]
	if pl == nil {
		pl = &p2pLink{sem: make(chan struct{}, 1)}
		g.p2pLinks[key] = pl
	}
	g.p2pMu.Unlock()
	select {
	case pl.sem <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	if pl.link == nil {
		from, to := g.worldRank, g.ranks[peer]
		if !send {
			from, to = to, from
		}
		l, err := g.t.Link(ctx, g.ranks[peer], fmt.Sprintf("%s.p2p.%d-%d.%d", g.name, from, to, tag))
		if err != nil {
			<-pl.sem
			return nil, err
		}
		g.p2pMu.Lock()
		pl.link = l // under p2pMu, which Close takes to close every p2p link
		g.p2pMu.Unlock()
		g.mu.Lock()
		closed := g.closed // Close sets closed before it closes the links it finds
		g.mu.Unlock()
		if closed {
			l.Close()
		}
	}
	return pl, nil
}

// p2pIO runs io on pl's link with ctx's cancellation turned into an expired deadline. It
// returns the bytes moved and the error; after cancellation the deadline is cleared again.
func p2pIO(ctx context.Context, pl *p2pLink, io func() (int, error)) (int, error) {
	if ctx.Done() == nil {
		return io()
	}
	fired := make(chan struct{})
	stop := context.AfterFunc(ctx, func() {
		pl.link.SetDeadline(time.Unix(1, 0))
		close(fired)
	})
	n, err := io()
	if !stop() {
		<-fired
		pl.link.SetDeadline(time.Time{})
		if err != nil {
			err = context.Cause(ctx)
		}
	}
	return n, err
}

// Send sends buf to member peer (a group rank) with the given tag; the peer receives it with
// Recv(ctx, buf2, Rank(), tag) where len(buf2) == len(buf). Send may return as soon as the
// transport has buffered the message, or wait until the peer receives it: never rely on
// buffering (have the receiving side post its Recv, or run the Send in its own goroutine).
//
// Send and Recv are not ordered with the group's collectives and may run concurrently with
// them and with each other. If ctx ends before any byte was sent, Send returns ctx's error
// and the link stays usable; if it ends, or the link fails, in the middle of a message, the
// stream is torn and the group fails as for a collective (see Group). Send waits as long as
// ctx allows (Options.Timeout does not apply); a peer that dies fails it through the
// transport.
func (g *Group) Send(ctx context.Context, buf []float32, peer, tag int) error {
	return g.send(ctx, vecOf(buf), peer, tag)
}

func (g *Group) send(ctx context.Context, v vec, peer, tag int) error {
	call := fmt.Sprintf("Send(peer=%d, tag=%d, count=%d%s)", peer, tag, v.n, dtNote(v.dt))
	if err := g.checkP2P(call, peer); err != nil {
		return err
	}
	pl, err := g.acquire(ctx, peer, tag, true)
	if err != nil {
		return g.p2pError(ctx, call, 0, err)
	}
	defer func() { <-pl.sem }()
	h := header{kind: kindSend, dtype: v.dt, seq: pl.seq, count: uint64(v.n), arg: int64(tag)}
	h.encode(&pl.hdr)
	n, err := p2pIO(ctx, pl, func() (int, error) {
		n, err := pl.link.Write(pl.hdr[:])
		if err == nil && v.n > 0 {
			var m int
			m, err = pl.link.Write(v.raw)
			n += m
		}
		return n, err
	})
	if err != nil {
		return g.p2pError(ctx, call, n, err)
	}
	pl.seq++
	return nil
}

// Recv receives into buf the next message that member peer (a group rank) sent to this
// member with the given tag. The message must have exactly len(buf) elements: a different
// size is a *MismatchError, which fails the group. Cancellation and failures behave as for
// Send.
func (g *Group) Recv(ctx context.Context, buf []float32, peer, tag int) error {
	return g.recv(ctx, vecOf(buf), peer, tag)
}

func (g *Group) recv(ctx context.Context, v vec, peer, tag int) error {
	call := fmt.Sprintf("Recv(peer=%d, tag=%d, count=%d%s)", peer, tag, v.n, dtNote(v.dt))
	if err := g.checkP2P(call, peer); err != nil {
		return err
	}
	pl, err := g.acquire(ctx, peer, tag, false)
	if err != nil {
		return g.p2pError(ctx, call, 0, err)
	}
	defer func() { <-pl.sem }()
	var h header
	n, err := p2pIO(ctx, pl, func() (int, error) {
		n, err := io.ReadFull(pl.link, pl.hdr[:])
		if err != nil {
			return n, err
		}
		if err := h.decode(pl.hdr[:]); err != nil {
			return n, fmt.Errorf("from rank %d: %w", g.ranks[peer], err)
		}
		if h.kind != kindSend || h.dtype != v.dt || h.compression != NoCompression || h.arg != int64(tag) || h.seq != pl.seq || h.count != uint64(v.n) {
			peerCall := fmt.Sprintf("Send(peer=%d, tag=%d, count=%d%s)", g.rank, h.arg, h.count, dtNote(h.dtype))
			if h.kind != kindSend || h.compression != NoCompression || h.seq != pl.seq {
				peerCall = h.describe(showSeq) + fmt.Sprintf(" (expected message #%d)", pl.seq)
			}
			return n, &MismatchError{Rank: g.worldRank, Call: call, PeerRank: g.ranks[peer], PeerCall: peerCall}
		}
		m, err := io.ReadFull(pl.link, v.raw)
		return n + m, err
	})
	if err != nil {
		return g.p2pError(ctx, call, n, err)
	}
	pl.seq++
	return nil
}

func (g *Group) checkP2P(call string, peer int) error {
	if err := g.checkPeer(call, peer); err != nil {
		return err
	}
	if peer == g.rank {
		return fmt.Errorf("collective: %s: cannot send to or receive from oneself (rank %d)", call, peer)
	}
	return g.failure()
}

// p2pError turns the error of a Send or Recv that moved n bytes into its result: a clean
// cancellation stays local, anything else fails the group.
func (g *Group) p2pError(ctx context.Context, call string, n int, err error) error {
	if n == 0 && ctx.Err() != nil {
		return fmt.Errorf("collective: rank %d: %s: %w", g.worldRank, call, context.Cause(ctx))
	}
	return g.fail(call, err)
}

// dtNote names a dtype other than float32 in a Send or Recv call's description (float32, the
// original type of Send and Recv, goes unnamed).
func dtNote(dt dtype) string {
	if dt == dtF32 {
		return ""
	}
	return ", " + dt.String()
}
