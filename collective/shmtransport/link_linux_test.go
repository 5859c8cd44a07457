package shmtransport

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ringtrain/ringtrain/collective/transport"
)

func randBytes(seed uint64, n int) []byte {
	rng := rand.New(rand.NewPCG(seed, 7))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(rng.Uint32())
	}
	return b
}

// stream writes data to w in pieces of random size (some larger than the ring) and reads it
// back from r in pieces of other random sizes, concurrently; it returns what was read.
func stream(t *testing.T, w, r transport.Link, data []byte, seed uint64) []byte {
	t.Helper()
	errc := make(chan error, 1)
	go func() {
		rng := rand.New(rand.NewPCG(seed, 1))
		for off := 0; off < len(data); {
			n := min(len(data)-off, 1+int(rng.Uint32()%(3<<16)))
			if _, err := w.Write(data[off : off+n]); err != nil {
				errc <- err
				return
			}
			off += n
		}
		errc <- nil
	}()
	rng := rand.New(rand.NewPCG(seed, 2))
	got := make([]byte, 0, len(data))
	buf := make([]byte, 1<<18)
	for len(got) < len(data) {
		n := 1 + int(rng.Uint32()%uint32(len(buf)))
		n = min(n, len(data)-len(got))
		k, err := r.Read(buf[:n])
		if err != nil {
			t.Fatalf("read after %d of %d bytes: %v", len(got), len(data), err)
		}
		got = append(got, buf[:k]...)
	}
	if err := <-errc; err != nil {
		t.Fatalf("write: %v", err)
	}
	return got
}

// TestStreamBothDirections sends random streams of many sizes, including ones much larger
// than the 64 KiB ring, in both directions at once, for every wait strategy.
func TestStreamBothDirections(t *testing.T) {
	for _, c := range []struct {
		wait          Wait
		futex         bool
		ring, publish int
	}{
		{WaitSpinThenBlock, false, 1 << 16, 1 << 12}, {WaitBlock, false, 1 << 16, 1 << 12}, {WaitSpin, false, 1 << 16, 1 << 12},
		{WaitBlock, false, 1 << 12, 1000}, {WaitSpinThenBlock, false, 1 << 12, 1 << 16},
		{WaitBlock, true, 1 << 16, 1 << 12}, {WaitBlock, true, 1 << 12, 1000},
	} {
		wait := c.wait
		t.Run(fmt.Sprintf("%s/futex=%v/ring=%d/publish=%d", wait, c.futex, c.ring, c.publish), func(t *testing.T) {
			ts, _ := wrapAll(t, 2, 0, func(int) Options {
				return Options{Mode: ModeShm, RingBytes: c.ring, PublishBytes: c.publish, Wait: wait, SleepOnFutex: c.futex}
			})
			a, b := linkPair(t, ts, 0, 1, "data")
			if _, ok := a.(*shmLink); !ok {
				t.Fatalf("link is %T, want a shared-memory link", a)
			}
			if a.Peer() != 1 || b.Peer() != 0 {
				t.Fatalf("Peer() = %d, %d; want 1, 0", a.Peer(), b.Peer())
			}
			for i, size := range []int{1, 7, 4095, 4096, 65535, 65536, 65537, 1 << 20, 3<<20 + 17} {
				x, y := randBytes(uint64(i), size), randBytes(uint64(i+100), size)
				var wg sync.WaitGroup
				var gotY []byte
				wg.Add(1)
				go func() {
					defer wg.Done()
					gotY = stream(t, b, a, y, uint64(i)+50)
				}()
				gotX := stream(t, a, b, x, uint64(i))
				wg.Wait()
				if !bytes.Equal(gotX, x) || !bytes.Equal(gotY, y) {
					t.Fatalf("size %d: bytes differ (0->1 ok=%v, 1->0 ok=%v)", size, bytes.Equal(gotX, x), bytes.Equal(gotY, y))
				}
			}
		})
	}
}

// TestFileGoneAfterSetup checks that no file is left once both ends hold the link, and
// that the link still works (the mapping outlives the name).
func TestFileGoneAfterSetup(t *testing.T) {
	ts, _ := wrapAll(t, 2, 0, func(int) Options { return Options{Mode: ModeShm, RingBytes: 1 << 16} })
	a, b := linkPair(t, ts, 0, 1, "x")
	if names := dirEntries(t, ts[0].opts.Dir); len(names) != 0 {
		t.Fatalf("files left after setup: %v", names)
	}
	if _, err := a.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 5)
	if _, err := io.ReadFull(b, buf); err != nil || string(buf) != "hello" {
		t.Fatalf("read %q, %v", buf, err)
	}
	if k := ts[0].Kind(1); k != "shm" {
		t.Fatalf("Kind(1) = %q, want shm", k)
	}
}

// TestCreateSegmentMode checks the file's mode and name, and that a peer maps it only with
// the right nonce and ranks.
func TestCreateSegmentMode(t *testing.T) {
	dir := shmDir(t)
	old := syscall.Umask(0) // the mode must not depend on a permissive umask
	defer syscall.Umask(old)
	h := header{ringBytes: 1 << 12, creatorPID: uint32(os.Getpid()), creatorRank: 3, openerRank: 5}
	h.nonce[0] = 42
	seg, err := createSegment(dir, "my job/1", &h)
	if err != nil {
		t.Fatal(err)
	}
	defer seg.unmap()
	defer seg.unlink()
	st, err := os.Stat(seg.path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v, want 0600", st.Mode().Perm())
	}
	name := filepath.Base(seg.path)
	if pid, ok := parseShmName(name); !ok || pid != uint32(os.Getpid()) {
		t.Fatalf("name %q: pid %d ok %v", name, pid, ok)
	}
	if _, err := openSegment(dir, name, h.ringBytes, [16]byte{}, 3, 5); err == nil || !errors.Is(err, errHeader) {
		t.Fatalf("wrong nonce accepted: %v", err)
	}
	if _, err := openSegment(dir, name, h.ringBytes, h.nonce, 3, 4); err == nil {
		t.Fatal("wrong opener rank accepted")
	}
	if _, err := openSegment(dir, name, h.ringBytes*2, h.nonce, 3, 5); err == nil {
		t.Fatal("wrong size accepted")
	}
	if _, err := openSegment(dir, "../etc/passwd", h.ringBytes, h.nonce, 3, 5); err == nil {
		t.Fatal("path outside the directory accepted")
	}
	s2, err := openSegment(dir, name, h.ringBytes, h.nonce, 3, 5)
	if err != nil {
		t.Fatal(err)
	}
	s2.unmap()
	if err := os.Chmod(seg.path, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := openSegment(dir, name, h.ringBytes, h.nonce, 3, 5); err == nil {
		t.Fatal("file with mode 0644 accepted")
	}
}

// TestDeadlines: a Read on an empty ring and a Write on a full one return
// os.ErrDeadlineExceeded; moving the deadline while blocked takes effect; clearing it makes
// the link usable again.
func TestDeadlines(t *testing.T) {
	for _, c := range []struct {
		wait  Wait
		futex bool
	}{{WaitSpinThenBlock, false}, {WaitBlock, false}, {WaitSpin, false}, {WaitBlock, true}} {
		wait := c.wait
		t.Run(fmt.Sprintf("%s/futex=%v", wait, c.futex), func(t *testing.T) {
			ts, _ := wrapAll(t, 2, 0, func(int) Options {
				return Options{Mode: ModeShm, RingBytes: 1 << 12, Wait: wait, SleepOnFutex: c.futex}
			})
			a, b := linkPair(t, ts, 0, 1, "x")
			a.SetDeadline(time.Now().Add(50 * time.Millisecond))
			start := time.Now()
			if _, err := a.Read(make([]byte, 10)); !errors.Is(err, os.ErrDeadlineExceeded) {
				t.Fatalf("Read: %v, want deadline exceeded", err)
			}
			if d := time.Since(start); d < 40*time.Millisecond || d > 5*time.Second {
				t.Fatalf("Read returned after %v", d)
			}
			// A far deadline moved into the past while the Read is blocked.
			a.SetDeadline(time.Now().Add(time.Hour))
			errc := make(chan error, 1)
			go func() { _, err := a.Read(make([]byte, 10)); errc <- err }()
			time.Sleep(20 * time.Millisecond)
			a.SetDeadline(time.Now())
			select {
			case err := <-errc:
				if !errors.Is(err, os.ErrDeadlineExceeded) {
					t.Fatalf("Read: %v", err)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("moving the deadline did not wake the Read")
			}
			// Write more than the ring holds while nobody reads.
			b.SetDeadline(time.Now().Add(50 * time.Millisecond))
			n, err := b.Write(make([]byte, 3<<12))
			if !errors.Is(err, os.ErrDeadlineExceeded) || n != 1<<12 {
				t.Fatalf("Write: n=%d err=%v, want %d and deadline exceeded", n, err, 1<<12)
			}
			a.SetDeadline(time.Time{})
			b.SetDeadline(time.Time{})
			got := make([]byte, 1<<12)
			if _, err := io.ReadFull(a, got); err != nil {
				t.Fatalf("reading after clearing the deadline: %v", err)
			}
		})
	}
}

// TestCloseWakesReader: a local Close wakes a blocked Read with ErrClosed; the peer reads the
// bytes written before the close, then io.EOF, and its Writes fail naming the closer.
func TestCloseWakesReader(t *testing.T) {
	ts, _ := wrapAll(t, 2, 0, func(int) Options { return Options{Mode: ModeShm, RingBytes: 1 << 12} })
	a, b := linkPair(t, ts, 0, 1, "x")
	errc := make(chan error, 1)
	go func() { _, err := a.Read(make([]byte, 10)); errc <- err }()
	time.Sleep(20 * time.Millisecond)
	if _, err := a.Write([]byte("last words")); err != nil {
		t.Fatal(err)
	}
	if err := a.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	select {
	case err := <-errc:
		if !errors.Is(err, transport.ErrClosed) {
			t.Fatalf("blocked Read after Close: %v, want ErrClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not wake the blocked Read")
	}
	got, err := io.ReadAll(b)
	if err != nil || string(got) != "last words" {
		t.Fatalf("peer read %q, %v; want the bytes then EOF", got, err)
	}
	_, err = b.Write([]byte("x"))
	var pe *transport.PeerError
	if !errors.As(err, &pe) || pe.Rank != 0 || !errors.Is(err, ErrPeerClosed) {
		t.Fatalf("Write to a closed peer: %v", err)
	}
	if _, err := a.Write([]byte("x")); !errors.Is(err, transport.ErrClosed) {
		t.Fatalf("Write after Close: %v", err)
	}
}

// TestPeerKilledBase: when the base transport loses the peer (memtransport.Kill simulates a
// crash), a blocked Read and Write fail with a PeerError naming it.
func TestPeerKilledBase(t *testing.T) {
	ts, base := wrapAll(t, 2, 0, func(int) Options { return Options{Mode: ModeShm, RingBytes: 1 << 12} })
	a, _ := linkPair(t, ts, 0, 1, "x")
	errc := make(chan error, 2)
	go func() { _, err := a.Read(make([]byte, 10)); errc <- err }()
	go func() { _, err := a.Write(make([]byte, 1<<14)); errc <- err }()
	time.Sleep(20 * time.Millisecond)
	base[1].Kill()
	for range 2 {
		select {
		case err := <-errc:
			var pe *transport.PeerError
			if !errors.As(err, &pe) || pe.Rank != 1 {
				t.Fatalf("after the peer died: %v, want a PeerError naming rank 1", err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("a blocked call did not notice the dead peer")
		}
	}
}

// TestAbort: Abort on one rank fails the other ranks' blocked Reads with a PeerError naming
// the aborting rank, or the culprit its cause names (not the messenger).
func TestAbort(t *testing.T) {
	for _, c := range []struct {
		name  string
		cause error
		blame int
	}{
		{"plain", errors.New("test abort"), 0},
		{"culprit", &transport.PeerError{Rank: 2, Err: errors.New("rank 2 misbehaved")}, 2},
	} {
		t.Run(c.name, func(t *testing.T) {
			ts, _ := wrapAll(t, 3, 0, func(int) Options { return Options{Mode: ModeShm, RingBytes: 1 << 12} })
			_, b := linkPair(t, ts, 0, 1, "x")
			if _, ok := b.(*shmLink); !ok {
				t.Fatalf("link %T", b)
			}
			errc := make(chan error, 1)
			go func() { _, err := b.Read(make([]byte, 10)); errc <- err }()
			time.Sleep(20 * time.Millisecond)
			ts[0].Abort(c.cause)
			select {
			case err := <-errc:
				var pe *transport.PeerError
				if !errors.As(err, &pe) || pe.Rank != c.blame {
					t.Fatalf("after the abort: %v, want a PeerError naming rank %d", err, c.blame)
				}
				// The reason travels on the base transport; the link waits for it rather
				// than report a bare "peer aborted".
				if want := c.cause.Error(); !strings.Contains(err.Error(), strings.TrimPrefix(want, "rank 2: ")) {
					t.Fatalf("after the abort: %v, want the reason %q", err, want)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("Abort did not reach the peer")
			}
		})
	}
}

// TestTransportCloseMidRead: a rank that closes its whole transport while a peer still
// reads from it is a rank that left (a PeerError wrapping transport.ErrPeerClosed, as over
// QUIC), not the orderly end of one link (io.EOF), which TestCloseWakesReader covers.
func TestTransportCloseMidRead(t *testing.T) {
	ts, _ := wrapAll(t, 2, 0, func(int) Options { return Options{Mode: ModeShm, RingBytes: 1 << 12} })
	a, b := linkPair(t, ts, 0, 1, "x")
	if _, err := a.Write([]byte("sent before")); err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	go func() {
		got := make([]byte, 11)
		if _, err := io.ReadFull(b, got); err != nil || string(got) != "sent before" {
			errc <- fmt.Errorf("first read %q, %v", got, err)
			return
		}
		_, err := b.Read(make([]byte, 1))
		errc <- err
	}()
	time.Sleep(20 * time.Millisecond)
	ts[0].Close()
	select {
	case err := <-errc:
		var pe *transport.PeerError
		if !errors.As(err, &pe) || pe.Rank != 0 || !errors.Is(err, transport.ErrPeerClosed) {
			t.Fatalf("Read after the peer closed its transport: %v, want a PeerError naming rank 0 wrapping ErrPeerClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the peer's Close did not reach the reader")
	}
}

// TestAbortWordBlamesCulprit checks the mapping's own path (without the base transport's
// notice): the abort word names the culprit.
func TestAbortWordBlamesCulprit(t *testing.T) {
	ts, _ := wrapAll(t, 2, 0, func(int) Options { return Options{Mode: ModeShm, RingBytes: 1 << 12} })
	a, b := linkPair(t, ts, 0, 1, "x")
	a.(*shmLink).abort(&transport.PeerError{Rank: 7, Err: errors.New("x")}, 0)
	_, err := b.Read(make([]byte, 1))
	var pe *transport.PeerError
	if !errors.As(err, &pe) || pe.Rank != 7 || !errors.Is(err, ErrPeerAborted) || !strings.Contains(err.Error(), "reported by rank 0") {
		t.Fatalf("%v", err)
	}
}

// TestPeerSocketsGone: a sleeping reader learns at once that its peer is gone when the
// peer's wake-up sockets close without the link having been closed in order (what the kernel
// does to a killed process's sockets); here the peer's sockets are closed by hand.
func TestPeerSocketsGone(t *testing.T) {
	ts, _ := wrapAll(t, 2, 0, func(int) Options { return Options{Mode: ModeShm, RingBytes: 1 << 12, LivenessInterval: time.Hour} })
	a, b := linkPair(t, ts, 0, 1, "x")
	errc := make(chan error, 1)
	go func() { _, err := a.Read(make([]byte, 10)); errc <- err }()
	time.Sleep(20 * time.Millisecond)
	bl := b.(*shmLink)
	bl.txConn.Close()
	bl.rxConn.Close()
	select {
	case err := <-errc:
		var pe *transport.PeerError
		if !errors.As(err, &pe) || pe.Rank != 1 || !errors.Is(err, ErrPeerExited) {
			t.Fatalf("Read: %v, want a PeerError naming rank 1 with ErrPeerExited", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the closed sockets went unnoticed")
	}
}

// TestPeerProcessExit: a link sleeping on futexes notices its peer's process exiting by
// polling it, without any help from the base transport or sockets: here the "peer" identity
// is a child process that exits.
func TestPeerProcessExit(t *testing.T) {
	ts, _ := wrapAll(t, 2, 0, func(int) Options {
		return Options{Mode: ModeShm, RingBytes: 1 << 12, LivenessInterval: 20 * time.Millisecond, SleepOnFutex: true}
	})
	a, _ := linkPair(t, ts, 0, 1, "x")
	l := a.(*shmLink)
	cmd := exec.Command("sleep", "60")
	if err := cmd.Start(); err != nil {
		t.Skip(err)
	}
	start, _, err := procStat(cmd.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	l.peerID.pid, l.peerID.start = uint32(cmd.Process.Pid), start
	errc := make(chan error, 1)
	go func() { _, err := l.Read(make([]byte, 10)); errc <- err }()
	time.Sleep(50 * time.Millisecond)
	select {
	case err := <-errc:
		t.Fatalf("Read returned while the peer lives: %v", err)
	default:
	}
	cmd.Process.Kill() // a zombie until reaped: must count as dead already
	select {
	case err := <-errc:
		var pe *transport.PeerError
		if !errors.As(err, &pe) || pe.Rank != 1 || !errors.Is(err, ErrPeerExited) {
			t.Fatalf("Read: %v, want a PeerError naming rank 1 with ErrPeerExited", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the dead peer process went unnoticed")
	}
	cmd.Wait()
}

// TestZeroAllocs: a steady-state Write and Read of a chunk allocate nothing, also when both
// sides sleep and wake each other (every wait strategy and sleeper).
func TestZeroAllocs(t *testing.T) {
	for _, c := range []struct {
		wait  Wait
		futex bool
	}{{WaitSpinThenBlock, false}, {WaitBlock, false}, {WaitBlock, true}} {
		t.Run(fmt.Sprintf("%s/futex=%v", c.wait, c.futex), func(t *testing.T) {
			ts, _ := wrapAll(t, 2, 0, func(int) Options {
				return Options{Mode: ModeShm, RingBytes: 1 << 16, Wait: c.wait, SleepOnFutex: c.futex}
			})
			a, b := linkPair(t, ts, 0, 1, "x")
			a.SetDeadline(time.Now().Add(time.Hour))
			go func() { // echo: sleeps on each message, wakes the sender with the reply
				buf := make([]byte, 100<<10)
				for {
					if _, err := io.ReadFull(b, buf); err != nil {
						return
					}
					if _, err := b.Write(buf); err != nil {
						return
					}
				}
			}()
			msg, back := make([]byte, 100<<10), make([]byte, 100<<10)
			allocs := testing.AllocsPerRun(50, func() {
				if _, err := a.Write(msg); err != nil {
					t.Fatal(err)
				}
				if _, err := io.ReadFull(a, back); err != nil {
					t.Fatal(err)
				}
			})
			if allocs != 0 {
				t.Fatalf("%v allocations per round trip, want 0", allocs)
			}
		})
	}
}

// TestZeroAllocsStream: the same through the links exactly as Link hands them out (the lazy
// wrapper around the set-up link), with a deadline set.
func TestZeroAllocsStream(t *testing.T) {
	ts, _ := wrapAll(t, 2, 0, func(int) Options { return Options{Mode: ModeShm, RingBytes: 1 << 20} })
	linkPair(t, ts, 0, 1, "x") // settle the setup
	a, err := ts[0].Link(t.Context(), 1, "x")
	if err != nil {
		t.Fatal(err)
	}
	b, err := ts[1].Link(t.Context(), 0, "x")
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := a.(*transport.Lazy); !ok {
		t.Fatalf("Link returned %T", a)
	}
	a.SetDeadline(time.Now().Add(time.Hour))
	buf := make([]byte, 256<<10)
	out := make([]byte, 256<<10)
	allocs := testing.AllocsPerRun(50, func() {
		if _, err := a.Write(buf); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(b, out); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per chunk, want 0", allocs)
	}
}

// TestCorruptPositions: a head beyond what the ring can hold (a broken or hostile peer) is
// reported as ErrCorrupt, not read out of bounds.
func TestCorruptPositions(t *testing.T) {
	ts, _ := wrapAll(t, 2, 0, func(int) Options { return Options{Mode: ModeShm, RingBytes: 1 << 12} })
	a, _ := linkPair(t, ts, 0, 1, "x")
	l := a.(*shmLink)
	*l.rx.head = 1 << 40
	if _, err := l.Read(make([]byte, 10)); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Read: %v, want ErrCorrupt", err)
	}
}

// TestNoLostWakeups runs ping-pong exchanges and streams with sleeping waiters whose only
// timed fallback (the liveness poll) is an hour away: a lost wake-up hangs the test, which
// then fails on its deadline instead of passing slowly.
func TestNoLostWakeups(t *testing.T) {
	for _, c := range []struct {
		wait  Wait
		futex bool
	}{{WaitBlock, false}, {WaitSpinThenBlock, false}, {WaitBlock, true}, {WaitSpinThenBlock, true}} {
		wait := c.wait
		t.Run(fmt.Sprintf("%s/futex=%v", wait, c.futex), func(t *testing.T) {
			ts, _ := wrapAll(t, 2, 0, func(int) Options {
				return Options{Mode: ModeShm, RingBytes: 1 << 12, PublishBytes: 1000, Wait: wait,
					SpinTime: time.Microsecond, LivenessInterval: time.Hour, SleepOnFutex: c.futex}
			})
			a, b := linkPair(t, ts, 0, 1, "x")
			done := make(chan error, 1)
			go func() {
				buf := make([]byte, 1<<16)
				for i := 1; i <= 2000; i++ {
					n := 1 + i*37%5000 // sizes around and above the ring
					if _, err := io.ReadFull(b, buf[:n]); err != nil {
						done <- err
						return
					}
					if buf[0] != byte(i) || buf[n-1] != byte(i) {
						done <- errors.New("wrong bytes")
						return
					}
					if _, err := b.Write(buf[:1+i%3]); err != nil {
						done <- err
						return
					}
				}
				done <- nil
			}()
			buf := make([]byte, 1<<16)
			// The reader asks for more than each message holds: it must be woken by the
			// end of the Write, not by the amount it asked for.
			big := make([]byte, 1<<16)
			for i := 1; i <= 2000; i++ {
				n := 1 + i*37%5000
				for j := range n {
					buf[j] = byte(i)
				}
				if _, err := a.Write(buf[:n]); err != nil {
					t.Fatal(err)
				}
				if _, err := io.ReadFull(a, big[:1+i%3]); err != nil {
					t.Fatal(err)
				}
			}
			select {
			case err := <-done:
				if err != nil {
					t.Fatal(err)
				}
			case <-time.After(30 * time.Second):
				t.Fatal("exchange stalled: a wake-up was lost")
			}
		})
	}
}
