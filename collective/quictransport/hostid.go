package quictransport

import (
	"github.com/ringtrain/ringtrain/jobenv"
	"os"
	"strings"
)

// HostIDEnv names an environment variable that, when set, replaces the host identity this
// rank publishes (for tests that simulate several hosts on one machine, and for sites whose
// machines cannot be told apart otherwise).
const HostIDEnv = jobenv.HostID

// localHostID identifies the machine this process runs on, as far as the placement of
// collectives is concerned: the kernel boot id and the network namespace (multi-host tests
// make hosts out of network namespaces on one kernel, and those must count as different
// hosts, as shmtransport treats them), or the host name where /proc is not available.
// GORUN_HOST_ID overrides it.
func localHostID() string {
	if v := os.Getenv(HostIDEnv); v != "" {
		if len(v) > maxAddrLen {
			v = v[:maxAddrLen]
		}
		return v
	}
	if raw, err := os.ReadFile("/proc/sys/kernel/random/boot_id"); err == nil {
		id := strings.TrimSpace(string(raw))
		if ns, err := os.Readlink("/proc/self/ns/net"); err == nil {
			return "boot:" + id + "/" + ns
		}
		return "boot:" + id
	}
	if h, err := os.Hostname(); err == nil && h != "" {
		return "host:" + h
	}
	return ""
}

// HostIDs returns, by world rank, the host identity every rank published at the rendezvous
// (see localHostID); an entry is empty for a rank of a build that published none. Package
// collective groups ranks by host with it (hierarchical algorithms, the tuner), whatever
// transport carries the links.
func (t *Transport) HostIDs() []string {
	out := make([]string, len(t.entries))
	for r, e := range t.entries {
		out[r] = e.Host
	}
	return out
}
