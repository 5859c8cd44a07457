package shmtransport

import (
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"

	"github.com/ringtrain/ringtrain/collective/transport"
)

// handshake runs the exchange described in ctl.go over bl and returns the link to hand out
// with its kind.
func (t *Transport) handshake(bl transport.Link, peer int) (transport.Link, string, error) {
	rank := t.Rank()
	low := rank < peer
	mine := ctlMsg{kind: kindHello, rank: uint32(rank), mode: t.modeFor(peer), id: t.self}
	var theirs ctlMsg
	var err error
	// The lower rank speaks first, so the exchange also works over links whose Write waits
	// for the reader.
	if low {
		if err = sendCtl(bl, &mine); err == nil {
			theirs, err = recvCtl(bl, kindHello, peer)
		}
	} else {
		if theirs, err = recvCtl(bl, kindHello, peer); err == nil {
			err = sendCtl(bl, &mine)
		}
	}
	if err != nil {
		return nil, "", err
	}
	required := mine.mode == ModeShm || theirs.mode == ModeShm
	switch {
	case mine.mode == ModeShm && theirs.mode == ModeQUIC:
		return nil, "", fmt.Errorf("%w to rank %d: this rank requires shared memory but rank %d forces %s", ErrShmUnavailable, peer, peer, t.opts.BaseKind)
	case mine.mode == ModeQUIC && theirs.mode == ModeShm:
		return nil, "", fmt.Errorf("%w to rank %d: rank %d requires shared memory but this rank forces %s", ErrShmUnavailable, peer, peer, t.opts.BaseKind)
	case mine.mode == ModeQUIC || theirs.mode == ModeQUIC:
		return bl, t.opts.BaseKind, nil
	case !t.self.sameHost(theirs.id):
		if required {
			return nil, "", fmt.Errorf("%w to rank %d: %s", ErrShmUnavailable, peer, t.self.whyNotSameHost(theirs.id))
		}
		return bl, t.opts.BaseKind, nil
	}
	// fallback ends the attempt after a failure both sides have seen: the base link in
	// auto mode, an error when shared memory was required.
	fallback := func(err error) (transport.Link, string, error) {
		if required {
			return nil, "", fmt.Errorf("%w to rank %d: %v", ErrShmUnavailable, peer, err)
		}
		return bl, t.opts.BaseKind, nil
	}
	if low {
		return t.create(bl, peer, theirs.id, fallback)
	}
	return t.open(bl, peer, theirs.id, fallback)
}

// create is the lower rank's side: make the file, announce it, wait until the peer mapped
// it, remove it, and say so.
func (t *Transport) create(bl transport.Link, peer int, peerID identity, fallback func(error) (transport.Link, string, error)) (transport.Link, string, error) {
	offer := ctlMsg{kind: kindOffer, rank: uint32(t.Rank()), ringBytes: uint64(t.opts.RingBytes)}
	if _, err := rand.Read(offer.nonce[:]); err != nil {
		return nil, "", err
	}
	h := header{
		ringBytes:    offer.ringBytes,
		creatorPID:   uint32(os.Getpid()),
		creatorRank:  uint32(t.Rank()),
		openerRank:   uint32(peer),
		creatorStart: t.self.start,
		pidNS:        t.self.pidNS,
		nonce:        offer.nonce,
	}
	seg, cerr := createSegment(t.opts.Dir, t.opts.JobID, &h)
	if cerr != nil {
		offer.failed, offer.text = true, cerr.Error()
		if err := sendCtl(bl, &offer); err != nil {
			return nil, "", err
		}
		l, kind, err := fallback(cerr)
		if err == nil {
			t.warnFallback(peer, cerr)
		}
		return l, kind, err
	}
	offer.text = filepath.Base(seg.path)
	ln, lerr := listenWake(offer.text)
	if lerr != nil {
		seg.unlink()
		seg.unmap()
		offer.failed, offer.text = true, lerr.Error()
		if err := sendCtl(bl, &offer); err != nil {
			return nil, "", err
		}
		return fallback(lerr)
	}
	defer ln.Close()
	type accepted struct {
		conns [2]*net.UnixConn
		err   error
	}
	acc := make(chan accepted, 1)
	go func() {
		c, err := acceptWake(ln, offer.nonce, peerID, t.self)
		acc <- accepted{c, err}
	}()
	ack, err := func() (ctlMsg, error) {
		if err := sendCtl(bl, &offer); err != nil {
			return ctlMsg{}, err
		}
		return recvCtl(bl, kindAck, peer)
	}()
	uerr := seg.unlink() // mapped by both (or given up): nobody needs the name any more
	if err != nil || ack.failed {
		ln.Close() // ends the accepting goroutine
		if a := <-acc; a.err == nil {
			closeWake(a.conns)
		}
		seg.unmap()
		if err != nil {
			return nil, "", err
		}
		return fallback(fmt.Errorf("rank %d could not map %s: %s", peer, offer.text, ack.text))
	}
	// The peer has mapped the file and connected its wake-up sockets.
	a := <-acc
	done := ctlMsg{kind: kindDone, rank: uint32(t.Rank())}
	ferr := errors.Join(uerr, a.err)
	if ferr != nil {
		done.failed, done.text = true, ferr.Error()
	}
	if err := sendCtl(bl, &done); err != nil || ferr != nil {
		if a.err == nil {
			closeWake(a.conns)
		}
		seg.unmap()
		if err != nil {
			return nil, "", err
		}
		return fallback(ferr)
	}
	return newShmLink(seg, true, peer, offer.ringBytes, t.self, peerID, t.cfg, bl, a.conns), "shm", nil
}

// open is the higher rank's side: map the announced file, check it, and acknowledge.
func (t *Transport) open(bl transport.Link, peer int, peerID identity, fallback func(error) (transport.Link, string, error)) (transport.Link, string, error) {
	offer, err := recvCtl(bl, kindOffer, peer)
	if err != nil {
		return nil, "", err
	}
	if offer.failed {
		return fallback(fmt.Errorf("rank %d could not create a shared-memory file: %s", peer, offer.text))
	}
	seg, oerr := openSegment(t.opts.Dir, offer.text, offer.ringBytes, offer.nonce, peer, t.Rank())
	var conns [2]*net.UnixConn
	if oerr == nil {
		if conns, oerr = dialWake(offer.text, offer.nonce, peerID, t.self); oerr != nil {
			seg.unmap()
		}
	}
	ack := ctlMsg{kind: kindAck, rank: uint32(t.Rank())}
	if oerr != nil {
		ack.failed, ack.text = true, oerr.Error()
	}
	if err := sendCtl(bl, &ack); err != nil {
		if oerr == nil {
			closeWake(conns)
			seg.unmap()
		}
		return nil, "", err
	}
	if oerr != nil {
		return fallback(oerr)
	}
	done, err := recvCtl(bl, kindDone, peer)
	if err != nil {
		// The creator may have its end already (it sent done before this side's transport
		// failed or closed): tell it through the mapping why the sockets are about to end.
		t.abandonSetup(seg, conns)
		return nil, "", err
	}
	if done.failed {
		closeWake(conns)
		seg.unmap()
		return fallback(fmt.Errorf("rank %d: %s", peer, done.text))
	}
	return newShmLink(seg, false, peer, offer.ringBytes, t.self, peerID, t.cfg, bl, conns), "shm", nil
}

func sendCtl(w io.Writer, m *ctlMsg) error {
	var b [ctlSize]byte
	m.encode(b[:])
	if _, err := w.Write(b[:]); err != nil {
		return fmt.Errorf("sending %s: %w", m.kind, err)
	}
	return nil
}

// recvCtl reads one frame and checks that it is a want from rank peer.
func recvCtl(r io.Reader, want ctlKind, peer int) (ctlMsg, error) {
	var b [ctlSize]byte
	if _, err := io.ReadFull(r, b[:]); err != nil {
		return ctlMsg{}, fmt.Errorf("waiting for %s from rank %d: %w", want, peer, err)
	}
	m, err := decodeCtl(b[:])
	if err != nil {
		return m, fmt.Errorf("from rank %d: %w", peer, err)
	}
	if m.kind != want {
		return m, fmt.Errorf("%w from rank %d: got %s, want %s", errCtl, peer, m.kind, want)
	}
	if int(m.rank) != peer {
		return m, fmt.Errorf("%w: the peer expected to be rank %d says it is rank %d", errCtl, peer, m.rank)
	}
	return m, nil
}

// warnFallback logs, once per peer, that a link to peer stays on the base transport because
// this side (the creator) could not make its shared-memory file: which edge, how much it
// wanted, where, and why. Later links to the same peer that fail the same way stay quiet.
func (t *Transport) warnFallback(peer int, cause error) {
	t.mu.Lock()
	if t.warned == nil {
		t.warned = make(map[int]bool)
	}
	first := !t.warned[peer]
	t.warned[peer] = true
	t.mu.Unlock()
	if !first {
		return
	}
	want := int64(headerBytes) + 2*int64(t.opts.RingBytes)
	why := strings.TrimPrefix(cause.Error(), "shmtransport: ")
	var re *ReserveError
	if !errors.As(cause, &re) {
		why = fmt.Sprintf("%s (a link wants %s in %s)", why, sizeString(want), t.opts.Dir)
	}
	t.opts.Logger.Warn(fmt.Sprintf("shmtransport: edge rank %d <-> rank %d uses %s, not shared memory: %s",
		t.Rank(), peer, t.opts.BaseKind, why),
		"rank", t.Rank(), "peer", peer, "bytes", want, "dir", t.opts.Dir)
}

// abandonSetup releases the opener's side of a link whose setup it gave up after mapping the
// segment and connecting the wake-up sockets. The creator may already hold its end, which
// would read the sockets' end without an abort word as this process's death; so the abort
// word says first what happened: this transport closed (abortClosed), or failed (naming the
// rank to blame; the peer's link then waits for the base transport's reason), or the setup
// itself failed (blaming this rank).
func (t *Transport) abandonSetup(seg *segment, conns [2]*net.UnixConn) {
	word := uint32(t.Rank()) + 1
	var pe *transport.PeerError
	switch err := t.base.Err(); {
	case errors.Is(err, transport.ErrClosed):
		word = abortClosed
	case errors.As(err, &pe) && pe.Rank >= 0:
		word = uint32(pe.Rank) + 1
	}
	atomic.CompareAndSwapUint32(word32(seg.mem, abortOff+128), 0, word) // the opener's word
	closeWake(conns)
	seg.unmap()
}
