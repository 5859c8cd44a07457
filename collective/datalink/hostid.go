package datalink

import (
	"github.com/ringtrain/ringtrain/jobenv"
	"os"
	"strconv"
	"strings"
	"syscall"
)

// HostIDEnv overrides the host identity (tests that make several hosts on one machine).
const HostIDEnv = jobenv.HostID

// LocalHostID identifies the machine for the choice between shared memory and a network
// link: $GORUN_HOST_ID if set, else the kernel's boot id and network namespace (hosts made of
// network namespaces on one kernel count as different hosts, as in shmtransport), else the
// host name.
func LocalHostID() string {
	if v := os.Getenv(HostIDEnv); v != "" {
		return v
	}
	if raw, err := os.ReadFile("/proc/sys/kernel/random/boot_id"); err == nil {
		id := "boot:" + strings.TrimSpace(string(raw))
		var st syscall.Stat_t
		if err := syscall.Stat("/proc/self/ns/net", &st); err == nil {
			id += "/netns:" + strconv.FormatUint(uint64(st.Ino), 10)
		}
		return id
	}
	if h, err := os.Hostname(); err == nil && h != "" {
		return "host:" + h
	}
	return ""
}
