package report

import (
	"bufio"
	"fmt"
	"io"
	"math"
	"path/filepath"
	"sort"
	"strings"
)

// WriteMarkdown renders r as report.md. plots are the plot files written beside it (as
// WritePlots returns them); the report links them by base name.
func WriteMarkdown(w io.Writer, r *Results, plots []string) error {
	b := bufio.NewWriter(w)
	p := func(format string, args ...any) { fmt.Fprintf(b, format, args...) }

	p("# ringtrain scaling report\n\n")
	if n := r.Oversubscribed(); n > 0 {
		p("> **⚠ Ranks outnumber cores.** This machine has **%d cores** and every rank runs with GOMAXPROCS=%d: runs with more than **%d rank(s)** share cores, so their efficiency measures time-slicing on this machine, not the collective or the network; N such ranks can reach at most %d/N efficiency even with free communication (%.0f%% at %d ranks). Only the runs with at most %d rank(s) have a core per rank.\n\n",
			r.Machine.Cores, max(1, r.Settings.ThreadsPerRank), n, n, 100*float64(n)/float64(maxRanks(r)), maxRanks(r), n)
	}
	p("> All ranks run on **one machine** (training over gorun's default transport, the AllReduce sweep over the transport it names, both through loopback or shared memory): the communication figures below measure the software stack (QUIC or shared-memory rings, copies, reduction) on shared CPU cores, not a network. The projection section extrapolates with a stated model; it is not a measurement.\n\n")

	writeMachine(b, r)
	writeHeadline(b, r)
	if fs := Findings(r); len(fs) > 0 {
		p("## What the numbers say\n\n")
		for _, f := range fs {
			p("- %s\n", f)
		}
		p("\n")
	}
	writeScalingDetail(b, r)
	writeSweep(b, r)
	writeFits(b, r)
	writeProjection(b, r)
	writePlotsList(b, plots)
	if len(r.Notes) > 0 {
		p("## Notes\n\n")
		for _, n := range r.Notes {
			p("- %s\n", n)
		}
		p("\n")
	}
	p("## Definitions\n\n")
	p("- **samples/s**: training samples processed per second by all ranks together, over the measured steps: each run trains two epochs of the same number of steps and only the second is measured (the first warms up: graph compilation, connections, first-touch memory).\n")
	p("- **scaling efficiency** = samples/s on N ranks ÷ (N × samples/s on 1 rank). Weak scaling keeps the per-rank batch, strong scaling the global batch (per-rank batch = global ÷ N). The spread is each repetition's efficiency against the median single-rank throughput.\n")
	p("- **compute**: forward + backward per step; **comm**: total time of the gradient AllReduce ops (overlapped or not); **exposed comm**: the part of comm the step waited for after backward (what overlap did not hide). Figures are medians over repetitions, [min–max] in brackets.\n")
	p("- **busbw** = algbw × 2(N−1)/N with algbw = bytes ÷ time (nccl-tests convention); the **ceiling** is a raw ring exchange (every rank streams to its right neighbour while receiving from its left) over the same transport, measured in the same run.\n")
	return b.Flush()
}

func writeMachine(b *bufio.Writer, r *Results) {
	m, s := r.Machine, r.Settings
	fmt.Fprintf(b, "## Machine\n\n| | |\n|---|---|\n")
	row := func(k, v string) { fmt.Fprintf(b, "| %s | %s |\n", k, v) }
	row("CPU", m.CPUModel)
	row("cores", fmt.Sprintf("%d", m.Cores))
	row("memory", fmt.Sprintf("%.1f GiB", float64(m.MemoryBytes)/(1<<30)))
	row("Go", m.GoVersion+" "+m.OS+"/"+m.Arch)
	row("GOMAXPROCS per rank", fmt.Sprintf("%d (gorun --threads-per-rank)", m.GOMAXPROCSPerRank))
	tr := s.Transport
	if tr == "" {
		tr = "gorun's default (shared memory between ranks of one host, TLS over TCP between hosts)"
	}
	row("transport, training", tr)
	sweepTr := map[string]bool{}
	var trs []string
	for _, x := range r.AllReduce {
		if x.Transport != "" && !sweepTr[x.Transport] {
			sweepTr[x.Transport] = true
			trs = append(trs, x.Transport)
		}
	}
	if len(trs) > 0 {
		row("transport, AllReduce sweep", strings.Join(trs, ", ")+" (as the benchmark reports it)")
	}
	row("commit", "`"+m.Commit+"`")
	row("date", m.Date)
	row("ranks", fmt.Sprintf("%v%s", s.NProc, map[bool]string{true: " (**quick mode**)"}[s.Quick]))
	for _, model := range s.Models {
		row("model "+model, fmt.Sprintf("%d repetition(s) × (%d warm-up + %d measured steps); batch %d per rank (weak), global batch %d (strong)",
			s.RepsOf(model), s.StepsOf(model), s.StepsOf(model), s.BatchOf(model), s.GlobalBatchOf(model)))
	}
	if s.Command != "" {
		row("command", "`"+s.Command+"`")
	}
	row("elapsed", fmt.Sprintf("%.0f s", r.ElapsedS))
	fmt.Fprintf(b, "\n")
}

// fmtSpread writes "median [min–max]" with the given precision.
func fmtSpread(s Summary, prec int) string {
	if s.N == 0 {
		return "–"
	}
	if s.N == 1 || s.Min == s.Max {
		return fmt.Sprintf("%.*f", prec, s.Median)
	}
	return fmt.Sprintf("%.*f [%.*f–%.*f]", prec, s.Median, prec, s.Min, prec, s.Max)
}

func rankHeader(r *Results, n int) string {
	h := fmt.Sprintf("N=%d", n)
	if fit := r.Oversubscribed(); fit > 0 && n > fit {
		h += " ⚠"
	}
	return h
}

// HeadlineTable returns the main table of the report (also for a README): per model,
// scaling mode and gradient compression, throughput and efficiency at each rank count.
func HeadlineTable(r *Results) string {
	var sb strings.Builder
	ranks := append([]int(nil), r.Settings.NProc...)
	sort.Ints(ranks)
	sb.WriteString("| model | scaling | gradients |")
	for _, n := range ranks {
		fmt.Fprintf(&sb, " samples/s %s |", rankHeader(r, n))
	}
	for _, n := range ranks {
		if n > 1 {
			fmt.Fprintf(&sb, " efficiency %s |", rankHeader(r, n))
		}
	}
	sb.WriteString("\n|---|---|---|")
	for _, n := range ranks {
		sb.WriteString("---:|")
		if n > 1 {
			sb.WriteString("---:|")
		}
	}
	sb.WriteString("\n")
	for _, mode := range modes(r) {
		for _, s := range seriesOf(r, mode) {
			byN := map[int]ScalingPoint{}
			for _, pt := range s.pts {
				byN[pt.Ranks] = pt
			}
			fmt.Fprintf(&sb, "| %s | %s | %s |", s.model, mode, compressName(s.compress))
			for _, n := range ranks {
				if pt, ok := byN[n]; ok {
					fmt.Fprintf(&sb, " %s |", fmtTput(pt.SamplesPerS.Median))
				} else {
					sb.WriteString(" – |")
				}
			}
			for _, n := range ranks {
				if n == 1 {
					continue
				}
				if pt, ok := byN[n]; ok && pt.Efficiency.N > 0 {
					fmt.Fprintf(&sb, " %s |", fmtPct(pt.Efficiency))
				} else {
					sb.WriteString(" – |")
				}
			}
			sb.WriteString("\n")
		}
	}
	return sb.String()
}

func compressName(c string) string {
	if c == "" || c == "none" {
		return "fp32"
	}
	return c
}

func fmtTput(x float64) string {
	switch {
	case x >= 100:
		return fmt.Sprintf("%.0f", x)
	case x >= 10:
		return fmt.Sprintf("%.1f", x)
	}
	return fmt.Sprintf("%.2f", x)
}

func fmtPct(s Summary) string {
	if s.N <= 1 || math.Round(100*s.Min) == math.Round(100*s.Max) {
		return fmt.Sprintf("%.0f%%", 100*s.Median)
	}
	return fmt.Sprintf("%.0f%% (%.0f–%.0f)", 100*s.Median, 100*s.Min, 100*s.Max)
}

func writeHeadline(b *bufio.Writer, r *Results) {
	fmt.Fprintf(b, "## Headline\n\n")
	fmt.Fprintf(b, "Median over repetitions (see Machine for each model's count, batch and steps); efficiency in brackets: min–max over repetitions. ⚠ marks rank counts that oversubscribe the %d cores.\n\n",
		r.Machine.Cores)
	b.WriteString(HeadlineTable(r))
	b.WriteString("\n")
}

func writeScalingDetail(b *bufio.Writer, r *Results) {
	fmt.Fprintf(b, "## Step time breakdown\n\nPer step, on the slowest rank; median [min–max] over repetitions, milliseconds.\n\n")
	for _, mode := range modes(r) {
		ss := seriesOf(r, mode)
		if len(ss) == 0 {
			continue
		}
		fmt.Fprintf(b, "### %s\n\n", modeTitle(mode, r))
		if mode == "strong" {
			fmt.Fprintf(b, "Strong scaling splits each model's global batch over the ranks: a smaller per-rank batch with the same gradient volume, so communication weighs more.\n\n")
		}
		fmt.Fprintf(b, "| model | gradients | ranks | batch/rank | samples/s | efficiency | step ms | compute ms | comm ms | exposed comm ms |\n")
		fmt.Fprintf(b, "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|\n")
		for _, s := range ss {
			for _, pt := range s.pts {
				if pt.Ranks == 1 && s.compress != r.Settings.Compress[0] {
					continue // same single-rank run as the first compression's row
				}
				eff := "–"
				if pt.Efficiency.N > 0 {
					eff = fmtPct(pt.Efficiency)
				}
				oversub := ""
				if pt.Oversubscribed {
					oversub = " ⚠"
				}
				grads := compressName(s.compress)
				if pt.Ranks == 1 {
					grads = "– (1 rank)"
				}
				fmt.Fprintf(b, "| %s | %s | %d%s | %d | %s | %s | %s | %s | %s | %s |\n",
					s.model, grads, pt.Ranks, oversub, pt.BatchPerRank, fmtSpread(pt.SamplesPerS, 0), eff,
					fmtSpread(pt.StepMS, 1), fmtSpread(pt.ComputeMS, 1), fmtSpread(pt.CommMS, 1), fmtSpread(pt.ExposedCommMS, 1))
			}
		}
		fmt.Fprintf(b, "\n")
	}
}

func writeSweep(b *bufio.Writer, r *Results) {
	if len(r.AllReduce) == 0 {
		fmt.Fprintf(b, "## AllReduce sweep\n\nNo sweep was run (see Notes).\n\n")
		return
	}
	fmt.Fprintf(b, "## AllReduce sweep\n\nRing AllReduce of float32 buffers (fp16: float16 on the wire, float32 accumulation) through gorun; bytes are the float32 payload; time is the benchmark's reported per-op time.\n\n")
	ranks := map[int]bool{}
	for _, s := range r.AllReduce {
		ranks[s.Ranks] = true
	}
	var rs []int
	for n := range ranks {
		rs = append(rs, n)
	}
	sort.Ints(rs)
	for _, n := range rs {
		fmt.Fprintf(b, "### %d ranks%s\n\n", n, map[bool]string{true: " ⚠ (oversubscribed)"}[r.Oversubscribed() > 0 && n > r.Oversubscribed()])
		type cell struct {
			fp32, fp16 *SweepRow
			ceil       []float64
		}
		bySize := map[int64]*cell{}
		var sizes []int64
		for i := range r.AllReduce {
			s := &r.AllReduce[i]
			if s.Ranks != n {
				continue
			}
			c := bySize[s.Bytes]
			if c == nil {
				c = &cell{}
				bySize[s.Bytes] = c
				sizes = append(sizes, s.Bytes)
			}
			switch {
			case s.Op == OpRingExchange:
				if s.LinkGBs > 0 {
					c.ceil = append(c.ceil, s.LinkGBs)
				}
			case s.Dtype == "fp16":
				c.fp16 = s
			default:
				c.fp32 = s
			}
		}
		sort.Slice(sizes, func(i, j int) bool { return sizes[i] < sizes[j] })
		fmt.Fprintf(b, "| size | fp32 time µs | fp32 busbw GB/s | fp16 time µs | fp16 busbw GB/s | ceiling GB/s (ring exchange) | fp32 busbw / ceiling | fp16 max rel err |\n|---:|---:|---:|---:|---:|---:|---:|---:|\n")
		for _, sz := range sizes {
			c := bySize[sz]
			f := func(s *SweepRow, what string) string {
				if s == nil {
					return "–"
				}
				switch what {
				case "t":
					return fmt.Sprintf("%.1f", s.TimeUS)
				case "bw":
					return fmt.Sprintf("%.3f", s.BusBWGBs)
				}
				return fmt.Sprintf("%.2g", s.MaxRelErr)
			}
			ceil, ratio := "–", "–"
			if len(c.ceil) > 0 {
				cs, _ := Summarize(c.ceil)
				ceil = fmt.Sprintf("%.3f", cs.Median)
				if c.fp32 != nil && cs.Median > 0 {
					ratio = fmt.Sprintf("%.0f%%", 100*c.fp32.BusBWGBs/cs.Median)
				}
			}
			fmt.Fprintf(b, "| %s | %s | %s | %s | %s | %s | %s | %s |\n", HumanBytes(sz), f(c.fp32, "t"), f(c.fp32, "bw"), f(c.fp16, "t"), f(c.fp16, "bw"), ceil, ratio, f(c.fp16, "e"))
		}
		fmt.Fprintf(b, "\n")
	}
}

func writeFits(b *bufio.Writer, r *Results) {
	if len(r.Fits) == 0 {
		return
	}
	fmt.Fprintf(b, "## α-β fit of the ring\n\n")
	fmt.Fprintf(b, "T(n bytes, N ranks) = 2(N−1)·α + 2(N−1)/N · n · β, fitted by least squares on relative residuals (α, β ≥ 0) over the sweep's AllReduce timings on the rank counts listed: those with a core per rank when there are any, since oversubscribed runs time the scheduler. R² is on the raw times; the ceiling is the ring exchange at the largest size.\n\n")
	fmt.Fprintf(b, "| dtype | ranks fitted | α per ring step | β | 1/β | ceiling (ring exchange) | points | R² | rel. RMS error | max rel. error |\n|---|---|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, f := range r.Fits {
		ceil := "–"
		if f.CeilingGBs > 0 {
			ceil = fmt.Sprintf("%.3g GB/s", f.CeilingGBs)
		}
		note := ""
		if f.Clamped != "" {
			note = fmt.Sprintf(" (%s pinned at 0)", f.Clamped)
		}
		fmt.Fprintf(b, "| %s | %s | %s%s | %.3g ns/B | %.3g GB/s | %s | %d | %.4f | %.1f%% | %.1f%% |\n",
			f.Dtype, intsString(f.Ranks), HumanSeconds(f.Alpha), note, f.Beta*1e9, f.BandwidthGBs(), ceil, f.Points, f.R2, 100*f.RelRMS, 100*f.MaxRel)
	}
	fmt.Fprintf(b, "\n")
}

func writeProjection(b *bufio.Writer, r *Results) {
	pr := r.Projection
	fmt.Fprintf(b, "## Projection to large clusters (a model, not a measurement)\n\n")
	if pr == nil {
		fmt.Fprintf(b, "No projection: it needs a single-rank run and the model's gradient size (see Notes).\n\n")
		return
	}
	fmt.Fprintf(b, "Weak-scaling efficiency predicted by the α-β model of the ring for N = %d … %d ranks, one rank per node, on %s Gbit/s links.\n\n",
		ProjectionRanks[0], ProjectionRanks[len(ProjectionRanks)-1], joinFloats(ProjectionLinks, ", "))
	fmt.Fprintf(b, "**Assumptions** (each one optimistic or pessimistic as marked):\n\n")
	fmt.Fprintf(b, "- Per-rank work is this machine's measured single-rank step (below); weak scaling, so it does not change with N.\n")
	fmt.Fprintf(b, "- Gradients are reduced in the buckets the trainer reported (ddp: a 1 MiB first bucket, then up to 25 MiB), each a ring AllReduce: comm(N) = buckets·2(N−1)·α + 2(N−1)/N·bytes·β.\n")
	fmt.Fprintf(b, "- β = 8 / line rate: the full link rate reached by every rank at once (optimistic: protocol overhead, congestion and stragglers are ignored).\n")
	fmt.Fprintf(b, "- α = **%s** per ring step (%s). A ring pays 2(N−1) latencies per AllReduce, so at large N the latency term dominates; this is why NCCL and Horovod switch to trees or hierarchical rings at scale (a flat ring is pessimistic there).\n", HumanSeconds(pr.AlphaS), pr.AlphaSource)
	fmt.Fprintf(b, "- fp16 halves the bytes and leaves the number of steps unchanged; its conversion cost is ignored.\n")
	fmt.Fprintf(b, "- With overlap, communication hides behind the backward pass, taken as %.0f%% of forward+backward compute: exposed = max(0, comm − backward); without overlap, all of comm is exposed. efficiency = step / (step + exposed).\n\n", 100*DefaultBackwardShare)
	fmt.Fprintf(b, "| workload | single-rank step | compute (fwd+bwd) | gradient bytes (fp32) | buckets |\n|---|---:|---:|---:|---:|\n")
	for _, w := range pr.Workloads {
		fmt.Fprintf(b, "| %s | %s | %s | %s | %d |\n", w.Name, HumanSeconds(w.StepSeconds), HumanSeconds(w.ComputeSeconds), HumanBytes(int64(w.GradBytes)), w.NumBuckets())
	}
	fmt.Fprintf(b, "\n")
	fmt.Fprintf(b, "| workload | link | gradients |")
	for _, n := range ProjectionRanks {
		fmt.Fprintf(b, " N=%d |", n)
	}
	fmt.Fprintf(b, "\n|---|---:|---|%s\n", strings.Repeat("---:|", len(ProjectionRanks)))
	for _, w := range pr.Workloads {
		for _, g := range ProjectionLinks {
			for _, v := range ProjectionVariants {
				for _, c := range pr.Curves {
					if c.Workload != w.Name || c.LinkGbps != g || c.Variant != v {
						continue
					}
					fmt.Fprintf(b, "| %s | %g Gbit/s | %s |", w.Name, g, v)
					for _, e := range c.Points {
						fmt.Fprintf(b, " %.0f%% |", 100*e.Efficiency)
					}
					fmt.Fprintf(b, "\n")
				}
			}
		}
	}
	// How much the answer depends on α: the fit on this machine's loopback stack is one
	// choice; a datacenter RDMA/NCCL-class stack has a few µs per step.
	alphas := []float64{pr.AlphaS, 25e-6, 5e-6}
	fmt.Fprintf(b, "\n**Sensitivity to α** (25 Gbit/s, fp32 + overlap; the same model with other per-step latencies: 25 µs is a typical TCP/QUIC software stack on a datacenter network, 5 µs an RDMA-class one):\n\n")
	fmt.Fprintf(b, "| workload | α | N=8 | N=128 | N=1024 |\n|---|---:|---:|---:|---:|\n")
	for _, w := range pr.Workloads {
		for i, a := range alphas {
			if i > 0 && math.Abs(a-pr.AlphaS) < 1e-9 {
				continue
			}
			lab := HumanSeconds(a)
			if i == 0 {
				lab += " (used above)"
			}
			fmt.Fprintf(b, "| %s | %s |", w.Name, lab)
			for _, n := range []int{8, 128, 1024} {
				e, err := Project(w, Link{Gbps: 25, Alpha: a}, Variant{Overlap: true}, n)
				if err != nil {
					fmt.Fprintf(b, " – |")
					continue
				}
				fmt.Fprintf(b, " %.0f%% |", 100*e.Efficiency)
			}
			fmt.Fprintf(b, "\n")
		}
	}
	ref := pr.Reference
	fmt.Fprintf(b, "\nReference point, **not produced by this model**: %s — about %.0f%% at %d GPUs (%s). It is drawn on the projection plot as a black square for scale; its workloads (large CNNs on GPUs, tens of MB of gradients per step of ~0.1–0.3 s) differ from these.\n\n",
		ref.Label, 100*ref.Efficiency, ref.Ranks, ref.Source)
}

func joinFloats(xs []float64, sep string) string {
	s := make([]string, len(xs))
	for i, x := range xs {
		s[i] = fmt.Sprintf("%g", x)
	}
	return strings.Join(s, sep)
}

func writePlotsList(b *bufio.Writer, plots []string) {
	if len(plots) == 0 {
		return
	}
	fmt.Fprintf(b, "## Plots\n\n")
	seen := map[string]bool{}
	for _, p := range plots {
		base := filepath.Base(p)
		name := strings.TrimSuffix(strings.TrimSuffix(base, ".svg"), ".png")
		if seen[name] {
			continue
		}
		seen[name] = true
		fmt.Fprintf(b, "![%s](%s.png)\n\n[%s.svg](%s.svg)\n\n", name, name, name, name)
	}
}

func intsString(xs []int) string {
	s := make([]string, len(xs))
	for i, x := range xs {
		s[i] = fmt.Sprint(x)
	}
	return strings.Join(s, ", ")
}
