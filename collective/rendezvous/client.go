package rendezvous

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/quic-go/quic-go"
)

// ClientConfig configures Dial. The zero value of every field but Token is usable.
type ClientConfig struct {
	// Token is the job token (GORUN_TOKEN) to prove to the store, which must prove it back.
	Token string
	// Logger receives connection problems. Nil means slog.Default().
	Logger *slog.Logger
	// IdleTimeout drops the store connection after this long without packets; the client
	// sends keep-alives at a third of it, so only a dead store is noticed. Zero means 30s.
	IdleTimeout time.Duration
}

// Client is one authenticated connection to the store. Its methods are safe for concurrent
// use; each operation runs on its own QUIC stream, so a blocked Get never delays a Set.
type Client struct {
	addr string
	udp  *net.UDPConn
	tr   *quic.Transport
	conn *quic.Conn

	closeOnce sync.Once
	closeErr  error
}

// waitGrace is how long past its context's deadline a wait request still waits for the
// store's own timed answer, which names exactly the keys that are missing.
const waitGrace = 2 * time.Second

// Dial connects to the store at addr (host:port) and authenticates both ways. While the store
// is not yet up (rank 0 may start after the others) it keeps retrying until ctx ends. A
// refusal by the store, or a store that cannot prove the token, fails at once with an error
// wrapping ErrAuth.
func Dial(ctx context.Context, addr string, cfg ClientConfig) (*Client, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.IdleTimeout <= 0 {
		cfg.IdleTimeout = 30 * time.Second
	}
	udp, err := net.ListenUDP("udp", nil)
	if err != nil {
		return nil, fmt.Errorf("rendezvous: client socket: %w", err)
	}
	tr := &quic.Transport{Conn: udp}
	tlsConf := &tls.Config{
		// The store's certificate is ephemeral and self-signed; the store is authenticated
		// instead by its token proof bound to this session (see the package doc). We still
		// insist on one well-formed certificate.
		InsecureSkipVerify: true,
		VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
			if len(raw) != 1 {
				return fmt.Errorf("store presented %d certificates, want 1", len(raw))
			}
			_, err := x509.ParseCertificate(raw[0])
			return err
		},
		NextProtos: []string{ALPN},
		MinVersion: tls.VersionTLS13,
		ServerName: "ringtrain",
	}
	qconf := &quic.Config{
		MaxIdleTimeout:        cfg.IdleTimeout,
		KeepAlivePeriod:       cfg.IdleTimeout / 3,
		MaxIncomingStreams:    -1,
		MaxIncomingUniStreams: -1,
	}
	c := &Client{addr: addr, udp: udp, tr: tr}
	attempt := time.Second
	var lastErr error
	for {
		conn, err := c.dialOnce(ctx, attempt, tlsConf, qconf, cfg.Token)
		if err == nil {
			c.conn = conn
			return c, nil
		}
		if errors.Is(err, ErrAuth) {
			tr.Close()
			udp.Close()
			return nil, err
		}
		lastErr = err
		select {
		case <-ctx.Done():
			tr.Close()
			udp.Close()
			return nil, fmt.Errorf("rendezvous: cannot reach the store at %s: %w (last attempt: %v)", addr, context.Cause(ctx), lastErr)
		case <-time.After(100 * time.Millisecond):
		}
		attempt = min(2*attempt, 5*time.Second)
	}
}

func (c *Client) dialOnce(ctx context.Context, timeout time.Duration, tlsConf *tls.Config, qconf *quic.Config, token string) (*quic.Conn, error) {
	ua, err := net.ResolveUDPAddr("udp", c.addr)
	if err != nil {
		return nil, err
	}
	dctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	conn, err := c.tr.Dial(dctx, ua, tlsConf, qconf)
	if err != nil {
		return nil, err
	}
	if err := clientAuth(dctx, conn, token); err != nil {
		code := CodeAuthFailed
		if !errors.Is(err, ErrAuth) {
			code = CodeProtocol
		}
		conn.CloseWithError(code, "rendezvous: "+err.Error())
		return nil, fmt.Errorf("rendezvous: store at %s: %w", c.addr, err)
	}
	return conn, nil
}

// clientAuth sends our proof on the first stream and checks the store's.
func clientAuth(ctx context.Context, conn *quic.Conn, token string) error {
	state := conn.ConnectionState().TLS
	proof, err := TokenProof(state, token, LabelStoreClient, nil)
	if err != nil {
		return err
	}
	str, err := conn.OpenStreamSync(ctx)
	if err != nil {
		return err
	}
	if dl, ok := ctx.Deadline(); ok {
		str.SetDeadline(dl)
	}
	out, _ := (&message{typ: msgAuth, proof: proof}).encode(nil)
	if _, err := str.Write(out); err != nil {
		return refusal(err)
	}
	str.Close()
	m, err := readMessage(str)
	if err != nil {
		return refusal(err)
	}
	if m.typ != msgAuthOK {
		return fmt.Errorf("store answered authentication with %v", m.typ)
	}
	if !CheckTokenProof(state, token, LabelStoreServer, nil, m.proof) {
		return fmt.Errorf("%w: the store did not prove the job token (not our job's store?)", ErrAuth)
	}
	str.CancelRead(0)
	return nil
}

// refusal turns the store closing us with CodeAuthFailed into an ErrAuth error.
func refusal(err error) error {
	var ae *quic.ApplicationError
	if errors.As(err, &ae) && ae.Remote && ae.ErrorCode == CodeAuthFailed {
		return fmt.Errorf("%w: refused by the store (is GORUN_TOKEN this job's token?): %s", ErrAuth, strings.TrimPrefix(ae.ErrorMessage, "rendezvous: "))
	}
	return err
}

// Close closes the connection and the client's socket.
func (c *Client) Close() error {
	c.closeOnce.Do(func() {
		c.conn.CloseWithError(CodeClosed, "rendezvous: client closed")
		c.tr.Close()
		c.closeErr = c.udp.Close()
	})
	return c.closeErr
}

// Done is closed when the connection to the store is lost or closed.
func (c *Client) Done() <-chan struct{} { return c.conn.Context().Done() }

// Err says why the connection ended (nil while it is up). A store that shut down in order
// reports a *quic.ApplicationError with code CodeClosed and Remote set.
func (c *Client) Err() error {
	if c.conn.Context().Err() == nil {
		return nil
	}
	return context.Cause(c.conn.Context())
}

// Set stores value under key, replacing any previous value, and wakes every waiter on it.
func (c *Client) Set(ctx context.Context, key string, value []byte) error {
	resp, err := c.roundTrip(ctx, &message{typ: msgSet, key: key, value: value})
	if err != nil {
		return fmt.Errorf("rendezvous: set %q: %w", key, err)
	}
	if resp.typ != msgOK {
		return fmt.Errorf("rendezvous: set %q: unexpected %v answer", key, resp.typ)
	}
	return nil
}

// SetOnDisconnect registers a last will on this connection: if the connection ends other than
// by Close (the process died, the host or network failed, detected within the idle timeout),
// the store sets key to value, waking whoever waits on key. Close discards the will, and so
// does the store's own shutdown. Registering the same key again replaces its value.
func (c *Client) SetOnDisconnect(ctx context.Context, key string, value []byte) error {
	resp, err := c.roundTrip(ctx, &message{typ: msgWill, key: key, value: value})
	if err != nil {
		return fmt.Errorf("rendezvous: last will for %q: %w", key, err)
	}
	if resp.typ != msgOK {
		return fmt.Errorf("rendezvous: last will for %q: unexpected %v answer", key, resp.typ)
	}
	return nil
}

// Add adds delta to the decimal integer stored under key (absent counts as 0), stores the
// sum and returns it. It is atomic: concurrent Adds from many ranks all count.
func (c *Client) Add(ctx context.Context, key string, delta int64) (int64, error) {
	resp, err := c.roundTrip(ctx, &message{typ: msgAdd, key: key, n: delta})
	if err != nil {
		return 0, fmt.Errorf("rendezvous: add to %q: %w", key, err)
	}
	if resp.typ != msgInt {
		return 0, fmt.Errorf("rendezvous: add to %q: unexpected %v answer", key, resp.typ)
	}
	return resp.n, nil
}

// Get waits until key exists and returns its value, or fails when ctx ends (the error then
// wraps ctx's error, and a *MissingKeysError if ctx's deadline passed).
func (c *Client) Get(ctx context.Context, key string) ([]byte, error) {
	vals, err := c.WaitKeys(ctx, []string{key})
	if err != nil {
		return nil, err
	}
	return vals[0], nil
}

// TryGet returns key's value and true if it exists, or nil and false at once if not.
func (c *Client) TryGet(ctx context.Context, key string) ([]byte, bool, error) {
	vals, err := c.wait(ctx, []string{key}, 0)
	if err != nil {
		return nil, false, err
	}
	return vals[0], vals[0] != nil, nil
}

// MissingKeysError reports the keys that were still absent when a wait ended.
type MissingKeysError struct {
	Keys []string // in request order
	Err  error    // why the wait ended, e.g. context.DeadlineExceeded
}

func (e *MissingKeysError) Error() string {
	return fmt.Sprintf("rendezvous: keys %q never set: %v", e.Keys, e.Err)
}

func (e *MissingKeysError) Unwrap() error { return e.Err }

// WaitKeys waits until every key exists and returns their values in order. If ctx has a
// deadline and it passes first, the store itself ends the wait and the error is a
// *MissingKeysError naming exactly the absent keys (values then holds the present ones and
// nil for the others). If ctx is cancelled, or the connection is lost, the error wraps that
// cause instead and values is nil.
func (c *Client) WaitKeys(ctx context.Context, keys []string) ([][]byte, error) {
	wait := waitForever
	if dl, ok := ctx.Deadline(); ok {
		wait = uint32(min(max(time.Until(dl), 0), time.Duration(waitForever-1)*time.Millisecond) / time.Millisecond)
	}
	vals, err := c.wait(ctx, keys, wait)
	if err != nil {
		return nil, err
	}
	var missing []string
	for i, v := range vals {
		if v == nil {
			missing = append(missing, keys[i])
		}
	}
	if missing != nil {
		cause := ctx.Err()
		if cause == nil {
			cause = context.DeadlineExceeded
		}
		return vals, &MissingKeysError{Keys: missing, Err: cause}
	}
	return vals, nil
}

func (c *Client) wait(ctx context.Context, keys []string, waitMS uint32) ([][]byte, error) {
	if len(keys) == 0 {
		return nil, nil
	}
	rctx := ctx
	if waitMS != waitForever {
		// Let the store answer a timed wait past ctx's deadline (by waitGrace), so that we
		// learn exactly which keys were missing; cancellation still stops us at once.
		var cancel context.CancelFunc
		rctx, cancel = context.WithTimeout(context.WithoutCancel(ctx), time.Duration(waitMS)*time.Millisecond+waitGrace)
		defer cancel()
		stop := context.AfterFunc(ctx, func() {
			if !errors.Is(ctx.Err(), context.DeadlineExceeded) {
				cancel()
			}
		})
		defer stop()
	}
	resp, err := c.roundTrip(rctx, &message{typ: msgWait, keys: keys, waitMS: waitMS})
	if err != nil {
		// Only the store's own answer says which keys are missing; without it (cancelled,
		// connection lost, no answer within the grace) say what happened instead.
		if ctx.Err() != nil && c.conn.Context().Err() == nil {
			err = context.Cause(ctx)
		}
		return nil, fmt.Errorf("rendezvous: wait for %q: %w", keys, err)
	}
	if resp.typ != msgValues || len(resp.values) != len(keys) {
		return nil, fmt.Errorf("rendezvous: wait for %q: unexpected %v answer with %d values", keys, resp.typ, len(resp.values))
	}
	return resp.values, nil
}

// roundTrip sends req on a new stream and reads the one response.
func (c *Client) roundTrip(ctx context.Context, req *message) (*message, error) {
	out, err := req.encode(nil)
	if err != nil {
		return nil, err
	}
	str, err := c.conn.OpenStreamSync(ctx)
	if err != nil {
		return nil, c.connErr(ctx, err)
	}
	stop := context.AfterFunc(ctx, func() {
		str.CancelRead(codeStreamCanceled)
		str.CancelWrite(codeStreamCanceled)
	})
	defer stop()
	if _, err := str.Write(out); err != nil {
		return nil, c.connErr(ctx, err)
	}
	str.Close()
	resp, err := readMessage(str)
	if err != nil {
		return nil, c.connErr(ctx, err)
	}
	str.CancelRead(0)
	if resp.typ == msgError {
		return nil, fmt.Errorf("store: %s", resp.text)
	}
	return resp, nil
}

func (c *Client) connErr(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return context.Cause(ctx)
	}
	if c.conn.Context().Err() != nil {
		return fmt.Errorf("connection to the store at %s lost: %w", c.addr, context.Cause(c.conn.Context()))
	}
	return err
}
