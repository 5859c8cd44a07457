package collective

import (
	"fmt"
	"slices"
	"strings"

	"github.com/ringtrain/ringtrain/collective/transport"
)

// HostIdentifier is implemented by transports that know on which host every rank runs:
// HostIDs returns one identity per world rank, equal for ranks on the same host (same kernel
// boot and network namespace). quictransport publishes it at the rendezvous, so every rank
// knows every rank's host whatever carries the links; wrappers (shmtransport, and any
// transport exposing Base() transport.Transport) are looked through. An empty identity means
// unknown: such ranks count as one host with each other.
type HostIdentifier interface {
	HostIDs() []string
}

// Topology says where the members of a group run: which host each member is on and which
// members share a host. Every member computes the same Topology (the identities come from
// the rendezvous store, or from Options.Hosts), so algorithms chosen from it agree.
type Topology struct {
	// HostIDs is the identity of each host, by host index. Hosts are numbered in the order
	// of their lowest group rank.
	HostIDs []string
	// Hosts lists the group ranks on each host, ascending, by host index.
	Hosts [][]int
	// HostOf is the host index of each group rank.
	HostOf []int
	// LocalRank is each group rank's position among the members on its host.
	LocalRank []int
}

// NumHosts is the number of hosts the group spans.
func (t Topology) NumHosts() int { return len(t.Hosts) }

// Regular reports whether every host runs the same number of members.
func (t Topology) Regular() bool {
	for _, h := range t.Hosts {
		if len(h) != len(t.Hosts[0]) {
			return false
		}
	}
	return true
}

// LocalSize is the number of members per host when the topology is regular, and 0 otherwise.
func (t Topology) LocalSize() int {
	if len(t.Hosts) == 0 || !t.Regular() {
		return 0
	}
	return len(t.Hosts[0])
}

// String renders the topology compactly, e.g. "2 hosts [0 1 2 3] [4 5 6 7]".
func (t Topology) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d hosts", len(t.Hosts))
	for _, h := range t.Hosts {
		fmt.Fprintf(&b, " %v", h)
	}
	return b.String()
}

// Topology returns where the members of g run (see Topology).
func (g *Group) Topology() Topology { return g.alg.topo }

// worldHostIDs returns the host identity of every world rank: Options.Hosts when given, else
// the transport's (looking through wrappers), else all unknown (one host).
func worldHostIDs(t transport.Transport, opts Options) ([]string, error) {
	n := t.Size()
	if opts.Hosts != nil {
		if len(opts.Hosts) != n {
			return nil, fmt.Errorf("collective: Options.Hosts has %d entries for %d ranks", len(opts.Hosts), n)
		}
		return opts.Hosts, nil
	}
	for tr := t; tr != nil; {
		if hi, ok := tr.(HostIdentifier); ok {
			if ids := hi.HostIDs(); len(ids) == n {
				return ids, nil
			}
		}
		b, ok := tr.(interface{ Base() transport.Transport })
		if !ok {
			break
		}
		tr = b.Base()
	}
	return make([]string, n), nil
}

// makeTopology groups the members (world ranks, by group rank) by host.
func makeTopology(worldHosts []string, members []int) Topology {
	var t Topology
	index := map[string]int{}
	t.HostOf = make([]int, len(members))
	t.LocalRank = make([]int, len(members))
	for gr, wr := range members {
		id := worldHosts[wr]
		h, ok := index[id]
		if !ok {
			h = len(t.Hosts)
			index[id] = h
			t.Hosts = append(t.Hosts, nil)
			t.HostIDs = append(t.HostIDs, id)
		}
		t.HostOf[gr] = h
		t.LocalRank[gr] = len(t.Hosts[h])
		t.Hosts[h] = append(t.Hosts[h], gr)
	}
	for _, h := range t.Hosts {
		if !slices.IsSorted(h) {
			panic("collective: makeTopology: members out of order")
		}
	}
	return t
}
