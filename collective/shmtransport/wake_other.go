//go:build !linux

package shmtransport

import "net"

// Off Linux no shared-memory link is ever made; these keep the portable code compiling.

func listenWake(name string) (*net.UnixListener, error) { return nil, errUnsupported }

func acceptWake(ln *net.UnixListener, nonce [16]byte, peer, self identity) ([2]*net.UnixConn, error) {
	return [2]*net.UnixConn{}, errUnsupported
}

func dialWake(name string, nonce [16]byte, peer, self identity) ([2]*net.UnixConn, error) {
	return [2]*net.UnixConn{}, errUnsupported
}

func closeWake(conns [2]*net.UnixConn) {}
