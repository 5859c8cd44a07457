package netcluster

import (
	"bufio"
	"context"
	"os"
	"strings"
	"testing"
	"time"
)

// TestHostsReachEachOther runs a TCP echo server on host 1 and a client on host 0 (this very
// test binary, re-executed inside the namespaces) and checks that the bytes make the round trip,
// that a cut link stops them, and that teardown leaves no namespace behind.
func TestHostsReachEachOther(t *testing.T) {
	c := Start(t, 2, "100mbit")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	srv := c.Command(ctx, 1, os.Args[0], "-test.run=^TestHelperProcess$")
	srv.Env = append(os.Environ(), "NETCLUSTER_HELPER=serve", "NETCLUSTER_ADDR=:7000")
	stdout, err := srv.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	defer srv.Process.Kill()
	if line, _ := bufio.NewReader(stdout).ReadString('\n'); !strings.Contains(line, "listening") {
		t.Fatalf("server on host 1 did not start: %q", line)
	}

	ask := func() (string, error) {
		cl := c.Command(ctx, 0, os.Args[0], "-test.run=^TestHelperProcess$")
		cl.Env = append(os.Environ(), "NETCLUSTER_HELPER=ask", "NETCLUSTER_ADDR="+c.IP(1)+":7000")
		out, err := cl.CombinedOutput()
		return string(out), err
	}
	if out, err := ask(); err != nil || !strings.Contains(out, "echo:hello from host 0") {
		t.Fatalf("host 0 could not reach host 1 at %s: %v\n%s", c.IP(1), err, out)
	}
	if err := c.SetLink(1, false); err != nil {
		t.Fatal(err)
	}
	if out, err := ask(); err == nil {
		t.Fatalf("host 0 reached host 1 through a cut link: %s", out)
	}
	if pids, err := c.Pids(1); err != nil || len(pids) == 0 {
		t.Fatalf("expected the echo server inside host 1, got %v, %v", pids, err)
	}
}
