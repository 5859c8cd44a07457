package quictransport

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/ringtrain/ringtrain/collective/rendezvous"
)

// background keeps data flowing between ranks a < b until stop is closed, checking every
// byte, and returns a function reporting the first problem and the rounds completed. Rank a
// decides each round whether to go on and tells b on a control link, so that both sides
// always stop after the same round.
func background(ctx context.Context, ts []*Transport, a, b int, stop <-chan struct{}) (wait func() (int, error)) {
	var rounds atomic.Int64
	errc := make(chan error, 2)
	go func() {
		ctl, err := ts[a].Link(ctx, b, "bg-control")
		if err != nil {
			errc <- err
			return
		}
		for i := 0; ; i++ {
			goOn := byte(1)
			select {
			case <-stop:
				goOn = 0
			default:
			}
			if _, err := ctl.Write([]byte{goOn}); err != nil {
				errc <- err
				return
			}
			if goOn == 0 {
				errc <- nil
				return
			}
			if err := exchange(ctx, ts[a], b, fmt.Sprint("bg", i), 256<<10); err != nil {
				errc <- fmt.Errorf("background exchange %d, rank %d: %w", i, a, err)
				return
			}
			rounds.Add(1)
		}
	}()
	go func() {
		ctl, err := ts[b].Link(ctx, a, "bg-control")
		if err != nil {
			errc <- err
			return
		}
		var goOn [1]byte
		for i := 0; ; i++ {
			if _, err := io.ReadFull(ctl, goOn[:]); err != nil {
				errc <- err
				return
			}
			if goOn[0] == 0 {
				errc <- nil
				return
			}
			if err := exchange(ctx, ts[b], a, fmt.Sprint("bg", i), 256<<10); err != nil {
				errc <- fmt.Errorf("background exchange %d, rank %d: %w", i, b, err)
				return
			}
		}
	}()
	return func() (int, error) {
		err := errors.Join(<-errc, <-errc)
		return int(rounds.Load()), err
	}
}

// attacker dials a rank's data port the way a rank would, with the given certificate, and
// returns the connection (or the handshake error).
func attacker(ctx context.Context, addr string, cert tls.Certificate) (*quic.Conn, error) {
	return quic.DialAddr(ctx, addr, &tls.Config{
		Certificates:       []tls.Certificate{cert},
		InsecureSkipVerify: true,
		NextProtos:         []string{alpn},
	}, &quic.Config{HandshakeIdleTimeout: 2 * time.Second})
}

// closeCode waits for conn to be closed by the other side and returns the application code.
func closeCode(t *testing.T, conn *quic.Conn) quic.ApplicationErrorCode {
	t.Helper()
	select {
	case <-conn.Context().Done():
	case <-time.After(10 * time.Second):
		t.Fatal("connection was not closed by the rank")
	}
	var ae *quic.ApplicationError
	if err := context.Cause(conn.Context()); !errors.As(err, &ae) || !ae.Remote {
		t.Fatalf("connection ended with %v, want a remote application close", err)
	}
	return ae.ErrorCode
}

// TestStrangersRefusedWhileJobRuns attacks a running 3-rank job in every way we know while
// ranks 0 and 1 keep exchanging data: wrong token on the store, UDP garbage on the store and
// data ports, unknown certificates, a stolen certificate claiming another rank, a stolen
// certificate without the token, a malformed hello. Every attempt must be refused (and
// logged, where a connection was made), and the job's data must stay intact.
func TestStrangersRefusedWhileJobRuns(t *testing.T) {
	logs := &logBuffer{}
	ts := startLocal(t, 3, Config{Logger: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelWarn}))})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	stop := make(chan struct{})
	wait := background(ctx, ts, 0, 1, stop)
	waitLogged := func(want ...string) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for {
			ok := true
			for _, w := range want {
				ok = ok && logs.Contains(w)
			}
			if ok {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("log lacks %q:\n%s", want, logs)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	storeAddr := net.JoinHostPort("127.0.0.1", fmt.Sprint(ts[0].cfg.MasterPort))
	victim := ts[2].LocalAddr().String()

	t.Run("store wrong token", func(t *testing.T) {
		c, err := rendezvous.Dial(ctx, storeAddr, rendezvous.ClientConfig{Token: "not-the-token"})
		if err == nil {
			c.Close()
			t.Fatal("store accepted a wrong token")
		}
		if !errors.Is(err, rendezvous.ErrAuth) {
			t.Fatalf("err = %v, want ErrAuth", err)
		}
		waitLogged("rendezvous: refused connection", "wrong job token", "remote=127.0.0.1:")
	})

	t.Run("udp garbage", func(t *testing.T) {
		for _, addr := range []string{storeAddr, victim} {
			u, err := net.Dial("udp", addr)
			if err != nil {
				t.Fatal(err)
			}
			for i := 0; i < 100; i++ {
				junk := bytes.Repeat([]byte{byte(i), 0xc3, 0, 0, 0, 1}, 200) // some look like long headers
				u.Write(junk)
			}
			u.Close()
		}
	})

	t.Run("unknown certificate", func(t *testing.T) {
		cert, _ := rendezvous.EphemeralCertificate()
		conn, err := attacker(ctx, victim, cert)
		if err == nil {
			// In TLS 1.3 the client finishes before the server has checked its certificate;
			// the refusal then arrives as a TLS alert that closes the connection.
			select {
			case <-conn.Context().Done():
			case <-time.After(10 * time.Second):
				t.Fatal("connection with an unpublished certificate stayed open")
			}
			var te *quic.TransportError
			if err := context.Cause(conn.Context()); !errors.As(err, &te) || !te.Remote {
				t.Fatalf("connection ended with %v, want a TLS alert from the rank", err)
			}
		}
		waitLogged("quictransport: refused connection", "matches no lower rank's published fingerprint")
	})

	t.Run("stolen certificate claiming another rank", func(t *testing.T) {
		conn, err := attacker(ctx, victim, ts[0].cert) // rank 0's certificate, claiming rank 1
		if err != nil {
			t.Fatal(err)
		}
		state := conn.ConnectionState().TLS
		proof, _ := rendezvous.TokenProof(state, ts[0].cfg.Token, rendezvous.LabelLinkDialer, rankContext(1, 2))
		str, _ := conn.OpenStreamSync(ctx)
		str.Write(encodeHello(1, proof))
		if code := closeCode(t, conn); code != codeAuthFailed {
			t.Fatalf("closed with code %d, want %d", code, codeAuthFailed)
		}
		waitLogged("is not the one rank 1 published")
	})

	t.Run("stolen certificate without the token", func(t *testing.T) {
		conn, err := attacker(ctx, victim, ts[0].cert)
		if err != nil {
			t.Fatal(err)
		}
		state := conn.ConnectionState().TLS
		proof, _ := rendezvous.TokenProof(state, "guess", rendezvous.LabelLinkDialer, rankContext(0, 2))
		str, _ := conn.OpenStreamSync(ctx)
		str.Write(encodeHello(0, proof))
		if code := closeCode(t, conn); code != codeAuthFailed {
			t.Fatalf("closed with code %d, want %d", code, codeAuthFailed)
		}
		waitLogged("did not prove the job token")
	})

	t.Run("malformed hello", func(t *testing.T) {
		conn, err := attacker(ctx, victim, ts[1].cert)
		if err != nil {
			t.Fatal(err)
		}
		str, _ := conn.OpenStreamSync(ctx)
		str.Write(bytes.Repeat([]byte{0xEE}, 64))
		if code := closeCode(t, conn); code != codeProtocol {
			t.Fatalf("closed with code %d, want %d", code, codeProtocol)
		}
		waitLogged("malformed message")
	})

	close(stop)
	rounds, err := wait()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d background exchanges completed during the attacks", rounds)
	if ts[0].Err() != nil || ts[1].Err() != nil || ts[2].Err() != nil {
		t.Fatalf("the job was disturbed: %v / %v / %v", ts[0].Err(), ts[1].Err(), ts[2].Err())
	}
	// After all that, the victim still links with the real ranks.
	var wg sync.WaitGroup
	for _, pair := range [][2]int{{0, 2}, {2, 0}, {1, 2}, {2, 1}} {
		wg.Go(func() {
			if err := exchange(ctx, ts[pair[0]], pair[1], "after-attacks", 1<<20); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
}

// TestDialerPinsCertificate: a rank whose published fingerprint does not match what answers
// at its address is refused by the dialer, which reports it as the failing peer.
func TestDialerPinsCertificate(t *testing.T) {
	ts := startLocal(t, 2, Config{})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ts[0].entries[1].Fingerprint[0] ^= 0xff // as if the store said rank 1 had another certificate
	_, err := ts[0].Link(ctx, 1, "x")
	var pe *transportPeerError
	if !errors.As(err, &pe) || pe.Rank != 1 || !strings.Contains(err.Error(), "is not the one rank 1 published") {
		t.Fatalf("err = %v, want a PeerError for rank 1 about its certificate", err)
	}
}
