package shmtransport

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/ringtrain/ringtrain/collective/transport"
)

// This file exports internals to the external test package (shmtransport_test), which can
// import package collective without an import cycle.

// RegisterChild adds a role a re-executed test binary can play (see TestMain).
func RegisterChild(role string, f func() error) { children[role] = f }

// EnvChild is the variable that selects a child role.
const EnvChild = envChild

// CreateRingSegments makes the segments of a static n-rank ring in dir: edge i joins rank i
// (creator) and rank i+1 (opener); a 2-rank ring has a single edge. It returns their names.
func CreateRingSegments(dir string, n, ringBytes int) ([]string, error) {
	edges := n
	if n == 2 {
		edges = 1
	}
	var names []string
	for i := range edges {
		h := header{ringBytes: uint64(ringBytes), creatorPID: uint32(os.Getpid()), creatorRank: uint32(i), openerRank: uint32((i + 1) % n)}
		seg, err := createSegment(dir, "bench", &h)
		if err != nil {
			return nil, err
		}
		names = append(names, filepath.Base(seg.path))
		seg.unmap() // the children map it; the parent removes the files when they are done
	}
	return names, nil
}

// StaticRing is a transport.Transport over segments made by CreateRingSegments, without a
// base transport: it lets benchmarks run the real collectives over shared memory between
// processes with nothing else in the way. Links to the ring neighbours only.
type StaticRing struct {
	rank, n int
	links   map[int]*shmLink
	once    sync.Once
	done    chan struct{}
	mu      sync.Mutex
	err     error
}

// OpenStaticRing maps rank's two edges of the ring named by names.
func OpenStaticRing(dir string, names []string, rank, n, ringBytes int, wait Wait) (*StaticRing, error) {
	o, err := Options{Wait: wait, RingBytes: ringBytes}.withDefaults()
	if err != nil {
		return nil, err
	}
	cfg := linkConfig{wait: o.Wait, spin: o.SpinTime, poll: o.LivenessInterval, publish: uint64(o.PublishBytes)}
	// Knobs for exploring the parameters from the benchmark's environment.
	if v, err := strconv.Atoi(os.Getenv("AR_PUBLISH")); err == nil && v > 0 {
		cfg.publish = uint64(v)
	}
	if v, err := strconv.Atoi(os.Getenv("AR_SPIN_US")); err == nil && v >= 0 {
		cfg.spin = time.Duration(v) * time.Microsecond
	}
	var nonce [16]byte
	s := &StaticRing{rank: rank, n: n, links: map[int]*shmLink{}, done: make(chan struct{})}
	right, left := (rank+1)%n, (rank+n-1)%n
	edge := func(i int) string { return names[min(i, len(names)-1)] }
	// The edge to the right: this rank created it (edge index rank).
	if rank < len(names) {
		seg, err := openSegment(dir, edge(rank), uint64(ringBytes), nonce, rank, right)
		if err != nil {
			return nil, err
		}
		s.links[right] = newShmLink(seg, true, right, uint64(ringBytes), identity{}, identity{}, cfg, nil)
	}
	if _, ok := s.links[left]; !ok {
		seg, err := openSegment(dir, edge(left), uint64(ringBytes), nonce, left, rank)
		if err != nil {
			return nil, err
		}
		s.links[left] = newShmLink(seg, false, left, uint64(ringBytes), identity{}, identity{}, cfg, nil)
	}
	return s, nil
}

func (s *StaticRing) Rank() int { return s.rank }
func (s *StaticRing) Size() int { return s.n }
func (s *StaticRing) Link(ctx context.Context, peer int, channel string) (transport.Link, error) {
	if l, ok := s.links[peer]; ok {
		return l, nil
	}
	return nil, fmt.Errorf("static ring: no link from %d to %d", s.rank, peer)
}
func (s *StaticRing) Abort(cause error) {
	for _, l := range s.links {
		l.abort(cause, s.rank)
	}
	s.finish(cause)
}
func (s *StaticRing) Done() <-chan struct{} { return s.done }
func (s *StaticRing) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}
func (s *StaticRing) finish(err error) {
	s.once.Do(func() {
		s.mu.Lock()
		s.err = err
		s.mu.Unlock()
		close(s.done)
	})
}
func (s *StaticRing) Close() error {
	for _, l := range s.links {
		l.Close()
	}
	s.finish(transport.ErrClosed)
	return nil
}

// RaceEnabled reports a -race build.
const RaceEnabled = raceEnabled
