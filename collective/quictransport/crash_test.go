package quictransport

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"sync"
	"testing"
	"time"

	"github.com/ringtrain/ringtrain/collective/rendezvous"
	"github.com/ringtrain/ringtrain/collective/transport"
)

// crashChildEnv makes the test binary act as the doomed rank 2 of a crash round: it streams
// bytes to rank 1 until it is killed (or, in abort mode, aborts and closes its links at once).
const crashChildEnv = "QUICTRANSPORT_TEST_CRASH_CHILD"

func init() {
	if mode := os.Getenv(crashChildEnv); mode != "" {
		os.Exit(runCrashChild(mode))
	}
}

func runCrashChild(mode string) int {
	fail := func(err error) int { fmt.Fprintln(os.Stderr, "crash child:", err); return 2 }
	cfg, err := ConfigFromEnv()
	if err != nil {
		return fail(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	tr, err := Establish(ctx, cfg)
	if err != nil {
		return fail(err)
	}
	l, err := tr.Link(ctx, 1, "crash")
	if err != nil {
		return fail(err)
	}
	buf := make([]byte, 16<<10)
	if mode == "abort" {
		// Die "in order" with an error, the way a failing rank's Group does: the transport
		// aborts while, concurrently, the group closes its links. The survivors must hear the
		// abort reason naming this rank, never a bare EOF.
		if _, err := l.Write(buf); err != nil {
			return fail(err)
		}
		if _, err := io.ReadFull(l, buf[:1]); err != nil { // the parent's "go"
			return fail(err)
		}
		go l.Close()
		tr.Abort(errors.New("crash child gives up"))
		l.Close()
		tr.Close()
		return 0
	}
	for { // until SIGKILL
		if _, err := l.Write(buf); err != nil {
			return fail(err)
		}
	}
}

// crashRound runs one 3-rank job whose rank 2 is a child process streaming to rank 1, while
// rank 0 reads from rank 1 on another channel. Rank 2 is SIGKILLed (mode "kill") or aborts
// (mode "abort") at a random moment. Rank 1 reacts to the failed read as a collective would:
// it closes its link to rank 0 at once. Both survivors must get an error naming rank 2.
func crashRound(t *testing.T, mode string, seed uint64) error {
	const peerTimeout = time.Second
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	token := fmt.Sprintf("crash-token-%d", seed)
	logger := testLogger(t)
	srv, err := rendezvous.Listen("127.0.0.1:0", rendezvous.ServerConfig{Token: token, Logger: logger, IdleTimeout: peerTimeout})
	if err != nil {
		return err
	}
	port := srv.Addr().(*net.UDPAddr).Port
	var childOut bytes.Buffer
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), crashChildEnv+"="+mode, "RANK=2", "WORLD_SIZE=3", "LOCAL_RANK=2",
		"MASTER_ADDR=127.0.0.1", fmt.Sprint("MASTER_PORT=", port), "GORUN_TOKEN="+token,
		"GORUN_JOIN_TIMEOUT=20s", "GORUN_PEER_TIMEOUT="+peerTimeout.String())
	cmd.Stdout, cmd.Stderr = &childOut, &childOut
	if err := cmd.Start(); err != nil {
		srv.Close()
		return err
	}
	defer func() {
		cmd.Process.Kill()
		cmd.Wait()
	}()
	ts := make([]*Transport, 2)
	errs := make([]error, 2)
	var wg sync.WaitGroup
	for r := range ts {
		wg.Go(func() {
			c := Config{Rank: r, Size: 3, MasterAddr: "127.0.0.1", MasterPort: port, Token: token,
				PeerTimeout: peerTimeout, JoinTimeout: 20 * time.Second, Logger: logger}
			if r == 0 {
				ts[r], errs[r] = establish(ctx, c, srv)
			} else {
				ts[r], errs[r] = Establish(ctx, c)
			}
		})
	}
	wg.Wait()
	for r, tr := range ts {
		if tr != nil {
			defer tr.Close()
		}
		if errs[r] != nil {
			return fmt.Errorf("rank %d: %w (child: %s)", r, errs[r], childOut.String())
		}
	}
	l12, err := ts[1].Link(ctx, 2, "crash")
	if err != nil {
		return err
	}
	l01, err := ts[0].Link(ctx, 1, "chain")
	if err != nil {
		return err
	}
	if _, err := l01.Write([]byte{1}); err != nil { // make the stream known to rank 1
		return err
	}
	l10, err := ts[1].Link(ctx, 0, "chain")
	if err != nil {
		return err
	}
	first := make(chan struct{})
	r1err := make(chan error, 1)
	go func() {
		buf := make([]byte, 64<<10)
		var once sync.Once
		for {
			_, err := l12.Read(buf)
			if err != nil {
				l10.Close() // react as a collective would: give up on the other links
				r1err <- err
				return
			}
			once.Do(func() { close(first) })
		}
	}()
	r0err := make(chan error, 1)
	go func() {
		_, err := io.Copy(io.Discard, l01)
		if err == nil {
			err = io.EOF // io.Copy hides a clean end
		}
		r0err <- err
	}()
	select {
	case <-first:
	case err := <-r1err:
		return fmt.Errorf("rank 1 read failed before the kill: %w (child: %s)", err, childOut.String())
	case <-ctx.Done():
		return fmt.Errorf("no bytes from the child (child: %s)", childOut.String())
	}
	if mode == "abort" {
		if _, err := l12.Write([]byte{1}); err != nil { // go
			return err
		}
	} else {
		time.Sleep(time.Duration(rand.New(rand.NewPCG(seed, 7)).IntN(100)) * time.Millisecond)
		if err := cmd.Process.Kill(); err != nil {
			return err
		}
	}
	for _, c := range []struct {
		who string
		ch  chan error
	}{{"rank 1 (reading from rank 2)", r1err}, {"rank 0 (reading from rank 1)", r0err}} {
		select {
		case err := <-c.ch:
			var pe *transport.PeerError
			if !errors.As(err, &pe) || pe.Rank != 2 {
				return fmt.Errorf("%s: err = %v, want a PeerError naming rank 2", c.who, err)
			}
		case <-time.After(10 * peerTimeout):
			return fmt.Errorf("%s still blocked", c.who)
		}
	}
	return nil
}

// TestCrashNamesDeadRank repeats crash rounds over real processes on 127.0.0.1: half kill
// rank 2 with SIGKILL mid-stream, half make it abort while closing its links. Every
// survivor's error must name rank 2 in every round, never a bare EOF. 50 rounds (10 with
// -short), a few at a time.
func TestCrashNamesDeadRank(t *testing.T) {
	rounds := 50
	if testing.Short() {
		rounds = 10
	}
	const parallel = 5
	sem := make(chan struct{}, parallel)
	var mu sync.Mutex
	var failures []string
	var wg sync.WaitGroup
	start := time.Now()
	for i := range rounds {
		mode := "kill"
		if i%2 == 1 {
			mode = "abort"
		}
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			if err := crashRound(t, mode, uint64(i)); err != nil {
				mu.Lock()
				failures = append(failures, fmt.Sprintf("round %d (%s): %v", i, mode, err))
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	for _, f := range failures {
		t.Error(f)
	}
	t.Logf("%d crash rounds, %d failed, in %v", rounds, len(failures), time.Since(start).Round(time.Millisecond))
}

// TestEOFThenAbortNamesAborter: a link ended in order (FIN) just before its rank aborts must
// read as the abort, not as a bare io.EOF; a link closed after the abort is reset with a code
// naming the guilty rank, on the reading and on the writing side.
func TestEOFThenAbortNamesAborter(t *testing.T) {
	ts := startLocal(t, 3, Config{})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	open := func(a, b int, ch string) (transport.Link, transport.Link) {
		la, err := ts[a].Link(ctx, b, ch)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := la.Write([]byte{1}); err != nil {
			t.Fatal(err)
		}
		lb, err := ts[b].Link(ctx, a, ch)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(lb, make([]byte, 1)); err != nil {
			t.Fatal(err)
		}
		return la, lb
	}
	fin0, fin2 := open(0, 2, "fin")   // rank 2 ends it in order, then aborts
	rst1, rst2 := open(1, 2, "reset") // rank 2 closes it after aborting
	wr1, wr2 := open(1, 2, "writing") // rank 1 keeps writing into it
	reads := pendingReads(fin0, rst1)
	writeErr := make(chan error, 1)
	go func() {
		for {
			if _, err := wr1.Write(make([]byte, 1<<10)); err != nil {
				writeErr <- err
				return
			}
		}
	}()
	time.Sleep(50 * time.Millisecond)
	fin2.Close()
	time.Sleep(20 * time.Millisecond) // the FIN is well ahead of the abort reason
	ts[2].Abort(&transport.PeerError{Rank: 1, Err: errors.New("stopped answering")})
	rst2.Close()
	wr2.Close()
	for i, who := range []string{"rank 0 reading a link ended in order before the abort", "rank 1 reading a link reset after the abort"} {
		wantPeerError(t, who, waitErr(t, who, reads[i]), 1, "stopped answering")
	}
	wantPeerError(t, "rank 1 writing", waitErr(t, "rank 1 writing", writeErr), 1, "")
}
