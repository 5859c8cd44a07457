package report

import (
	"fmt"
	"sort"
)

// BatchFor returns the per-rank batch of a run on n ranks in the given mode: the fixed
// per-rank batch for weak scaling, the global batch divided by n for strong scaling.
func BatchFor(mode string, n, batch, globalBatch int) (int, error) {
	switch mode {
	case "weak":
		return batch, nil
	case "strong":
		if n < 1 || globalBatch%n != 0 || globalBatch/n < 1 {
			return 0, fmt.Errorf("strong scaling: global batch %d does not divide into %d ranks", globalBatch, n)
		}
		return globalBatch / n, nil
	}
	return 0, fmt.Errorf("unknown scaling mode %q (want weak or strong)", mode)
}

// Aggregate summarises runs into scaling points, one per (model, mode, compression, rank
// count) of the settings. Single-rank runs are shared: a run on one rank with the batch a
// mode asks for is that mode's baseline for every compression (one rank sends nothing).
// Each repetition's efficiency is taken against the median single-rank throughput. A
// configuration with no run is left out (and named in the returned notes).
func Aggregate(runs []Run, s Settings, m Machine) ([]ScalingPoint, []string, error) {
	var out []ScalingPoint
	var notes []string
	ranks := append([]int(nil), s.NProc...)
	sort.Ints(ranks)
	tpr := max(1, s.ThreadsPerRank)
	for _, model := range s.Models {
		for _, mode := range s.Modes {
			b1, err := BatchFor(mode, 1, s.BatchOf(model), s.GlobalBatchOf(model))
			if err != nil {
				return nil, nil, err
			}
			var base []Run
			for _, r := range runs {
				if r.Model == model && r.Ranks == 1 && r.BatchPerRank == b1 {
					base = append(base, r)
				}
			}
			var tput1 float64
			if len(base) > 0 {
				ts, err := Summarize(field(base, func(r Run) float64 { return r.SamplesPerS }))
				if err != nil {
					return nil, nil, fmt.Errorf("%s %s, 1 rank: %w", model, mode, err)
				}
				tput1 = ts.Median
			}
			for _, comp := range s.Compress {
				for _, n := range ranks {
					var sel []Run
					if n == 1 {
						sel = base
					} else {
						bn, err := BatchFor(mode, n, s.BatchOf(model), s.GlobalBatchOf(model))
						if err != nil {
							return nil, nil, err
						}
						for _, r := range runs {
							if r.Model == model && r.Ranks == n && r.Compress == comp && r.BatchPerRank == bn {
								sel = append(sel, r)
							}
						}
					}
					if len(sel) == 0 {
						notes = append(notes, fmt.Sprintf("no successful run of %s, %s scaling, %s, %d rank(s)", model, mode, compressName(comp), n))
						continue
					}
					pt, err := summarisePoint(sel, model, mode, comp, n, tput1)
					if err != nil {
						return nil, nil, err
					}
					pt.Oversubscribed = m.Cores > 0 && n*tpr > m.Cores
					out = append(out, pt)
				}
			}
			if tput1 == 0 {
				notes = append(notes, fmt.Sprintf("%s, %s scaling: no single-rank run, so no efficiency", model, mode))
			}
		}
	}
	return out, notes, nil
}

func field(runs []Run, f func(Run) float64) []float64 {
	xs := make([]float64, len(runs))
	for i, r := range runs {
		xs[i] = f(r)
	}
	return xs
}

func summarisePoint(sel []Run, model, mode, comp string, n int, tput1 float64) (ScalingPoint, error) {
	pt := ScalingPoint{Model: model, Mode: mode, Compress: comp, Ranks: n,
		BatchPerRank: sel[0].BatchPerRank, GlobalBatch: sel[0].BatchPerRank * n}
	for _, f := range []struct {
		dst *Summary
		get func(Run) float64
	}{
		{&pt.SamplesPerS, func(r Run) float64 { return r.SamplesPerS }},
		{&pt.StepMS, func(r Run) float64 { return r.StepMS }},
		{&pt.ComputeMS, func(r Run) float64 { return r.ComputeMS }},
		{&pt.CommMS, func(r Run) float64 { return r.CommMS }},
		{&pt.ExposedCommMS, func(r Run) float64 { return r.ExposedCommMS }},
	} {
		s, err := Summarize(field(sel, f.get))
		if err != nil {
			return pt, fmt.Errorf("%s %s %s %d ranks: %w", model, mode, comp, n, err)
		}
		*f.dst = s
	}
	if tput1 > 0 {
		effs := make([]float64, len(sel))
		for i, r := range sel {
			e, err := Efficiency(r.SamplesPerS, tput1, n)
			if err != nil {
				return pt, fmt.Errorf("%s %s %s %d ranks: %w", model, mode, comp, n, err)
			}
			effs[i] = e
		}
		pt.Efficiency, _ = Summarize(effs)
	}
	return pt, nil
}

// FitSweep fits the α-β model to the AllReduce rows of each dtype in the sweep, and
// attaches the ring-exchange ceiling: the link bandwidth at the largest size exchanged
// (median over rank counts and repeated sweeps), where start-up costs matter least. A dtype whose rows cannot be fitted is
// skipped with a note.
//
// Only rank counts up to maxRanks (the ranks that had a core each; 0: no limit) are fitted
// when the sweep has at least two such timings per dtype: on an oversubscribed machine
// the other rank counts time the scheduler, not the ring.
func FitSweep(rows []SweepRow, maxRanks int) ([]Fit, []string) {
	var fits []Fit
	var notes []string
	var dtypes []string
	seen := map[string]bool{}
	var ceil []float64
	var biggest int64
	for _, r := range rows {
		if r.Op == OpRingExchange && r.LinkGBs > 0 {
			biggest = max(biggest, r.Bytes)
		}
	}
	for _, r := range rows {
		if r.Op == OpRingExchange {
			if r.LinkGBs > 0 && r.Bytes == biggest {
				ceil = append(ceil, r.LinkGBs)
			}
			continue
		}
		if !seen[r.Dtype] {
			seen[r.Dtype] = true
			dtypes = append(dtypes, r.Dtype)
		}
	}
	var ceiling float64
	if len(ceil) > 0 {
		cs, _ := Summarize(ceil)
		ceiling = cs.Median
	}
	for _, dt := range dtypes {
		pick := func(limit int) ([]Timing, []int) {
			var ts []Timing
			seen := map[int]bool{}
			var ranks []int
			for _, r := range rows {
				if r.Op != OpRingExchange && r.Dtype == dt && r.Ranks > 1 && (limit == 0 || r.Ranks <= limit) {
					ts = append(ts, Timing{Ranks: r.Ranks, Bytes: float64(r.Bytes), Seconds: r.TimeUS * 1e-6})
					if !seen[r.Ranks] {
						seen[r.Ranks] = true
						ranks = append(ranks, r.Ranks)
					}
				}
			}
			sort.Ints(ranks)
			return ts, ranks
		}
		ts, ranks := pick(maxRanks)
		if len(ts) < 2 {
			ts, ranks = pick(0)
		}
		ab, err := FitAlphaBeta(ts)
		if err != nil {
			notes = append(notes, fmt.Sprintf("α-β fit of the %s sweep failed: %v", dt, err))
			continue
		}
		fits = append(fits, Fit{Dtype: dt, AlphaBeta: ab, Ranks: ranks, CeilingGBs: ceiling})
	}
	return fits, notes
}

// BuildProjection projects every workload on every link and variant with latency alpha.
func BuildProjection(ws []Workload, alpha float64, alphaSource string) (*Projection, error) {
	pr := &Projection{AlphaS: alpha, AlphaSource: alphaSource, Workloads: ws, Reference: HorovodReference}
	for _, w := range ws {
		for _, g := range ProjectionLinks {
			for _, v := range ProjectionVariants {
				c := Curve{Workload: w.Name, LinkGbps: g, Variant: v}
				for _, n := range ProjectionRanks {
					e, err := Project(w, Link{Gbps: g, Alpha: alpha}, v, n)
					if err != nil {
						return nil, err
					}
					c.Points = append(c.Points, e)
				}
				pr.Curves = append(pr.Curves, c)
			}
		}
	}
	return pr, nil
}
