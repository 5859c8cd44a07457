//go:build !linux

package quictransport

import "net"

// growSocketBuffers asks for size-byte UDP buffers; the kernel may grant less.
func growSocketBuffers(c *net.UDPConn, size int) (rcv, snd int) {
	c.SetReadBuffer(size)
	c.SetWriteBuffer(size)
	return size, size
}
