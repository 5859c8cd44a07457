package collective

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ringtrain/ringtrain/collective/quictransport"
	"github.com/ringtrain/ringtrain/collective/transport"
)

// The whole suite also runs over real QUIC endpoints on 127.0.0.1 (quictransport.StartLocal),
// for jobs of up to 5 ranks; 8 ranks stay on the in-process transport to keep the package's
// tests short on a 2-core machine.
func init() {
	extraFabrics = append(extraFabrics, quicFabric)
}

var quicFabric = fabric{
	name:     "quic",
	maxRanks: 5,
	start: func(t testing.TB, n int) ([]transport.Transport, func(int)) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		qs, err := quictransport.StartLocal(ctx, n, quictransport.Config{
			PeerTimeout: 5 * time.Second,
			Logger:      slog.New(slog.DiscardHandler),
			// Small windows: the tests must pass without relying on buffering, and many
			// transports share this process.
			StreamWindow: 1 << 20,
			ConnWindow:   4 << 20,
			SocketBuffer: 1 << 20,
		})
		if err != nil {
			t.Fatalf("quictransport.StartLocal(%d): %v", n, err)
		}
		ts := make([]transport.Transport, n)
		for i, q := range qs {
			ts[i] = q
		}
		t.Cleanup(func() {
			for _, q := range qs {
				q.Close()
			}
		})
		// A killed rank: its transport closes without warning its groups; the peers see
		// their connections to it end.
		return ts, func(r int) { qs[r].Close() }
	},
}

// freeUDPPort returns a UDP port that was free a moment ago.
func freeUDPPort(t *testing.T) int {
	c, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).Port
}

// startRanks starts n helper processes of this test binary running test, configured like
// gorun configures ranks, plus extra environment.
func startRanks(t *testing.T, n int, test string, extra ...string) ([]*exec.Cmd, []*bytes.Buffer) {
	port := freeUDPPort(t)
	ctx := ctxT(t)
	outs := make([]*bytes.Buffer, n)
	cmds := make([]*exec.Cmd, n)
	for r := range n {
		cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^"+test+"$", "-test.count=1")
		cmd.Env = append(os.Environ(),
			"RINGTRAIN_TEST_HELPER=1",
			"RANK="+strconv.Itoa(r), "WORLD_SIZE="+strconv.Itoa(n), "LOCAL_RANK="+strconv.Itoa(r),
			"MASTER_ADDR=127.0.0.1", "MASTER_PORT="+strconv.Itoa(port), "GORUN_TOKEN=test-token-0123456789",
		)
		cmd.Env = append(cmd.Env, extra...)
		outs[r] = &bytes.Buffer{}
		cmd.Stdout, cmd.Stderr = outs[r], outs[r]
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		cmds[r] = cmd
	}
	return cmds, outs
}

// TestCrashedProcess: one rank of a 3-process job exits abruptly in the middle of a large
// AllReduce, without closing anything (as a crash). The others must fail within the peer
// timeout, naming it, and not hang.
func TestCrashedProcess(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	start := time.Now()
	cmds, outs := startRanks(t, 3, "TestCrashedProcessHelper", "GORUN_PEER_TIMEOUT=2s")
	for r, cmd := range cmds {
		err := cmd.Wait()
		if r == 2 {
			if err == nil {
				t.Fatalf("rank 2 was meant to crash:\n%s", outs[r])
			}
			continue
		}
		if err != nil {
			t.Fatalf("rank %d: %v\n%s", r, err, outs[r])
		}
		out := outs[r].String()
		i := strings.Index(out, "FAILED")
		if i < 0 {
			t.Fatalf("rank %d did not report a failure:\n%s", r, out)
		}
		line, _, _ := strings.Cut(out[i:], "\n")
		if !strings.Contains(line, "rank 2") {
			t.Fatalf("rank %d: failure does not name rank 2: %s", r, line)
		}
		t.Logf("rank %d: %s", r, line)
	}
	if el := time.Since(start); el > 30*time.Second {
		t.Fatalf("the survivors took %v to give up", el)
	}
}

// TestCrashedProcessHelper is one rank of TestCrashedProcess.
func TestCrashedProcessHelper(t *testing.T) {
	if os.Getenv("RINGTRAIN_TEST_HELPER") != "1" {
		t.Skip("helper process of TestCrashedProcess")
	}
	g, err := InitFromEnv(ctxT(t), Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]float32, 8<<20)
	if err := g.AllReduce(ctxT(t), buf[:1000], Sum); err != nil {
		t.Fatal(err)
	}
	if g.Rank() == 2 {
		g.AllReduceAsync(context.Background(), buf, Sum)
		time.Sleep(50 * time.Millisecond)
		os.Exit(3) // no Close: the peers hear nothing more
	}
	start := time.Now()
	err = g.AllReduce(context.Background(), buf, Sum)
	fmt.Printf("FAILED after %v: %v\n", time.Since(start), err)
	if err == nil {
		t.Fatal("AllReduce with a crashed peer succeeded")
	}
	var pe *transport.PeerError
	if !errors.As(err, &pe) {
		t.Fatalf("error does not wrap a *transport.PeerError: %v", err)
	}
	g.Close()
}

// TestInitFromEnvProcesses runs a 3-rank job as 3 real processes (this test binary, re-run
// in helper mode) configured only by the environment gorun sets, and checks their AllReduce.
func TestInitFromEnvProcesses(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	cmds, outs := startRanks(t, 3, "TestInitFromEnvHelper")
	for r, cmd := range cmds {
		if err := cmd.Wait(); err != nil {
			t.Fatalf("rank %d: %v\n%s", r, err, outs[r])
		}
		// Σ_r (r+1)·(i+1) over 3 ranks = 6·(i+1); the helper prints its last element.
		if want := "RESULT 6000"; !strings.Contains(outs[r].String(), want) {
			t.Fatalf("rank %d did not print %q:\n%s", r, want, outs[r])
		}
	}
}

// TestInitFromEnvHelper is one rank of TestInitFromEnvProcesses (skipped unless run as such).
func TestInitFromEnvHelper(t *testing.T) {
	if os.Getenv("RINGTRAIN_TEST_HELPER") != "1" {
		t.Skip("helper process of TestInitFromEnvProcesses")
	}
	g, err := InitFromEnv(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	buf := make([]float32, 1000)
	for i := range buf {
		buf[i] = float32((g.Rank() + 1) * (i + 1))
	}
	if err := g.AllReduce(ctxT(t), buf, Sum); err != nil {
		t.Fatal(err)
	}
	if err := g.Barrier(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	fmt.Printf("RESULT %g\n", buf[999])
}

// TestInitFromEnvErrors: a single-rank job comes up from the environment, and a bad variable
// is named.
func TestInitFromEnv(t *testing.T) {
	noLeaks(t)
	t.Setenv("RANK", "0")
	t.Setenv("WORLD_SIZE", "1")
	t.Setenv("MASTER_ADDR", "127.0.0.1")
	t.Setenv("MASTER_PORT", strconv.Itoa(freeUDPPort(t)))
	t.Setenv("GORUN_TOKEN", "")
	g, err := InitFromEnv(ctxT(t), Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatalf("InitFromEnv: %v", err)
	}
	buf := []float32{1, 2}
	if err := g.AllReduce(ctxT(t), buf, Sum); err != nil || buf[1] != 2 {
		t.Fatalf("AllReduce on one rank: %v, %v", buf, err)
	}
	if err := g.Close(); err != nil {
		t.Fatal(err)
	}
	t.Setenv("WORLD_SIZE", "two")
	if _, err := InitFromEnv(ctxT(t)); err == nil || !strings.Contains(err.Error(), "WORLD_SIZE") {
		t.Fatalf("InitFromEnv with WORLD_SIZE=two: %v", err)
	}
}
