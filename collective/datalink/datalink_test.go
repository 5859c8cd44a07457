package datalink

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ringtrain/ringtrain/collective/quictransport"
	"github.com/ringtrain/ringtrain/collective/rendezvous"
	"github.com/ringtrain/ringtrain/collective/transport"
)

// logBuf collects log lines of every rank.
type logBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// start makes n ranks over QUIC on 127.0.0.1, each wrapped with opts (opts.Mode per rank
// from mode(r) when mode is not nil).
func start(t *testing.T, n int, opts Options, mode func(r int) Mode) ([]*Transport, *logBuf) {
	t.Helper()
	logs := &logBuf{}
	logger := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelInfo}))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	qs, err := quictransport.StartLocal(ctx, n, quictransport.Config{PeerTimeout: 3 * time.Second, Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	ts := make([]*Transport, n)
	for r, q := range qs {
		o := opts
		o.Logger = logger
		if mode != nil {
			o.Mode = mode(r)
		}
		if ts[r], err = Wrap(q, o); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		for _, tr := range ts {
			tr.Close()
		}
	})
	return ts, logs
}

func pattern(n, seed int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7 + seed)
	}
	return b
}

// exchange has ranks a and b each send size bytes to the other on channel and checks them.
func exchange(t *testing.T, ts []*Transport, a, b int, channel string, size int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i, pair := range [][2]int{{a, b}, {b, a}} {
		wg.Go(func() {
			l, err := ts[pair[0]].Link(ctx, pair[1], channel)
			if err != nil {
				errs[i] = err
				return
			}
			l.SetDeadline(time.Now().Add(20 * time.Second))
			want := pattern(size, pair[1])
			werr := make(chan error, 1)
			go func() {
				src := pattern(size, pair[0])
				// Odd-sized writes, to exercise the striping.
				for off := 0; off < size; {
					n := min(size-off, 100_003)
					if _, err := l.Write(src[off : off+n]); err != nil {
						werr <- err
						return
					}
					off += n
				}
				werr <- nil
			}()
			got := make([]byte, size)
			if _, err := io.ReadFull(l, got); err != nil {
				errs[i] = err
				return
			}
			if !bytes.Equal(got, want) {
				errs[i] = errors.New("data differs")
			}
			errs[i] = errors.Join(errs[i], <-werr)
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
}

func TestModes(t *testing.T) {
	for _, tc := range []struct {
		name    string
		opts    Options
		mode    func(int) Mode
		want    string
		streams int
	}{
		{"tls", Options{Mode: ModeTLS}, nil, "tls", 1},
		{"tcp", Options{Mode: ModeTCP}, nil, "tcp", 1},
		{"quic", Options{Mode: ModeQUIC}, nil, "quic", 0},
		{"tls-3-streams", Options{Mode: ModeTLS, Streams: 3, StripeBytes: 64 << 10}, nil, "tls", 3},
		{"tcp-2-streams", Options{Mode: ModeTCP, Streams: 2}, nil, "tcp", 2},
		{"tls-wins-over-tcp", Options{}, func(r int) Mode { return Mode(r % 2) }, "tls", 1},
		{"quic-wins", Options{}, func(r int) Mode {
			if r == 1 {
				return ModeQUIC
			}
			return ModeTCP
		}, "quic", 0},
		{"same-host-under-shm", Options{Mode: ModeTLS, Shm: true, HostID: "h"}, nil, "quic", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ts, logs := start(t, 2, tc.opts, tc.mode)
			exchange(t, ts, 0, 1, "ch", 3<<20+5)
			exchange(t, ts, 0, 1, "ch2", 1000)
			for r, tr := range ts {
				if got := tr.Kind(1 - r); got != tc.want {
					t.Errorf("rank %d: Kind = %q, want %q", r, got, tc.want)
				}
			}
			if tc.streams > 0 {
				e := ts[0].links[linkKey{1, "ch"}]
				if dl, ok := e.link.(*dataLink); !ok || len(dl.conns) != tc.streams {
					t.Errorf("link is %T, want a data link of %d streams", e.link, tc.streams)
				}
			}
			// The choice is logged once per rank and peer; a same-host peer under shared
			// memory is named as such, not as a link of the base's kind.
			line := "links to rank 1 use " + tc.want
			if tc.opts.Shm {
				line = "rank 1 is on this host"
			}
			if n := strings.Count(logs.String(), line); n != 1 {
				t.Errorf("choice logged %d times for rank 0, want 1:\n%s", n, logs)
			}
		})
	}
}

func TestThreeRanksShutdown(t *testing.T) {
	ts, _ := start(t, 3, Options{Mode: ModeTLS}, nil)
	exchange(t, ts, 0, 1, "a", 1<<20)
	exchange(t, ts, 1, 2, "a", 1<<20)
	exchange(t, ts, 2, 0, "a", 1<<20)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// Unread bytes: Shutdown must wait for them.
	l, _ := ts[0].Link(ctx, 1, "b")
	r, _ := ts[1].Link(ctx, 0, "b") // both ends ask: the setup needs the two
	if _, err := l.Write(make([]byte, 1000)); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- ts[0].Shutdown(ctx) }()
	select {
	case err := <-done:
		t.Fatalf("Shutdown returned %v before the peer read", err)
	case <-time.After(200 * time.Millisecond):
	}
	if _, err := io.ReadFull(r, make([]byte, 1000)); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// The end of a job: every rank reads what it was sent, then ranks shut down and close at
// their own pace. A rank whose Shutdown runs after its peers closed their links, or their
// whole transports, must still succeed (the peers read everything), and the base transport's
// Shutdown must not count the closing frames on the control links as data left unread.
func TestShutdownAfterPeersClosed(t *testing.T) {
	for _, m := range []Mode{ModeTLS, ModeTCP} {
		t.Run(m.String(), func(t *testing.T) {
			ts, _ := start(t, 3, Options{Mode: m}, nil)
			exchange(t, ts, 0, 1, "x", 1<<16)
			exchange(t, ts, 1, 2, "x", 1<<16)
			exchange(t, ts, 2, 0, "x", 1<<16)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			// Rank 1 closes its links (as a group's Shutdown closes its recursive-doubling
			// links), then shuts down and closes its transport; rank 2 closes its links
			// only; rank 0 drains last.
			for _, peer := range []int{0, 2} {
				l, _ := ts[1].Link(ctx, peer, "x")
				l.Close()
			}
			if err := ts[1].Shutdown(ctx); err != nil {
				t.Fatalf("rank 1 Shutdown: %v", err)
			}
			ts[1].Close()
			l, _ := ts[2].Link(ctx, 0, "x")
			l.Close()
			if err := ts[0].Shutdown(ctx); err != nil {
				t.Fatalf("rank 0 Shutdown after its peers closed: %v", err)
			}
			if err := ts[2].Shutdown(ctx); err != nil {
				t.Fatalf("rank 2 Shutdown: %v", err)
			}
		})
	}
}

// A peer that closes a link without reading everything sent on it makes Shutdown say so.
func TestShutdownReportsUnreadBytes(t *testing.T) {
	ts, _ := start(t, 2, Options{Mode: ModeTCP}, nil)
	exchange(t, ts, 0, 1, "u", 10)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	l0, _ := ts[0].Link(ctx, 1, "u")
	l1, _ := ts[1].Link(ctx, 0, "u")
	if _, err := l0.Write(make([]byte, 100)); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(l1, make([]byte, 40)); err != nil {
		t.Fatal(err)
	}
	l1.Close()
	err := ts[0].Shutdown(ctx)
	if err == nil || !strings.Contains(err.Error(), "rank 1 closed the link having read 50 of the 110 bytes") {
		t.Fatalf("Shutdown = %v, want it to report rank 1 closing with 60 bytes unread", err)
	}
}

func TestOrderlyCloseIsEOF(t *testing.T) {
	ts, _ := start(t, 2, Options{Mode: ModeTCP}, nil)
	exchange(t, ts, 0, 1, "c", 10)
	ctx := context.Background()
	l0, _ := ts[0].Link(ctx, 1, "c")
	l1, _ := ts[1].Link(ctx, 0, "c")
	l1.Write([]byte("bye"))
	l1.Close()
	b, err := io.ReadAll(l0)
	if string(b) != "bye" || err != nil {
		t.Fatalf("ReadAll = %q, %v; want bye, nil", b, err)
	}
	if ts[0].Err() != nil {
		t.Fatalf("transport failed: %v", ts[0].Err())
	}
}

// A connection that breaks without an orderly close fails both ranks, naming the peer.
func TestBrokenConnectionNamesPeer(t *testing.T) {
	for _, m := range []Mode{ModeTLS, ModeTCP} {
		t.Run(m.String(), func(t *testing.T) {
			ts, _ := start(t, 3, Options{Mode: m, BrokenGrace: 200 * time.Millisecond}, nil)
			exchange(t, ts, 0, 1, "d", 10)
			e := ts[1].links[linkKey{0, "d"}]
			for _, c := range e.link.(*dataLink).conns {
				if tc, ok := c.(interface{ NetConn() net.Conn }); ok {
					c = tc.NetConn()
				}
				c.Close() // as if rank 1's socket died
			}
			l0, _ := ts[0].Link(context.Background(), 1, "d")
			l0.SetDeadline(time.Now().Add(10 * time.Second))
			_, err := l0.Read(make([]byte, 10))
			var pe *transport.PeerError
			if !errors.As(err, &pe) || pe.Rank != 1 {
				t.Fatalf("Read error %v, want a PeerError naming rank 1", err)
			}
			// Every rank learns it, naming rank 1.
			for r, tr := range ts {
				select {
				case <-tr.Done():
				case <-time.After(5 * time.Second):
					t.Fatalf("rank %d did not fail", r)
				}
				if !errors.As(tr.Err(), &pe) || pe.Rank != 1 {
					t.Errorf("rank %d: Err = %v, want it to name rank 1", r, tr.Err())
				}
			}
		})
	}
}

// A peer whose transport fails (abort) fails the data links to it with its error.
func TestPeerAbortNamesRank(t *testing.T) {
	ts, _ := start(t, 2, Options{Mode: ModeTLS}, nil)
	exchange(t, ts, 0, 1, "e", 10)
	l0, _ := ts[0].Link(context.Background(), 1, "e")
	errc := make(chan error, 1)
	go func() {
		_, err := l0.Read(make([]byte, 10))
		errc <- err
	}()
	time.Sleep(50 * time.Millisecond)
	ts[1].Abort(&transport.PeerError{Rank: 1, Err: errors.New("out of memory")})
	select {
	case err := <-errc:
		var pe *transport.PeerError
		if !errors.As(err, &pe) || pe.Rank != 1 || !strings.Contains(err.Error(), "out of memory") {
			t.Fatalf("Read error %v, want rank 1's abort", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Read did not fail")
	}
}

func TestFallbackToQUICWhenNoConnection(t *testing.T) {
	ts, logs := start(t, 2, Options{Mode: ModeTLS, DialTimeout: 2 * time.Second}, nil)
	// Rank 1 advertises a port nobody listens on any more.
	ts[1].ln.Close()
	exchange(t, ts, 0, 1, "f", 1<<20)
	if k := ts[0].Kind(1); k != "quic" {
		t.Fatalf("Kind = %q, want quic", k)
	}
	if !strings.Contains(logs.String(), "no tls connection between rank 0 and rank 1; this edge falls back to quic") {
		t.Fatalf("no warning naming the edge:\n%s", logs)
	}
}

// refused waits until the logs show a refusal with reason.
func refused(t *testing.T, logs *logBuf, reason string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		s := logs.String()
		if strings.Contains(s, "datalink: refused connection") && strings.Contains(s, reason) {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("no refusal %q logged:\n%s", reason, logs)
}

func TestStrangersRefused(t *testing.T) {
	ts, logs := start(t, 2, Options{Mode: ModeTLS}, nil)
	addr := ts[1].ListenAddr()

	t.Run("plaintext-without-token", func(t *testing.T) {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		ch := connHello{mode: ModeTCP, rank: 0, streams: 1}
		c.Write(append([]byte{preamblePlain}, encodeConnHello(&ch)...))
		refused(t, logs, "no link is waiting for this nonce")
	})
	t.Run("foreign-certificate", func(t *testing.T) {
		cert, err := rendezvous.EphemeralCertificate()
		if err != nil {
			t.Fatal(err)
		}
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.Write([]byte{preambleTLS})
		tc := tls.Client(c, &tls.Config{Certificates: []tls.Certificate{cert}, InsecureSkipVerify: true, MinVersion: tls.VersionTLS13})
		tc.SetDeadline(time.Now().Add(5 * time.Second))
		tc.Handshake()
		tc.Read(make([]byte, 1)) // the server's verdict arrives with the first read
		refused(t, logs, "client certificate matches no lower rank's published fingerprint")
	})
	t.Run("garbage", func(t *testing.T) {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.Write([]byte("GET / HTTP/1.1\r\n\r\n"))
		refused(t, logs, "unknown preamble byte")
	})
	// The job is unharmed.
	exchange(t, ts, 0, 1, "g", 1<<16)
}

// A rank's certificate with a wrong token proof is refused even with a pending nonce.
func TestWrongTokenRefused(t *testing.T) {
	ts, logs := start(t, 2, Options{Mode: ModeTCP, DialTimeout: time.Second}, nil)
	ts[0].token = "not the job token"
	exchange(t, ts, 0, 1, "h", 1<<16) // falls back to QUIC
	refused(t, logs, "bad job-token proof")
	if k := ts[0].Kind(1); k != "quic" {
		t.Fatalf("Kind = %q, want quic", k)
	}
}

// TestFixBuffer: a fixed socket buffer (which switches Linux's auto-tuning off) only where the
// kernel grants it and auto-tuning could not reach it.
func TestFixBuffer(t *testing.T) {
	for _, c := range []struct {
		size, max, top int
		want           bool
	}{
		{4 << 20, 4 << 20, 32 << 20, false}, // auto-tuning goes further: leave it on
		{4 << 20, 4 << 20, 4 << 20, false},  // auto-tuning reaches it as well
		{4 << 20, 4 << 20, 1 << 20, true},   // auto-tuning stops short
		{4 << 20, 1 << 20, 1 << 20, false},  // the kernel would cut the request down
		{4 << 20, 8 << 20, 0, true},         // auto-tuning's limit unknown
	} {
		if got := fixBuffer(c.size, c.max, c.top); got != c.want {
			t.Errorf("fixBuffer(%d, %d, %d) = %v, want %v", c.size, c.max, c.top, got, c.want)
		}
	}
}
