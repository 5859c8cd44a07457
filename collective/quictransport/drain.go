package quictransport

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/ringtrain/ringtrain/collective/transport"
)

// Draining. QUIC's CONNECTION_CLOSE drops whatever a peer has not read yet: data still in
// the sender's buffers, and data already delivered but not yet returned by the receiver's
// Read (quic-go reports the close before buffered bytes). So "delivered" has to mean
// "consumed by the peer's Read", which only the peer can tell: each link counts the bytes
// its Write sent and its Read returned, and Shutdown asks every peer, on the connection's
// control stream (the hello's stream, kept open), to say when it has read as many bytes of
// each link as were written to it.

var _ transport.Shutdowner = (*Transport)(nil)

// Shutdown waits until every peer has read every byte this rank wrote so far, on every link
// (including links already closed: their data and end still travel), or until ctx ends. It
// is the flush half of an orderly end (NCCL's Finalize): call Shutdown, then Close, and no
// data of a completed exchange is lost, without waiting for the peers to reach their own
// Close. Close alone stays prompt and local and drops what is in flight; Abort kills it.
//
// Shutdown closes nothing and the transport stays usable; bytes written while it runs may
// or may not be covered. A peer that closes its end of a link having read fewer bytes makes
// Shutdown report it (the bytes will never be read); a peer that closes its transport in
// order is taken to be done with the data. It returns nil when everything was consumed;
// Err if the transport had failed or was closed (or fails or closes meanwhile); an error
// wrapping a *transport.PeerError if a peer fails meanwhile; and an error wrapping
// context.Cause(ctx) if ctx ends first. It is safe to call concurrently with anything else.
func (t *Transport) Shutdown(ctx context.Context) error {
	if err := t.Err(); err != nil {
		return err
	}
	errs := make([]error, len(t.peers))
	done := make(chan struct{})
	n := 0
	for _, p := range t.peers {
		if p == nil {
			continue
		}
		n++
		go func() {
			errs[p.rank] = t.drainPeer(ctx, p)
			done <- struct{}{}
		}()
	}
	for range n {
		<-done
	}
	return errors.Join(errs...)
}

type drainReq struct {
	id    uint64
	link  *link
	count int64
	ch    chan controlFrame
}

// drainPeer asks p to confirm it has read what was written on each link to it.
func (t *Transport) drainPeer(ctx context.Context, p *peer) error {
	p.mu.Lock()
	if p.conn == nil || p.deadErr != nil {
		// Never connected: nothing was written. Gone: what was written is lost either way;
		// an orderly close means the peer was done with it.
		err := p.deadErr
		orderly := p.orderly
		p.mu.Unlock()
		if err == nil || orderly {
			return nil
		}
		return fmt.Errorf("quictransport: Shutdown: %w", err)
	}
	var reqs []drainReq
	for _, l := range p.byStream {
		if w := l.written.Load(); w > 0 {
			r := drainReq{id: t.drainID.Add(1), link: l, count: w, ch: make(chan controlFrame, 1)}
			p.pending[r.id] = r.ch
			reqs = append(reqs, r)
		}
	}
	ctl, dead := p.ctl, p.dead
	p.mu.Unlock()
	if len(reqs) == 0 {
		return nil
	}
	defer func() {
		p.mu.Lock()
		for _, r := range reqs {
			delete(p.pending, r.id)
		}
		p.mu.Unlock()
	}()
	// Write the requests from another goroutine: a peer that stopped reading its control
	// stream must not keep us from honouring ctx.
	go func() {
		p.ctlMu.Lock()
		defer p.ctlMu.Unlock()
		for _, r := range reqs {
			if _, err := ctl.Write(encodeDrain(r.id, uint64(r.link.str.StreamID()), uint64(r.count))); err != nil {
				return // the connection is ending: dead says how
			}
		}
	}()
	var errs []error
	for i, r := range reqs {
		select {
		case f := <-r.ch:
			if f.status != drainedOK {
				errs = append(errs, fmt.Errorf("quictransport: Shutdown: rank %d closed channel %q having read %d of the %d bytes written to it",
					p.rank, r.link.channel, f.count, r.count))
			}
		case <-dead:
			p.mu.Lock()
			err, orderly := p.deadErr, p.orderly
			p.mu.Unlock()
			if orderly {
				return errors.Join(errs...)
			}
			if ferr := t.Err(); ferr != nil {
				err = ferr
			}
			return errors.Join(append(errs, fmt.Errorf("quictransport: Shutdown: %w", err))...)
		case <-ctx.Done():
			return errors.Join(append(errs, fmt.Errorf("quictransport: Shutdown: rank %d has not read everything written to it on %d channel(s): %w",
				p.rank, len(reqs)-i, context.Cause(ctx)))...)
		}
	}
	return errors.Join(errs...)
}

// controlLoop reads the control stream of conn to p until the connection ends.
func (t *Transport) controlLoop(p *peer, conn *quic.Conn, ctl *quic.Stream) {
	defer t.wg.Done()
	for {
		f, err := readControl(ctl)
		if err != nil {
			if errors.Is(err, errWire) {
				pe := &transport.PeerError{Rank: p.rank, Err: fmt.Errorf("sent a malformed control frame: %w", err)}
				t.log.Error("quictransport: protocol error", "peer", p.rank, "err", err)
				t.fail(pe)
			} else if errors.Is(err, io.EOF) && t.ctx.Err() == nil {
				// The peer never ends its control stream while the connection lives.
				<-conn.Context().Done()
			}
			return
		}
		switch f.typ {
		case frameDrain:
			t.wg.Add(1)
			go t.answerDrain(p, conn, ctl, f)
		case frameDrained:
			p.mu.Lock()
			ch := p.pending[f.id]
			delete(p.pending, f.id)
			p.mu.Unlock()
			if ch != nil {
				ch <- f
			}
		}
	}
}

// answerDrain waits until the link on stream f.stream has returned f.count bytes from Read,
// or was closed locally, and answers; it gives up silently when the connection ends.
func (t *Transport) answerDrain(p *peer, conn *quic.Conn, ctl *quic.Stream, f controlFrame) {
	defer t.wg.Done()
	delay := 100 * time.Microsecond
	timer := time.NewTimer(delay)
	defer timer.Stop()
	for {
		p.mu.Lock()
		l := p.byStream[quic.StreamID(f.stream)] // nil until the stream's header is read
		p.mu.Unlock()
		if l != nil {
			c := l.consumed.Load()
			status := byte(255)
			switch {
			case c >= int64(f.count):
				status = drainedOK
			case l.closedLocal.Load():
				status = drainedDiscarded
			}
			if status != 255 {
				p.ctlMu.Lock()
				ctl.Write(encodeDrained(f.id, status, uint64(c)))
				p.ctlMu.Unlock()
				return
			}
		}
		select {
		case <-conn.Context().Done():
			return
		case <-t.ctx.Done():
			return
		case <-timer.C:
		}
		delay = min(2*delay, 10*time.Millisecond)
		timer.Reset(delay)
	}
}
