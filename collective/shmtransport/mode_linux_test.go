package shmtransport

import (
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/ringtrain/ringtrain/collective/transport"
)

func init() {
	// "identity": print this process's identity as a hex control frame.
	children["identity"] = func() error {
		id, err := localIdentity(DefaultDir)
		if err != nil {
			return err
		}
		b := make([]byte, ctlSize)
		(&ctlMsg{kind: kindHello, id: id}).encode(b)
		fmt.Println(hex.EncodeToString(b))
		return nil
	}
}

// TestMixedRing forces the 0-1 edge of a 3-rank ring onto the base transport (both ends say
// so) and leaves the others on shared memory; data crosses every edge intact and Kind reports
// each edge's transport.
func TestMixedRing(t *testing.T) {
	force := func(rank int) Options {
		return Options{BaseKind: "mem", RingBytes: 1 << 12, PeerMode: func(peer int) Mode {
			if rank+peer == 1 { // the 0-1 edge
				return ModeQUIC
			}
			return ModeAuto
		}}
	}
	ts, _ := wrapAll(t, 3, 0, force)
	want := map[[2]int]string{{0, 1}: "mem", {1, 2}: "shm", {2, 0}: "shm"}
	for e, kind := range want {
		a, b := linkPair(t, ts, e[0], e[1], "ring")
		_, isShm := a.(*shmLink)
		if isShm != (kind == "shm") {
			t.Fatalf("edge %v: link %T, want %s", e, a, kind)
		}
		if got := ts[e[0]].Kind(e[1]); got != kind {
			t.Fatalf("edge %v: Kind %q, want %q", e, got, kind)
		}
		if got := ts[e[1]].Kind(e[0]); got != kind {
			t.Fatalf("edge %v reversed: Kind %q, want %q", e, got, kind)
		}
		msg := randBytes(uint64(e[0]), 50000)
		go a.Write(msg)
		got := make([]byte, len(msg))
		if _, err := io.ReadFull(b, got); err != nil || string(got) != string(msg) {
			t.Fatalf("edge %v: data differs or %v", e, err)
		}
	}
	if k := ts[0].Kinds(); k[1] != "mem" || k[2] != "shm" {
		t.Fatalf("Kinds() = %v", k)
	}
}

// TestShmRequiredButRefused: a rank that requires shared memory and a peer that forces the
// base transport both get an error naming the other.
func TestShmRequiredButRefused(t *testing.T) {
	ts, _ := wrapAll(t, 2, 0, func(rank int) Options {
		if rank == 0 {
			return Options{Mode: ModeShm}
		}
		return Options{Mode: ModeQUIC}
	})
	_, _, err := tryLinkPair(ts, 0, 1, "x")
	if !errors.Is(err, ErrShmUnavailable) || !strings.Contains(err.Error(), "rank 1") {
		t.Fatalf("rank 0: %v, want ErrShmUnavailable naming rank 1", err)
	}
	// Rank 1's side of the same exchange.
	_, err1 := ts[1].Link(t.Context(), 0, "x")
	if !errors.Is(err1, ErrShmUnavailable) || !strings.Contains(err1.Error(), "rank 0") {
		t.Fatalf("rank 1: %v, want ErrShmUnavailable naming rank 0", err1)
	}
}

// TestOpenFailureFallsBack: in auto mode, a peer that cannot open the announced file (here:
// each rank looks in a different directory, as containers with private /dev/shm mounts
// would) leaves the link on the base transport; in shm mode it is an error naming the peer.
func TestOpenFailureFallsBack(t *testing.T) {
	for _, mode := range []Mode{ModeAuto, ModeShm} {
		t.Run(mode.String(), func(t *testing.T) {
			d0, d1 := shmDir(t), shmDir(t) // same tmpfs, so the identities match
			ts, _ := wrapAll(t, 2, 0, func(rank int) Options {
				return Options{Mode: mode, Dir: []string{d0, d1}[rank]}
			})
			a, b, err := tryLinkPair(ts, 0, 1, "x")
			if mode == ModeShm {
				if !errors.Is(err, ErrShmUnavailable) {
					t.Fatalf("%v, want ErrShmUnavailable", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if _, ok := a.(*shmLink); ok || ts[0].Kind(1) != "quic" {
				t.Fatalf("link %T kind %q, want the base link", a, ts[0].Kind(1))
			}
			go a.Write([]byte("ok"))
			buf := make([]byte, 2)
			if _, err := io.ReadFull(b, buf); err != nil || string(buf) != "ok" {
				t.Fatalf("base link after fallback: %q %v", buf, err)
			}
			if n := dirEntries(t, d0); len(n) != 0 {
				t.Fatalf("files left: %v", n)
			}
		})
	}
}

// TestNetnsIsAnotherHost: a process in another network namespace on the same kernel (how
// multi-host tests build "hosts") must not count as the same host.
func TestNetnsIsAnotherHost(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("unshare -n needs root")
	}
	run := func(prefix ...string) identity {
		args := append(prefix, os.Args[0], "-test.run=^$")
		cmd := exec.Command(args[0], args[1:]...)
		cmd.Env = append(os.Environ(), envChild+"=identity")
		out, err := cmd.Output()
		if err != nil {
			t.Skipf("%v: %v", args, err)
		}
		b, err := hex.DecodeString(strings.TrimSpace(string(out)))
		if err != nil {
			t.Fatal(err)
		}
		m, err := decodeCtl(b)
		if err != nil {
			t.Fatal(err)
		}
		return m.id
	}
	self, err := localIdentity(DefaultDir)
	if err != nil {
		t.Fatal(err)
	}
	same := run()
	if !self.sameHost(same) {
		t.Fatalf("a child in our namespace is not the same host: %s", self.whyNotSameHost(same))
	}
	other := run("unshare", "-n")
	if self.sameHost(other) || !strings.Contains(self.whyNotSameHost(other), "network namespace") {
		t.Fatalf("a child in another network namespace counts as the same host (%+v vs %+v)", self, other)
	}
}

var _ transport.Link = (*shmLink)(nil)

// TestLinkDoesNotWaitForPeer: Link returns at once even when the peer has not asked yet; the
// first Read waits for the setup within its deadline, and works once the peer shows up.
func TestLinkDoesNotWaitForPeer(t *testing.T) {
	ts, _ := wrapAll(t, 2, 0, func(int) Options { return Options{Mode: ModeShm, RingBytes: 1 << 12} })
	a, err := ts[0].Link(t.Context(), 1, "late")
	if err != nil {
		t.Fatal(err)
	}
	a.SetDeadline(time.Now().Add(30 * time.Millisecond))
	if _, err := a.Read(make([]byte, 1)); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("Read before the peer came: %v, want the deadline", err)
	}
	a.SetDeadline(time.Time{})
	b, err := ts[1].Link(t.Context(), 0, "late")
	if err != nil {
		t.Fatal(err)
	}
	go b.Write([]byte("hi"))
	buf := make([]byte, 2)
	if _, err := io.ReadFull(a, buf); err != nil || string(buf) != "hi" {
		t.Fatalf("%q %v", buf, err)
	}
	if ts[0].Kind(1) != "shm" {
		t.Fatalf("Kind %q", ts[0].Kind(1))
	}
}

// TestSequentialRingOpen: every rank opens its right link, then its left one, one after the
// other, before any I/O; this must not deadlock (it does not over QUIC either).
func TestSequentialRingOpen(t *testing.T) {
	const n = 4
	ts, _ := wrapAll(t, n, 0, func(int) Options { return Options{Mode: ModeShm, RingBytes: 1 << 12} })
	errc := make(chan error, n)
	for r := range n {
		go func() {
			ctx := t.Context()
			right, err := ts[r].Link(ctx, (r+1)%n, "ring")
			if err != nil {
				errc <- err
				return
			}
			left, err := ts[r].Link(ctx, (r+n-1)%n, "ring")
			if err != nil {
				errc <- err
				return
			}
			go right.Write([]byte{byte(r)})
			var b [1]byte
			if _, err := io.ReadFull(left, b[:]); err != nil {
				errc <- err
				return
			}
			if int(b[0]) != (r+n-1)%n {
				errc <- fmt.Errorf("rank %d got %d from its left", r, b[0])
				return
			}
			errc <- nil
		}()
	}
	for range n {
		select {
		case err := <-errc:
			if err != nil {
				t.Fatal(err)
			}
		case <-time.After(20 * time.Second):
			t.Fatal("ranks that open their links one by one deadlocked")
		}
	}
}
