package rendezvous

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/quic-go/quic-go"
)

// logBuffer collects log output so that tests can check what was logged.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// waitLogged polls until the log contains every string in want, or fails the test.
func waitLogged(t *testing.T, logs *logBuffer, want ...string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		s := logs.String()
		ok := true
		for _, w := range want {
			ok = ok && strings.Contains(s, w)
		}
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("log lacks %q; log:\n%s", want, s)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func startServer(t *testing.T, cfg ServerConfig) (*Server, *logBuffer) {
	t.Helper()
	logs := &logBuffer{}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(logs, nil))
	}
	s, err := Listen("127.0.0.1:0", cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, logs
}

func dial(t *testing.T, s *Server, token string) *Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := Dial(ctx, s.Addr().String(), ClientConfig{Token: token})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestSetGetWait(t *testing.T) {
	s, _ := startServer(t, ServerConfig{Token: "secret"})
	a, b := dial(t, s, "secret"), dial(t, s, "secret")
	ctx := testCtx(t)

	// A Get issued before the Set waits for it.
	got := make(chan []byte, 1)
	go func() {
		v, err := b.Get(ctx, "late")
		if err != nil {
			t.Error(err)
		}
		got <- v
	}()
	time.Sleep(50 * time.Millisecond)
	if err := a.Set(ctx, "late", []byte("value")); err != nil {
		t.Fatal(err)
	}
	if v := <-got; string(v) != "value" {
		t.Fatalf("Get = %q, want %q", v, "value")
	}

	// Overwrite, empty values, and a value at the size limit.
	big := bytes.Repeat([]byte{0xAB}, MaxValueLen)
	for _, v := range [][]byte{[]byte("x"), {}, big} {
		if err := a.Set(ctx, "k", v); err != nil {
			t.Fatal(err)
		}
		w, err := b.Get(ctx, "k")
		if err != nil || !bytes.Equal(w, v) || w == nil {
			t.Fatalf("Get after Set of %d bytes: %d bytes, err %v", len(v), len(w), err)
		}
	}
	if err := a.Set(ctx, "k", make([]byte, MaxValueLen+1)); err == nil {
		t.Fatal("Set of an oversized value succeeded")
	}
	if err := a.Set(ctx, strings.Repeat("k", MaxKeyLen+1), nil); err == nil {
		t.Fatal("Set of an oversized key succeeded")
	}

	// TryGet does not wait.
	if _, ok, err := a.TryGet(ctx, "absent"); ok || err != nil {
		t.Fatalf("TryGet(absent) = %v, %v", ok, err)
	}
	if v, ok, err := a.TryGet(ctx, "late"); !ok || err != nil || string(v) != "value" {
		t.Fatalf("TryGet(late) = %q, %v, %v", v, ok, err)
	}

	// WaitKeys returns values in request order once all exist.
	go func() {
		for i := 3; i >= 0; i-- {
			a.Set(ctx, fmt.Sprint("w", i), []byte{byte(i)})
		}
	}()
	vals, err := b.WaitKeys(ctx, []string{"w0", "w1", "w2", "w3"})
	if err != nil {
		t.Fatal(err)
	}
	for i, v := range vals {
		if !bytes.Equal(v, []byte{byte(i)}) {
			t.Fatalf("WaitKeys value %d = %v", i, v)
		}
	}
}

func TestWaitKeysNamesMissing(t *testing.T) {
	s, _ := startServer(t, ServerConfig{Token: "secret"})
	c := dial(t, s, "secret")
	ctx := testCtx(t)
	c.Set(ctx, "b", []byte("B"))
	wctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	vals, err := c.WaitKeys(wctx, []string{"a", "b", "c"})
	var mk *MissingKeysError
	if !errors.As(err, &mk) {
		t.Fatalf("err = %v, want a MissingKeysError", err)
	}
	if fmt.Sprint(mk.Keys) != "[a c]" || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("missing = %v (err %v), want [a c] and DeadlineExceeded", mk.Keys, err)
	}
	if vals[0] != nil || string(vals[1]) != "B" || vals[2] != nil {
		t.Fatalf("partial values = %q", vals)
	}

	// Cancellation ends a wait at once.
	cctx, ccancel := context.WithCancel(ctx)
	go func() { time.Sleep(50 * time.Millisecond); ccancel() }()
	start := time.Now()
	if _, err := c.Get(cctx, "never"); !errors.Is(err, context.Canceled) {
		t.Fatalf("Get after cancel: %v", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("cancelled Get took %v", d)
	}
	// The connection still works after a cancelled request.
	if err := c.Set(ctx, "after", nil); err != nil {
		t.Fatal(err)
	}
}

func TestAddIsAtomic(t *testing.T) {
	s, _ := startServer(t, ServerConfig{Token: "secret"})
	ctx := testCtx(t)
	const clients, adds = 4, 25
	var wg sync.WaitGroup
	for i := 0; i < clients; i++ {
		c := dial(t, s, "secret")
		wg.Go(func() {
			for j := 0; j < adds; j++ {
				if _, err := c.Add(ctx, "n", 2); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	c := dial(t, s, "secret")
	n, err := c.Add(ctx, "n", 0)
	if err != nil || n != clients*adds*2 {
		t.Fatalf("counter = %d (%v), want %d", n, err, clients*adds*2)
	}
	if v, _ := c.Get(ctx, "n"); string(v) != fmt.Sprint(clients*adds*2) {
		t.Fatalf("Get(n) = %q", v)
	}
	c.Set(ctx, "text", []byte("abc"))
	if _, err := c.Add(ctx, "text", 1); err == nil || !strings.Contains(err.Error(), "not an integer") {
		t.Fatalf("Add to a non-integer: %v", err)
	}
}

// TestWrongTokenRefused checks that a stranger is refused and logged, while an authenticated
// client that is waiting on the store at that moment is not disturbed.
func TestWrongTokenRefused(t *testing.T) {
	s, logs := startServer(t, ServerConfig{Token: "secret"})
	good := dial(t, s, "secret")
	ctx := testCtx(t)
	got := make(chan error, 1)
	go func() {
		v, err := good.Get(ctx, "after-stranger")
		if err == nil && string(v) != "ok" {
			err = fmt.Errorf("got %q", v)
		}
		got <- err
	}()

	dctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	bad, err := Dial(dctx, s.Addr().String(), ClientConfig{Token: "guess"})
	if err == nil {
		bad.Close()
		t.Fatal("a client with the wrong token was accepted")
	}
	if !errors.Is(err, ErrAuth) || !strings.Contains(err.Error(), "wrong job token") {
		t.Fatalf("wrong-token error = %v", err)
	}
	waitLogged(t, logs, "refused connection", "remote=127.0.0.1:", "wrong job token")

	if err := dial(t, s, "secret").Set(ctx, "after-stranger", []byte("ok")); err != nil {
		t.Fatal(err)
	}
	if err := <-got; err != nil {
		t.Fatalf("authenticated client disturbed: %v", err)
	}
}

// TestStoreImpostorDetected: a server that does not know the token cannot pass itself off as
// the store, even if it accepts any client proof.
func TestStoreImpostorDetected(t *testing.T) {
	cert, err := EphemeralCertificate()
	if err != nil {
		t.Fatal(err)
	}
	ln, err := quic.ListenAddr("127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{ALPN}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	ctx := testCtx(t)
	go func() {
		conn, err := ln.Accept(ctx)
		if err != nil {
			return
		}
		str, err := conn.AcceptStream(ctx)
		if err != nil {
			return
		}
		readMessage(str)
		out, _ := (&message{typ: msgAuthOK, proof: bytes.Repeat([]byte{7}, ProofLen)}).encode(nil)
		str.Write(out)
		str.Close()
		<-conn.Context().Done()
	}()
	_, err = Dial(ctx, ln.Addr().String(), ClientConfig{Token: "secret"})
	if !errors.Is(err, ErrAuth) || !strings.Contains(err.Error(), "did not prove") {
		t.Fatalf("impostor store: %v", err)
	}
}

// TestGarbageRefused sends raw UDP garbage, a silent connection and a malformed first
// message; each is dropped or refused and logged, and the store keeps serving.
func TestGarbageRefused(t *testing.T) {
	s, logs := startServer(t, ServerConfig{Token: "secret", AuthTimeout: 500 * time.Millisecond})
	ctx := testCtx(t)

	u, err := net.Dial("udp", s.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 50; i++ {
		u.Write(bytes.Repeat([]byte{byte(i), 0xff, 0x00, 0x13}, 300)) // long-header-looking junk too
	}
	u.Close()

	tlsConf := &tls.Config{InsecureSkipVerify: true, NextProtos: []string{ALPN}}
	// Silent: handshakes, then says nothing.
	silent, err := quic.DialAddr(ctx, s.Addr().String(), tlsConf, nil)
	if err != nil {
		t.Fatal(err)
	}
	<-silent.Context().Done()
	var ae *quic.ApplicationError
	if err := context.Cause(silent.Context()); !errors.As(err, &ae) || ae.ErrorCode != CodeAuthFailed {
		t.Fatalf("silent client closed with %v", err)
	}
	waitLogged(t, logs, "no authentication within")

	// Malformed: a frame header announcing an enormous payload.
	junk, err := quic.DialAddr(ctx, s.Addr().String(), tlsConf, nil)
	if err != nil {
		t.Fatal(err)
	}
	str, _ := junk.OpenStreamSync(ctx)
	str.Write([]byte{WireVersion, byte(msgAuth), 0xff, 0xff, 0xff, 0xff, 1, 2, 3})
	<-junk.Context().Done()
	if err := context.Cause(junk.Context()); !errors.As(err, &ae) || ae.ErrorCode != CodeProtocol {
		t.Fatalf("junk client closed with %v", err)
	}
	waitLogged(t, logs, "exceeds limit")

	// The store still serves.
	c := dial(t, s, "secret")
	if err := c.Set(ctx, "k", []byte("v")); err != nil {
		t.Fatal(err)
	}
	if v, err := c.Get(ctx, "k"); err != nil || string(v) != "v" {
		t.Fatalf("Get after garbage = %q, %v", v, err)
	}
}

// TestDialWaitsForServer: a client started before the store connects once it comes up.
func TestDialWaitsForServer(t *testing.T) {
	u, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	addr := u.LocalAddr().String()
	u.Close()
	ctx := testCtx(t)
	dialed := make(chan error, 1)
	go func() {
		c, err := Dial(ctx, addr, ClientConfig{Token: "secret"})
		if err == nil {
			c.Close()
		}
		dialed <- err
	}()
	time.Sleep(300 * time.Millisecond)
	s, err := Listen(addr, ServerConfig{Token: "secret"})
	if err != nil {
		t.Skipf("port taken meanwhile: %v", err)
	}
	defer s.Close()
	if err := <-dialed; err != nil {
		t.Fatal(err)
	}

	// And a store that never comes gives up when ctx ends, saying where it looked.
	short, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	_, err = Dial(short, "127.0.0.1:1", ClientConfig{Token: "secret"})
	if err == nil || !strings.Contains(err.Error(), "127.0.0.1:1") || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Dial to nothing: %v", err)
	}
}

// TestLastWill: a client that vanishes (its socket just stops, no CONNECTION_CLOSE) has its
// will applied once the store's idle timeout notices; one that closes in order does not.
func TestLastWill(t *testing.T) {
	s, logs := startServer(t, ServerConfig{Token: "secret", IdleTimeout: 1500 * time.Millisecond})
	ctx := testCtx(t)
	watcher := dial(t, s, "secret")

	orderly := dial(t, s, "secret")
	if err := orderly.SetOnDisconnect(ctx, "will/orderly", []byte("x")); err != nil {
		t.Fatal(err)
	}
	orderly.Close()

	vanishing := dial(t, s, "secret")
	if err := vanishing.SetOnDisconnect(ctx, "will/vanished", []byte("first")); err != nil {
		t.Fatal(err)
	}
	if err := vanishing.SetOnDisconnect(ctx, "will/vanished", []byte("rank 3 died")); err != nil {
		t.Fatal(err)
	}
	vanishing.tr.Close() // drops the connection without telling the store, like SIGKILL
	vanishing.udp.Close()

	start := time.Now()
	v, err := watcher.Get(ctx, "will/vanished")
	if err != nil || string(v) != "rank 3 died" {
		t.Fatalf("will = %q, %v", v, err)
	}
	t.Logf("will applied %v after the client vanished", time.Since(start).Round(time.Millisecond))
	waitLogged(t, logs, "applying its last will")
	if _, ok, _ := watcher.TryGet(ctx, "will/orderly"); ok {
		t.Fatal("the will of a client that closed in order was applied")
	}
}

// TestShutdownIsNotAnAnswer: a store shutting down must not answer pending waits with
// "keys missing" (which a rank would read as a verdict); the waiters see the orderly close.
func TestShutdownIsNotAnAnswer(t *testing.T) {
	for i := 0; i < 20; i++ {
		s, err := Listen("127.0.0.1:0", ServerConfig{Token: "secret", Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			t.Fatal(err)
		}
		const waiters = 4
		got := make(chan error, waiters)
		for w := 0; w < waiters; w++ {
			c := dial(t, s, "secret")
			go func() {
				_, err := c.Get(testCtx(t), "never")
				got <- err
			}()
		}
		time.Sleep(10 * time.Millisecond)
		s.Close()
		for w := 0; w < waiters; w++ {
			err := <-got
			var mk *MissingKeysError
			var ae *quic.ApplicationError
			if errors.As(err, &mk) || !errors.As(err, &ae) || ae.ErrorCode != CodeClosed {
				t.Fatalf("round %d: waiter got %v, want the store's orderly close", i, err)
			}
		}
	}
}
