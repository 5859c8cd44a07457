//go:build race

package shmtransport

import (
	"sync"
	"sync/atomic"
)

// The race detector tracks only Go memory, so the atomics on the mapping, which order a
// writer's bytes before the reader's copy, are invisible to it: when both ends of a link live
// in one process (tests), a chain of events that crosses a link (a rank sends from a buffer,
// the data goes around the ring, the rank then receives into that buffer) looks like a race.
// Under -race each direction also publishes through an atomic on a Go variable shared by the
// two ends in this process, which gives the detector the happens-before edge the mapping
// provides for real.

type raceKey struct {
	nonce [16]byte
	a, b  uint32 // creator and opener rank
	dir   int
}

var (
	raceMu     sync.Mutex
	raceTokens = map[raceKey]*uint64{}
)

func raceToken(mem []byte, dir int) *uint64 {
	var k raceKey
	copy(k.nonce[:], mem[56:72])
	k.a = uint32(mem[28]) | uint32(mem[29])<<8 | uint32(mem[30])<<16 | uint32(mem[31])<<24
	k.b = uint32(mem[32]) | uint32(mem[33])<<8 | uint32(mem[34])<<16 | uint32(mem[35])<<24
	k.dir = dir
	raceMu.Lock()
	defer raceMu.Unlock()
	p := raceTokens[k]
	if p == nil {
		p = new(uint64)
		raceTokens[k] = p
	}
	return p
}

func raceRelease(p *uint64) { atomic.AddUint64(p, 1) }
func raceAcquire(p *uint64) { atomic.LoadUint64(p) }

// raceEnabled reports a -race build.
const raceEnabled = true
