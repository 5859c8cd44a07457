package quictransport

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ringtrain/ringtrain/collective/rendezvous"
	"github.com/ringtrain/ringtrain/collective/transport"
)

// childEnv makes the test binary act as rank 1 of TestKilledPeerDetected instead of running
// tests, so that rank can be killed for real (SIGKILL: no CONNECTION_CLOSE is ever sent).
const childEnv = "QUICTRANSPORT_TEST_CHILD"

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) == "1" {
		os.Exit(runChild())
	}
	os.Exit(m.Run())
}

func runChild() int {
	cfg, err := ConfigFromEnv()
	if err != nil {
		fmt.Fprintln(os.Stderr, "child:", err)
		return 2
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	tr, err := Establish(ctx, cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, "child:", err)
		return 2
	}
	if cfg.Rank == 0 {
		<-ctx.Done() // serve the store until killed
		return 3
	}
	l, err := tr.Link(ctx, 0, "kill")
	if err != nil {
		fmt.Fprintln(os.Stderr, "child:", err)
		return 2
	}
	if _, err := l.Write([]byte("ready")); err != nil {
		fmt.Fprintln(os.Stderr, "child:", err)
		return 2
	}
	if _, err := tr.Link(ctx, 0, "flood"); err != nil { // never read: the parent's writes block
		fmt.Fprintln(os.Stderr, "child:", err)
		return 2
	}
	<-ctx.Done() // the parent kills us long before this
	return 3
}

// wantPeerError checks that err wraps a *transport.PeerError naming rank.
func wantPeerError(t *testing.T, what string, err error, rank int, contains string) {
	t.Helper()
	var pe *transport.PeerError
	if !errors.As(err, &pe) || pe.Rank != rank {
		t.Fatalf("%s: err = %v, want a PeerError naming rank %d", what, err, rank)
	}
	if !strings.Contains(err.Error(), contains) {
		t.Fatalf("%s: err = %q, want it to mention %q", what, err, contains)
	}
}

// TestKilledPeerDetected kills rank 2 of 3 (a child process) with SIGKILL while rank 0 has
// a Read and a flow-blocked Write pending on links to it, and rank 1, which never talked to
// rank 2, waits in Link for a channel from rank 0. All of them, and later calls, must fail
// with a PeerError naming rank 2 within about the peer timeout: rank 0 through its
// connection's idle timeout, rank 1 through the store (rank 2's last will, or rank 0's
// abort notice).
func TestKilledPeerDetected(t *testing.T) {
	const peerTimeout = 2 * time.Second
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	token := "kill-test-token"
	srv, err := rendezvous.Listen("127.0.0.1:0", rendezvous.ServerConfig{Token: token, Logger: testLogger(t), IdleTimeout: peerTimeout})
	if err != nil {
		t.Fatal(err)
	}
	port := srv.Addr().(*net.UDPAddr).Port
	var childOut bytes.Buffer
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"=1", "RANK=2", "WORLD_SIZE=3", "LOCAL_RANK=2",
		"MASTER_ADDR=127.0.0.1", fmt.Sprint("MASTER_PORT=", port), "GORUN_TOKEN="+token,
		"GORUN_JOIN_TIMEOUT=20s", "GORUN_PEER_TIMEOUT="+peerTimeout.String())
	cmd.Stdout, cmd.Stderr = &childOut, &childOut
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		cmd.Process.Kill()
		cmd.Wait()
		if t.Failed() {
			t.Logf("child output:\n%s", childOut.String())
		}
	}()

	ts := make([]*Transport, 2)
	errs := make([]error, 2)
	var wg sync.WaitGroup
	for r := range ts {
		wg.Go(func() {
			c := Config{Rank: r, Size: 3, MasterAddr: "127.0.0.1", MasterPort: port, Token: token,
				PeerTimeout: peerTimeout, JoinTimeout: 20 * time.Second, Logger: testLogger(t)}
			if r == 0 {
				ts[r], errs[r] = establish(ctx, c, srv)
			} else {
				ts[r], errs[r] = Establish(ctx, c)
			}
		})
	}
	wg.Wait()
	for r, err := range errs {
		if err != nil {
			t.Fatalf("rank %d: %v", r, err)
		}
		defer ts[r].Close()
	}
	tr := ts[0]
	l, err := tr.Link(ctx, 2, "kill")
	if err != nil {
		t.Fatal(err)
	}
	ready := make([]byte, 5)
	if _, err := io.ReadFull(l, ready); err != nil || string(ready) != "ready" {
		t.Fatalf("child said %q, %v", ready, err)
	}
	flood, err := tr.Link(ctx, 2, "flood")
	if err != nil {
		t.Fatal(err)
	}

	readErr := make(chan error, 1)
	go func() {
		_, err := l.Read(make([]byte, 1))
		readErr <- err
	}()
	writeErr := make(chan error, 1)
	go func() {
		// Far more than the windows and socket buffers hold, so it blocks until the end.
		_, err := flood.Write(make([]byte, 512<<20))
		writeErr <- err
	}()
	linkErr := make(chan error, 1)
	go func() {
		_, err := ts[1].Link(ctx, 0, "never-opened")
		linkErr <- err
	}()
	time.Sleep(200 * time.Millisecond) // let them all block

	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	for _, c := range []struct {
		what string
		ch   chan error
	}{{"rank 0 pending Read", readErr}, {"rank 0 pending Write", writeErr}, {"rank 1 pending Link", linkErr}} {
		select {
		case err := <-c.ch:
			wantPeerError(t, c.what, err, 2, "presumed dead")
			t.Logf("%s failed %v after the kill: %v", c.what, time.Since(killed).Round(time.Millisecond), err)
		case <-time.After(5 * peerTimeout):
			t.Fatalf("%s still blocked %v after the peer was killed", c.what, 5*peerTimeout)
		}
	}
	if d := time.Since(killed); d > 3*peerTimeout {
		// Generous bound: detection takes about peerTimeout, but under -race on a shared
		// 2-core machine (load 10) the last of the three waiters was seen at 2.35×.
		t.Errorf("detection took %v, want within about %v", d, peerTimeout)
	}
	if _, err := l.Write([]byte("late")); err == nil {
		t.Fatal("Write after the failure succeeded")
	} else {
		wantPeerError(t, "later Write", err, 2, "presumed dead")
	}
	for r, tr := range ts {
		select {
		case <-tr.Done():
			wantPeerError(t, fmt.Sprint("rank ", r, " Err"), tr.Err(), 2, "presumed dead")
		case <-time.After(time.Second):
			t.Fatalf("rank %d: Done not closed after the peer failed", r)
		}
	}
	if _, err := tr.Link(ctx, 2, "new"); err == nil {
		t.Fatal("Link after the failure succeeded")
	}
}

// TestKilledStoreDetected kills rank 0, which serves the store, while rank 1 (with no data
// connection to it) is idle: rank 1 must fail naming rank 0 within about the peer timeout.
func TestKilledStoreDetected(t *testing.T) {
	const peerTimeout = 2 * time.Second
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	port := freePort(t)
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^$")
	var childOut bytes.Buffer
	cmd.Env = append(os.Environ(), childEnv+"=1", "RANK=0", "WORLD_SIZE=2", "MASTER_ADDR=127.0.0.1",
		fmt.Sprint("MASTER_PORT=", port), "GORUN_TOKEN=tok", "GORUN_PEER_TIMEOUT="+peerTimeout.String())
	cmd.Stdout, cmd.Stderr = &childOut, &childOut
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		cmd.Process.Kill()
		cmd.Wait()
		if t.Failed() {
			t.Logf("child output:\n%s", childOut.String())
		}
	}()
	tr, err := Establish(ctx, Config{Rank: 1, Size: 2, MasterAddr: "127.0.0.1", MasterPort: port, Token: "tok",
		PeerTimeout: peerTimeout, JoinTimeout: 20 * time.Second, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	cmd.Process.Kill()
	killed := time.Now()
	select {
	case <-tr.Done():
		wantPeerError(t, "Err", tr.Err(), 0, "lost the rendezvous store")
		t.Logf("rank 1 failed %v after the kill: %v", time.Since(killed).Round(time.Millisecond), tr.Err())
	case <-time.After(5 * peerTimeout):
		t.Fatal("rank 1 did not notice that rank 0 died")
	}
}

// ring links rank r with r+1 for r in [0, n-1) and returns, for each rank, its link to the
// left (nil for rank 0) and to the right (nil for the last).
func ring(t *testing.T, ts []*Transport) (left, right []transport.Link) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	n := len(ts)
	left, right = make([]transport.Link, n), make([]transport.Link, n)
	for r := 0; r+1 < n; r++ {
		var err error
		if right[r], err = ts[r].Link(ctx, r+1, "ring"); err != nil {
			t.Fatal(err)
		}
		if left[r+1], err = ts[r+1].Link(ctx, r, "ring"); err != nil {
			t.Fatal(err)
		}
	}
	return left, right
}

// pendingReads starts a Read on each non-nil link and returns the channel of their errors.
func pendingReads(links ...transport.Link) []chan error {
	out := make([]chan error, len(links))
	for i, l := range links {
		out[i] = make(chan error, 1)
		go func() {
			_, err := l.Read(make([]byte, 1))
			out[i] <- err
		}()
	}
	return out
}

func waitErr(t *testing.T, what string, ch chan error) error {
	t.Helper()
	select {
	case err := <-ch:
		return err
	case <-time.After(10 * time.Second):
		t.Fatalf("%s: still blocked", what)
		return nil
	}
}

// TestAbortPropagatesGuiltyRank: in a chain 0-1-2-3, rank 2 aborts because (it says) rank 3
// died. Rank 1 hears it from rank 2, rank 0 hears it from rank 1 (which passes it on), and
// both must blame rank 3, reported by rank 2 — not the messenger.
func TestAbortPropagatesGuiltyRank(t *testing.T) {
	ts := startLocal(t, 4, Config{PeerTimeout: 5 * time.Second})
	left, right := ring(t, ts)
	errs := pendingReads(right[0], right[1], left[3])
	time.Sleep(100 * time.Millisecond)

	ts[2].Abort(fmt.Errorf("allreduce step 3: %w", &transport.PeerError{Rank: 3, Err: errors.New("no packets for 5s, presumed dead (idle timeout)")}))
	wantPeerError(t, "aborting rank's Err", ts[2].Err(), 3, "presumed dead")
	for i, who := range []string{"rank 0", "rank 1", "rank 3"} {
		err := waitErr(t, who, errs[i])
		wantPeerError(t, who, err, 3, "presumed dead (idle timeout) (reported by rank 2)")
	}
	for r, tr := range ts {
		select {
		case <-tr.Done():
		case <-time.After(5 * time.Second):
			t.Fatalf("rank %d: Done not closed", r)
		}
		wantPeerError(t, fmt.Sprint("rank ", r, " Err"), tr.Err(), 3, "presumed dead")
	}
}

// TestAbortWithoutPeerBlamesAborter: an Abort whose cause names no peer makes the others
// blame the aborting rank itself, with its reason.
func TestAbortWithoutPeerBlamesAborter(t *testing.T) {
	ts := startLocal(t, 3, Config{})
	left, right := ring(t, ts)
	errs := pendingReads(right[0], left[2])
	time.Sleep(50 * time.Millisecond)
	ts[1].Abort(errors.New("allreduce count mismatch: 10 here, 12 on rank 0"))
	for i, who := range []string{"rank 0", "rank 2"} {
		wantPeerError(t, who, waitErr(t, who, errs[i]), 1, "count mismatch")
	}
	if err := ts[1].Err(); err == nil || !strings.Contains(err.Error(), "count mismatch") {
		t.Fatalf("aborting rank's Err = %v", err)
	}
}

// TestOrderlyCloseEndsLinksOnly: a peer that closes in order ends the links to it, without
// failing the rest of the transport.
func TestOrderlyCloseEndsLinksOnly(t *testing.T) {
	ts := startLocal(t, 3, Config{})
	left, right := ring(t, ts)
	errs := pendingReads(right[0])
	time.Sleep(50 * time.Millisecond)
	ts[1].Close()
	wantPeerError(t, "rank 0 read", waitErr(t, "rank 0 read", errs[0]), 1, "closed its transport")
	if err := ts[0].Err(); err != nil {
		t.Fatalf("rank 0 failed after an orderly close of rank 1: %v", err)
	}
	_ = left
	// Ranks 0 and 2 still talk.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- exchange(ctx, ts[2], 0, "still", 1000) }()
	if err := exchange(ctx, ts[0], 2, "still", 1000); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if err := ts[1].Err(); !errors.Is(err, transport.ErrClosed) {
		t.Fatalf("closed rank's Err = %v, want ErrClosed", err)
	}
	if _, err := ts[1].Link(ctx, 0, "x"); !errors.Is(err, transport.ErrClosed) {
		t.Fatalf("Link after Close: %v", err)
	}
}

// TestLinkHonoursContextAndDeadline: waiting for a channel the peer never opens ends with
// ctx, and a Read past its deadline fails with os.ErrDeadlineExceeded without breaking the
// link.
func TestLinkHonoursContextAndDeadline(t *testing.T) {
	ts := startLocal(t, 2, Config{})
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if _, err := ts[1].Link(ctx, 0, "never-opened"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Link err = %v, want DeadlineExceeded", err)
	}
	for _, bad := range []struct {
		peer int
		ch   string
	}{{-1, "x"}, {2, "x"}, {0, ""}, {0, strings.Repeat("x", MaxChannelLen+1)}} {
		if _, err := ts[1].Link(context.Background(), bad.peer, bad.ch); err == nil {
			t.Errorf("Link(%d, %d-byte name) succeeded", bad.peer, len(bad.ch))
		}
	}

	bg, bgCancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer bgCancel()
	a, err := ts[0].Link(bg, 1, "deadline")
	if err != nil {
		t.Fatal(err)
	}
	a.Write([]byte{1}) // make the stream known to rank 1
	b, err := ts[1].Link(bg, 0, "deadline")
	if err != nil {
		t.Fatal(err)
	}
	one := make([]byte, 1)
	if _, err := io.ReadFull(b, one); err != nil || one[0] != 1 {
		t.Fatalf("first byte %v, %v", one, err)
	}
	b.SetDeadline(time.Now().Add(50 * time.Millisecond))
	if _, err := b.Read(one); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("Read past deadline: %v", err)
	}
	b.SetDeadline(time.Time{})
	a.Write([]byte{2})
	if _, err := io.ReadFull(b, one); err != nil || one[0] != 2 {
		t.Fatalf("after the deadline: %v, %v", one, err)
	}
	if ts[0].Err() != nil || ts[1].Err() != nil {
		t.Fatal("a deadline failed the transport")
	}
	// Closing a link gives the peer EOF after the data already sent.
	a.Write([]byte{3})
	a.Close()
	rest, err := io.ReadAll(b)
	if err != nil || !bytes.Equal(rest, []byte{3}) {
		t.Fatalf("after peer Close: %v, %v", rest, err)
	}
}

// TestCloseLeaksNoGoroutines runs a job with traffic and closes it; the goroutine count must
// come back to where it was.
func TestCloseLeaksNoGoroutines(t *testing.T) {
	run := func() {
		ts, err := StartLocal(context.Background(), 3, Config{Logger: testLogger(t)})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		done := make(chan error, 3)
		for _, p := range [][2]int{{0, 1}, {1, 0}, {2, 0}} {
			go func() { done <- exchange(ctx, ts[p[0]], p[1], "leak", 100_000) }()
		}
		go func() { done <- exchange(ctx, ts[0], 2, "leak", 100_000) }()
		for i := 0; i < 4; i++ {
			if err := <-done; err != nil {
				t.Fatal(err)
			}
		}
		for _, tr := range ts {
			if err := tr.Close(); err != nil {
				t.Fatal(err)
			}
		}
	}
	run() // warm up anything started once per process
	base := runtime.NumGoroutine()
	run()
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > base {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("%d goroutines after Close, %d before:\n%s", runtime.NumGoroutine(), base, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestStoreClosingInOrderIsNoFailure: at the end of a job rank 0 may close first, taking the
// store with it; the other ranks must not take that for rank 0's death.
func TestStoreClosingInOrderIsNoFailure(t *testing.T) {
	// The wrong verdict depends on timing, so try a few jobs.
	for round := 0; round < 4; round++ {
		ts := startLocal(t, 3, Config{PeerTimeout: 2 * time.Second})
		left, _ := ring(t, ts)
		errs := pendingReads(left[1])
		ts[0].Close()
		wantPeerError(t, "rank 1 read", waitErr(t, "rank 1 read", errs[0]), 0, "closed its transport")
		time.Sleep(200 * time.Millisecond) // give a wrong verdict time to appear
		for r := 1; r < 3; r++ {
			if err := ts[r].Err(); err != nil {
				t.Fatalf("round %d: rank %d failed after rank 0 closed in order: %v", round, r, err)
			}
		}
		ts[1].Close()
		ts[2].Close()
	}
}
