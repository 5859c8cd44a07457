package quictransport

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/ringtrain/ringtrain/collective/rendezvous"
	"github.com/ringtrain/ringtrain/collective/transport"
)

// QUIC application error codes on data connections.
const (
	codeClosed     quic.ApplicationErrorCode = 0 // orderly Close
	codeAbort      quic.ApplicationErrorCode = 1 // Abort or a detected failure; reason names the guilty rank
	codeAuthFailed quic.ApplicationErrorCode = 2 // token proof, certificate or claimed rank refused
	codeProtocol   quic.ApplicationErrorCode = 3 // malformed bytes
	codeDuplicate  quic.ApplicationErrorCode = 4 // a second connection for the same pair

	streamCodeLinkClosed quic.StreamErrorCode = 1
	streamCodeRefused    quic.StreamErrorCode = 2
	// A link reset because its transport failed carries abortStreamCode(guilty): see wire.go.
)

// alpn is the TLS application protocol of data connections.
const alpn = "ringtrain-link/1"

// Transport is one rank's QUIC endpoint: one UDP socket serving one QUIC connection per peer,
// dialled lazily by the lower rank of the pair, and one bidirectional stream per Link.
// All methods are safe for concurrent use.
type Transport struct {
	cfg     Config
	log     *slog.Logger
	cert    tls.Certificate
	entries []peerEntry // by rank, from the authenticated store
	peers   []*peer     // by rank; nil for this rank

	udp   *net.UDPConn
	qtr   *quic.Transport
	ln    *quic.Listener
	qconf *quic.Config

	store  *rendezvous.Client
	server *rendezvous.Server // rank 0 only

	ctx    context.Context // ends at Close
	cancel context.CancelFunc
	wg     sync.WaitGroup

	drainID atomic.Uint64 // ids of drain requests (see drain.go)

	mu       sync.Mutex
	err      error         // why done was closed
	done     chan struct{} // closed on failure, Abort or Close
	failed   bool          // err is a failure (Abort or a detected one), not an orderly Close
	guilty   int           // when failed: the rank the abort reason blames
	reason   string        // when failed: the abort reason sent to peers
	closed   bool          // Close was called
	closeErr error
}

var _ transport.Transport = (*Transport)(nil)

// peer is the state of the connection to one other rank.
type peer struct {
	rank int

	mu      sync.Mutex
	conn    *quic.Conn
	dialing chan struct{} // non-nil while a dial is in flight; closed when it ends
	dead    chan struct{} // closed when conn has ended (or was never made and the transport ended)
	deadErr error         // why, as a *transport.PeerError or the transport's error
	orderly bool          // the peer closed conn in order
	links   map[string]*linkSlot

	// Draining (see drain.go): the connection's control stream, every link ever made on
	// conn by QUIC stream ID, and the drain requests waiting for an answer.
	ctl      *quic.Stream
	ctlMu    sync.Mutex // serializes writes to ctl
	byStream map[quic.StreamID]*link
	pending  map[uint64]chan controlFrame
}

// linkSlot is a (peer, channel) pair: being opened, waiting for the peer's stream, or ready.
type linkSlot struct {
	ready chan struct{} // closed once link or err is set
	link  *link
	err   error
}

// Rank is this process's world rank.
func (t *Transport) Rank() int { return t.cfg.Rank }

// Size is the number of ranks in the job.
func (t *Transport) Size() int { return t.cfg.Size }

// Config returns the configuration in force, defaults filled in.
func (t *Transport) Config() Config { return t.cfg }

// Store is this rank's authenticated connection to the rendezvous store, which stays up for
// the life of the transport (other transports exchange their own endpoints through it).
func (t *Transport) Store() *rendezvous.Client { return t.store }

// LocalAddr is the data endpoint's bound UDP address.
func (t *Transport) LocalAddr() net.Addr { return t.udp.LocalAddr() }

// Done is closed once the transport has failed, been aborted or been closed.
func (t *Transport) Done() <-chan struct{} { return t.done }

// Err says why Done was closed: transport.ErrClosed after Close, otherwise an error wrapping
// the cause (a *transport.PeerError naming the guilty rank when a peer failed). Nil while
// the transport is healthy.
func (t *Transport) Err() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.err
}

func (t *Transport) quicConfig() *quic.Config {
	c := t.cfg
	return &quic.Config{
		HandshakeIdleTimeout:           c.PeerTimeout,
		MaxIdleTimeout:                 c.PeerTimeout,
		KeepAlivePeriod:                c.PeerTimeout / 3,
		InitialStreamReceiveWindow:     c.StreamWindow,
		MaxStreamReceiveWindow:         c.StreamWindow,
		InitialConnectionReceiveWindow: c.ConnWindow,
		MaxConnectionReceiveWindow:     c.ConnWindow,
		MaxIncomingStreams:             1 << 16,
		MaxIncomingUniStreams:          -1,
	}
}

// start begins serving the data endpoint; entries must be complete.
func (t *Transport) start() error {
	t.qtr = &quic.Transport{Conn: t.udp}
	t.qconf = t.quicConfig()
	// Only lower ranks dial us; their certificates must be among the published ones. The
	// exact rank is checked after the hello, which names it.
	allowed := make(map[[32]byte]bool)
	for r := 0; r < t.cfg.Rank; r++ {
		allowed[t.entries[r].Fingerprint] = true
	}
	base := &tls.Config{
		Certificates: []tls.Certificate{t.cert},
		// RequestClientCert rather than RequireAnyClientCert: a client without a
		// certificate then reaches VerifyPeerCertificate below (with none), which refuses
		// it just the same but also logs the refusal.
		ClientAuth: tls.RequestClientCert,
		NextProtos: []string{alpn},
		MinVersion: tls.VersionTLS13,
	}
	tlsConf := &tls.Config{
		MinVersion: tls.VersionTLS13,
		// Per connection, so that a refused certificate is logged with the remote address.
		GetConfigForClient: func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
			remote := "unknown"
			if hello.Conn != nil {
				remote = hello.Conn.RemoteAddr().String()
			}
			c := base.Clone()
			c.VerifyPeerCertificate = func(raw [][]byte, _ [][]*x509.Certificate) error {
				var err error
				switch {
				case len(raw) != 1:
					err = fmt.Errorf("client presented %d certificates, want 1", len(raw))
				case !allowed[rendezvous.Fingerprint(raw[0])]:
					err = errors.New("client certificate matches no lower rank's published fingerprint")
				}
				if err != nil {
					t.log.Warn("quictransport: refused connection", "remote", remote, "reason", err.Error())
				}
				return err
			}
			return c, nil
		},
	}
	ln, err := t.qtr.Listen(tlsConf, t.qconf)
	if err != nil {
		return fmt.Errorf("quictransport: listen on %s: %w", t.udp.LocalAddr(), err)
	}
	t.ln = ln
	t.wg.Add(1)
	go t.acceptLoop()
	return nil
}

// Link returns this rank's end of channel to peer. The lower rank of the pair opens the
// stream (dialling the connection first if needed) and returns as soon as the stream's
// header is written; the higher rank waits until that stream arrives. Asking again for an
// open channel returns the same Link.
func (t *Transport) Link(ctx context.Context, peerRank int, channel string) (transport.Link, error) {
	if peerRank < 0 || peerRank >= t.cfg.Size {
		return nil, fmt.Errorf("quictransport: link to rank %d: out of range [0, %d)", peerRank, t.cfg.Size)
	}
	if peerRank == t.cfg.Rank {
		return nil, fmt.Errorf("quictransport: rank %d asked for a link to itself (channel %q)", peerRank, channel)
	}
	if len(channel) == 0 || len(channel) > MaxChannelLen {
		return nil, fmt.Errorf("quictransport: channel name of %d bytes, want 1..%d", len(channel), MaxChannelLen)
	}
	for {
		l, err, retry := t.link(ctx, peerRank, channel)
		if !retry {
			return l, err
		}
	}
}

// link is one attempt of Link. retry is true when another caller's attempt to open the same
// channel failed only because that caller's context ended, and ours has not.
func (t *Transport) link(ctx context.Context, peerRank int, channel string) (_ transport.Link, _ error, retry bool) {
	if err := t.Err(); err != nil {
		return nil, err, false
	}
	p := t.peers[peerRank]
	p.mu.Lock()
	if p.deadErr != nil {
		p.mu.Unlock()
		return nil, p.deadErr, false
	}
	slot, ok := p.links[channel]
	if !ok {
		slot = &linkSlot{ready: make(chan struct{})}
		p.links[channel] = slot
		if t.cfg.Rank < peerRank {
			// We open it; whoever else asks meanwhile waits on slot.ready.
			p.mu.Unlock()
			l, err := t.openLink(ctx, p, channel)
			p.mu.Lock()
			if err != nil {
				delete(p.links, channel) // a later call may try again
				slot.err = err
			} else {
				slot.link = l
			}
			close(slot.ready)
			p.mu.Unlock()
			if err != nil {
				return nil, err, false
			}
			return l, nil, false
		}
	}
	dead := p.dead
	p.mu.Unlock()
	select {
	case <-slot.ready:
		if slot.err != nil {
			ctxErr := errors.Is(slot.err, context.Canceled) || errors.Is(slot.err, context.DeadlineExceeded)
			return nil, slot.err, ctxErr && ctx.Err() == nil && !t.isDone()
		}
		return slot.link, nil, false
	case <-dead:
		return nil, t.peerDeadErr(p), false
	case <-t.done:
		return nil, t.Err(), false
	case <-ctx.Done():
		return nil, fmt.Errorf("quictransport: waiting for rank %d to open channel %q: %w", peerRank, channel, context.Cause(ctx)), false
	}
}

func (t *Transport) peerDeadErr(p *peer) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.deadErr
}

// openLink opens the stream for channel to a higher rank.
func (t *Transport) openLink(ctx context.Context, p *peer, channel string) (*link, error) {
	conn, err := t.connTo(ctx, p)
	if err != nil {
		return nil, err
	}
	str, err := conn.OpenStreamSync(ctx)
	if err != nil {
		return nil, t.linkErr(p.rank, channel, "open", err, ctx)
	}
	// The peer learns of a stream only when bytes arrive, so the header goes out now.
	if dl, ok := ctx.Deadline(); ok {
		str.SetWriteDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { str.SetWriteDeadline(time.Unix(1, 0)) })
	_, err = str.Write(encodeOpen(channel))
	stopped := stop()
	str.SetWriteDeadline(time.Time{})
	if err != nil || !stopped {
		str.CancelWrite(streamCodeLinkClosed)
		str.CancelRead(streamCodeLinkClosed)
		if err == nil {
			err = context.Cause(ctx)
		}
		return nil, t.linkErr(p.rank, channel, "open", err, ctx)
	}
	l := &link{t: t, peer: p, conn: conn, channel: channel, str: str}
	p.mu.Lock()
	p.byStream[str.StreamID()] = l
	p.mu.Unlock()
	return l, nil
}

// connTo returns the connection to a higher-ranked peer, dialling it if there is none.
func (t *Transport) connTo(ctx context.Context, p *peer) (*quic.Conn, error) {
	for {
		p.mu.Lock()
		if p.conn != nil {
			c := p.conn
			p.mu.Unlock()
			return c, nil
		}
		if p.deadErr != nil {
			err := p.deadErr
			p.mu.Unlock()
			return nil, err
		}
		if wait := p.dialing; wait != nil {
			p.mu.Unlock()
			select {
			case <-wait:
				continue
			case <-ctx.Done():
				return nil, fmt.Errorf("quictransport: connecting to rank %d: %w", p.rank, context.Cause(ctx))
			}
		}
		done := make(chan struct{})
		p.dialing = done
		p.mu.Unlock()

		conn, ctl, err := t.dial(ctx, p.rank)
		p.mu.Lock()
		p.dialing = nil
		close(done)
		if err == nil {
			if t.isDone() {
				p.mu.Unlock()
				t.closeLate(conn)
				return nil, t.Err()
			}
			p.conn, p.ctl = conn, ctl
			t.wg.Add(2)
			go t.watch(p, conn)
			go t.controlLoop(p, conn, ctl)
		}
		p.mu.Unlock()
		if err != nil {
			if ctx.Err() == nil && !t.isDone() {
				// The peer published its endpoint but cannot be reached or authenticated:
				// it died, vanished or is not who it claims. The job cannot go on.
				var ae *quic.ApplicationError
				if errors.As(err, &ae) && ae.Remote && ae.ErrorCode == codeAbort {
					err = t.abortNotice(ae.ErrorMessage, p.rank) // it had aborted: blame whom it blames
				} else {
					err = &transport.PeerError{Rank: p.rank, Err: fmt.Errorf("cannot connect to %s: %w", t.entries[p.rank].Addr, err)}
				}
				t.fail(err)
			} else if t.isDone() && ctx.Err() == nil {
				return nil, t.Err() // the transport failed meanwhile: that says why, not the refusal
			}
			return nil, fmt.Errorf("quictransport: rank %d connecting to rank %d: %w", t.cfg.Rank, p.rank, err)
		}
		return conn, nil
	}
}

func rankContext(dialer, acceptor int) []byte {
	b := make([]byte, 8)
	binary.BigEndian.PutUint32(b, uint32(dialer))
	binary.BigEndian.PutUint32(b[4:], uint32(acceptor))
	return b
}

// dial connects to peer rank r, pinning its published certificate, and runs the hello.
func (t *Transport) dial(ctx context.Context, r int) (*quic.Conn, *quic.Stream, error) {
	e := t.entries[r]
	ua, err := net.ResolveUDPAddr("udp", e.Addr)
	if err != nil {
		return nil, nil, fmt.Errorf("address %q: %w", e.Addr, err)
	}
	tlsConf := &tls.Config{
		Certificates: []tls.Certificate{t.cert},
		// Chain verification is replaced by pinning the SHA-256 fingerprint that rank r
		// published in the authenticated store; the TLS handshake still proves that the
		// peer holds that certificate's private key.
		InsecureSkipVerify: true,
		VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
			if len(raw) != 1 {
				return fmt.Errorf("rank %d presented %d certificates, want 1", r, len(raw))
			}
			if rendezvous.Fingerprint(raw[0]) != e.Fingerprint {
				return fmt.Errorf("certificate at %s is not the one rank %d published", e.Addr, r)
			}
			return nil
		},
		NextProtos: []string{alpn},
		MinVersion: tls.VersionTLS13,
		ServerName: "ringtrain",
	}
	conn, err := t.qtr.Dial(ctx, ua, tlsConf, t.qconf)
	if err != nil {
		return nil, nil, err
	}
	ctl, err := t.dialerHello(ctx, conn, r)
	if err != nil {
		code := codeAuthFailed
		if errors.Is(err, errWire) {
			code = codeProtocol
		}
		conn.CloseWithError(code, "quictransport: "+err.Error())
		return nil, nil, err
	}
	return conn, ctl, nil
}

// dialerHello runs the dialer's side of the hello and returns its stream, which stays open
// both ways as the connection's control stream.
func (t *Transport) dialerHello(ctx context.Context, conn *quic.Conn, r int) (*quic.Stream, error) {
	state := conn.ConnectionState().TLS
	rc := rankContext(t.cfg.Rank, r)
	proof, err := rendezvous.TokenProof(state, t.cfg.Token, rendezvous.LabelLinkDialer, rc)
	if err != nil {
		return nil, err
	}
	str, err := conn.OpenStreamSync(ctx)
	if err != nil {
		return nil, err
	}
	str.SetDeadline(time.Now().Add(t.cfg.PeerTimeout))
	if _, err := str.Write(encodeHello(t.cfg.Rank, proof)); err != nil {
		return nil, refusalErr(err)
	}
	got, err := readHelloOK(str)
	if err != nil {
		return nil, refusalErr(err)
	}
	if !rendezvous.CheckTokenProof(state, t.cfg.Token, rendezvous.LabelLinkAccept, rc, got) {
		return nil, fmt.Errorf("%w: rank %d did not prove the job token", rendezvous.ErrAuth, r)
	}
	str.SetDeadline(time.Time{})
	return str, nil
}

// refusalErr names a refusal by the acceptor, which arrives as a connection close.
func refusalErr(err error) error {
	var ae *quic.ApplicationError
	if errors.As(err, &ae) && ae.Remote && ae.ErrorCode == codeAuthFailed {
		return fmt.Errorf("%w: refused: %s", rendezvous.ErrAuth, ae.ErrorMessage)
	}
	return err
}

func (t *Transport) acceptLoop() {
	defer t.wg.Done()
	for {
		conn, err := t.ln.Accept(t.ctx)
		if err != nil {
			return
		}
		t.wg.Add(1)
		go t.serveIncoming(conn)
	}
}

// refuse logs why conn is turned away and closes it.
func (t *Transport) refuse(conn *quic.Conn, code quic.ApplicationErrorCode, reason string) {
	t.log.Warn("quictransport: refused connection", "remote", conn.RemoteAddr().String(), "reason", reason)
	conn.CloseWithError(code, "quictransport: "+reason)
}

// closeLate closes a connection made after this transport ended: with the abort reason if
// it failed (so that a peer meeting it now learns why, as connected peers did, rather than
// taking it for an orderly close), else as an orderly close.
func (t *Transport) closeLate(conn *quic.Conn) {
	if reason, failed := t.abortReason(); failed {
		conn.CloseWithError(codeAbort, reason)
		return
	}
	conn.CloseWithError(codeClosed, "quictransport: transport closed")
}

// abortReason returns the encoded abort reason if this transport failed.
func (t *Transport) abortReason() (reason string, failed bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.reason, t.failed
}

// serveIncoming authenticates a connection from a lower rank, registers it and routes its
// streams to Link calls.
func (t *Transport) serveIncoming(conn *quic.Conn) {
	defer t.wg.Done()
	r, ctl, err := t.acceptorHello(conn)
	if err != nil {
		code := codeAuthFailed
		if errors.Is(err, errWire) {
			code = codeProtocol
		}
		if t.ctx.Err() == nil {
			t.refuse(conn, code, err.Error())
		} else {
			t.closeLate(conn)
		}
		return
	}
	p := t.peers[r]
	p.mu.Lock()
	switch {
	case p.conn != nil || p.deadErr != nil:
		p.mu.Unlock()
		if reason, failed := t.abortReason(); failed {
			// A peer that first dials us after we aborted learns why, as connected peers did
			// (a rank meeting another for the first time in a collective, e.g. AllToAll).
			conn.CloseWithError(codeAbort, reason)
			return
		}
		t.refuse(conn, codeDuplicate, fmt.Sprintf("rank %d already connected or gone", r))
		return
	case t.isDone():
		p.mu.Unlock()
		t.closeLate(conn)
		return
	}
	p.conn, p.ctl = conn, ctl
	t.wg.Add(2)
	go t.watch(p, conn)
	go t.controlLoop(p, conn, ctl)
	p.mu.Unlock()

	for {
		str, err := conn.AcceptStream(t.ctx)
		if err != nil {
			return
		}
		t.wg.Add(1)
		go t.routeStream(p, conn, str)
	}
}

// acceptorHello authenticates the dialer and returns its rank and the hello's stream, which
// stays open both ways as the connection's control stream.
func (t *Transport) acceptorHello(conn *quic.Conn) (int, *quic.Stream, error) {
	ctx, cancel := context.WithTimeout(t.ctx, t.cfg.PeerTimeout)
	defer cancel()
	str, err := conn.AcceptStream(ctx)
	if err != nil {
		return 0, nil, fmt.Errorf("no hello within %v: %w", t.cfg.PeerTimeout, err)
	}
	str.SetDeadline(time.Now().Add(t.cfg.PeerTimeout))
	r, proof, err := readHello(str)
	if err != nil {
		str.CancelRead(streamCodeRefused)
		str.CancelWrite(streamCodeRefused)
		return 0, nil, err
	}
	if r >= t.cfg.Rank {
		return 0, nil, fmt.Errorf("peer claims rank %d, but only ranks below %d dial rank %d", r, t.cfg.Rank, t.cfg.Rank)
	}
	state := conn.ConnectionState().TLS
	if len(state.PeerCertificates) != 1 || rendezvous.Fingerprint(state.PeerCertificates[0].Raw) != t.entries[r].Fingerprint {
		return 0, nil, fmt.Errorf("peer claims rank %d but its certificate is not the one rank %d published", r, r)
	}
	rc := rankContext(r, t.cfg.Rank)
	if !rendezvous.CheckTokenProof(state, t.cfg.Token, rendezvous.LabelLinkDialer, rc, proof) {
		return 0, nil, fmt.Errorf("peer claiming rank %d did not prove the job token", r)
	}
	mine, err := rendezvous.TokenProof(state, t.cfg.Token, rendezvous.LabelLinkAccept, rc)
	if err != nil {
		return 0, nil, err
	}
	if _, err := str.Write(encodeHelloOK(mine)); err != nil {
		return 0, nil, fmt.Errorf("answering hello of rank %d: %w", r, err)
	}
	str.SetDeadline(time.Time{})
	return r, str, nil
}

// routeStream reads a new stream's header and hands it to the Link call for its channel,
// or parks it until that call comes.
func (t *Transport) routeStream(p *peer, conn *quic.Conn, str *quic.Stream) {
	defer t.wg.Done()
	str.SetReadDeadline(time.Now().Add(t.cfg.PeerTimeout))
	channel, err := readOpen(str)
	str.SetReadDeadline(time.Time{})
	if err != nil {
		if errors.Is(err, errWire) {
			t.log.Warn("quictransport: refused stream", "peer", p.rank, "err", err)
		}
		str.CancelRead(streamCodeRefused)
		str.CancelWrite(streamCodeRefused)
		return
	}
	l := &link{t: t, peer: p, conn: conn, channel: channel, str: str}
	p.mu.Lock()
	p.byStream[str.StreamID()] = l
	slot, ok := p.links[channel]
	switch {
	case !ok:
		slot = &linkSlot{ready: make(chan struct{}), link: l}
		close(slot.ready)
		p.links[channel] = slot
	case slot.link == nil && slot.err == nil:
		slot.link = l
		close(slot.ready)
	default:
		l.closedLocal.Store(true) // a drain request for it is answered at once
		p.mu.Unlock()
		t.log.Warn("quictransport: refused stream for a channel already open", "peer", p.rank, "channel", channel)
		str.CancelRead(streamCodeRefused)
		str.CancelWrite(streamCodeRefused)
		return
	}
	p.mu.Unlock()
}

// watch waits for conn to end. A peer closing in order only ends its links; anything else
// (idle timeout, abort, reset) fails the whole transport, which tells the other peers.
func (t *Transport) watch(p *peer, conn *quic.Conn) {
	defer t.wg.Done()
	<-conn.Context().Done()
	t.connEnded(p, context.Cause(conn.Context()))
}

// connEnded records that the connection to p ended with cause and returns what callers
// see. Unless we closed it or the peer closed in order, the whole transport fails (telling
// the other peers) before connEnded returns. Both watch and the links' error paths call it:
// a Read can see the connection's end before watch does, and the transport must have failed
// (its abort reasons sent) before the caller of that Read can react, say by closing links.
func (t *Transport) connEnded(p *peer, cause error) error {
	err := t.classify(p.rank, cause)
	p.mu.Lock()
	if p.deadErr == nil {
		p.deadErr = err
		close(p.dead)
	}
	p.mu.Unlock()
	var ae *quic.ApplicationError
	if errors.As(cause, &ae) && ae.Remote && ae.ErrorCode == codeClosed {
		p.mu.Lock()
		p.orderly = true
		p.mu.Unlock()
	}
	if errors.As(cause, &ae) && (!ae.Remote || ae.ErrorCode == codeClosed) {
		return err // we closed it, or the peer closed in order
	}
	if t.isDone() {
		return err
	}
	t.log.Error("quictransport: connection to peer failed", "peer", p.rank, "err", err)
	t.fail(err)
	return err
}

// classify turns the error a connection to rank ended with into what callers see.
func (t *Transport) classify(rank int, cause error) error {
	var ae *quic.ApplicationError
	var ie *quic.IdleTimeoutError
	var he *quic.HandshakeTimeoutError
	var sr *quic.StatelessResetError
	switch {
	case errors.As(cause, &ae) && !ae.Remote:
		// We closed it: Close, Abort or a failure elsewhere.
		if err := t.Err(); err != nil {
			return err
		}
		return transport.ErrClosed
	case errors.As(cause, &ae) && ae.ErrorCode == codeAbort:
		return t.abortNotice(ae.ErrorMessage, rank)
	case errors.As(cause, &ae) && ae.ErrorCode == codeClosed:
		return &transport.PeerError{Rank: rank, Err: transport.ErrPeerClosed}
	case errors.As(cause, &ae):
		return &transport.PeerError{Rank: rank, Err: fmt.Errorf("closed the connection: %s (code %d)", ae.ErrorMessage, ae.ErrorCode)}
	case errors.As(cause, &ie):
		return &transport.PeerError{Rank: rank, Err: fmt.Errorf("no packets for %v, presumed dead (idle timeout): %w", t.cfg.PeerTimeout, cause)}
	case errors.As(cause, &he):
		return &transport.PeerError{Rank: rank, Err: fmt.Errorf("handshake timed out: %w", cause)}
	case errors.As(cause, &sr):
		return &transport.PeerError{Rank: rank, Err: fmt.Errorf("lost its connection state (stateless reset): %w", cause)}
	}
	return &transport.PeerError{Rank: rank, Err: cause}
}

// abortNotice turns an abort reason received from rank sender into the PeerError to report.
// A reason that does not parse, or names ranks outside the job, is blamed on its sender.
func (t *Transport) abortNotice(reason string, sender int) *transport.PeerError {
	guilty, by, msg, err := parseAbortReason(reason)
	if err != nil || guilty >= t.cfg.Size || by >= t.cfg.Size {
		return &transport.PeerError{Rank: sender, Err: fmt.Errorf("aborted with an unreadable reason %q", reason)}
	}
	return &transport.PeerError{Rank: guilty, Err: &abortError{by: by, msg: msg}}
}

// abortError is what a rank reported when it aborted the job: the message, and which rank
// first noticed the failure.
type abortError struct {
	by  int
	msg string
}

func (e *abortError) Error() string { return fmt.Sprintf("%s (reported by rank %d)", e.msg, e.by) }

// failure returns Err if the transport failed or was aborted, nil if it is healthy or was
// closed in order.
func (t *Transport) failure() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if !t.failed {
		return nil
	}
	return t.err
}

// failedGuilty reports whether the transport failed or was aborted and, if so, the rank its
// abort reason blames.
func (t *Transport) failedGuilty() (int, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.guilty, t.failed
}

func (t *Transport) isDone() bool {
	select {
	case <-t.done:
		return true
	default:
		return false
	}
}

// fail records cause, closes Done and closes every connection with an abort reason naming
// the guilty rank, so that the peers fail promptly too. Only the first call has effect.
func (t *Transport) fail(cause error) { t.failWith(cause, cause, true) }

// failWith is fail where the error Err reports (local) may differ from what the peers are
// told (cause), and publish says whether to post the abort notice in the store (not when the
// notice came from there).
func (t *Transport) failWith(local, cause error, publish bool) {
	guilty, by, msg := t.cfg.Rank, t.cfg.Rank, cause.Error()
	var pe *transport.PeerError
	if errors.As(cause, &pe) {
		guilty, msg = pe.Rank, pe.Err.Error()
		var ab *abortError
		if errors.As(pe.Err, &ab) {
			by, msg = ab.by, ab.msg
		}
	}
	reason := encodeAbortReason(guilty, by, msg)

	// From here on, links closed by anyone are reset with a code naming guilty rather than
	// ended in order (see link.Close), so no FIN can overtake the abort reason.
	t.mu.Lock()
	if t.err != nil {
		t.mu.Unlock()
		return
	}
	t.err = local
	t.failed, t.guilty, t.reason = true, guilty, reason
	close(t.done)
	t.mu.Unlock()

	var wg sync.WaitGroup
	// Rank 0 serves the store: when it is the rank that died, posting there can only
	// wait out its timeout (measured: the detecting rank's op returned 3-5 s late, the
	// others at once), so skip it; likewise when the store connection already ended.
	storeGone := guilty == 0 && t.cfg.Rank != 0
	if t.store != nil {
		select {
		case <-t.store.Done():
			storeGone = true
		default:
		}
	}
	if publish && t.store != nil && !storeGone {
		// Tell ranks we have no connection to, through the store. Bounded, since the
		// store itself may be what failed.
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), min(t.cfg.PeerTimeout, 5*time.Second))
			defer cancel()
			if err := t.store.Set(ctx, abortKey, []byte(reason)); err != nil {
				t.log.Debug("quictransport: could not post the abort notice", "err", err)
			}
		})
	}
	t.closeConns(codeAbort, reason)
	wg.Wait()
}

// watchStore waits for an abort notice in the store, and for the loss of the store itself
// (rank 0 died), and fails the transport on either.
func (t *Transport) watchStore() {
	defer t.wg.Done()
	for {
		v, err := t.store.Get(t.ctx, abortKey)
		if t.ctx.Err() != nil || t.isDone() {
			return
		}
		if err == nil {
			pe := t.abortNotice(string(v), 0)
			t.log.Error("quictransport: job aborted", "err", pe)
			t.failWith(pe, pe, false)
			return
		}
		// The wait ended without a notice. Judge by how the store connection ends, which
		// can lag the stream's error a little; if it does not end, just wait again.
		select {
		case <-t.store.Done():
		case <-t.ctx.Done():
			return
		case <-time.After(t.cfg.PeerTimeout):
			t.log.Debug("quictransport: store wait ended early; waiting again", "err", err)
			continue
		}
		cause := t.store.Err()
		var ae *quic.ApplicationError
		if errors.As(cause, &ae) && ae.Remote && ae.ErrorCode == rendezvous.CodeClosed {
			return // rank 0 closed the store in order: the job is ending
		}
		if t.ctx.Err() != nil || t.isDone() {
			return
		}
		pe := &transport.PeerError{Rank: 0, Err: fmt.Errorf("presumed dead: lost the rendezvous store it serves: %w", cause)}
		t.log.Error("quictransport: lost the store", "err", pe)
		t.fail(pe)
		return
	}
}

// closeConns closes every peer connection with code and reason and marks every peer dead.
func (t *Transport) closeConns(code quic.ApplicationErrorCode, reason string) {
	var wg sync.WaitGroup
	for _, p := range t.peers {
		if p == nil {
			continue
		}
		p.mu.Lock()
		conn := p.conn
		if p.deadErr == nil {
			p.deadErr = t.Err()
			close(p.dead)
		}
		p.mu.Unlock()
		if conn != nil {
			wg.Go(func() { conn.CloseWithError(code, reason) })
		}
	}
	wg.Wait()
}

// Abort tears every connection down, telling each connected peer cause. If cause wraps a
// *transport.PeerError, the peers report that PeerError's rank as the guilty one (with this
// rank as the reporter); otherwise they report this rank. Done is closed and Err returns an
// error wrapping cause. Abort after a failure or Close does nothing.
func (t *Transport) Abort(cause error) {
	if cause == nil {
		cause = errors.New("aborted")
	}
	t.failWith(fmt.Errorf("quictransport: rank %d aborted: %w", t.cfg.Rank, cause), cause, true)
}

// Close closes every connection (telling peers it is an orderly close), the listener, the
// socket, the store connection (and on rank 0 the store itself), and waits for every
// goroutine the transport started. It returns the socket's close error, if any.
func (t *Transport) Close() error {
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return t.closeErr
	}
	t.closed = true
	if t.err == nil {
		t.err = transport.ErrClosed
		close(t.done)
	}
	t.mu.Unlock()

	t.cancel()
	t.closeConns(codeClosed, "quictransport: transport closed")
	if t.ln != nil {
		t.ln.Close()
	}
	if t.qtr != nil {
		t.qtr.Close()
	}
	var err error
	if t.udp != nil {
		err = t.udp.Close()
	}
	if t.store != nil {
		t.store.Close()
	}
	if t.server != nil {
		t.server.Close()
	}
	t.wg.Wait()
	t.mu.Lock()
	t.closeErr = err
	t.mu.Unlock()
	return err
}
