package report

import (
	"errors"
	"math"
	"math/rand/v2"
	"testing"
)

// sweep returns timings of an ideal α-β ring for sizes 1 KiB…64 MiB on the given rank
// counts, each time multiplied by (1 + noise·u), u uniform in [−1, 1).
func sweep(alpha, beta, noise float64, ranks []int, rng *rand.Rand) []Timing {
	var ts []Timing
	for _, n := range ranks {
		for b := 1 << 10; b <= 64<<20; b *= 4 {
			m := AlphaBeta{Alpha: alpha, Beta: beta}
			t := m.Predict(n, float64(b)) * (1 + noise*(2*rng.Float64()-1))
			ts = append(ts, Timing{Ranks: n, Bytes: float64(b), Seconds: t})
		}
	}
	return ts
}

func TestFitAlphaBetaRecoversParameters(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, c := range []struct {
		name        string
		alpha, beta float64
		noise       float64
		ranks       []int
		tol         float64 // relative tolerance on α and β
	}{
		{"exact, loopback-like", 50e-6, 1 / 0.4e9, 0, []int{2, 4}, 1e-9},
		{"exact, one rank count", 20e-6, 1 / 12.5e9, 0, []int{4}, 1e-9},
		{"5% noise", 50e-6, 1 / 0.4e9, 0.05, []int{2, 4}, 0.1},
		{"10% noise, 100G link", 5e-6, 1 / 12.5e9, 0.10, []int{2, 4, 8}, 0.15},
	} {
		t.Run(c.name, func(t *testing.T) {
			ts := sweep(c.alpha, c.beta, c.noise, c.ranks, rng)
			m, err := FitAlphaBeta(ts)
			if err != nil {
				t.Fatal(err)
			}
			if e := math.Abs(m.Alpha-c.alpha) / c.alpha; e > c.tol {
				t.Errorf("α = %.3g, want %.3g (rel err %.2g > %.2g)", m.Alpha, c.alpha, e, c.tol)
			}
			if e := math.Abs(m.Beta-c.beta) / c.beta; e > c.tol {
				t.Errorf("β = %.3g, want %.3g (rel err %.2g > %.2g)", m.Beta, c.beta, e, c.tol)
			}
			if m.Points != len(ts) || m.Clamped != "" {
				t.Errorf("points %d of %d, clamped %q", m.Points, len(ts), m.Clamped)
			}
			if c.noise == 0 && (m.RelRMS > 1e-9 || m.R2 < 1-1e-9) {
				t.Errorf("exact data: rel RMS %g, R² %g", m.RelRMS, m.R2)
			}
			if c.noise > 0 && (m.RelRMS > c.noise || m.MaxRel > 2*c.noise || m.R2 < 0.99) {
				t.Errorf("noisy fit quality: rel RMS %g, max %g, R² %g", m.RelRMS, m.MaxRel, m.R2)
			}
		})
	}
}

func TestFitAlphaBetaClampsNegative(t *testing.T) {
	// Pure bandwidth with times slightly below the line through the origin for small
	// messages would pull α negative: the fit must pin it at 0, not report it.
	var ts []Timing
	beta := 1 / 1e9
	for b := 1 << 10; b <= 1<<24; b *= 4 {
		tm := AlphaBeta{Beta: beta}.Predict(2, float64(b))
		if b < 1<<14 {
			tm *= 0.5
		}
		ts = append(ts, Timing{Ranks: 2, Bytes: float64(b), Seconds: tm})
	}
	m, err := FitAlphaBeta(ts)
	if err != nil {
		t.Fatal(err)
	}
	if m.Alpha != 0 || m.Clamped != "alpha" || !(m.Beta > 0) {
		t.Fatalf("got %+v, want α pinned at 0", m)
	}
}

func TestFitAlphaBetaErrors(t *testing.T) {
	if _, err := FitAlphaBeta(nil); !errors.Is(err, ErrNoData) {
		t.Errorf("no timings: %v", err)
	}
	// Single-rank timings carry no information and are skipped.
	one := []Timing{{1, 1024, 1e-6}, {1, 4096, 1e-6}, {2, 1024, 1e-4}}
	if _, err := FitAlphaBeta(one); !errors.Is(err, ErrNoData) {
		t.Errorf("one usable timing: %v", err)
	}
	// One message size on one rank count: latency and bandwidth are inseparable.
	same := []Timing{{2, 1024, 1e-4}, {2, 1024, 1.1e-4}}
	if _, err := FitAlphaBeta(same); err == nil {
		t.Error("inseparable timings accepted")
	}
	for _, bad := range [][]Timing{
		{{2, 1024, 0}, {2, 4096, 1e-4}},
		{{2, 1024, math.NaN()}, {2, 4096, 1e-4}},
		{{0, 1024, 1e-4}, {2, 4096, 1e-4}},
		{{2, -1, 1e-4}, {2, 4096, 1e-4}},
	} {
		if _, err := FitAlphaBeta(bad); err == nil {
			t.Errorf("bad timings %v accepted", bad)
		}
	}
}

func TestAlphaBetaPredict(t *testing.T) {
	m := AlphaBeta{Alpha: 1e-5, Beta: 1e-9}
	// 4 ranks, 1 MB: 2·3·10µs + 2·3/4·1e6·1e-9 s = 60µs + 1.5ms.
	if got, want := m.Predict(4, 1e6), 60e-6+1.5e-3; math.Abs(got-want) > 1e-15 {
		t.Fatalf("Predict = %v, want %v", got, want)
	}
	if m.Predict(1, 1e6) != 0 {
		t.Fatal("one rank moves nothing")
	}
	if got := m.BandwidthGBs(); math.Abs(got-1) > 1e-12 {
		t.Fatalf("bandwidth %v GB/s, want 1", got)
	}
}
