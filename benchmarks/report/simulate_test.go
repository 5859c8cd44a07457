package report

import (
	"math"
	"testing"

	"github.com/ringtrain/ringtrain/collective"
)

// simTable is the shape of the projection's table: shared memory on a host (the committed
// row), 25 Gbit/s with α = 60 µs across hosts.
func simTable() *collective.TunerTable {
	t := collective.DefaultTunerTable()
	out := &collective.TunerTable{Links: map[string]collective.LinkCost{
		"shm":   t.Links["shm"],
		"inter": {AlphaUS: 60, GBps: 25.0 / 8},
	}, ReduceGBps: t.ReduceGBps}
	return out
}

// TestSimulationMatchesModel: at 64 ranks (8 hosts of 8) the discrete-event simulation of
// each algorithm's schedule agrees with the tuner's closed form within 8% over the sizes
// that matter (a latency-bound 4 KiB, the mlp buckets, a bandwidth-bound 64 MiB), and the
// tuner's pick is never slower in the simulation than the ring by more than 5%. The
// recursive and hierarchical schedules match to rounding; the ring across hosts is the
// approximate one: its closed form takes the larger of its critical path and the inter-host
// link's busy time, where the simulation finds a few percent more when the two are close
// (64 MiB). At 48 ranks (6 hosts: the recursive algorithms fold 2 of 6 or 16 of 48 ranks)
// the closed form is also conservative: it charges the fold and the unfold one after the
// other, where the simulation overlaps the unfold with the partners' last messages; it
// stays within −8% and +20% of the simulation.
func TestSimulationMatchesModel(t *testing.T) {
	simCompare(t, collective.Model{Table: simTable(), Ranks: 64, RanksPerHost: 8, Intra: "shm", Inter: "inter"}, -0.08, 0.08)
	simCompare(t, collective.Model{Table: simTable(), Ranks: 48, RanksPerHost: 8, Intra: "shm", Inter: "inter"}, -0.08, 0.20)
}

// TestSimulationOneShot: the one-shot's closed form (one α, the sender's copies one after
// another) against the simulated schedule, where it can run: small buffers.
func TestSimulationOneShot(t *testing.T) {
	for _, m := range []collective.Model{
		{Table: simTable(), Ranks: 8, RanksPerHost: 8, Intra: "shm", Inter: "inter"},
		{Table: simTable(), Ranks: 8, RanksPerHost: 2, Intra: "shm", Inter: "inter"},
		{Table: simTable(), Ranks: 16, RanksPerHost: 4, Intra: "shm", Inter: "inter"},
	} {
		for _, bytes := range []int{256, 4 << 10} {
			for _, algo := range []string{"oneshot", "rdoneshot"} {
				closed, err := m.Predict(algo, bytes)
				if err != nil {
					t.Fatal(err)
				}
				sim, _, err := Simulate(m, algo, bytes)
				if err != nil {
					t.Fatal(err)
				}
				if math.IsInf(closed, 1) || math.IsInf(sim, 1) {
					if math.IsInf(closed, 1) != math.IsInf(sim, 1) {
						t.Errorf("%d ranks, %d per host, %d bytes, %s: closed form %v, simulated %v", m.Ranks, m.RanksPerHost, bytes, algo, closed, sim)
					}
					continue
				}
				rel := (closed - sim) / sim
				t.Logf("%d ranks %d per host %6d bytes %-9s closed form %7.1f µs, simulated %7.1f µs (%+.1f%%)", m.Ranks, m.RanksPerHost, bytes, algo, closed*1e6, sim*1e6, 100*rel)
				if !(rel >= -0.08 && rel <= 0.2) {
					t.Errorf("%d ranks, %d per host, %d bytes, %s: closed form %.1f µs vs simulation %.1f µs (%+.1f%%)", m.Ranks, m.RanksPerHost, bytes, algo, closed*1e6, sim*1e6, 100*rel)
				}
			}
		}
	}
}

// simCompare checks that (closed − simulated) / closed lies in [lo, hi] for every algorithm.
func simCompare(t *testing.T, m collective.Model, lo, hi float64) {
	for _, bytes := range []int{4 << 10, 1 << 20, 1339412 &^ 3, 64 << 20} {
		ringSim, _, err := Simulate(m, "ring", bytes)
		if err != nil {
			t.Fatal(err)
		}
		for _, algo := range []string{"ring", "rd", "rhd", "hier", "auto"} {
			sim, ran, err := Simulate(m, algo, bytes)
			if err != nil {
				t.Fatalf("%s %d bytes: %v", algo, bytes, err)
			}
			var closed float64
			if algo == "auto" {
				_, closed, err = m.Choose(bytes)
			} else {
				closed, err = m.Predict(algo, bytes)
			}
			if err != nil {
				t.Fatal(err)
			}
			rel := (closed - sim) / sim
			t.Logf("%d ranks %9d bytes %-5s ran %-8s closed form %9.1f µs, simulated %9.1f µs (closed form %+.1f%%)", m.Ranks, bytes, algo, ran, closed*1e6, sim*1e6, 100*rel)
			if !(rel >= lo && rel <= hi) {
				t.Errorf("%d ranks, %d bytes, %s: closed form %.1f µs vs simulation %.1f µs (%+.1f%%)", m.Ranks, bytes, algo, closed*1e6, sim*1e6, 100*rel)
			}
			if algo == "auto" && sim > ringSim*1.05 {
				t.Errorf("%d bytes: the tuner's %s simulates at %.1f µs, the ring at %.1f µs", bytes, ran, sim*1e6, ringSim*1e6)
			}
		}
	}
}

// TestSimulateRejects: bad shapes and names are refused; every schedule terminates for odd
// sizes and partial hosts.
func TestSimulateRejects(t *testing.T) {
	if _, _, err := Simulate(collective.Model{Ranks: 0, RanksPerHost: 1}, "ring", 4); err == nil {
		t.Fatal("0 ranks accepted")
	}
	if _, _, err := Simulate(collective.Model{Ranks: 4, RanksPerHost: 2}, "tree", 4); err == nil {
		t.Fatal("unknown algorithm accepted")
	}
	for _, n := range []int{2, 3, 5, 6, 7, 12, 24} {
		for _, a := range []string{"ring", "rd", "rhd", "hier", "oneshot", "rdoneshot"} {
			if _, _, err := Simulate(collective.Model{Ranks: n, RanksPerHost: 3}, a, 4*1001); err != nil {
				t.Fatalf("%d ranks, %s: %v", n, a, err)
			}
		}
	}
}
