// Package netcluster lets tests run a small multi-host cluster on one Linux machine: each host
// is a network namespace with its own IP address, joined to the others through a bridge, as
// built by scripts/netns-cluster.sh. Tests call Start, run commands on hosts with Command, cut
// links with SetLink, and the cluster is torn down (every process inside killed) at cleanup.
package netcluster

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// Cluster is a set of hosts built by scripts/netns-cluster.sh.
type Cluster struct {
	Name   string // prefix of the namespaces: Name-h0, Name-h1, ...
	Hosts  int
	script string
}

// Available reports why multi-host tests cannot run here, or "" when they can.
func Available() string {
	if runtime.GOOS != "linux" {
		return "network namespaces need Linux"
	}
	if os.Geteuid() != 0 {
		return "network namespaces need root (CI runs as root)"
	}
	if _, err := exec.LookPath("ip"); err != nil {
		return "`ip` (iproute2) not found"
	}
	if _, err := exec.LookPath("tc"); err != nil {
		return "`tc` (iproute2) not found"
	}
	return ""
}

// Start builds a cluster of hosts, each link limited to rate (tc syntax such as "1gbit"; empty
// for no limit), and tears it down when the test ends. It skips the test with a clear message
// where network namespaces cannot be made.
func Start(t testing.TB, hosts int, rate string) *Cluster {
	t.Helper()
	if why := Available(); why != "" {
		t.Skipf("skipping multi-host test: %s", why)
	}
	var b [3]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	c := &Cluster{Name: "rt" + hex.EncodeToString(b[:]), Hosts: hosts, script: scriptPath(t)}
	args := []string{"up", c.Name, fmt.Sprint(hosts)}
	if rate != "" {
		args = append(args, rate)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("bash", c.script, "down", c.Name).CombinedOutput(); err != nil {
			t.Errorf("netcluster: tearing down %s: %v\n%s", c.Name, err, out)
		}
	})
	if out, err := exec.Command("bash", append([]string{c.script}, args...)...).CombinedOutput(); err != nil {
		t.Fatalf("netcluster: building %d hosts: %v\n%s", hosts, err, out)
	}
	return c
}

// scriptPath finds scripts/netns-cluster.sh by walking up from the test's directory to the
// module root.
func scriptPath(t testing.TB) string {
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		p := filepath.Join(dir, "scripts", "netns-cluster.sh")
		if _, err := os.Stat(p); err == nil {
			return p
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("netcluster: scripts/netns-cluster.sh not found above the test directory")
		}
		dir = parent
	}
}

// Namespace is the network namespace of host i.
func (c *Cluster) Namespace(i int) string { return fmt.Sprintf("%s-h%d", c.Name, i) }

// IP is the address of host i.
func (c *Cluster) IP(i int) string {
	out, err := exec.Command("bash", c.script, "ip", c.Name, fmt.Sprint(i)).Output()
	if err != nil {
		panic(fmt.Sprintf("netcluster: address of host %d: %v", i, err))
	}
	return strings.TrimSpace(string(out))
}

// Command prepares name args... to run on host i. The process is killed when ctx ends, and at
// teardown at the latest.
func (c *Cluster) Command(ctx context.Context, i int, name string, args ...string) *exec.Cmd {
	return exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", c.Namespace(i), name}, args...)...)
}

// SetLink cuts (up=false) or restores host i's link to the switch.
func (c *Cluster) SetLink(i int, up bool) error {
	state := "down"
	if up {
		state = "up"
	}
	out, err := exec.Command("bash", c.script, "link", c.Name, fmt.Sprint(i), state).CombinedOutput()
	if err != nil {
		return fmt.Errorf("netcluster: link of host %d %s: %v: %s", i, state, err, out)
	}
	return nil
}

// Pids lists the processes running inside host i's namespace.
func (c *Cluster) Pids(i int) ([]string, error) {
	out, err := exec.Command("ip", "netns", "pids", c.Namespace(i)).Output()
	if err != nil {
		return nil, fmt.Errorf("netcluster: processes of host %d: %v", i, err)
	}
	return strings.Fields(string(out)), nil
}
