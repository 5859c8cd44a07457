package report

import (
	"fmt"
	"math"
)

// Timing is one measured AllReduce: Bytes of payload reduced across Ranks ranks in Seconds.
type Timing struct {
	Ranks   int     `json:"ranks"`
	Bytes   float64 `json:"bytes"`
	Seconds float64 `json:"seconds"`
}

// AlphaBeta is the α-β (latency-bandwidth, "Hockney") cost model of a ring AllReduce:
//
//	T(n bytes, N ranks) = 2(N−1)·α + 2(N−1)/N · n · β
//
// A ring AllReduce is a reduce-scatter then an all-gather, N−1 steps each; every step pays
// one start-up latency α, and over the 2(N−1) steps each rank sends (and receives)
// 2(N−1)/N of the buffer, at β seconds per byte. Reduction arithmetic is folded into β.
type AlphaBeta struct {
	// Alpha is the latency of one ring step, in seconds.
	Alpha float64 `json:"alpha_s"`
	// Beta is the time per byte sent by one rank, in seconds (1/β is the effective link
	// bandwidth in bytes per second).
	Beta float64 `json:"beta_s_per_byte"`
	// Points is the number of timings fitted.
	Points int `json:"points"`
	// R2 is the coefficient of determination of the model on the raw times,
	// 1 − Σ(t−T)² / Σ(t−mean t)²: the share of the variance the model explains.
	R2 float64 `json:"r2"`
	// RelRMS is the root mean square of the relative residuals (T−t)/t, the quantity the
	// fit minimises; MaxRel is the largest |T−t|/t.
	RelRMS float64 `json:"rel_rms"`
	MaxRel float64 `json:"max_rel"`
	// Clamped names a parameter the fit wanted negative and that was pinned to 0
	// ("alpha" or "beta"); empty when neither was.
	Clamped string `json:"clamped,omitempty"`
}

// Predict returns the model's time in seconds for an AllReduce of bytes on ranks ranks
// (0 for a single rank: nothing moves).
func (m AlphaBeta) Predict(ranks int, bytes float64) float64 {
	if ranks <= 1 {
		return 0
	}
	n := float64(ranks)
	return 2*(n-1)*m.Alpha + 2*(n-1)/n*bytes*m.Beta
}

// BandwidthGBs is 1/β in GB/s (1e9 bytes per second); 0 when β is 0.
func (m AlphaBeta) BandwidthGBs() float64 {
	if m.Beta <= 0 {
		return 0
	}
	return 1 / m.Beta / 1e9
}

// FitAlphaBeta fits α and β to the timings by least squares on relative residuals: it
// minimises Σ((T(nᵢ, Nᵢ) − tᵢ)/tᵢ)². Relative rather than absolute residuals, because a sweep
// spans several orders of magnitude of message size: absolute least squares would let the
// few largest messages decide everything and leave α, which only small messages reveal,
// to noise. Both parameters are kept non-negative (a negative latency is not physical; the
// fit then pins it to 0 and says so in Clamped).
//
// It needs at least two timings on more than one rank, and message sizes or rank counts
// that separate the two terms (not all timings with the same ratio of the two regressors).
func FitAlphaBeta(ts []Timing) (AlphaBeta, error) {
	// Each timing gives one row of the linear system a·α + b·β ≈ 1, with
	// a = 2(N−1)/t and b = 2(N−1)/N·n/t (the model divided by the measured time).
	var saa, sab, sbb, sa, sb float64
	used := 0
	for i, t := range ts {
		switch {
		case t.Ranks < 1:
			return AlphaBeta{}, fmt.Errorf("fit α-β: timing %d has %d ranks", i, t.Ranks)
		case !(t.Seconds > 0) || math.IsInf(t.Seconds, 0):
			return AlphaBeta{}, fmt.Errorf("fit α-β: timing %d (%d ranks, %.0f bytes) has time %v s, want > 0", i, t.Ranks, t.Bytes, t.Seconds)
		case !(t.Bytes >= 0) || math.IsInf(t.Bytes, 0):
			return AlphaBeta{}, fmt.Errorf("fit α-β: timing %d has %v bytes", i, t.Bytes)
		case t.Ranks == 1:
			continue // nothing moves on one rank: it says nothing about α or β
		}
		n := float64(t.Ranks)
		a := 2 * (n - 1) / t.Seconds
		b := 2 * (n - 1) / n * t.Bytes / t.Seconds
		saa += a * a
		sab += a * b
		sbb += b * b
		sa += a
		sb += b
		used++
	}
	if used < 2 {
		return AlphaBeta{}, fmt.Errorf("fit α-β: %d timings on more than one rank, want at least 2: %w", used, ErrNoData)
	}
	m := AlphaBeta{Points: used}
	det := saa*sbb - sab*sab
	// The normal equations are singular when every row has the same a:b ratio (one
	// message size on one rank count): the two terms cannot be told apart.
	if !(math.Abs(det) > 1e-12*saa*sbb) {
		return AlphaBeta{}, fmt.Errorf("fit α-β: the timings cannot separate latency from bandwidth (vary the message size)")
	}
	m.Alpha = (sa*sbb - sb*sab) / det
	m.Beta = (saa*sb - sab*sa) / det
	switch {
	case m.Alpha < 0 && m.Beta < 0:
		return AlphaBeta{}, fmt.Errorf("fit α-β: both parameters came out negative; the timings do not follow the model")
	case m.Alpha < 0:
		m.Alpha, m.Beta, m.Clamped = 0, sb/sbb, "alpha"
	case m.Beta < 0:
		m.Alpha, m.Beta, m.Clamped = sa/saa, 0, "beta"
	}

	var mean float64
	for _, t := range ts {
		if t.Ranks > 1 {
			mean += t.Seconds
		}
	}
	mean /= float64(used)
	var ssRes, ssTot, rel2 float64
	for _, t := range ts {
		if t.Ranks == 1 {
			continue
		}
		p := m.Predict(t.Ranks, t.Bytes)
		ssRes += (p - t.Seconds) * (p - t.Seconds)
		ssTot += (t.Seconds - mean) * (t.Seconds - mean)
		r := math.Abs(p-t.Seconds) / t.Seconds
		rel2 += r * r
		m.MaxRel = math.Max(m.MaxRel, r)
	}
	m.RelRMS = math.Sqrt(rel2 / float64(used))
	if ssTot > 0 {
		m.R2 = 1 - ssRes/ssTot
	} else {
		m.R2 = math.NaN()
	}
	return m, nil
}
