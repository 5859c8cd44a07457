package transport

import (
	"maps"
	"testing"
)

type testKey struct {
	peer    int
	channel string
}

func (k testKey) PeerOf() int { return k.peer }

type testEntry struct {
	kind string
	ok   bool
}

func (e testEntry) SettledKind() (string, bool) { return e.kind, e.ok }

func TestPeerKinds(t *testing.T) {
	links := map[testKey]testEntry{
		{1, "ring"}: {"shm", true},
		{1, "p2p"}:  {"quic", true},
		{1, "x"}:    {"shm", true},
		{2, "ring"}: {"tls", true},
		{2, "p2p"}:  {"", false}, // being set up: not counted
		{3, "ring"}: {"", false}, // nothing set up yet
	}
	for peer, want := range map[int]string{1: "quic+shm", 2: "tls", 3: "", 4: ""} {
		if got := PeerKind(links, peer); got != want {
			t.Errorf("PeerKind(%d) = %q, want %q", peer, got, want)
		}
	}
	if got, want := PeerKinds(links), map[int]string{1: "quic+shm", 2: "tls"}; !maps.Equal(got, want) {
		t.Errorf("PeerKinds = %v, want %v", got, want)
	}
}
