package quictransport

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/ringtrain/ringtrain/collective/transport"
)

// startLocal starts an n-rank job for a test and closes it at cleanup.
func startLocal(t *testing.T, n int, cfg Config) []*Transport {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if cfg.Logger == nil {
		cfg.Logger = testLogger(t)
	}
	ts, err := StartLocal(ctx, n, cfg)
	if err != nil {
		t.Fatalf("StartLocal(%d): %v", n, err)
	}
	t.Cleanup(func() {
		for _, tr := range ts {
			tr.Close()
		}
	})
	return ts
}

// pattern is a deterministic payload for (from, to, channel), so receivers can check every
// byte against an independent reference.
func pattern(from, to int, channel string, n int) []byte {
	seed := uint64(from)<<32 | uint64(to)<<16 | uint64(len(channel))
	for _, c := range channel {
		seed = seed*31 + uint64(c)
	}
	r := rand.New(rand.NewPCG(seed, 42))
	b := make([]byte, n+8)
	for i := 0; i < n; i += 8 {
		binary.LittleEndian.PutUint64(b[i:], r.Uint64())
	}
	return b[:n]
}

// TestStartLocalLinksManyChannels has every pair of 4 ranks exchange, on 3 channels at once,
// payloads of different sizes in both directions, and checks every byte.
func TestStartLocalLinksManyChannels(t *testing.T) {
	const n = 4
	ts := startLocal(t, n, Config{})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	channels := []string{"a", "grad/0", "pipeline-activations"}
	sizes := map[string]int{"a": 1, "grad/0": 2 << 20, "pipeline-activations": 100_003}
	if raceEnabled {
		sizes["grad/0"] = 256 << 10
	}
	var wg sync.WaitGroup
	errs := make(chan error, n*n*len(channels))
	for me := 0; me < n; me++ {
		for peer := 0; peer < n; peer++ {
			if peer == me {
				continue
			}
			for _, ch := range channels {
				wg.Go(func() {
					if err := exchange(ctx, ts[me], peer, ch, sizes[ch]); err != nil {
						errs <- fmt.Errorf("rank %d <-> %d %q: %w", me, peer, ch, err)
					}
				})
			}
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// exchange sends pattern(me, peer) and checks that pattern(peer, me) arrives.
func exchange(ctx context.Context, tr *Transport, peer int, ch string, size int) error {
	l, err := tr.Link(ctx, peer, ch)
	if err != nil {
		return err
	}
	if l.Peer() != peer {
		return fmt.Errorf("Peer() = %d, want %d", l.Peer(), peer)
	}
	if dl, ok := ctx.Deadline(); ok {
		l.SetDeadline(dl)
	}
	werr := make(chan error, 1)
	go func() {
		_, err := l.Write(pattern(tr.Rank(), peer, ch, size))
		werr <- err
	}()
	got := make([]byte, size)
	if _, err := io.ReadFull(l, got); err != nil {
		return fmt.Errorf("read: %w", err)
	}
	if err := <-werr; err != nil {
		return fmt.Errorf("write: %w", err)
	}
	if want := pattern(peer, tr.Rank(), ch, size); !bytes.Equal(got, want) {
		return fmt.Errorf("received bytes differ from what rank %d sent", peer)
	}
	// Asking again returns the same link.
	again, err := tr.Link(ctx, peer, ch)
	if err != nil || again != l {
		return fmt.Errorf("second Link call: %v, same=%v", err, again == l)
	}
	return nil
}

func TestStartLocalSingleRank(t *testing.T) {
	ts := startLocal(t, 1, Config{})
	if ts[0].Rank() != 0 || ts[0].Size() != 1 {
		t.Fatalf("rank/size = %d/%d", ts[0].Rank(), ts[0].Size())
	}
	if _, err := ts[0].Link(context.Background(), 0, "x"); err == nil {
		t.Fatal("link to self succeeded")
	}
	var _ transport.Transport = ts[0]
}
