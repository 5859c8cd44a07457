package memtransport

import (
	"bytes"
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"os"
	"testing"
	"time"

	"github.com/ringtrain/ringtrain/collective/transport"
)

func mustLink(t *testing.T, tr *Transport, peer int, ch string) transport.Link {
	t.Helper()
	l, err := tr.Link(context.Background(), peer, ch)
	if err != nil {
		t.Fatalf("Link(%d, %q): %v", peer, ch, err)
	}
	return l
}

// TestStreamIntegrity sends a large random stream through a tiny window in both directions at
// once and checks every byte arrives in order.
func TestStreamIntegrity(t *testing.T) {
	ts := NewWithOptions(2, Options{Window: 97})
	a, b := mustLink(t, ts[0], 1, "x"), mustLink(t, ts[1], 0, "x")
	if a.Peer() != 1 || b.Peer() != 0 {
		t.Fatalf("Peer() = %d, %d; want 1, 0", a.Peer(), b.Peer())
	}
	rng := rand.New(rand.NewPCG(1, 2))
	data := make([]byte, 1<<18)
	for i := range data {
		data[i] = byte(rng.Uint32())
	}
	errc := make(chan error, 2)
	for i, l := range []transport.Link{a, b} {
		go func() {
			rng := rand.New(rand.NewPCG(uint64(i), 3))
			// Writes of irregular sizes.
			for off := 0; off < len(data); {
				n := min(len(data)-off, 1+int(rng.Uint32()%5000))
				if _, err := l.Write(data[off : off+n]); err != nil {
					errc <- err
					return
				}
				off += n
			}
			errc <- nil
		}()
	}
	for _, l := range []transport.Link{a, b} {
		got := make([]byte, len(data))
		if _, err := io.ReadFull(l, got); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, data) {
			t.Fatal("stream corrupted")
		}
	}
	for range 2 {
		if err := <-errc; err != nil {
			t.Fatal(err)
		}
	}
}

// TestBoundedWindow checks that a Write larger than the window blocks until the peer reads.
func TestBoundedWindow(t *testing.T) {
	ts := NewWithOptions(2, Options{Window: 1024})
	a, b := mustLink(t, ts[0], 1, "x"), mustLink(t, ts[1], 0, "x")
	a.SetDeadline(time.Now().Add(50 * time.Millisecond))
	n, err := a.Write(make([]byte, 4096))
	if !errors.Is(err, os.ErrDeadlineExceeded) || n != 1024 {
		t.Fatalf("Write beyond window: n=%d err=%v; want 1024 bytes then a deadline error", n, err)
	}
	a.SetDeadline(time.Time{})
	done := make(chan error, 1)
	go func() { _, err := a.Write(make([]byte, 3072)); done <- err }()
	if _, err := io.ReadFull(b, make([]byte, 4096)); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// TestDeadlineWhileBlocked sets a deadline after Read has blocked.
func TestDeadlineWhileBlocked(t *testing.T) {
	ts := New(2)
	a := mustLink(t, ts[0], 1, "x")
	done := make(chan error, 1)
	go func() { _, err := a.Read(make([]byte, 1)); done <- err }()
	time.Sleep(10 * time.Millisecond)
	a.SetDeadline(time.Now().Add(10 * time.Millisecond))
	select {
	case err := <-done:
		if !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("Read: %v; want deadline exceeded", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("deadline set while blocked did not wake Read")
	}
}

func TestKillNamesPeer(t *testing.T) {
	ts := New(3)
	a := mustLink(t, ts[0], 1, "x")
	c := mustLink(t, ts[2], 1, "y")
	done := make(chan error, 2)
	go func() { _, err := a.Read(make([]byte, 1)); done <- err }()
	go func() { _, err := c.Write(make([]byte, 1<<20)); done <- err }()
	time.Sleep(10 * time.Millisecond)
	ts[1].Kill()
	for range 2 {
		select {
		case err := <-done:
			var pe *transport.PeerError
			if !errors.As(err, &pe) || pe.Rank != 1 || !errors.Is(err, ErrPeerLost) {
				t.Fatalf("after Kill: %v; want PeerError naming rank 1", err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("Kill did not wake a blocked peer")
		}
	}
	// A link made after the kill fails at once too.
	l := mustLink(t, ts[0], 1, "later")
	if _, err := l.Read(make([]byte, 1)); !errors.Is(err, ErrPeerLost) {
		t.Fatalf("link made after Kill: %v", err)
	}
	if !errors.Is(ts[1].Err(), ErrKilled) {
		t.Fatalf("killed rank's Err = %v", ts[1].Err())
	}
	if ts[0].Err() != nil {
		t.Fatalf("a peer's transport failed on Kill: %v", ts[0].Err())
	}
}

func TestAbortPropagatesCause(t *testing.T) {
	ts := New(3)
	l := mustLink(t, ts[2], 0, "x")
	done := make(chan error, 1)
	go func() { _, err := l.Read(make([]byte, 1)); done <- err }()
	cause := &transport.PeerError{Rank: 1, Err: errors.New("boom")}
	ts[0].Abort(cause)
	err := <-done
	var pe *transport.PeerError
	if !errors.As(err, &pe) || pe.Rank != 1 {
		t.Fatalf("rank 2 saw %v; want the original PeerError naming rank 1", err)
	}
	select {
	case <-ts[1].Done():
	default:
		t.Fatal("rank 1's transport not failed after rank 0 aborted")
	}
	// A cause without a peer gets one naming the aborting rank.
	ts = New(2)
	ts[1].Abort(errors.New("plain"))
	if !errors.As(ts[0].Err(), &pe) || pe.Rank != 1 {
		t.Fatalf("rank 0 saw %v; want PeerError naming rank 1", ts[0].Err())
	}
}

func TestCloseGivesEOFAfterBufferedData(t *testing.T) {
	ts := New(2)
	a, b := mustLink(t, ts[0], 1, "x"), mustLink(t, ts[1], 0, "x")
	if _, err := a.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	ts[0].Close()
	got, err := io.ReadAll(b)
	if err != nil || string(got) != "hello" {
		t.Fatalf("ReadAll after Close: %q, %v", got, err)
	}
	if _, err := b.Write([]byte("x")); err == nil {
		t.Fatal("Write to a closed peer succeeded")
	}
	if _, err := a.Read(make([]byte, 1)); !errors.Is(err, transport.ErrClosed) {
		t.Fatalf("Read on closed transport: %v", err)
	}
	if _, err := ts[1].Link(context.Background(), 1, "x"); err == nil {
		t.Fatal("Link to self succeeded")
	}
}

// TestShutdownWaitsForReader: Shutdown returns once the peer has read what was written, or
// with ctx's error while it has not.
func TestShutdownWaitsForReader(t *testing.T) {
	ts := NewWithOptions(2, Options{Window: 1 << 10})
	a, b := mustLink(t, ts[0], 1, "x"), mustLink(t, ts[1], 0, "x")
	if _, err := a.Write(make([]byte, 100)); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := ts[0].Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Shutdown with unread bytes = %v, want DeadlineExceeded", err)
	}
	go func() {
		time.Sleep(50 * time.Millisecond)
		io.ReadFull(b, make([]byte, 100))
	}()
	if err := ts[0].Shutdown(context.Background()); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	ts[0].Close()
	if err := ts[0].Shutdown(context.Background()); !errors.Is(err, transport.ErrClosed) {
		t.Fatalf("Shutdown after Close = %v", err)
	}
}
