package datalink

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"github.com/ringtrain/ringtrain/collective/transport"
)

// pending is a link the higher rank is waiting to accept TCP connections for.
type pending struct {
	peer    int
	mode    Mode
	streams int

	mu    sync.Mutex
	conns []net.Conn
	got   int
	full  chan struct{} // closed once every stream arrived
}

func (p *pending) closeConns() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for i, c := range p.conns {
		if c != nil {
			c.Close()
			p.conns[i] = nil
		}
	}
}

// handshake runs the exchange described in wire.go over bl and returns the link to hand
// out with its kind.
func (t *Transport) handshake(ctx context.Context, bl transport.Link, peer int, channel string) (transport.Link, string, error) {
	rank := t.Rank()
	low := rank < peer
	mine := hello{rank: uint32(rank), mode: t.modeFor(peer), streams: uint8(t.opts.Streams), shm: t.opts.Shm, host: t.opts.HostID}
	if mine.mode != ModeQUIC && (t.id == nil || t.token == "") {
		mine.mode = ModeQUIC
	}
	var lo, hi hello
	var pend *pending
	if low {
		if err := writeMessage(bl, &message{kind: msgHello, hello: mine}); err != nil {
			return nil, "", err
		}
		m, err := readMessage(bl, msgHello)
		if err != nil {
			return nil, "", err
		}
		lo, hi = mine, m.hello
	} else {
		m, err := readMessage(bl, msgHello)
		if err != nil {
			return nil, "", err
		}
		lo, hi = m.hello, mine
		if d := decide(&lo, &mine); d != ModeQUIC && t.ln != nil {
			n, err := newNonce()
			if err != nil {
				return nil, "", err
			}
			mine.nonce, mine.addr = n, t.lnAddr
			pend = &pending{peer: peer, mode: d, streams: int(lo.streams), conns: make([]net.Conn, lo.streams), full: make(chan struct{})}
			t.mu.Lock()
			t.pending[n] = pend
			t.mu.Unlock()
			defer func() {
				t.mu.Lock()
				delete(t.pending, n)
				t.mu.Unlock()
			}()
		}
		hi = mine
		if err := writeMessage(bl, &message{kind: msgHello, hello: mine}); err != nil {
			if pend != nil {
				pend.closeConns()
			}
			return nil, "", err
		}
	}
	if int(lo.rank) != min(rank, peer) || int(hi.rank) != max(rank, peer) {
		return nil, "", fmt.Errorf("peer claims rank %d in the data-link setup", max(lo.rank, hi.rank))
	}
	mode := decide(&lo, &hi)
	if mode == ModeQUIC {
		if lo.shm && hi.shm && lo.host != "" && lo.host == hi.host {
			t.mu.Lock()
			t.local[peer] = true
			t.mu.Unlock()
		}
		return bl, t.opts.BaseKind, nil
	}
	if hi.addr == "" {
		t.warnFallback(peer, mode, errors.New("rank "+fmt.Sprint(max(rank, peer))+" has no TCP listener"))
		return bl, t.opts.BaseKind, nil
	}
	if low {
		return t.dialSide(ctx, bl, peer, mode, &hi, int(lo.streams))
	}
	return t.acceptSide(ctx, bl, peer, mode, pend)
}

// dialSide is the lower rank's side: dial every stream, report, wait for the verdict.
func (t *Transport) dialSide(ctx context.Context, bl transport.Link, peer int, mode Mode, hi *hello, streams int) (transport.Link, string, error) {
	conns := make([]net.Conn, streams)
	errs := make([]error, streams)
	var wg sync.WaitGroup
	for i := range conns {
		wg.Go(func() { conns[i], errs[i] = t.dial(ctx, peer, mode, hi, i, streams) })
	}
	wg.Wait()
	closeAll := func() {
		for _, c := range conns {
			if c != nil {
				c.Close()
			}
		}
	}
	derr := errors.Join(errs...)
	res := message{kind: msgResult, ok: derr == nil}
	if derr != nil {
		res.text = derr.Error()
	}
	if err := writeMessage(bl, &res); err != nil {
		closeAll()
		return nil, "", err
	}
	if derr != nil {
		closeAll()
		t.warnFallback(peer, mode, derr)
		return bl, t.opts.BaseKind, nil
	}
	fin, err := readMessage(bl, msgFinal)
	if err != nil {
		closeAll()
		return nil, "", err
	}
	if !fin.ok {
		closeAll()
		t.warnFallback(peer, mode, fmt.Errorf("rank %d: %s", peer, fin.text))
		return bl, t.opts.BaseKind, nil
	}
	return t.newDataLink(peer, mode, bl, conns), mode.String(), nil
}

// acceptSide is the higher rank's side: wait for the dialer's report, then for the streams.
func (t *Transport) acceptSide(ctx context.Context, bl transport.Link, peer int, mode Mode, p *pending) (transport.Link, string, error) {
	res, err := readMessage(bl, msgResult)
	if err != nil {
		p.closeConns()
		return nil, "", err
	}
	if !res.ok {
		p.closeConns()
		t.warnFallback(peer, mode, fmt.Errorf("rank %d: %s", peer, res.text))
		return bl, t.opts.BaseKind, nil
	}
	timer := time.NewTimer(t.opts.DialTimeout)
	defer timer.Stop()
	var why error
	select {
	case <-p.full:
	case <-timer.C:
		why = fmt.Errorf("rank %d's connections did not arrive within %v", peer, t.opts.DialTimeout)
	case <-ctx.Done():
		p.closeConns()
		return nil, "", ctx.Err()
	case <-t.base.Done():
		p.closeConns()
		return nil, "", t.base.Err()
	}
	fin := message{kind: msgFinal, ok: why == nil}
	if why != nil {
		fin.text = why.Error()
	}
	if err := writeMessage(bl, &fin); err != nil {
		p.closeConns()
		return nil, "", err
	}
	if why != nil {
		p.closeConns()
		t.warnFallback(peer, mode, why)
		return bl, t.opts.BaseKind, nil
	}
	p.mu.Lock()
	conns := append([]net.Conn(nil), p.conns...)
	p.mu.Unlock()
	return t.newDataLink(peer, mode, bl, conns), mode.String(), nil
}

func (t *Transport) warnFallback(peer int, mode Mode, err error) {
	lo, hi := min(t.Rank(), peer), max(t.Rank(), peer)
	t.log.Warn(fmt.Sprintf("datalink: no %s connection between rank %d and rank %d; this edge falls back to %s", mode, lo, hi, t.opts.BaseKind),
		"peer", peer, "err", err.Error())
}

// dial makes stream i of a link to the higher rank peer.
func (t *Transport) dial(ctx context.Context, peer int, mode Mode, hi *hello, i, streams int) (net.Conn, error) {
	d := net.Dialer{Timeout: t.opts.DialTimeout, LocalAddr: t.dialFrom}
	dctx, cancel := context.WithTimeout(ctx, t.opts.DialTimeout)
	defer cancel()
	raw, err := d.DialContext(dctx, "tcp", hi.addr)
	if err != nil {
		return nil, err
	}
	tuneConn(raw, t.opts.SocketBuffer)
	dl, _ := dctx.Deadline()
	raw.SetDeadline(dl)
	c, err := t.clientHandshake(raw, peer, mode, hi, i, streams)
	if err != nil {
		raw.Close()
		return nil, err
	}
	c.SetDeadline(time.Time{})
	return c, nil
}

func (t *Transport) clientHandshake(raw net.Conn, peer int, mode Mode, hi *hello, i, streams int) (net.Conn, error) {
	ch := connHello{mode: mode, rank: uint32(t.Rank()), stream: uint8(i), streams: uint8(streams), nonce: hi.nonce}
	var c net.Conn = raw
	var ekm []byte
	if mode == ModeTLS {
		if _, err := raw.Write([]byte{preambleTLS}); err != nil {
			return nil, err
		}
		want := t.id.PeerFingerprint(peer)
		tc := tls.Client(raw, &tls.Config{
			Certificates: []tls.Certificate{t.id.Certificate()},
			MinVersion:   tls.VersionTLS13,
			// The peer is pinned to the fingerprint it published in the authenticated
			// store; no chain or name is involved.
			InsecureSkipVerify: true,
			VerifyPeerCertificate: func(rawCerts [][]byte, _ [][]*x509.Certificate) error {
				if len(rawCerts) != 1 || fingerprint(rawCerts[0]) != want {
					return fmt.Errorf("datalink: rank %d's certificate does not match its published fingerprint", peer)
				}
				return nil
			},
		})
		if err := tc.Handshake(); err != nil {
			return nil, err
		}
		cs := tc.ConnectionState()
		var err error
		if ekm, err = cs.ExportKeyingMaterial(exporterLabel, ch.nonce[:], 32); err != nil {
			return nil, err
		}
		c = tc
	} else if _, err := raw.Write([]byte{preamblePlain}); err != nil {
		return nil, err
	}
	ch.proof = proof(t.token, &ch, uint32(peer), ekm)
	if _, err := c.Write(encodeConnHello(&ch)); err != nil {
		return nil, err
	}
	return c, nil
}

// acceptLoop serves the TCP listener until Close.
func (t *Transport) acceptLoop() {
	defer t.wg.Done()
	for {
		c, err := t.ln.Accept()
		if err != nil {
			select {
			case <-t.stop:
				return
			default:
			}
			if t.life.Err() != nil {
				return
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			if errors.Is(err, net.ErrClosed) {
				return
			}
			time.Sleep(10 * time.Millisecond)
			continue
		}
		t.wg.Add(1)
		go func() {
			defer t.wg.Done()
			if err := t.serveConn(c); err != nil {
				t.log.Warn("datalink: refused connection", "remote", c.RemoteAddr().String(), "reason", err.Error())
				c.Close()
			}
		}()
	}
}

// serveConn authenticates one incoming connection and hands it to the link waiting for it.
func (t *Transport) serveConn(raw net.Conn) error {
	raw.SetDeadline(time.Now().Add(t.opts.DialTimeout))
	tuneConn(raw, t.opts.SocketBuffer)
	var pre [1]byte
	if _, err := io.ReadFull(raw, pre[:]); err != nil {
		return fmt.Errorf("reading the preamble: %w", err)
	}
	var c net.Conn = raw
	var tc *tls.Conn
	switch pre[0] {
	case preambleTLS:
		allowed := make(map[[32]byte]int)
		for r := 0; r < t.Rank(); r++ {
			allowed[t.id.PeerFingerprint(r)] = r
		}
		tc = tls.Server(raw, &tls.Config{
			Certificates: []tls.Certificate{t.id.Certificate()},
			MinVersion:   tls.VersionTLS13,
			ClientAuth:   tls.RequireAnyClientCert,
			VerifyPeerCertificate: func(rawCerts [][]byte, _ [][]*x509.Certificate) error {
				if len(rawCerts) != 1 {
					return fmt.Errorf("client presented %d certificates, want 1", len(rawCerts))
				}
				if _, ok := allowed[fingerprint(rawCerts[0])]; !ok {
					return errors.New("client certificate matches no lower rank's published fingerprint")
				}
				return nil
			},
		})
		if err := tc.Handshake(); err != nil {
			return fmt.Errorf("TLS handshake: %w", err)
		}
		c = tc
	case preamblePlain:
	default:
		return fmt.Errorf("unknown preamble byte %#x", pre[0])
	}
	var b [connHelloLen]byte
	if _, err := io.ReadFull(c, b[:]); err != nil {
		return fmt.Errorf("reading the connection hello: %w", err)
	}
	ch, err := decodeConnHello(b[:])
	if err != nil {
		return err
	}
	if (tc != nil) != (ch.mode == ModeTLS) {
		return fmt.Errorf("connection hello for %s on a %s connection", ch.mode, map[bool]string{true: "TLS", false: "plain"}[tc != nil])
	}
	t.mu.Lock()
	p := t.pending[ch.nonce]
	t.mu.Unlock()
	if p == nil {
		return errors.New("no link is waiting for this nonce")
	}
	if int(ch.rank) != p.peer || ch.mode != p.mode || int(ch.streams) != p.streams {
		return fmt.Errorf("claims rank %d, %s, %d streams; the link expects rank %d, %s, %d streams", ch.rank, ch.mode, ch.streams, p.peer, p.mode, p.streams)
	}
	var ekm []byte
	if tc != nil {
		cs := tc.ConnectionState()
		if len(cs.PeerCertificates) != 1 || fingerprint(cs.PeerCertificates[0].Raw) != t.id.PeerFingerprint(p.peer) {
			return fmt.Errorf("certificate is not the one rank %d published", p.peer)
		}
		if ekm, err = cs.ExportKeyingMaterial(exporterLabel, ch.nonce[:], 32); err != nil {
			return err
		}
	}
	want := proof(t.token, &ch, uint32(t.Rank()), ekm)
	if !hmacEqual(want[:], ch.proof[:]) {
		return fmt.Errorf("bad job-token proof (claims rank %d)", ch.rank)
	}
	raw.SetDeadline(time.Time{})
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.conns[ch.stream] != nil || p.got == p.streams {
		return fmt.Errorf("stream %d of rank %d's link arrived twice", ch.stream, ch.rank)
	}
	p.conns[ch.stream] = c
	p.got++
	if p.got == p.streams {
		close(p.full)
	}
	return nil
}
