//go:build linux

package launcher

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestElasticShrinkAndGrow: two nodes on this machine with --nnodes 1:2. Node 1's gorun is
// killed with SIGKILL (its rank goes with it): node 0 goes on alone at world size 1, world
// version 1, without using a restart. A new gorun then joins through --rdzv-endpoints and is
// admitted after --settle: world size 2, version 2. All exit 0 when the program finishes.
func TestElasticShrinkAndGrow(t *testing.T) {
	t.Parallel()
	marker := newMarker(t)
	port := freeTestPort(t)
	tok := writeToken(t, "elastic-test-token-"+strconv.Itoa(port))
	done := filepath.Join(t.TempDir(), "done")
	args := func(node int) []string {
		return []string{"--nnodes", "1:2", "--node-rank", strconv.Itoa(node), "--master-addr", "127.0.0.1",
			"--master-port", strconv.Itoa(port), "--token-file", tok, "--join-timeout", "20s", "--settle", "1s",
			"--grace", "1s", rankBin, "elastic", done}
	}
	env := append(cleanEnv(), "GORUN_PEER_TIMEOUT=2s")
	n0 := startGorun(t, marker, env, args(0)...)
	n1 := startGorun(t, marker, env, args(1)...)
	n0.waitFor(30*time.Second, "elastic rank=0 world=2 node=0 version=0 restart=0")
	n1.waitFor(30*time.Second, "elastic rank=1 world=2 node=1 version=0 restart=0 master=127.0.0.1")

	n1.cmd.Process.Signal(syscall.SIGKILL)
	n0.waitFor(30*time.Second, "elastic rank=0 world=1 node=0 version=1 restart=1")

	n2 := startGorun(t, marker, env, args(1)...)
	n0.waitFor(30*time.Second, "elastic rank=0 world=2 node=0 version=2 restart=2")
	n2.waitFor(30*time.Second, "elastic rank=1 world=2 node=1 version=2 restart=2")

	if err := os.WriteFile(done, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for i, j := range []*job{n0, n2} {
		if code, _ := j.wait(30 * time.Second); code != 0 {
			t.Fatalf("node %d exited %d\nstderr:\n%s\nstdout:\n%s", i, code, j.stderr, j.stdout)
		}
	}
	if !strings.Contains(n0.stderr.String(), "membership change: lost node 1") {
		t.Errorf("node 0 did not report the membership change:\n%s", n0.stderr)
	}
	assertNoProcesses(t, marker)
}

// TestElasticBelowMin: --nnodes 2:2 is fixed, so take 2:3 with two nodes; losing one leaves 1
// < MIN: node 0 waits --join-timeout for a replacement, then fails naming MIN.
func TestElasticBelowMin(t *testing.T) {
	t.Parallel()
	marker := newMarker(t)
	port := freeTestPort(t)
	tok := writeToken(t, "elastic-test-token-"+strconv.Itoa(port))
	done := filepath.Join(t.TempDir(), "done")
	args := func(node int) []string {
		return []string{"--nnodes", "2:3", "--node-rank", strconv.Itoa(node), "--master-addr", "127.0.0.1",
			"--master-port", strconv.Itoa(port), "--token-file", tok, "--join-timeout", "3s", "--settle", "500ms",
			"--grace", "1s", rankBin, "elastic", done}
	}
	env := append(cleanEnv(), "GORUN_PEER_TIMEOUT=2s")
	n0 := startGorun(t, marker, env, args(0)...)
	n1 := startGorun(t, marker, env, args(1)...)
	n1.waitFor(30*time.Second, "elastic rank=1 world=2")
	n1.cmd.Process.Signal(syscall.SIGKILL)
	code, _ := n0.wait(30 * time.Second)
	if code != 1 || !strings.Contains(n0.stderr.String(), "needs at least 2") {
		t.Fatalf("node 0 exited %d, want 1 naming MIN\nstderr:\n%s", code, n0.stderr)
	}
	assertNoProcesses(t, marker)
}
