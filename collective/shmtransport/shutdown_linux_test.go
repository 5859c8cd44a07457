package shmtransport

import (
	"context"
	"errors"
	"io"
	"testing"
	"time"

	"github.com/ringtrain/ringtrain/collective/transport"
)

// TestShutdownDrains: Shutdown returns only once the peer has read what was written on a
// shared-memory link (an orderly end without the data loss of a bare Close), reports the
// context's end while bytes are unread, and says ErrClosed after Close.
func TestShutdownDrains(t *testing.T) {
	ts, _ := wrapAll(t, 2, 0, func(int) Options { return Options{Mode: ModeShm, RingBytes: 1 << 16} })
	a, b := linkPair(t, ts, 0, 1, "x")
	if _, ok := a.(*shmLink); !ok {
		t.Fatalf("link %T, want shared memory", a)
	}
	var _ transport.Shutdowner = ts[0]
	msg := randBytes(1, 40000)
	if _, err := a.Write(msg); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	err := ts[0].Shutdown(ctx)
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Shutdown with 40000 unread bytes: %v, want the context's deadline", err)
	}
	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		done <- ts[0].Shutdown(ctx)
	}()
	select {
	case err := <-done:
		t.Fatalf("Shutdown returned %v before the peer read anything", err)
	case <-time.After(20 * time.Millisecond):
	}
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(b, got); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("Shutdown after the peer read everything: %v", err)
	}
	ts[0].Close()
	if err := ts[0].Shutdown(context.Background()); !errors.Is(err, transport.ErrClosed) {
		t.Fatalf("Shutdown after Close: %v, want ErrClosed", err)
	}
}
