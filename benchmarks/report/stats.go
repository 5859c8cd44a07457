package report

import (
	"errors"
	"fmt"
	"math"
	"sort"
)

// ErrNoData is matched (errors.Is) by the errors of functions given nothing to work on.
var ErrNoData = errors.New("no data")

// Summary describes repeated measurements of one quantity: its median and spread. The
// quartiles use linear interpolation between order statistics (the "type 7" definition of
// R and NumPy), so that one, two or three repetitions still give sensible values.
type Summary struct {
	N      int     `json:"n"`
	Median float64 `json:"median"`
	Min    float64 `json:"min"`
	Max    float64 `json:"max"`
	Q1     float64 `json:"q1"`
	Q3     float64 `json:"q3"`
}

// Summarize returns the Summary of xs. NaN and infinite values are refused: a measurement
// that produced one is broken, and a median silently skipping it would hide that.
func Summarize(xs []float64) (Summary, error) {
	if len(xs) == 0 {
		return Summary{}, fmt.Errorf("summarize: %w", ErrNoData)
	}
	s := append([]float64(nil), xs...)
	for i, x := range s {
		if math.IsNaN(x) || math.IsInf(x, 0) {
			return Summary{}, fmt.Errorf("summarize: value %d is %v", i, x)
		}
	}
	sort.Float64s(s)
	return Summary{
		N:      len(s),
		Median: quantile(s, 0.5),
		Min:    s[0],
		Max:    s[len(s)-1],
		Q1:     quantile(s, 0.25),
		Q3:     quantile(s, 0.75),
	}, nil
}

// quantile of sorted s at q in [0, 1], interpolating linearly between order statistics.
func quantile(s []float64, q float64) float64 {
	pos := q * float64(len(s)-1)
	lo := int(math.Floor(pos))
	hi := int(math.Ceil(pos))
	frac := pos - float64(lo)
	return s[lo] + frac*(s[hi]-s[lo])
}

// Scale returns s with every statistic multiplied by k (k ≥ 0), for unit conversions.
func (s Summary) Scale(k float64) Summary {
	return Summary{N: s.N, Median: s.Median * k, Min: s.Min * k, Max: s.Max * k, Q1: s.Q1 * k, Q3: s.Q3 * k}
}

// Efficiency is the scaling efficiency of a run on n ranks that reached throughput tputN
// (samples per second, all ranks together) against tput1 on one rank:
// tputN / (n × tput1). 1 is perfect linear scaling; it can exceed 1 (caches, noise).
func Efficiency(tputN, tput1 float64, n int) (float64, error) {
	switch {
	case n < 1:
		return 0, fmt.Errorf("efficiency: %d ranks, want at least 1", n)
	case !(tput1 > 0) || math.IsInf(tput1, 0):
		return 0, fmt.Errorf("efficiency: single-rank throughput %v, want a positive number", tput1)
	case !(tputN >= 0) || math.IsInf(tputN, 0):
		return 0, fmt.Errorf("efficiency: throughput on %d ranks is %v, want a non-negative number", n, tputN)
	}
	return tputN / (float64(n) * tput1), nil
}

// Speedup is tputN / tput1 (so that Efficiency = Speedup / n).
func Speedup(tputN, tput1 float64) (float64, error) {
	if !(tput1 > 0) {
		return 0, fmt.Errorf("speedup: single-rank throughput %v, want a positive number", tput1)
	}
	return tputN / tput1, nil
}

// BusBandwidth converts the algorithm bandwidth of an AllReduce on n ranks (bytes / time)
// into the bus bandwidth of the nccl-tests convention, algbw × 2(n−1)/n: what each rank's
// link must carry, comparable across rank counts and against the link's own speed.
func BusBandwidth(algbw float64, n int) float64 {
	if n < 1 {
		return 0
	}
	return algbw * 2 * float64(n-1) / float64(n)
}
