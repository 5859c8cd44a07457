package rendezvous

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/quic-go/quic-go"
)

// QUIC application error codes with which the store closes connections and streams.
const (
	CodeClosed     quic.ApplicationErrorCode = 0 // orderly shutdown
	CodeAuthFailed quic.ApplicationErrorCode = 1 // the peer did not prove the job token
	CodeProtocol   quic.ApplicationErrorCode = 2 // the peer sent malformed or unexpected bytes
	CodeBusy       quic.ApplicationErrorCode = 3 // too many connections are authenticating

	codeStreamCanceled quic.StreamErrorCode = 1
)

// ALPN is the TLS application protocol of the store; a client speaking anything else fails
// the TLS handshake.
const ALPN = "ringtrain-store/1"

// ServerConfig configures a Server. The zero value of every field but Token is usable.
type ServerConfig struct {
	// Token is the job token (GORUN_TOKEN) every client must prove. An empty token is
	// accepted but protects nothing: use it only for single-process jobs.
	Token string
	// Logger receives refusals and protocol errors. Nil means slog.Default().
	Logger *slog.Logger
	// AuthTimeout bounds the authentication of a new connection and the arrival of each
	// request's bytes. Zero means 5s.
	AuthTimeout time.Duration
	// IdleTimeout closes a connection after this long without packets; the store pings its
	// clients every third of it, so only dead clients are dropped (and their last wills
	// applied). Zero means 30s.
	IdleTimeout time.Duration
	// MaxPendingAuth is how many connections may be authenticating at once; beyond it new
	// connections are refused with CodeBusy. Zero means 64.
	MaxPendingAuth int
}

func (c *ServerConfig) withDefaults() ServerConfig {
	d := *c
	if d.Logger == nil {
		d.Logger = slog.Default()
	}
	if d.AuthTimeout <= 0 {
		d.AuthTimeout = 5 * time.Second
	}
	if d.IdleTimeout <= 0 {
		d.IdleTimeout = 30 * time.Second
	}
	if d.MaxPendingAuth <= 0 {
		d.MaxPendingAuth = 64
	}
	return d
}

// Server serves the store on one UDP socket until Close.
type Server struct {
	cfg     ServerConfig
	udp     net.PacketConn
	tr      *quic.Transport
	ln      *quic.Listener
	store   *kvStore
	pending chan struct{} // semaphore of connections still authenticating

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu     sync.Mutex
	conns  map[*quic.Conn]struct{}
	closed bool
}

// Listen binds addr (host:port, UDP) and serves the store on it.
func Listen(addr string, cfg ServerConfig) (*Server, error) {
	ua, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		return nil, fmt.Errorf("rendezvous: store address %q: %w", addr, err)
	}
	udp, err := net.ListenUDP("udp", ua)
	if err != nil {
		return nil, fmt.Errorf("rendezvous: listen on %s: %w", addr, err)
	}
	s, err := Serve(udp, cfg)
	if err != nil {
		udp.Close()
		return nil, err
	}
	return s, nil
}

// Serve serves the store on an already bound socket, which the Server then owns and closes.
func Serve(conn net.PacketConn, cfg ServerConfig) (*Server, error) {
	cfg = cfg.withDefaults()
	cert, err := EphemeralCertificate()
	if err != nil {
		return nil, err
	}
	tr := &quic.Transport{Conn: conn}
	tlsConf := &tls.Config{
		Certificates: []tls.Certificate{cert},
		NextProtos:   []string{ALPN},
		MinVersion:   tls.VersionTLS13,
	}
	ln, err := tr.Listen(tlsConf, &quic.Config{
		MaxIdleTimeout: cfg.IdleTimeout,
		// The store pings its clients itself rather than relying on their keep-alives:
		// quic-go treats a peer's idle timeout below 5s as 5s, so a client would not ping
		// often enough for a shorter IdleTimeout here.
		KeepAlivePeriod:      cfg.IdleTimeout / 3,
		HandshakeIdleTimeout: cfg.AuthTimeout,
		MaxIncomingStreams:   1024,
		// A store connection never needs one direction alone.
		MaxIncomingUniStreams: -1,
	})
	if err != nil {
		tr.Close()
		return nil, fmt.Errorf("rendezvous: listen: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Server{
		cfg:     cfg,
		udp:     conn,
		tr:      tr,
		ln:      ln,
		store:   newKVStore(),
		pending: make(chan struct{}, cfg.MaxPendingAuth),
		ctx:     ctx,
		cancel:  cancel,
		conns:   make(map[*quic.Conn]struct{}),
	}
	s.wg.Add(1)
	go s.acceptLoop()
	return s, nil
}

// Addr is the socket's local address.
func (s *Server) Addr() net.Addr { return s.udp.LocalAddr() }

// Close stops serving, closes every connection and waits for every goroutine to end.
func (s *Server) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	conns := make([]*quic.Conn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	s.cancel()
	s.ln.Close()
	for _, c := range conns {
		c.CloseWithError(CodeClosed, "rendezvous: store shut down")
	}
	s.tr.Close()
	err := s.udp.Close()
	s.wg.Wait()
	return err
}

func (s *Server) acceptLoop() {
	defer s.wg.Done()
	for {
		conn, err := s.ln.Accept(s.ctx)
		if err != nil {
			return // closed
		}
		select {
		case s.pending <- struct{}{}:
		default:
			s.refuse(conn, CodeBusy, "too many connections authenticating")
			continue
		}
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			<-s.pending
			conn.CloseWithError(CodeClosed, "rendezvous: store shut down")
			return
		}
		s.conns[conn] = struct{}{}
		s.wg.Add(1)
		s.mu.Unlock()
		go s.serveConn(conn)
	}
}

// refuse logs why conn is turned away and closes it with code and the reason.
func (s *Server) refuse(conn *quic.Conn, code quic.ApplicationErrorCode, reason string) {
	s.cfg.Logger.Warn("rendezvous: refused connection", "remote", conn.RemoteAddr().String(), "reason", reason)
	conn.CloseWithError(code, "rendezvous: "+reason)
}

func (s *Server) serveConn(conn *quic.Conn) {
	defer s.wg.Done()
	defer func() {
		s.mu.Lock()
		delete(s.conns, conn)
		s.mu.Unlock()
	}()
	err := s.authenticate(conn)
	<-s.pending
	if err != nil {
		code := CodeAuthFailed
		if errors.Is(err, errProtocol) {
			code = CodeProtocol
		}
		if s.ctx.Err() == nil {
			s.refuse(conn, code, err.Error())
		}
		return
	}
	cs := &connState{wills: make(map[string][]byte)}
	for {
		str, err := conn.AcceptStream(s.ctx)
		if err != nil {
			break
		}
		s.wg.Add(1)
		go s.serveStream(conn, cs, str)
	}
	<-conn.Context().Done()
	s.cfg.Logger.Debug("rendezvous: connection ended", "remote", conn.RemoteAddr().String(), "cause", context.Cause(conn.Context()))
	s.applyWills(conn, cs)
}

// connState is what the store keeps per authenticated connection.
type connState struct {
	mu    sync.Mutex
	wills map[string][]byte // key -> value to set if the connection ends abnormally
	ended bool              // set once the wills have been applied or dropped
}

// applyWills sets the connection's last wills unless it ended in order (the client's Close)
// or because the store itself is shutting down.
func (s *Server) applyWills(conn *quic.Conn, cs *connState) {
	cs.mu.Lock()
	wills := cs.wills
	cs.wills, cs.ended = nil, true
	cs.mu.Unlock()
	if len(wills) == 0 || s.ctx.Err() != nil {
		return
	}
	cause := context.Cause(conn.Context())
	var ae *quic.ApplicationError
	if errors.As(cause, &ae) && (!ae.Remote || ae.ErrorCode == CodeClosed) {
		return
	}
	s.cfg.Logger.Warn("rendezvous: client connection lost; applying its last will", "remote", conn.RemoteAddr().String(), "err", cause)
	for k, v := range wills {
		s.store.set(k, v)
	}
}

var errProtocol = errors.New("protocol violation")

// authenticate runs the server side of the token exchange on the connection's first stream.
func (s *Server) authenticate(conn *quic.Conn) error {
	deadline := time.Now().Add(s.cfg.AuthTimeout)
	ctx, cancel := context.WithDeadline(s.ctx, deadline)
	defer cancel()
	str, err := conn.AcceptStream(ctx)
	if err != nil {
		return fmt.Errorf("no authentication within %v: %w", s.cfg.AuthTimeout, err)
	}
	str.SetDeadline(deadline)
	m, err := readMessage(str)
	if err != nil {
		str.CancelRead(codeStreamCanceled)
		str.CancelWrite(codeStreamCanceled)
		return fmt.Errorf("%w: reading authentication: %w", errProtocol, err)
	}
	if m.typ != msgAuth {
		return fmt.Errorf("%w: first message is %v, want auth", errProtocol, m.typ)
	}
	state := conn.ConnectionState().TLS
	if !CheckTokenProof(state, s.cfg.Token, LabelStoreClient, nil, m.proof) {
		return errors.New("wrong job token (GORUN_TOKEN)")
	}
	proof, err := TokenProof(state, s.cfg.Token, LabelStoreServer, nil)
	if err != nil {
		return err
	}
	out, err := (&message{typ: msgAuthOK, proof: proof}).encode(nil)
	if err != nil {
		return err
	}
	if _, err := str.Write(out); err != nil {
		return fmt.Errorf("writing authentication: %w", err)
	}
	// The client may already have cancelled its read side once it has our proof, which
	// makes Close report an error that does not matter.
	str.Close()
	return nil
}

func (s *Server) serveStream(conn *quic.Conn, cs *connState, str *quic.Stream) {
	defer s.wg.Done()
	// The client writes its whole request at once; a stream that dribbles is cut off.
	str.SetReadDeadline(time.Now().Add(s.cfg.AuthTimeout))
	req, err := readMessage(str)
	if err != nil {
		var we *WireError
		if errors.As(err, &we) {
			s.cfg.Logger.Warn("rendezvous: malformed request", "remote", conn.RemoteAddr().String(), "err", err)
			s.reply(str, &message{typ: msgError, text: err.Error()})
			return
		}
		str.CancelRead(codeStreamCanceled)
		str.CancelWrite(codeStreamCanceled)
		return
	}
	str.SetReadDeadline(time.Time{})
	var resp *message
	switch req.typ {
	case msgSet:
		s.store.set(req.key, req.value)
		resp = &message{typ: msgOK}
	case msgWill:
		cs.mu.Lock()
		ended := cs.ended
		if !ended {
			cs.wills[req.key] = req.value
		}
		cs.mu.Unlock()
		if ended {
			return
		}
		resp = &message{typ: msgOK}
	case msgWait:
		// str.Context ends when the client cancels (STOP_SENDING) or the connection dies.
		ctx, cancel := context.WithCancel(s.ctx)
		stop := context.AfterFunc(str.Context(), cancel)
		vals := s.store.wait(ctx, req.keys, req.waitMS)
		stop()
		cancel()
		if s.ctx.Err() != nil {
			// Shutting down: the connection's close (CodeClosed) is the answer, not a
			// partial result that would read as "keys missing".
			return
		}
		resp = &message{typ: msgValues, values: vals}
	case msgAdd:
		n, err := s.store.add(req.key, req.n)
		if err != nil {
			resp = &message{typ: msgError, text: err.Error()}
		} else {
			resp = &message{typ: msgInt, n: n}
		}
	default:
		resp = &message{typ: msgError, text: fmt.Sprintf("unexpected request type %v", req.typ)}
	}
	s.reply(str, resp)
}

func (s *Server) reply(str *quic.Stream, m *message) {
	out, err := m.encode(nil)
	if err != nil {
		out, _ = (&message{typ: msgError, text: err.Error()}).encode(nil)
	}
	str.SetWriteDeadline(time.Now().Add(s.cfg.IdleTimeout))
	if _, err := str.Write(out); err != nil {
		str.CancelWrite(codeStreamCanceled)
	} else {
		str.Close()
	}
	// Nothing more is expected from the client on this stream.
	str.CancelRead(0)
}
