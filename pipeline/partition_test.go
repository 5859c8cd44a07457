package pipeline

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"testing"
)

// stageCosts sums costs per stage for split points, the plain way.
func stageCosts(costs []float64, splits []int) []float64 {
	bounds := append(append([]int{0}, splits...), len(costs))
	out := make([]float64, 0, len(bounds)-1)
	for i := 0; i+1 < len(bounds); i++ {
		s := 0.0
		for _, c := range costs[bounds[i]:bounds[i+1]] {
			s += c
		}
		out = append(out, s)
	}
	return out
}

func maxOf(v []float64) float64 {
	m := math.Inf(-1)
	for _, x := range v {
		m = max(m, x)
	}
	return m
}

func sumSq(v []float64) float64 {
	s := 0.0
	for _, x := range v {
		s += x * x
	}
	return s
}

// bruteForce tries every way to choose k-1 split points out of 1..n-1 and
// returns the best bottleneck and, among partitions reaching it, the
// smallest sum of squared stage costs.
func bruteForce(costs []float64, k int) (bottleneck, sq float64) {
	n := len(costs)
	bottleneck, sq = math.Inf(1), math.Inf(1)
	splits := make([]int, k-1)
	var rec func(i, from int)
	type cand struct{ b, s float64 }
	var all []cand
	rec = func(i, from int) {
		if i == k-1 {
			sc := stageCosts(costs, splits)
			all = append(all, cand{maxOf(sc), sumSq(sc)})
			return
		}
		for p := from; p <= n-1-(k-2-i); p++ {
			splits[i] = p
			rec(i+1, p+1)
		}
	}
	rec(0, 1)
	for _, c := range all {
		bottleneck = min(bottleneck, c.b)
	}
	for _, c := range all {
		if c.b <= bottleneck*(1+1e-12) {
			sq = min(sq, c.s)
		}
	}
	return bottleneck, sq
}

func near(a, b float64) bool { return math.Abs(a-b) <= 1e-9*max(1, math.Abs(a), math.Abs(b)) }

func TestBalanceMatchesBruteForce(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for trial := 0; trial < 400; trial++ {
		n := 1 + rng.IntN(10)
		costs := make([]float64, n)
		for i := range costs {
			switch trial % 3 {
			case 0: // continuous costs: ties are rare
				costs[i] = rng.Float64() * 100
			case 1: // small integers: many ties, exercises the tie-break
				costs[i] = float64(rng.IntN(4))
			default: // a model-like spread: a few heavy layers, many light
				costs[i] = math.Pow(10, rng.Float64()*4)
			}
		}
		for k := 1; k <= n; k++ {
			name := fmt.Sprintf("costs %v k=%d", costs, k)
			splits, err := Balance(costs, k)
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			if err := CheckSplits(splits, n); err != nil || len(splits) != k-1 {
				t.Fatalf("%s: invalid splits %v: %v", name, splits, err)
			}
			allZero := true
			for _, c := range costs {
				allZero = allZero && c == 0
			}
			ref := costs
			if allZero {
				ref = make([]float64, n)
				for i := range ref {
					ref[i] = 1
				}
			}
			wantB, wantSq := bruteForce(ref, k)
			sc := stageCosts(ref, splits)
			if !near(maxOf(sc), wantB) {
				t.Fatalf("%s: splits %v bottleneck %v, optimum %v", name, splits, maxOf(sc), wantB)
			}
			if !near(sumSq(sc), wantSq) {
				t.Fatalf("%s: splits %v sum of squares %v, best among optimal %v", name, splits, sumSq(sc), wantSq)
			}
		}
	}
}

// feasible reports whether integer costs fit in k stages of at most b each,
// greedily: the classic check behind a binary search on the bottleneck.
func feasible(costs []int, k, b int) bool {
	stages, cur := 1, 0
	for _, c := range costs {
		if c > b {
			return false
		}
		if cur+c > b {
			stages, cur = stages+1, 0
		}
		cur += c
	}
	return stages <= k
}

// For sizes too large to enumerate, compare with a binary search over the
// bottleneck, an independent exact method on integer costs.
func TestBalanceMatchesBinarySearchLarge(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	for trial := 0; trial < 20; trial++ {
		n := 50 + rng.IntN(150)
		k := 1 + rng.IntN(16)
		ic := make([]int, n)
		fc := make([]float64, n)
		hi := 0
		for i := range ic {
			ic[i] = 1 + rng.IntN(1000)
			fc[i] = float64(ic[i])
			hi += ic[i]
		}
		lo := 0
		for lo < hi {
			mid := (lo + hi) / 2
			if feasible(ic, k, mid) {
				hi = mid
			} else {
				lo = mid + 1
			}
		}
		splits, err := Balance(fc, k)
		if err != nil {
			t.Fatal(err)
		}
		if got := maxOf(stageCosts(fc, splits)); got != float64(lo) {
			t.Fatalf("n=%d k=%d: bottleneck %v, binary search says %d", n, k, got, lo)
		}
	}
}

func TestBalanceErrors(t *testing.T) {
	cases := []struct {
		costs []float64
		k     int
		want  error
		says  string
	}{
		{nil, 1, ErrLayerCost, "no layers"},
		{[]float64{1, 2}, 0, ErrStageCount, "0 stages for 2 layers"},
		{[]float64{1, 2}, 3, ErrStageCount, "3 stages for 2 layers"},
		{[]float64{1, -2, 3}, 2, ErrLayerCost, "layer 1"},
		{[]float64{1, math.NaN()}, 1, ErrLayerCost, "layer 1"},
		{[]float64{math.Inf(1), 1}, 1, ErrLayerCost, "layer 0"},
		{[]float64{math.MaxFloat64, math.MaxFloat64}, 1, ErrLayerCost, "overflow"},
	}
	for _, c := range cases {
		_, err := Balance(c.costs, c.k)
		if !errors.Is(err, c.want) || !strings.Contains(err.Error(), c.says) {
			t.Errorf("Balance(%v, %d) = %v; want %v saying %q", c.costs, c.k, err, c.want, c.says)
		}
	}
}

func TestBalanceAllZeroCostsSplitsByCount(t *testing.T) {
	splits, err := Balance(make([]float64, 7), 3)
	if err != nil {
		t.Fatal(err)
	}
	// 7 layers in 3 stages: sizes 3,2,2 in some order; no stage above 3.
	sizes := []int{splits[0], splits[1] - splits[0], 7 - splits[1]}
	for _, s := range sizes {
		if s < 2 || s > 3 {
			t.Fatalf("zero costs: splits %v give stage sizes %v", splits, sizes)
		}
	}
}

func TestCheckSplits(t *testing.T) {
	cases := []struct {
		splits []int
		n      int
		want   error
		says   string
	}{
		{[]int{3, 7}, 10, nil, ""},
		{nil, 1, nil, ""},
		{[]int{0, 5}, 10, ErrSplitRange, "split point 0 is 0"},
		{[]int{3, 10}, 10, ErrSplitRange, "split point 1 is 10"},
		{[]int{-2}, 10, ErrSplitRange, "is -2"},
		{[]int{5, 3}, 10, ErrSplitOrder, "split point 1 is 3, after 5"},
		{[]int{3, 3}, 10, ErrEmptyStage, "stage 1 with no layers"},
		{[]int{1, 2, 3}, 3, ErrStageCount, "4 stages for 3 layers"},
		{nil, 0, ErrLayerCost, "no layers"},
	}
	for _, c := range cases {
		err := CheckSplits(c.splits, c.n)
		if c.want == nil {
			if err != nil {
				t.Errorf("CheckSplits(%v, %d) = %v", c.splits, c.n, err)
			}
			continue
		}
		if !errors.Is(err, c.want) || !strings.Contains(err.Error(), c.says) {
			t.Errorf("CheckSplits(%v, %d) = %v; want %v saying %q", c.splits, c.n, err, c.want, c.says)
		}
	}
}

func TestParseSplits(t *testing.T) {
	got, err := ParseSplits(" 3, 7 ")
	if err != nil || len(got) != 2 || got[0] != 3 || got[1] != 7 {
		t.Fatalf("ParseSplits: %v, %v", got, err)
	}
	if got, err := ParseSplits(""); err != nil || got != nil {
		t.Fatalf("empty: %v, %v", got, err)
	}
	if _, err := ParseSplits("3,x"); !errors.Is(err, ErrSplitRange) || !strings.Contains(err.Error(), `"x"`) {
		t.Fatalf("bad: %v", err)
	}
}

func TestPlan(t *testing.T) {
	layers := []Layer{
		{"conv1", 320, 30}, {"relu", 0, 1}, {"pool", 0, 2},
		{"conv2", 18496, 60}, {"flat", 0, 0}, {"fc", 10250, 7},
	}
	p, err := NewPlan(layers, []int{3, 4})
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Stages) != 3 {
		t.Fatalf("stages: %+v", p.Stages)
	}
	want := []StagePlan{
		{Index: 0, Start: 0, End: 3, Params: 320, Cost: 33},
		{Index: 1, Start: 3, End: 4, Params: 18496, Cost: 60},
		{Index: 2, Start: 4, End: 6, Params: 10250, Cost: 7},
	}
	for i, w := range want {
		if p.Stages[i] != w {
			t.Errorf("stage %d: %+v, want %+v", i, p.Stages[i], w)
		}
	}
	if got := p.Splits(); len(got) != 2 || got[0] != 3 || got[1] != 4 {
		t.Errorf("Splits: %v", got)
	}
	for layer, st := range []int{0, 0, 0, 1, 2, 2} {
		if got := p.StageOf(layer); got != st {
			t.Errorf("StageOf(%d) = %d, want %d", layer, got, st)
		}
	}
	if p.StageOf(6) != -1 || p.StageOf(-1) != -1 {
		t.Error("StageOf out of range should be -1")
	}
	if p.TotalCost() != 100 || p.Bottleneck() != 60 || !near(p.Imbalance(), 1.8) {
		t.Errorf("total %v bottleneck %v imbalance %v", p.TotalCost(), p.Bottleneck(), p.Imbalance())
	}
	p.Stages[1].Device = "cuda:1"
	out := p.String()
	for _, s := range []string{
		"stage  layers", "0      0-2 conv1..pool", "1      3 conv2", "18,496", "60.0%", "cuda:1",
		"bottleneck 60.0% of total cost, imbalance 1.80",
	} {
		if !strings.Contains(out, s) {
			t.Errorf("plan output lacks %q:\n%s", s, out)
		}
	}
	if strings.Count(out, " -\n") != 2 {
		t.Errorf("stages without a device should print '-':\n%s", out)
	}

	bp, err := BalancedPlan(layers, 3)
	if err != nil {
		t.Fatal(err)
	}
	wantB, _ := bruteForce([]float64{30, 1, 2, 60, 0, 7}, 3)
	if bp.Bottleneck() != wantB {
		t.Errorf("BalancedPlan bottleneck %v, want %v", bp.Bottleneck(), wantB)
	}

	if _, err := NewPlan(layers, []int{3, 3}); !errors.Is(err, ErrEmptyStage) {
		t.Errorf("NewPlan repeat: %v", err)
	}
	if _, err := BalancedPlan(layers, 7); !errors.Is(err, ErrStageCount) {
		t.Errorf("BalancedPlan k>n: %v", err)
	}
	bad := append([]Layer(nil), layers...)
	bad[2].Cost = math.NaN()
	if _, err := NewPlan(bad, nil); !errors.Is(err, ErrLayerCost) || !strings.Contains(err.Error(), "layer 2 (pool)") {
		t.Errorf("NewPlan NaN cost: %v", err)
	}
	bad[2].Cost, bad[2].Params = 1, -5
	if _, err := NewPlan(bad, nil); !errors.Is(err, ErrLayerCost) {
		t.Errorf("NewPlan negative params: %v", err)
	}
}

func TestGroupDigits(t *testing.T) {
	for v, want := range map[int64]string{0: "0", 999: "999", 1000: "1,000", 1234567: "1,234,567", -12345: "-12,345"} {
		if got := groupDigits(v); got != want {
			t.Errorf("groupDigits(%d) = %q, want %q", v, got, want)
		}
	}
}
