package quictransport

import (
	"context"
	"errors"
	"net"
	"slices"
	"sync"
	"testing"
	"time"
)

// freePort returns a UDP port that was free a moment ago.
func freePort(t *testing.T) int {
	t.Helper()
	u, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer u.Close()
	return u.LocalAddr().(*net.UDPAddr).Port
}

// TestJoinTimeoutNamesMissingRanks: ranks 0 and 1 of 4 start; 2 and 3 never do. Both must
// fail after the join timeout naming exactly [2 3].
func TestJoinTimeoutNamesMissingRanks(t *testing.T) {
	port := freePort(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	errs := make([]error, 2)
	var wg sync.WaitGroup
	for r := 0; r < 2; r++ {
		wg.Go(func() {
			tr, err := Establish(ctx, Config{Rank: r, Size: 4, MasterAddr: "127.0.0.1", MasterPort: port,
				Token: "tok", JoinTimeout: time.Second, Logger: testLogger(t)})
			if err == nil {
				tr.Close()
			}
			errs[r] = err
		})
	}
	wg.Wait()
	for r, err := range errs {
		var je *JoinTimeoutError
		if !errors.As(err, &je) {
			t.Fatalf("rank %d: err = %v, want a JoinTimeoutError", r, err)
		}
		if !slices.Equal(je.Missing, []int{2, 3}) || je.Size != 4 || !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("rank %d: %v", r, err)
		}
		if want := "rendezvous: ranks [2 3] of 4 did not join within 1s"; err.Error()[:len(want)] != want {
			t.Fatalf("rank %d: message %q lacks %q", r, err, want)
		}
	}
}

// TestJoinTimeoutNoStore: without rank 0 nobody serves the store, and rank 0 is named.
func TestJoinTimeoutNoStore(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	_, err := Establish(ctx, Config{Rank: 1, Size: 2, MasterAddr: "127.0.0.1", MasterPort: freePort(t),
		Token: "tok", JoinTimeout: 700 * time.Millisecond, Logger: testLogger(t)})
	var je *JoinTimeoutError
	if !errors.As(err, &je) || !slices.Equal(je.Missing, []int{0}) {
		t.Fatalf("err = %v, want rank 0 named", err)
	}
}

// TestEstablishCancelled: ctx ending first is reported as such, not as a join timeout.
func TestEstablishCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	go func() { time.Sleep(200 * time.Millisecond); cancel() }()
	_, err := Establish(ctx, Config{Rank: 0, Size: 2, MasterAddr: "127.0.0.1", MasterPort: freePort(t),
		Token: "tok", JoinTimeout: time.Minute, Logger: testLogger(t)})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
}

func TestEstablishRejectsBadConfig(t *testing.T) {
	for _, c := range []Config{
		{Rank: 0, Size: 0, MasterAddr: "127.0.0.1", MasterPort: 1},
		{Rank: 2, Size: 2, MasterAddr: "127.0.0.1", MasterPort: 1, Token: "t"},
		{Rank: 0, Size: 2, MasterAddr: "", MasterPort: 1, Token: "t"},
		{Rank: 0, Size: 2, MasterAddr: "127.0.0.1", MasterPort: 1},
		{Rank: 0, Size: 2, MasterAddr: "127.0.0.1", MasterPort: 70000, Token: "t"},
	} {
		if tr, err := Establish(context.Background(), c); err == nil {
			tr.Close()
			t.Errorf("Establish(%+v) succeeded", c)
		}
	}
}
