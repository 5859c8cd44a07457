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
	sysRmemMax int
	sysWmemMax int
)

func readSysInt(path string) int {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	n, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	return n
}

// tuneConn sets TCP_NODELAY and, where the kernel grants that much, size-byte socket
// buffers (a smaller fixed buffer would switch off Linux's auto-tuning and cost bandwidth).
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
	})
	if sysRmemMax >= size {
		tc.SetReadBuffer(size)
	}
	if sysWmemMax >= size {
		tc.SetWriteBuffer(size)
	}
}
