package shmtransport

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"syscall"
	"time"
)

// Wake-up sockets. A sleeping waiter must not pin an OS thread and its P: gorun runs each rank
// with GOMAXPROCS = cores/ranks, often 1, and a goroutine asleep in a futex system call keeps
// the P from the rank's other goroutine (the collective's sender while its receiver waits)
// until the runtime's monitor takes it back, tens of microseconds per sleep. So a waiter
// sleeps in a Read on a Unix socket instead: the goroutine parks in Go's netpoller and the P
// moves on at once. Each link has two connected stream sockets, one per ring direction,
// between the two processes: the producer of a direction writes a byte on it to wake the
// consumer, and the consumer writes one to wake the producer. A socket that ends without the
// peer having closed the link in order means the peer process is gone, which is seen at once
// (the kernel closes a dead process's sockets), in any pid namespace.
//
// The sockets live in Linux's abstract namespace (no file, nothing to clean up after a crash;
// scoped by network namespace, which the two ends share), named after the segment file. The
// name is visible to local users (/proc/net/unix), so it is not the secret: each connection
// proves the segment's nonce, learnt over the authenticated base link, and both ends check
// with SO_PEERCRED that the other is a process of the same user (and, where pids are
// comparable, the very process that took part in the handshake).

const wakeSetupTimeout = 30 * time.Second

func wakeAddr(name string) *net.UnixAddr { return &net.UnixAddr{Name: "@" + name, Net: "unix"} }

func listenWake(name string) (*net.UnixListener, error) {
	ln, err := net.ListenUnix("unix", wakeAddr(name))
	if err != nil {
		return nil, fmt.Errorf("shmtransport: wake-up socket: %w", err)
	}
	return ln, nil
}

// checkCred verifies that the process at the other end of c is of our user and, when peer's
// pid is comparable with ours, that it is peer's process.
func checkCred(c *net.UnixConn, peer, self identity) error {
	raw, err := c.SyscallConn()
	if err != nil {
		return err
	}
	var cred *syscall.Ucred
	var cerr error
	if err := raw.Control(func(fd uintptr) {
		cred, cerr = syscall.GetsockoptUcred(int(fd), syscall.SOL_SOCKET, syscall.SO_PEERCRED)
	}); err != nil {
		return err
	}
	if cerr != nil {
		return fmt.Errorf("shmtransport: wake-up socket credentials: %w", cerr)
	}
	if cred.Uid != uint32(os.Geteuid()) {
		return fmt.Errorf("shmtransport: wake-up socket peer runs as uid %d, not %d", cred.Uid, os.Geteuid())
	}
	if peer.canWatchPID(self) && uint32(cred.Pid) != peer.pid {
		return fmt.Errorf("shmtransport: wake-up socket peer is pid %d, not the peer's pid %d", cred.Pid, peer.pid)
	}
	return nil
}

// acceptWake accepts the opener's two connections on ln, each proving nonce and naming its
// direction.
func acceptWake(ln *net.UnixListener, nonce [16]byte, peer, self identity) (conns [2]*net.UnixConn, err error) {
	defer func() {
		if err != nil {
			closeWake(conns)
		}
	}()
	deadline := time.Now().Add(wakeSetupTimeout)
	ln.SetDeadline(deadline)
	for range 2 {
		c, err := ln.AcceptUnix()
		if err != nil {
			return conns, fmt.Errorf("shmtransport: accepting the wake-up sockets: %w", err)
		}
		c.SetDeadline(deadline)
		var b [17]byte
		_, err = io.ReadFull(c, b[:])
		if err == nil {
			err = checkCred(c, peer, self)
		}
		if err == nil && ([16]byte(b[:16]) != nonce || b[16] > 1 || conns[b[16]] != nil) {
			err = errors.New("shmtransport: a wake-up socket connection did not prove the nonce")
		}
		if err != nil {
			c.Close()
			return conns, err
		}
		c.SetDeadline(time.Time{})
		conns[b[16]] = c
	}
	return conns, nil
}

// dialWake makes the opener's two connections to the creator's listener.
func dialWake(name string, nonce [16]byte, peer, self identity) (conns [2]*net.UnixConn, err error) {
	defer func() {
		if err != nil {
			closeWake(conns)
		}
	}()
	for d := range 2 {
		c, err := net.DialUnix("unix", nil, wakeAddr(name))
		if err != nil {
			return conns, fmt.Errorf("shmtransport: connecting the wake-up socket: %w", err)
		}
		conns[d] = c
		if err := checkCred(c, peer, self); err != nil {
			return conns, err
		}
		var b [17]byte
		copy(b[:], nonce[:])
		b[16] = byte(d)
		c.SetWriteDeadline(time.Now().Add(wakeSetupTimeout))
		if _, err := c.Write(b[:]); err != nil {
			return conns, fmt.Errorf("shmtransport: wake-up socket: %w", err)
		}
		c.SetWriteDeadline(time.Time{})
	}
	return conns, nil
}

func closeWake(conns [2]*net.UnixConn) {
	for _, c := range conns {
		if c != nil {
			c.Close()
		}
	}
}
