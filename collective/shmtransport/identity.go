package shmtransport

// identity describes where a process runs, as far as sharing memory with it is concerned.
// Two processes can use a shared-memory link when they run under the same kernel boot, in the
// same network namespace (multi-host tests make "hosts" out of network namespaces on one
// kernel, and those must stay apart) and see the same /dev/shm mount. The pid fields let a
// peer on the same host notice that this process died without waiting for a network timeout.
type identity struct {
	bootID [16]byte // /proc/sys/kernel/random/boot_id; zero when unknown
	netNS  uint64   // inode of /proc/self/ns/net; zero when unknown
	pidNS  uint64   // inode of /proc/self/ns/pid; zero when unknown
	shmDev uint64   // st_dev of the shared-memory directory; zero when unknown
	pid    uint32   // this process's pid (in pidNS)
	start  uint64   // start time of this process in clock ticks since boot (/proc/self/stat)
}

// sameHost reports whether a and b can share a mapped file: same boot, same network namespace
// and same shared-memory mount, all of them known.
func (a identity) sameHost(b identity) bool {
	var zero [16]byte
	return a.bootID != zero && a.bootID == b.bootID &&
		a.netNS != 0 && a.netNS == b.netNS &&
		a.shmDev != 0 && a.shmDev == b.shmDev
}

// whyNotSameHost explains, for an error message, why sameHost is false.
func (a identity) whyNotSameHost(b identity) string {
	var zero [16]byte
	switch {
	case a.bootID == zero || b.bootID == zero:
		return "host identity unknown (no /proc/sys/kernel/random/boot_id or not Linux)"
	case a.bootID != b.bootID:
		return "it runs on another host (different boot id)"
	case a.netNS == 0 || b.netNS == 0 || a.netNS != b.netNS:
		return "it runs in another network namespace"
	case a.shmDev == 0 || b.shmDev == 0 || a.shmDev != b.shmDev:
		return "it sees a different shared-memory directory"
	}
	return "same host"
}

// canWatchPID reports whether a's pid can be checked from a process with identity self: the
// same host and the same pid namespace.
func (a identity) canWatchPID(self identity) bool {
	return a.pid != 0 && a.pidNS != 0 && a.pidNS == self.pidNS && a.sameHost(self)
}
