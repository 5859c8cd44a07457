package main

import (
	"fmt"
	"io"
	"math"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/ringtrain/ringtrain/collective"
)

func testSettings(seed uint64, world, ops int) settings {
	return settings{seed: seed, world: world, ops: ops, maxBytes: 8 << 20, maxInflight: 4, tags: 3}
}

// TestPlanDeterministic: the same settings give the same sequence (what every rank relies
// on), another seed another one.
func TestPlanDeterministic(t *testing.T) {
	p1, a := makePlan(testSettings(7, 4, 2000))
	p2, b := makePlan(testSettings(7, 4, 2000))
	if !reflect.DeepEqual(a, b) || !reflect.DeepEqual(p1.groups, p2.groups) {
		t.Fatal("two plans of the same seed differ")
	}
	_, c := makePlan(testSettings(8, 4, 2000))
	if reflect.DeepEqual(a, c) {
		t.Fatal("seeds 7 and 8 drew the same plan")
	}
}

// TestPlanShape checks the invariants the runner relies on, for several world sizes.
func TestPlanShape(t *testing.T) {
	for _, world := range []int{1, 2, 3, 4, 5, 8} {
		s := testSettings(uint64(world), world, 3000)
		p, ops := makePlan(s)
		if len(ops) != s.ops {
			t.Fatalf("world %d: %d ops, want %d", world, len(ops), s.ops)
		}
		for gi, g := range p.groups {
			if len(g) == 0 {
				t.Fatalf("world %d: empty group %d", world, gi)
			}
			seen := map[int]bool{}
			for _, r := range g {
				if r < 0 || r >= world || seen[r] {
					t.Fatalf("world %d: bad group %v", world, g)
				}
				seen[r] = true
			}
		}
		issued := map[int]bool{}
		waited := map[int]bool{}
		kinds := map[kind]int{}
		var fp16, async, sub, empty int
		for i, o := range ops {
			if o.index != i {
				t.Fatalf("op %d has index %d", i, o.index)
			}
			n := len(p.groups[o.group])
			kinds[o.kind]++
			if o.fp16 {
				fp16++
			}
			if o.group != 0 {
				sub++
			}
			if o.count == 0 {
				empty++
			}
			if o.count < 0 || 4*o.count > s.maxBytes {
				t.Fatalf("%v: count out of range", &o)
			}
			if (o.kind == kReduceScatter || o.kind == kAllGather) && o.count%n != 0 {
				t.Fatalf("%v: count not a multiple of the group size %d", &o, n)
			}
			if o.kind == kSendRecv && (o.src == o.dst || o.src >= n || o.dst >= n || o.tag >= s.tags) {
				t.Fatalf("%v: bad Send/Recv", &o)
			}
			if o.root >= n {
				t.Fatalf("%v: root out of the group", &o)
			}
			if (o.kind == kAllReduce || o.kind == kReduceScatter) && float64(n)*math.Ldexp(1, o.mag) > 1<<24 {
				t.Fatalf("%v: sums of %d members could exceed 2^24", &o, n)
			}
			if o.fp16 && o.kind != kAllReduce && o.kind != kReduceScatter {
				t.Fatalf("%v: fp16 on a non-reduction", &o)
			}
			if o.async {
				issued[i] = true
				async++
			}
			for _, w := range o.waits {
				if !issued[w] || waited[w] || w > i {
					t.Fatalf("op %d waits for op %d, which is not outstanding", i, w)
				}
				waited[w] = true
			}
			outstanding := 0
			for k := range issued {
				if !waited[k] {
					outstanding++
				}
			}
			if outstanding > s.maxInflight {
				t.Fatalf("after op %d, %d ops outstanding > %d", i, outstanding, s.maxInflight)
			}
		}
		if len(issued) != len(waited) {
			t.Fatalf("world %d: %d async ops, %d waited", world, len(issued), len(waited))
		}
		t.Logf("world %d: kinds %v, %d fp16, %d async, %d on subgroups, %d empty", world, kinds, fp16, async, sub, empty)
		if world >= 2 {
			for k := range numKinds {
				if kinds[k] == 0 {
					t.Errorf("world %d: no %v in 3000 ops", world, k)
				}
			}
			if fp16 == 0 || sub == 0 || empty == 0 || async == 0 {
				t.Errorf("world %d: some kind of op never drawn", world)
			}
		}
	}
}

// TestWaitsOutOfOrder: the plan does wait for ops out of issue order.
func TestWaitsOutOfOrder(t *testing.T) {
	_, ops := makePlan(testSettings(1, 4, 500))
	for _, o := range ops {
		if len(o.waits) > 1 && !slices.IsSorted(o.waits) {
			return
		}
	}
	t.Fatal("no op waits for its predecessors out of order")
}

// TestSizesLogUniform: buffer sizes spread over every binade from 4 bytes to 8 MiB.
func TestSizesLogUniform(t *testing.T) {
	_, ops := makePlan(testSettings(3, 4, 20000))
	var binades [24]int
	for _, o := range ops {
		if o.kind == kAllReduce && o.count > 0 {
			binades[int(math.Log2(float64(o.count)))]++
		}
	}
	for b := 0; b < 21; b++ {
		if binades[b] == 0 {
			t.Errorf("no AllReduce of 2^%d..2^%d elements", b, b+1)
		}
	}
	t.Logf("AllReduce counts per binade of elements: %v", binades)
}

// TestReduceExpect checks the independent computation against a float64 one, and that
// inputs are integers in range.
func TestReduceExpect(t *testing.T) {
	members := []int{3, 0, 2}
	for _, red := range []collective.Op{collective.Sum, collective.Avg, collective.Max, collective.Min} {
		o := &op{index: 5, red: red, mag: 21, count: 1000}
		want, abs := reduceExpect(9, o, members, 100, 1000)
		var maxAbs float64
		for j := 100; j < 1000; j++ {
			var xs []float64
			var a float64
			for _, r := range members {
				x := float64(intAt(stream(9, 5, r, purposeInput), j, o.mag))
				if x != math.Trunc(x) || x < -(1<<21) || x >= 1<<21 {
					t.Fatalf("input %v is not an integer in [-2^21, 2^21)", x)
				}
				xs = append(xs, x)
				if red == collective.Max || red == collective.Min {
					a = max(a, math.Abs(x))
				} else {
					a += math.Abs(x)
				}
			}
			maxAbs = max(maxAbs, a)
			var w float64
			switch red {
			case collective.Sum:
				w = xs[0] + xs[1] + xs[2]
			case collective.Avg:
				w = float64(float32(xs[0]+xs[1]+xs[2]) / 3)
			case collective.Max:
				w = slices.Max(xs)
			case collective.Min:
				w = slices.Min(xs)
			}
			if float64(want[j-100]) != w {
				t.Fatalf("%v: [%d] = %v, want %v", red, j, want[j-100], w)
			}
		}
		if abs != maxAbs {
			t.Fatalf("%v: A = %v, want %v", red, abs, maxAbs)
		}
	}
}

// TestCompare: one flipped bit is found; NaN never passes a bound; the bound accepts what it
// should.
func TestCompare(t *testing.T) {
	a := []float32{1, 2, 3, -0.5}
	b := slices.Clone(a)
	if m := compareBits(a, b, 0); m != nil {
		t.Fatalf("equal slices: %v", m)
	}
	b[2] = math.Float32frombits(math.Float32bits(b[2]) ^ 1)
	if m := compareBits(b, a, 10); m == nil || m.count != 1 || m.first != 12 {
		t.Fatalf("flipped bit: %v", m)
	}
	if m := compareBits([]float32{float32(math.Copysign(0, -1))}, []float32{0}, 0); m == nil {
		t.Fatal("-0 passed as +0")
	}
	if m := compareBound(b, a, 0, 1e-3); m != nil {
		t.Fatalf("within bound: %v", m)
	}
	if m := compareBound([]float32{float32(math.NaN())}, []float32{0}, 0, 1e30); m == nil {
		t.Fatal("NaN within a bound")
	}
	if m := compareBound([]float32{1.01}, []float32{1}, 0, 1e-3); m == nil || !strings.Contains(m.String(), "fp16 bound") {
		t.Fatalf("beyond bound: %v", m)
	}
}

// TestFP16BoundValue: ≈ n·2^-11·A for small n, as collective.AllReduce documents.
func TestFP16BoundValue(t *testing.T) {
	b := fp16Bound(collective.Sum, 4, 4, 1000)
	approx := 4 * math.Ldexp(1, -11) * 1000
	if b < approx || b > approx*1.01 {
		t.Fatalf("bound %v, want ≈ %v", b, approx)
	}
	if avg := fp16Bound(collective.Avg, 4, 4, 1000); avg < b/4 || avg > b/4*1.01 {
		t.Fatalf("Avg bound %v, want ≈ %v", avg, b/4)
	}
}

func TestBitsAtFinite(t *testing.T) {
	key := stream(1, 2, 3, purposeInput)
	for j := range 100000 {
		x := bitsAt(key, j)
		if math.IsNaN(float64(x)) || math.IsInf(float64(x), 0) {
			t.Fatalf("bitsAt gave %v", x)
		}
	}
}

func TestFlags(t *testing.T) {
	c, err := parseFlags(strings.Fields("--ops 5 --seed 3 --max-bytes 64KiB --chaos-kill-after 2s"), io.Discard)
	if err != nil || c.ops != 5 || c.seed != 3 || c.maxBytes != 64<<10 || c.chaosAfter.Seconds() != 2 {
		t.Fatalf("%+v, %v", c, err)
	}
	for _, bad := range []string{"--max-bytes 2", "--max-bytes 3GiB", "--ops -1", "--max-inflight 0", "extra"} {
		if _, err := parseFlags(strings.Fields(bad), io.Discard); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	seeds, err := parseSeeds("1-3,7")
	if err != nil || fmt.Sprint(seeds) != "[1 2 3 7]" {
		t.Fatalf("parseSeeds: %v %v", seeds, err)
	}
}

func TestNamesRank(t *testing.T) {
	for _, c := range []struct {
		msg  string
		v    int
		want bool
	}{
		{"collective: rank 0: AllReduce: rank 1: shmtransport: peer process exited", 1, true},
		{"collective: rank 0: AllReduce: rank 12: gone", 1, false},
		{"collective: rank 0: AllReduce: EOF", 1, false},
		{"collective: rank 2: read: EOF", 2, true}, // the prefix names the observer; the caller never asks for its own rank
	} {
		if got := namesRank(fmt.Errorf("%s", c.msg), c.v); got != c.want {
			t.Errorf("namesRank(%q, %d) = %v", c.msg, c.v, got)
		}
	}
}
