package transport

import (
	"sort"
	"strings"
)

// The transports that set links up lazily, one per (peer, channel) (datalink, shmtransport),
// report what carries the links to each peer the same way; these hold that rule once.

// PeerKey is a link table's key: it names the link's peer.
type PeerKey interface {
	comparable
	PeerOf() int
}

// Settled is a link table's entry: its kind once it is set up without error (ok false while
// it is being set up, or after it failed).
type Settled interface {
	SettledKind() (kind string, ok bool)
}

// PeerKind says what carries the set-up links to peer: their kinds, sorted and joined by "+"
// when channels differ ("quic+shm"), or "" when none is set up. The caller holds the lock
// that guards links.
func PeerKind[K PeerKey, E Settled](links map[K]E, peer int) string {
	seen := map[string]bool{}
	for k, e := range links {
		if k.PeerOf() != peer {
			continue
		}
		if kind, ok := e.SettledKind(); ok {
			seen[kind] = true
		}
	}
	kinds := make([]string, 0, len(seen))
	for k := range seen {
		kinds = append(kinds, k)
	}
	sort.Strings(kinds)
	return strings.Join(kinds, "+")
}

// PeerKinds is PeerKind for every peer with a set-up link. The caller holds the lock that
// guards links.
func PeerKinds[K PeerKey, E Settled](links map[K]E) map[int]string {
	out := map[int]string{}
	for k := range links {
		p := k.PeerOf()
		if _, done := out[p]; done {
			continue
		}
		out[p] = PeerKind(links, p)
	}
	for p, kind := range out {
		if kind == "" {
			delete(out, p)
		}
	}
	return out
}
