package quictransport

import (
	"bytes"
	"context"
	"errors"
	"io"
	"strings"
	"testing"
	"time"
)

// drainPair starts 2 ranks whose windows hold a whole drainSize message, so that its Write
// returns while the message is still in rank 0's buffers, in flight, or unread by rank 1.
func drainPair(t *testing.T) (a, b *Transport) {
	ts := startLocal(t, 2, Config{StreamWindow: 8 << 20, ConnWindow: 16 << 20})
	return ts[0], ts[1]
}

func drainSize() int {
	if raceEnabled {
		return 2 << 20
	}
	return 8 << 20
}

// TestShutdownDeliversEverything: rank 0 writes a large message that rank 1 reads slowly,
// then calls Shutdown and Close at once. Rank 1 must receive every byte, and Shutdown must
// return only once it has.
func TestShutdownDeliversEverything(t *testing.T) {
	a, b := drainPair(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	size := drainSize()
	msg := pattern(0, 1, "drain", size)
	la, err := a.Link(ctx, 1, "drain")
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan []byte, 1)
	readErr := make(chan error, 1)
	var lastRead time.Time // when rank 1's last Read returned; set before got is sent
	go func() {
		lb, err := b.Link(ctx, 0, "drain")
		if err != nil {
			readErr <- err
			return
		}
		time.Sleep(300 * time.Millisecond) // let the writer get far ahead
		buf := make([]byte, size)
		for off := 0; off < size; {
			n, err := lb.Read(buf[off:min(off+64<<10, size)])
			off += n
			if err != nil {
				readErr <- err
				return
			}
		}
		lastRead = time.Now()
		got <- buf
	}()
	// Within the windows: Write returns before rank 1 has read anything.
	if _, err := la.Write(msg); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := a.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	returned := time.Now()
	took := returned.Sub(start)
	t.Logf("Shutdown took %v", took.Round(time.Millisecond))
	if len(got) == 0 && len(readErr) == 0 {
		// Shutdown may only return once rank 1 has read everything, and rank 1 sends
		// its buffer as soon as the last Read returns.
		select {
		case <-time.After(time.Second):
			t.Fatal("Shutdown returned but rank 1 has not read everything")
		case buf := <-got:
			got <- buf
		case err := <-readErr:
			readErr <- err
		}
	}
	select {
	case buf := <-got:
		if !bytes.Equal(buf, msg) {
			t.Fatal("rank 1 received different bytes")
		}
	case err := <-readErr:
		t.Fatalf("rank 1 read: %v", err)
	}
	if returned.Before(lastRead) {
		t.Fatalf("Shutdown returned %v before rank 1's last Read did", lastRead.Sub(returned))
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestCloseWithoutShutdownIsPromptAndDrops: the same, but Close without Shutdown returns at
// once, even though the peer has read nothing yet, and what was in flight is lost: that is
// what Shutdown is for.
func TestCloseWithoutShutdownIsPromptAndDrops(t *testing.T) {
	a, b := drainPair(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	la, err := a.Link(ctx, 1, "drop")
	if err != nil {
		t.Fatal(err)
	}
	size := 256 << 10 // one stream window: Write returns without the peer reading
	if _, err := la.Write(pattern(0, 1, "drop", size)); err != nil {
		t.Fatal(err)
	}
	lb, err := b.Link(ctx, 0, "drop")
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond) // delivered to rank 1's QUIC stack, not read
	start := time.Now()
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("Close took %v", d)
	}
	time.Sleep(100 * time.Millisecond)
	n, err := io.ReadFull(lb, make([]byte, size))
	if err == nil {
		t.Fatalf("rank 1 read all %d bytes after rank 0 closed without Shutdown; expected the close to drop them", n)
	}
	t.Logf("without Shutdown rank 1 read %d of %d bytes: %v", n, size, err)
}

// TestShutdownHonoursContext: a peer that never reads keeps Shutdown waiting until ctx ends.
func TestShutdownHonoursContext(t *testing.T) {
	a, b := drainPair(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	la, err := a.Link(ctx, 1, "unread")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := la.Write([]byte("never read")); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Link(ctx, 0, "unread"); err != nil {
		t.Fatal(err)
	}
	sctx, scancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer scancel()
	start := time.Now()
	err = a.Shutdown(sctx)
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "rank 1 has not read everything") {
		t.Fatalf("Shutdown = %v, want a DeadlineExceeded naming rank 1", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("Shutdown took %v past a 300ms context", d)
	}
	if a.Err() != nil {
		t.Fatalf("Shutdown broke the transport: %v", a.Err())
	}
}

// TestShutdownReportsDiscardedData: a peer that closes its end having read only part of
// the data makes Shutdown say so; a link fully read and a transport with nothing written
// are fine.
func TestShutdownReportsDiscardedData(t *testing.T) {
	a, b := drainPair(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := a.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown with nothing written: %v", err)
	}
	// Fully read, both ways, with the higher rank writing too.
	if err := exchangeBoth(ctx, a, b, "full", 100_000); err != nil {
		t.Fatal(err)
	}
	if err := errors.Join(a.Shutdown(ctx), b.Shutdown(ctx)); err != nil {
		t.Fatalf("Shutdown after a complete exchange: %v", err)
	}
	la, err := a.Link(ctx, 1, "half")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := la.Write(make([]byte, 1000)); err != nil {
		t.Fatal(err)
	}
	lb, err := b.Link(ctx, 0, "half")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(lb, make([]byte, 10)); err != nil {
		t.Fatal(err)
	}
	lb.Close()
	err = a.Shutdown(ctx)
	if err == nil || !strings.Contains(err.Error(), `rank 1 closed channel "half" having read 10 of the 1000 bytes`) {
		t.Fatalf("Shutdown = %v, want it to report the unread bytes of channel half", err)
	}
	// After Close, Shutdown reports the close.
	a.Close()
	if err := a.Shutdown(ctx); err == nil {
		t.Fatal("Shutdown after Close succeeded")
	}
}

// exchangeBoth runs exchange on both ranks at once.
func exchangeBoth(ctx context.Context, a, b *Transport, ch string, size int) error {
	done := make(chan error, 1)
	go func() { done <- exchange(ctx, b, a.Rank(), ch, size) }()
	return errors.Join(exchange(ctx, a, b.Rank(), ch, size), <-done)
}
