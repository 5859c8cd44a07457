package shmtransport_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ringtrain/ringtrain/collective"
	"github.com/ringtrain/ringtrain/collective/quictransport"
	"github.com/ringtrain/ringtrain/collective/shmtransport"
)

func init() {
	shmtransport.RegisterChild("allreduce", allreduceChild)
}

// allreduceChild is one rank of a real job configured like gorun's (torchrun variables,
// GORUN_TRANSPORT, GORUN_SHM_DIR): it runs a few AllReduces, checks them, and prints the
// transports of its ring edges. Warnings go to stderr (slog's default logger).
func allreduceChild() error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
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
	n, r := g.Size(), g.Rank()
	buf := make([]float32, 1<<18+3)
	for it := range 3 {
		for i := range buf {
			buf[i] = float32((r + 1) * (i%7 + it))
		}
		if err := g.AllReduce(ctx, buf, collective.Sum); err != nil {
			return err
		}
		for i, v := range buf {
			if want := float32(n * (n + 1) / 2 * (i%7 + it)); v != want {
				return fmt.Errorf("iteration %d element %d = %v, want %v", it, i, v, want)
			}
		}
	}
	kinds := fmt.Sprintf("left=%s right=%s", tr.Kind((r+n-1)%n), tr.Kind((r+1)%n))
	// Flush before closing: the last chunks of the last AllReduce may still be on their way to
	// a neighbour, and closing a QUIC connection drops them.
	if err := tr.Shutdown(ctx); err != nil {
		return err
	}
	fmt.Println("ok " + kinds)
	return nil
}

// mountTmpfs mounts a tmpfs of the given size on a fresh directory and unmounts it at the
// end of the test; it skips the test where mounting is not allowed.
func mountTmpfs(t *testing.T, size string) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("mounting a small tmpfs needs root (CI runs as root)")
	}
	dir := t.TempDir()
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size="+size+",mode=0700"); err != nil {
		t.Skipf("cannot mount a tmpfs on %s (%v): needs CAP_SYS_ADMIN", dir, err)
	}
	t.Cleanup(func() { syscall.Unmount(dir, syscall.MNT_DETACH) })
	return dir
}

// runRanks runs an n-rank job of this test binary in child role role, with extra
// environment, and returns every rank's stdout and stderr once all have exited (failing the
// test if one fails or the job outlives deadline).
func runRanks(t *testing.T, n int, role string, deadline time.Duration, env ...string) (stdout, stderr []string) {
	t.Helper()
	var tok [16]byte
	rand.Read(tok[:])
	port := freeUDPPort(t)
	outs, errs := make([]bytes.Buffer, n), make([]bytes.Buffer, n)
	cmds := make([]*exec.Cmd, n)
	for r := range n {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(append(os.Environ(), shmtransport.EnvChild+"="+role,
			fmt.Sprintf("RANK=%d", r), fmt.Sprintf("WORLD_SIZE=%d", n), "MASTER_ADDR=127.0.0.1",
			fmt.Sprintf("MASTER_PORT=%d", port), "GORUN_TOKEN="+hex.EncodeToString(tok[:]),
			"GORUN_PEER_TIMEOUT=10s"), env...)
		cmd.Stdout, cmd.Stderr = &outs[r], &errs[r]
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		cmds[r] = cmd
	}
	var wg sync.WaitGroup
	waitErr := make([]error, n)
	for r, cmd := range cmds {
		wg.Go(func() { waitErr[r] = cmd.Wait() })
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(deadline):
		for _, cmd := range cmds {
			cmd.Process.Kill()
		}
		<-done
		t.Fatalf("the job did not finish within %v", deadline)
	}
	for r := range n {
		stdout, stderr = append(stdout, outs[r].String()), append(stderr, errs[r].String())
	}
	for r, err := range waitErr {
		if err != nil {
			t.Fatalf("rank %d: %v\nstdout:\n%s\nstderr:\n%s", r, err, stdout[r], stderr[r])
		}
	}
	return stdout, stderr
}

// TestTinyShmDir runs 3 ranks as separate processes with GORUN_SHM_DIR on a tmpfs too small
// for their shared-memory files (the full /dev/shm of a container): without the up-front
// reservation a rank died of SIGBUS at the first page the tmpfs could not back. Now the
// AllReduces must come out right, and each edge that could not get its memory is named in
// exactly one warning (by the lower rank, which creates the file) with the size it wanted.
// With 4 MiB nothing fits (every edge on QUIC); with 12 MiB one link's 8 MiB + 4 KiB fits
// and the others fall back (a mixed ring).
func TestTinyShmDir(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	needShm(t)
	const n = 3
	for _, c := range []struct {
		size   string
		allOff bool
	}{{"4m", true}, {"12m", false}} {
		t.Run(c.size, func(t *testing.T) {
			dir := mountTmpfs(t, c.size)
			stdout, stderr := runRanks(t, n, "allreduce", 90*time.Second, "GORUN_SHM_DIR="+dir, "GORUN_TRANSPORT=auto")
			warn := regexp.MustCompile(`shmtransport: edge rank (\d+) <-> rank (\d+) uses quic, not shared memory: cannot reserve 8\.0 MiB \(8392704 bytes\) in ` + regexp.QuoteMeta(dir) + `: no space left on device`)
			perEdge := map[string]int{}
			for r := range n {
				if !strings.HasPrefix(stdout[r], "ok ") {
					t.Fatalf("rank %d printed %q", r, stdout[r])
				}
				t.Logf("rank %d: %s", r, strings.TrimSpace(stdout[r]))
				for _, m := range warn.FindAllStringSubmatch(stderr[r], -1) {
					if m[1] != fmt.Sprint(r) {
						t.Errorf("rank %d warned about an edge it does not create: %s", r, m[0])
					}
					perEdge[m[1]+"-"+m[2]]++
				}
				if strings.Contains(stderr[r], "SIGBUS") {
					t.Errorf("rank %d: SIGBUS\n%s", r, stderr[r])
				}
			}
			quicEdges := 0
			for r := range n { // rank r's right edge is r <-> r+1
				a, b := min(r, (r+1)%n), max(r, (r+1)%n)
				key := fmt.Sprintf("%d-%d", a, b)
				if strings.Contains(stdout[r], "right=quic") {
					quicEdges++
					if perEdge[key] != 1 {
						t.Errorf("edge %s is on QUIC with %d warnings, want 1; stderr:\n%s", key, perEdge[key], strings.Join(stderr, "\n"))
					}
				}
			}
			for key, k := range perEdge {
				if k != 1 {
					t.Errorf("edge %s: %d warnings, want 1", key, k)
				}
			}
			if c.allOff && quicEdges != n {
				t.Errorf("%d of %d edges on QUIC, want all", quicEdges, n)
			}
			if !c.allOff && (quicEdges == 0 || quicEdges == n) {
				t.Logf("%d of %d edges on QUIC (expected a mixed ring; channels other than the ring's may have taken the space)", quicEdges, n)
			}
			if names, _ := os.ReadDir(dir); len(names) != 0 {
				t.Errorf("files left in %s: %v", dir, names)
			}
		})
	}
}
