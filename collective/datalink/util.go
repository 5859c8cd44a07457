package datalink

import (
	"crypto/hmac"
	"crypto/sha256"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
)

func fingerprint(der []byte) [32]byte { return sha256.Sum256(der) }

func hmacEqual(a, b []byte) bool { return hmac.Equal(a, b) }

var (
	sysMaxOnce sync.Once
	sysRmemMax int // net.core.rmem_max: the most SO_RCVBUF may ask for
	sysWmemMax int
	sysRmemTop int // the last field of net.ipv4.tcp_rmem: how far auto-tuning grows a receive buffer
	sysWmemTop int
)

func readSysInt(path string) int {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	n, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	return n
}

// readSysLastInt returns the last of the numbers in the file (0 if it cannot).
func readSysLastInt(path string) int {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return 0
	}
	n, _ := strconv.Atoi(f[len(f)-1])
	return n
}

// tuneConn sets TCP_NODELAY and size-byte socket buffers where a fixed buffer beats the
// kernel's own. Setting SO_RCVBUF or SO_SNDBUF switches Linux's auto-tuning off for that
// direction, so a direction is fixed only where the kernel grants size (net.core.rmem_max,
// wmem_max) and size is above what auto-tuning could grow it to (the last field of
// net.ipv4.tcp_rmem, tcp_wmem: 6 MiB and 4 MiB on a stock kernel, often raised on fast
// hosts). With the default 4 MiB that leaves both directions to auto-tuning on such hosts; a
// fixed 4 MiB on both cost CPU and bandwidth at 4 ranks over tcp on one host (see
// benchmarks/results/dataplane/20261204-tcp4).
func tuneConn(c net.Conn, size int) {
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return
	}
	tc.SetNoDelay(true)
	if size <= 0 {
		return
	}
	sysMaxOnce.Do(func() {
		sysRmemMax = readSysInt("/proc/sys/net/core/rmem_max")
		sysWmemMax = readSysInt("/proc/sys/net/core/wmem_max")
		sysRmemTop = readSysLastInt("/proc/sys/net/ipv4/tcp_rmem")
		sysWmemTop = readSysLastInt("/proc/sys/net/ipv4/tcp_wmem")
	})
	if fixBuffer(size, sysRmemMax, sysRmemTop) {
		tc.SetReadBuffer(size)
	}
	if fixBuffer(size, sysWmemMax, sysWmemTop) {
		tc.SetWriteBuffer(size)
	}
}

// fixBuffer says whether to ask for a fixed size-byte buffer of one direction, given the most
// the kernel grants (max) and the most auto-tuning reaches (top; 0 when unknown).
func fixBuffer(size, max, top int) bool {
	return max >= size && size > top
}
