package shmtransport

import (
	"bytes"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"runtime"
	"runtime/pprof"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ringtrain/ringtrain/collective/transport"
)

// TestWakeStress streams many short messages of random sizes both ways at once through small
// rings, for the wait modes that sleep, at several GOMAXPROCS. The liveness poll (the only
// timed fallback of a futex sleeper) is an hour away and spinning is short, so every sleep
// must be ended by a wake-up; a lost one stalls a direction, and the watchdog then fails the
// test with the ring's control words and every goroutine's stack instead of hanging.
// SHM_STRESS_ROUNDS scales it (default 3 rounds per case, 8 under -race, where the lost
// wake-up it was written for showed: the old code stalled in 1 of 4 runs of 3 rounds and 2 of
// 3 runs of 10).
func TestWakeStress(t *testing.T) {
	rounds := 3
	if raceEnabled {
		rounds = 8
	}
	if s := os.Getenv("SHM_STRESS_ROUNDS"); s != "" {
		rounds, _ = strconv.Atoi(s)
	}
	if testing.Short() {
		rounds = 1
	}
	type tc struct {
		wait          Wait
		futex         bool
		ring, publish int
		spin          time.Duration
	}
	var cases []tc
	for _, w := range []Wait{WaitSpinThenBlock, WaitBlock} {
		for _, futex := range []bool{false, true} {
			cases = append(cases,
				tc{w, futex, 1 << 12, 1000, time.Microsecond},
				tc{w, futex, 1 << 12, 1 << 16, 5 * time.Microsecond},
				tc{w, futex, 1 << 13, 512, 50 * time.Microsecond})
		}
	}
	for _, procs := range []int{1, 2, 4} {
		for _, c := range cases {
			name := fmt.Sprintf("procs=%d/%s/futex=%v/ring=%d/publish=%d/spin=%v", procs, c.wait, c.futex, c.ring, c.publish, c.spin)
			t.Run(name, func(t *testing.T) {
				defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(procs))
				ts, _ := wrapAll(t, 2, 0, func(int) Options {
					return Options{Mode: ModeShm, RingBytes: c.ring, PublishBytes: c.publish, Wait: c.wait,
						SpinTime: c.spin, LivenessInterval: time.Hour, SleepOnFutex: c.futex}
				})
				a, b := linkPair(t, ts, 0, 1, "stress")
				for round := range rounds {
					stressRound(t, a.(*shmLink), b.(*shmLink), uint64(round)+uint64(procs)<<8, 300)
				}
			})
		}
	}
}

// stressRound runs msgs messages each way at once: every side writes messages of random size
// (up to 3× the ring) and reads the other side's with reads of other random sizes, and the
// two directions run in separate goroutines. A watchdog fails the test when no byte has moved
// for 20 s.
func stressRound(t *testing.T, a, b *shmLink, seed uint64, msgs int) {
	t.Helper()
	var progress atomic.Int64
	errs := make(chan error, 4)
	var wg sync.WaitGroup
	dir := func(w, r *shmLink, seed uint64) {
		maxMsg := int(3 * w.tx.size)
		data := randBytes(seed, maxMsg)
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(seed, 1))
			for range msgs {
				n := 1 + rng.IntN(maxMsg)
				if rng.IntN(4) == 0 {
					n = 1 + rng.IntN(16) // small ones: the reader asks for more than comes
				}
				if _, err := w.Write(data[:n]); err != nil {
					errs <- fmt.Errorf("write: %w", err)
					return
				}
				progress.Add(1)
			}
			errs <- nil
		})
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(seed, 1)) // the writer's sizes, to check the bytes
			rr := rand.New(rand.NewPCG(seed, 2))
			got := make([]byte, maxMsg)
			for range msgs {
				n := 1 + rng.IntN(maxMsg)
				if rng.IntN(4) == 0 {
					n = 1 + rng.IntN(16)
				}
				for off := 0; off < n; {
					k := min(n-off, 1+rr.IntN(int(w.tx.size)))
					m, err := io.ReadFull(r, got[off:off+k])
					if err != nil {
						errs <- fmt.Errorf("read: %w", err)
						return
					}
					off += m
					progress.Add(1)
				}
				if !bytes.Equal(got[:n], data[:n]) {
					errs <- fmt.Errorf("bytes differ in a message of %d", n)
					return
				}
			}
			errs <- nil
		})
	}
	dir(a, b, seed)
	dir(b, a, seed+1000)
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	last, lastChange := progress.Load(), time.Now()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-done:
			close(errs)
			for err := range errs {
				if err != nil {
					t.Fatal(err)
				}
			}
			return
		case <-tick.C:
			if p := progress.Load(); p != last {
				last, lastChange = p, time.Now()
			} else if time.Since(lastChange) > 20*time.Second {
				var stacks bytes.Buffer
				pprof.Lookup("goroutine").WriteTo(&stacks, 2)
				t.Fatalf("no progress for 20 s (a lost wake-up)\na->b: %s\nb->a: %s\n%s", ringState(&a.tx, a.head, b.tail), ringState(&b.tx, b.head, a.tail), stacks.String())
			}
		}
	}
}

// ringState describes one direction's control words for a stall report.
func ringState(d *dirView, head, tail uint64) string {
	return fmt.Sprintf("head=%d (writer's %d) tail=%d (reader's %d) busy=%d readerWaiting=%d readerWant=%d writerWaiting=%d writerWant=%d dataSeq=%d spaceSeq=%d",
		atomic.LoadUint64(d.head), head, atomic.LoadUint64(d.tail), tail, atomic.LoadUint32(d.writerBusy),
		atomic.LoadUint32(d.readerWaiting), atomic.LoadUint64(d.readerWant), atomic.LoadUint32(d.writerWaiting),
		atomic.LoadUint64(d.writerWant), atomic.LoadUint32(d.dataSeq), atomic.LoadUint32(d.spaceSeq))
}

var _ transport.Link = (*shmLink)(nil)
