package report

import (
	"errors"
	"math"
	"testing"
)

func TestSummarize(t *testing.T) {
	s, err := Summarize([]float64{5, 1, 3, 2, 4})
	if err != nil {
		t.Fatal(err)
	}
	want := Summary{N: 5, Median: 3, Min: 1, Max: 5, Q1: 2, Q3: 4}
	if s != want {
		t.Fatalf("got %+v, want %+v", s, want)
	}
	// Even count: the median is the mean of the middle pair; quartiles interpolate
	// (NumPy's default: quantile([1,2,3,4], .25) = 1.75).
	s, _ = Summarize([]float64{4, 1, 3, 2})
	if s.Median != 2.5 || s.Q1 != 1.75 || s.Q3 != 3.25 {
		t.Fatalf("even count: %+v", s)
	}
	s, _ = Summarize([]float64{7})
	if s.Median != 7 || s.Min != 7 || s.Max != 7 || s.Q1 != 7 || s.Q3 != 7 {
		t.Fatalf("single value: %+v", s)
	}
	if _, err := Summarize(nil); !errors.Is(err, ErrNoData) {
		t.Fatalf("empty input: %v", err)
	}
	if _, err := Summarize([]float64{1, math.NaN()}); err == nil {
		t.Fatal("NaN accepted")
	}
	in := []float64{3, 1, 2}
	Summarize(in)
	if in[0] != 3 {
		t.Fatal("Summarize reordered its input")
	}
}

func TestEfficiency(t *testing.T) {
	for _, c := range []struct {
		tputN, tput1 float64
		n            int
		want         float64
	}{
		{100, 100, 1, 1}, // one rank is its own baseline
		{400, 100, 4, 1}, // perfect linear scaling
		{300, 100, 4, 0.75},
		{150, 100, 2, 0.75},
		{80, 100, 2, 0.4}, // slower than one rank
		{0, 100, 8, 0},
	} {
		got, err := Efficiency(c.tputN, c.tput1, c.n)
		if err != nil || math.Abs(got-c.want) > 1e-12 {
			t.Errorf("Efficiency(%v, %v, %d) = %v, %v; want %v", c.tputN, c.tput1, c.n, got, err, c.want)
		}
		sp, _ := Speedup(c.tputN, c.tput1)
		if math.Abs(sp/float64(c.n)-got) > 1e-12 {
			t.Errorf("speedup/n = %v, efficiency %v", sp/float64(c.n), got)
		}
	}
	for _, bad := range []struct {
		tputN, tput1 float64
		n            int
	}{{100, 0, 2}, {100, -1, 2}, {100, 100, 0}, {-1, 100, 2}, {math.NaN(), 100, 2}, {100, math.Inf(1), 2}} {
		if _, err := Efficiency(bad.tputN, bad.tput1, bad.n); err == nil {
			t.Errorf("Efficiency(%v, %v, %d) accepted", bad.tputN, bad.tput1, bad.n)
		}
	}
}

func TestBusBandwidth(t *testing.T) {
	// nccl-tests: busbw = algbw × 2(n−1)/n.
	if got := BusBandwidth(10, 2); got != 10 {
		t.Fatalf("2 ranks: %v", got)
	}
	if got := BusBandwidth(10, 4); got != 15 {
		t.Fatalf("4 ranks: %v", got)
	}
	if got := BusBandwidth(10, 1); got != 0 {
		t.Fatalf("1 rank: %v", got)
	}
}
