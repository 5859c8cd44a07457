//go:build race

package shmtransport

import (
	"sync"
	"sync/atomic"

	"github.com/ringtrain/ringtrain/collective/transport"
)

// What the race detector sees of a shared-memory link, and why it needs help.
//
// The detector tracks only this process's accesses to Go memory. The mapping lies outside
// its arenas, so it sees neither the copies into and out of the ring nor the atomics on the
// ring's control words, and those atomics give it no happens-before edges either (the
// runtime runs atomics outside the arenas with synchronisation ignored). What it does see
// are the callers' buffers: a Write reads the caller's slice, a Read writes into one. A ring
// orders such accesses through other processes: rank r's sender goroutine copies a segment
// of buf into the link to its right neighbour, the data goes around the ring, and rank r's
// receiver goroutine later copies the reduced segment into the same buf from the link on its
// left. The order is real (what the receiver gets depends on what the sender sent), but it
// runs through other processes, so the detector reports a write (Read's copy into buf) after
// a read (Write's copy out of buf) with nothing between them. The same happens within one
// process when both ends of a link live in it (tests), with the edge running through the
// mapping.
//
// The fix is the model Go's own I/O uses for the same blind spot (package syscall's ioSync:
// a write to any file descriptor happens before a later read from any): every Write on a
// shared-memory link, after copying the caller's bytes and before publishing them, merges
// this goroutine's clock into one process-wide variable (an atomic add, which the detector
// treats as a release that merges), and every Read, once it has seen published bytes and
// before copying them out, acquires it (an atomic load). So whatever a rank did before it
// sent data happens, for the detector, before whatever it does with data it receives
// afterwards on any shared-memory link: the order the ring really provides, and within one
// process the order of the two ends of a link. It can hide a real race only between
// accesses that are also separated in time by a send and a later receive, as for pipes and
// sockets. Without -race (race_off.go) these cost nothing.
var raceIO uint64

func raceRelease() { atomic.AddUint64(&raceIO, 1) }
func raceAcquire() { atomic.LoadUint64(&raceIO) }

// raceEnabled reports a -race build.
const raceEnabled = true

// raceBaseLink is, under -race, what a link that stays on the base transport is handed out
// as: the same edges for the base link's bytes, so that a ring mixing shared-memory and base
// hops (a full tmpfs leaves some edges on QUIC; tests force some) is as visible to the
// detector as an all-shm ring. Over TCP Go's syscall package would provide them (ioSync), but
// the QUIC base transport moves its datagrams with sendmsg/recvmsg, which carry none. A
// Write releases once the base link has taken the caller's bytes; a Read receives into a
// private buffer, acquires, and only then copies into the caller's slice, so that the write
// into it comes after the acquire (an extra copy, under -race only).
type raceBaseLink struct {
	transport.Link
	mu  sync.Mutex // Reads on one link do not overlap in practice; this keeps buf safe if they do
	buf []byte
}

func wrapBaseForRace(l transport.Link) transport.Link { return &raceBaseLink{Link: l} }

func (l *raceBaseLink) Write(p []byte) (int, error) {
	n, err := l.Link.Write(p)
	raceRelease()
	return n, err
}

func (l *raceBaseLink) Read(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.buf) < min(len(p), 1<<20) {
		l.buf = make([]byte, min(len(p), 1<<20))
	}
	n, err := l.Link.Read(l.buf[:min(len(p), len(l.buf))])
	raceAcquire()
	copy(p, l.buf[:n])
	return n, err
}
