package report

import "fmt"

// Findings states, in sentences, what the measured scaling points show: how much of the
// lost efficiency is communication the step waited for, how much is compute that got
// slower beside other ranks, and what fp16 changed. They are derived from the numbers
// alone (weak scaling, the largest rank count that still has a core per rank), so they
// stay true to whatever run produced r.
func Findings(r *Results) []string {
	fit := r.Oversubscribed()
	if fit == 0 {
		fit = maxRanks(r)
	}
	// The largest measured rank count > 1 within the cores.
	n := 0
	for _, k := range r.Settings.NProc {
		if k > 1 && k <= fit && k > n {
			n = k
		}
	}
	if n == 0 {
		return nil
	}
	get := func(model, comp string, ranks int) (ScalingPoint, bool) {
		for _, p := range r.Scaling {
			if p.Model == model && p.Mode == "weak" && p.Compress == comp && p.Ranks == ranks {
				return p, true
			}
		}
		return ScalingPoint{}, false
	}
	var out []string
	for _, m := range r.Settings.Models {
		base, ok1 := get(m, "none", 1)
		pt, ok2 := get(m, "none", n)
		if !ok1 || !ok2 || !(base.StepMS.Median > 0) || !(pt.StepMS.Median > 0) || pt.Efficiency.N == 0 {
			continue
		}
		s := fmt.Sprintf("**%s**, weak scaling on %d ranks (fp32): %.0f%% efficiency. Step %.1f ms against %.1f ms on one rank",
			m, n, 100*pt.Efficiency.Median, pt.StepMS.Median, base.StepMS.Median)
		if pt.StepMS.Median > base.StepMS.Median {
			extra := pt.StepMS.Median - base.StepMS.Median
			exposed := pt.ExposedCommMS.Median
			comp := pt.ComputeMS.Median - base.ComputeMS.Median
			s += fmt.Sprintf(": of the %.1f ms more, %.1f ms is communication the step waited for (%.1f ms of AllReduce in all, the rest hidden behind backward)",
				extra, exposed, pt.CommMS.Median)
			if comp > 0.1*base.ComputeMS.Median {
				s += fmt.Sprintf(" and %.1f ms is slower compute (%.0f%% more for the same per-rank batch: the ranks, their communication goroutines and the machine's other work share the cores)",
					comp, 100*comp/base.ComputeMS.Median)
			}
		}
		s += "."
		if h, ok := get(m, "fp16", n); ok && h.Efficiency.N > 0 {
			s += fmt.Sprintf(" fp16 gradients: %.0f%% efficiency, AllReduce %.1f ms instead of %.1f ms.",
				100*h.Efficiency.Median, h.CommMS.Median, pt.CommMS.Median)
		}
		out = append(out, s)
	}
	return out
}
