package shmtransport_test

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ringtrain/ringtrain/collective"
	"github.com/ringtrain/ringtrain/collective/quictransport"
	"github.com/ringtrain/ringtrain/collective/shmtransport"
	"github.com/ringtrain/ringtrain/collective/transport"
)

func init() {
	shmtransport.RegisterChild("rank", rankChild)
}

// rankOutcome is what a "rank" child prints when its AllReduce loop fails.
type rankOutcome struct {
	Rank    int    `json:"rank"`
	Blamed  int    `json:"blamed"` // rank named by the *transport.PeerError, -1 if none
	Err     string `json:"err"`
	Kind    string `json:"kind"` // transports of its ring edges
	Iters   int    `json:"iters"`
	Elapsed int64  `json:"elapsed_ns"` // from the stop of progress to the error
}

// rankChild is one rank of a real job: it joins through the QUIC rendezvous (torchrun
// environment), wraps the transport with the mode of GORUN_TRANSPORT, and runs AllReduce in a
// loop until it fails; then it prints a rankOutcome.
func rankChild() error {
	ctx := context.Background()
	cfg, err := quictransport.ConfigFromEnv()
	if err != nil {
		return err
	}
	cfg.Logger = slog.New(slog.DiscardHandler)
	base, err := quictransport.Establish(ctx, cfg)
	if err != nil {
		return err
	}
	mode, err := shmtransport.ModeFromEnv()
	if err != nil {
		return err
	}
	tr, err := shmtransport.Wrap(base, shmtransport.Options{Mode: mode}) // Dir: $GORUN_SHM_DIR
	if err != nil {
		return err
	}
	defer tr.Close()
	g, err := collective.New(ctx, tr, collective.Options{})
	if err != nil {
		return err
	}
	defer g.Close()
	buf := make([]float32, 1<<20)
	n := g.Size()
	kind := ""
	last := time.Now()
	for i := 0; ; i++ {
		for j := range buf {
			buf[j] = 1
		}
		if err := g.AllReduce(ctx, buf, collective.Sum); err != nil {
			out := rankOutcome{Rank: g.Rank(), Blamed: -1, Err: err.Error(), Kind: kind, Iters: i, Elapsed: time.Since(last).Nanoseconds()}
			var pe *transport.PeerError
			if errors.As(err, &pe) {
				out.Blamed = pe.Rank
			}
			b, _ := json.Marshal(out)
			fmt.Println(string(b))
			return nil
		}
		if buf[0] != float32(n) || buf[len(buf)-1] != float32(n) {
			return fmt.Errorf("iteration %d: wrong sum %v", i, buf[0])
		}
		if i == 2 { // the links are set up by now
			kind = fmt.Sprintf("left=%s right=%s", tr.Kind((g.Rank()+n-1)%n), tr.Kind((g.Rank()+1)%n))
			fmt.Println("running " + kind)
		}
		last = time.Now()
	}
}

func freeUDPPort(t *testing.T) int {
	t.Helper()
	c, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).Port
}

// TestKilledPeerMidAllReduce runs a 3-rank job of separate processes over shared memory,
// kills rank 1 with SIGKILL while the ranks loop on AllReduce, and checks that the others
// fail with a PeerError naming rank 1 (well within the test's deadline) and that no file is
// left in the shared-memory directory.
func TestKilledPeerMidAllReduce(t *testing.T) {
	needShm(t)
	dir, err := os.MkdirTemp(shmtransport.DefaultDir, "rtshm-test-")
	if err != nil {
		t.Skip(err)
	}
	defer os.RemoveAll(dir)
	const n, victim = 3, 1
	var tok [16]byte
	rand.Read(tok[:])
	port := freeUDPPort(t)
	var cmds []*exec.Cmd
	var outs []*bufio.Reader
	for r := range n {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), shmtransport.EnvChild+"=rank", shmtransport.EnvShmDir+"="+dir,
			fmt.Sprintf("RANK=%d", r), fmt.Sprintf("WORLD_SIZE=%d", n), "MASTER_ADDR=127.0.0.1",
			fmt.Sprintf("MASTER_PORT=%d", port), "GORUN_TOKEN="+hex.EncodeToString(tok[:]),
			"GORUN_TRANSPORT=shm", "GORUN_PEER_TIMEOUT=10s")
		cmd.Stderr = os.Stderr
		out, _ := cmd.StdoutPipe()
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		defer cmd.Process.Kill()
		cmds, outs = append(cmds, cmd), append(outs, bufio.NewReader(out))
	}
	type line struct {
		s   string
		err error
	}
	lines := make([]chan line, n)
	for r := range n {
		lines[r] = make(chan line, 4)
		go func() {
			for {
				s, err := outs[r].ReadString('\n')
				lines[r] <- line{strings.TrimSpace(s), err}
				if err != nil {
					return
				}
			}
		}()
	}
	deadline := time.After(60 * time.Second)
	for r := range n {
		select {
		case l := <-lines[r]:
			if !strings.HasPrefix(l.s, "running") || l.err != nil {
				t.Fatalf("rank %d: %q %v", r, l.s, l.err)
			}
			if !strings.Contains(l.s, "left=shm right=shm") {
				t.Fatalf("rank %d: %s, want shared memory on both edges", r, l.s)
			}
		case <-deadline:
			t.Fatal("the job did not start")
		}
	}
	time.Sleep(100 * time.Millisecond)
	cmds[victim].Process.Signal(syscall.SIGKILL)
	killed := time.Now()
	cmds[victim].Wait()
	for r := range n {
		if r == victim {
			continue
		}
		select {
		case l := <-lines[r]:
			var o rankOutcome
			if err := json.Unmarshal([]byte(l.s), &o); err != nil {
				t.Fatalf("rank %d said %q (%v)", r, l.s, l.err)
			}
			t.Logf("rank %d failed %v after the kill: %s", r, time.Since(killed).Round(time.Millisecond), o.Err)
			if o.Blamed != victim {
				t.Errorf("rank %d blames rank %d, want %d: %s", r, o.Blamed, victim, o.Err)
			}
		case <-time.After(30 * time.Second):
			t.Fatalf("rank %d did not notice the death of rank %d within 30s", r, victim)
		}
		if err := cmds[r].Wait(); err != nil {
			t.Errorf("rank %d exited with %v", r, err)
		}
	}
	if removed, err := shmtransport.CleanStaleIn(dir); err != nil || len(removed) != 0 {
		t.Errorf("stale files after the job: %v %v", removed, err)
	}
	if names, _ := os.ReadDir(dir); len(names) != 0 {
		t.Errorf("files left in %s: %v", dir, names)
	}
}
