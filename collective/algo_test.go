package collective

import (
	"errors"
	"fmt"
	"math"
	"strings"
	"testing"
)

// hostsOf simulates a job of n ranks placed perHost to a host in rank order (the last host
// may have fewer).
func hostsOf(n, perHost int) []string { return seqHosts(n, perHost) }

// algoCases: every algorithm forced, with the host layouts that exercise it.
type algoCase struct {
	algo    string
	perHost int // 0: one host
}

func algoCases(n int) []algoCase {
	cs := []algoCase{{"ring", 0}, {"rd", 0}, {"rhd", 0}, {"oneshot", 0}, {"oneshot", 2}}
	for _, L := range []int{2, 3, 4} {
		if n%L == 0 && n/L > 1 {
			cs = append(cs, algoCase{"hier", L}, algoCase{"rdoneshot", L})
		}
	}
	if n > 2 && n%2 == 1 {
		cs = append(cs, algoCase{"hier", 2}) // irregular: falls back to the ring
	}
	cs = append(cs, algoCase{"auto", 2})
	return cs
}

// smallInts is rank r's input of small integers, so every order of summation is exact.
func smallInts(seed, r, count int) []float32 {
	v := make([]float32, count)
	for i := range v {
		v[i] = float32((i*7+r*13+seed)%17 - 8)
	}
	return v
}

// TestAlgorithmsMatchRing: every algorithm gives exactly the ring's result (small-integer
// inputs: exact in any order) for 1 to 9 ranks, every op, counts 0, 1, < n, primes, not
// divisible by n, with one host and several simulated hosts, and bit-identical results on
// every rank.
func TestAlgorithmsMatchRing(t *testing.T) {
	noLeaks(t)
	for n := 1; n <= 9; n++ {
		for _, c := range algoCases(n) {
			t.Run(fmt.Sprintf("N=%d/%s/perHost=%d", n, c.algo, c.perHost), func(t *testing.T) {
				opts := Options{ChunkBytes: 64, Algorithm: c.algo}
				if c.perHost > 0 {
					opts.Hosts = hostsOf(n, c.perHost)
				}
				j := startJob(t, memFabric, n, opts)
				counts := []int{0, 1, max(n-1, 2), 13, 97, 1031}
				for ci, count := range counts {
					for _, op := range []Op{Sum, Avg, Max, Min} {
						inputs := make([][]float32, n)
						for r := range inputs {
							inputs[r] = smallInts(ci+int(op), r, count)
						}
						want := make([]float32, count)
						for i := range want {
							acc := float64(inputs[0][i])
							for _, in := range inputs[1:] {
								switch op {
								case Max:
									acc = max(acc, float64(in[i]))
								case Min:
									acc = min(acc, float64(in[i]))
								default:
									acc += float64(in[i])
								}
							}
							if op == Avg {
								want[i] = float32(acc) / float32(n) // the ring divides the float32 sum
							} else {
								want[i] = float32(acc)
							}
						}
						bufs := make([][]float32, n)
						algos := make([]string, n)
						j.mustEach(func(r int, g *Group) error {
							bufs[r] = clone(inputs[r])
							algos[r] = g.Algorithm(count)
							return g.AllReduce(ctxT(t), bufs[r], op)
						})
						what := fmt.Sprintf("AllReduce(count=%d, %v) with %s", count, op, algos[0])
						sameBits(t, what, bufs)
						for i := range want {
							if math.Float32bits(bufs[0][i]) != math.Float32bits(want[i]) {
								t.Fatalf("%s: element %d = %g, want %g", what, i, bufs[0][i], want[i])
							}
						}
						if c.algo != "auto" && n > 1 {
							exp := c.algo
							if exp == "hier" && !hierApplicable(j.groups[0].Topology()) {
								exp = "ring"
							}
							if exp == "rdoneshot" && !rdOneShotApplicable(j.groups[0].Topology()) {
								exp = "ring"
							}
							if exp == "rd" && algos[0] == "rhd" {
								exp = "rhd" // the recursive family: rd or rhd by the model
							}
							if algos[0] != exp {
								t.Fatalf("%s: algorithm %s, forced %s", what, algos[0], c.algo)
							}
						}
					}
				}
			})
		}
	}
}

// TestAlgorithmsFP16: every algorithm within the ring's fp16 bound, bit-identical on every
// rank, with and without Feedback (rd, oneshot and rdoneshot refuse Feedback by not being
// picked: the call runs on rhd or the ring).
func TestAlgorithmsFP16(t *testing.T) {
	noLeaks(t)
	const chunkBytes = 256
	for _, n := range []int{2, 3, 4, 5, 6, 8} {
		for _, c := range algoCases(n) {
			t.Run(fmt.Sprintf("N=%d/%s/perHost=%d", n, c.algo, c.perHost), func(t *testing.T) {
				opts := Options{ChunkBytes: chunkBytes, Algorithm: c.algo}
				if c.perHost > 0 {
					opts.Hosts = hostsOf(n, c.perHost)
				}
				j := startJob(t, memFabric, n, opts)
				for _, count := range []int{1, 13, 1031} {
					for _, op := range []Op{Sum, Avg, Max} {
						for _, fb := range []bool{false, true} {
							if fb && op == Max {
								continue
							}
							inputs := make([][]float32, n)
							for r := range inputs {
								inputs[r] = randomInput(uint64(count+int(op)), r, count)
							}
							ref, _ := reference(inputs, op)
							// A: the largest Σ|x| (or |x|) of the whole buffer: a looser A than the
							// chunk's, valid for every algorithm's chunking.
							A := 0.0
							for i := range count {
								s := 0.0
								for _, in := range inputs {
									if op == Max {
										s = max(s, math.Abs(float64(in[i])))
									} else {
										s += math.Abs(float64(in[i]))
									}
								}
								A = max(A, s)
							}
							bufs := make([][]float32, n)
							algos := make([]string, n)
							j.mustEach(func(r int, g *Group) error {
								bufs[r] = clone(inputs[r])
								ro := []ReduceOption{FP16}
								if fb {
									ro = append(ro, Feedback(make([]float32, count)))
								}
								algos[r] = g.Algorithm(count, ro...)
								return g.AllReduce(ctxT(t), bufs[r], op, ro...)
							})
							what := fmt.Sprintf("AllReduce(count=%d, %v, fp16, feedback=%v) with %s", count, op, fb, algos[0])
							if fb && (algos[0] == "rd" || algos[0] == "oneshot" || algos[0] == "rdoneshot") {
								t.Fatalf("%s: %s picked with Feedback", what, algos[0])
							}
							sameBits(t, what, bufs)
							bound := fp16Bound(A, n+2, op) // n quantizations at most, +2 for the fold
							for i, got := range bufs[0] {
								b := bound
								if op == Avg {
									b += 0x1p-24 * math.Abs(ref[i])
								}
								if d := math.Abs(float64(got) - ref[i]); !(d <= b) {
									t.Fatalf("%s: element %d = %g, reference %g: error %g > bound %g", what, i, got, ref[i], d, b)
								}
							}
						}
					}
				}
			})
		}
	}
}

// TestAlgorithmMismatch: ranks that force different algorithms fail the op with a
// MismatchError naming the algorithm, on every rank, and none returns success.
func TestAlgorithmMismatch(t *testing.T) {
	noLeaks(t)
	for _, other := range []string{"rd", "rhd", "hier", "oneshot", "rdoneshot"} {
		t.Run(other, func(t *testing.T) {
			const n = 4
			ts, _ := memFabric.start(t, n)
			groups := make([]*Group, n)
			errs := make([]error, n)
			eachGroup(t, groups, func(r int, _ *Group) error {
				o := Options{Algorithm: "ring", Hosts: hostsOf(n, 2)}
				if r == 2 {
					o.Algorithm = other
				}
				groups[r], errs[r] = New(ctxT(t), ts[r], o)
				return nil
			})
			for r, err := range errs {
				if err != nil {
					t.Fatalf("New rank %d: %v", r, err)
				}
			}
			defer func() {
				for _, g := range groups {
					g.Close()
				}
			}()
			errs = eachGroup(t, groups, func(r int, g *Group) error {
				return g.AllReduce(ctxT(t), make([]float32, 64), Sum)
			})
			found := false
			for r, err := range errs {
				if err == nil {
					t.Fatalf("rank %d returned success", r)
				}
				var me *MismatchError
				if errors.As(err, &me) && me.Field == "algorithm" {
					found = true
				}
				if !strings.Contains(err.Error(), "algorithm") && !strings.Contains(err.Error(), "mismatch") {
					t.Logf("rank %d: %v", r, err)
				}
			}
			if !found {
				t.Fatalf("no rank reported an algorithm MismatchError: %v", errs)
			}
		})
	}
}

// TestTopology: hosts from Options.Hosts, grouped by host in order of their lowest rank;
// subgroups see their members' hosts.
func TestTopology(t *testing.T) {
	noLeaks(t)
	hosts := []string{"b", "a", "b", "a", "c", "c"}
	j := startJob(t, memFabric, 6, Options{Hosts: hosts})
	topo := j.groups[3].Topology()
	if got := topo.String(); got != "3 hosts [0 2] [1 3] [4 5]" {
		t.Fatalf("topology %s", got)
	}
	if !topo.Regular() || topo.LocalSize() != 2 || topo.LocalRank[3] != 1 || topo.HostOf[4] != 2 {
		t.Fatalf("topology %+v", topo)
	}
	subs := make([]*Group, 6)
	j.mustEach(func(r int, g *Group) error {
		if r > 2 {
			return nil
		}
		var err error
		subs[r], err = g.Subgroup(ctxT(t), []int{0, 1, 2})
		return err
	})
	if got := subs[0].Topology().String(); got != "2 hosts [0 2] [1]" {
		t.Fatalf("subgroup topology %s", got)
	}
	if subs[0].Topology().Regular() {
		t.Fatal("irregular subgroup reported regular")
	}
	// No identities: one host.
	j2 := startJob(t, memFabric, 3, Options{})
	if got := j2.groups[0].Topology().String(); got != "1 hosts [0 1 2]" {
		t.Fatalf("topology without identities %s", got)
	}
}

// TestTunerDeterministic: the choice depends only on the call and the agreed inputs, and it
// follows the model's shape (the one-shot for tiny buffers on one host, rd for small ones
// across hosts and beyond the one-shot's bound, the ring for large ones on one host, where
// rhd's lead is within ringMargin; hier across hosts for large buffers).
func TestTunerDeterministic(t *testing.T) {
	table := &TunerTable{Links: map[string]LinkCost{
		"shm":  {AlphaUS: 10, GBps: 2},
		"quic": {AlphaUS: 60, GBps: 0.1},
	}, ReduceGBps: 4}
	for _, tc := range []struct {
		ranks, perHost int
		bytes          int
		want           string
	}{
		{4, 4, 4 << 10, "oneshot"},
		{8, 8, 4 << 10, "oneshot"},
		{8, 8, 16 << 10, "rd"}, // 7 copies of 16 KiB: over the one-shot's bound
		{16, 8, 4 << 10, "rd"},
		{16, 8, 64 << 20, "hier"},
		{64, 8, 64 << 20, "hier"},
		{4, 4, 64 << 20, "ring"}, // rhd is predicted only 2α faster: within ringMargin
	} {
		m := Model{Table: table, Ranks: tc.ranks, RanksPerHost: tc.perHost, Intra: "shm", Inter: "quic"}
		a1, p1, err := m.Choose(tc.bytes)
		if err != nil {
			t.Fatal(err)
		}
		for range 3 {
			a2, p2, _ := m.Choose(tc.bytes)
			if a1 != a2 || p1 != p2 {
				t.Fatalf("%+v: choice changed: %s %g then %s %g", tc, a1, p1, a2, p2)
			}
		}
		if a1 != tc.want {
			t.Errorf("%d ranks, %d per host, %d bytes: tuner picked %s (%.1f µs), want %s", tc.ranks, tc.perHost, tc.bytes, a1, p1*1e6, tc.want)
		}
	}
	// Every rank of a job computes the same choice for every size.
	j := startJob(t, memFabric, 6, Options{Hosts: hostsOf(6, 3), Tuner: table})
	for _, count := range []int{1, 100, 1 << 10, 1 << 16, 1 << 22} {
		a := j.groups[0].Algorithm(count)
		for r, g := range j.groups {
			if b := g.Algorithm(count); b != a {
				t.Fatalf("count %d: rank %d picked %s, rank 0 %s", count, r, b, a)
			}
		}
	}
	if _, err := parseAlgoMode("tree"); err == nil {
		t.Fatal("unknown algorithm accepted")
	}
	if _, err := ParseTunerTable([]byte(`{"links":{"shm":{"alpha_us":1,"gbps":0}}}`)); err == nil {
		t.Fatal("zero bandwidth accepted")
	}
	if DefaultTunerTable().Links["shm"].GBps <= 0 {
		t.Fatal("committed table lacks shm")
	}
}
