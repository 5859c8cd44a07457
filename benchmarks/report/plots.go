package report

import (
	"fmt"
	"image/color"
	"math"
	"sort"
	"strconv"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
)

// Plot file base names (each written as .svg and .png).
const (
	PlotEfficiency = "efficiency"
	PlotThroughput = "throughput"
	PlotBreakdown  = "breakdown"
	PlotBusBW      = "busbw"
	PlotAlphaBeta  = "alphabeta"
	PlotProjection = "projection"
)

// WritePlots renders every plot the results allow into dir, as SVG and PNG, and returns the
// paths written. A plot whose data is missing (no AllReduce sweep, no projection) is
// skipped, not drawn empty.
func WritePlots(dir string, r *Results) ([]string, error) {
	type job struct {
		base string
		fig  func(*Results) (figure, bool, error)
	}
	var paths []string
	for _, j := range []job{
		{PlotEfficiency, efficiencyFigure},
		{PlotThroughput, throughputFigure},
		{PlotBreakdown, breakdownFigure},
		{PlotBusBW, busbwFigure},
		{PlotAlphaBeta, alphaBetaFigure},
		{PlotProjection, projectionFigure},
	} {
		f, ok, err := j.fig(r)
		if err != nil {
			return paths, fmt.Errorf("plot %s: %w", j.base, err)
		}
		if !ok {
			continue
		}
		ps, err := f.save(dir, j.base)
		if err != nil {
			return paths, fmt.Errorf("plot %s: %w", j.base, err)
		}
		paths = append(paths, ps...)
	}
	return paths, nil
}

// errXYs is points with asymmetric vertical error bars.
type errXYs struct {
	plotter.XYs
	plotter.YErrors
}

// series is one configuration's line across rank counts.
type series struct {
	model, compress string
	pts             []ScalingPoint // sorted by ranks
}

// seriesOf groups the scaling points of one mode by (model, compress), in the order of the
// settings, each sorted by rank count.
func seriesOf(r *Results, mode string) []series {
	var out []series
	for _, m := range r.Settings.Models {
		for _, c := range r.Settings.Compress {
			s := series{model: m, compress: c}
			for _, p := range r.Scaling {
				if p.Mode == mode && p.Model == m && p.Compress == c {
					s.pts = append(s.pts, p)
				}
			}
			if len(s.pts) == 0 {
				continue
			}
			sort.Slice(s.pts, func(i, j int) bool { return s.pts[i].Ranks < s.pts[j].Ranks })
			out = append(out, s)
		}
	}
	return out
}

func (s series) label() string {
	if s.compress == "" || s.compress == "none" {
		return s.model
	}
	return s.model + " " + s.compress
}

// style gives each model a colour and each compression a dash pattern.
func (r *Results) style(model, compress string) (color.Color, []vg.Length) {
	mi := 0
	for i, m := range r.Settings.Models {
		if m == model {
			mi = i
		}
	}
	var dashes []vg.Length
	if compress != "" && compress != "none" {
		dashes = []vg.Length{vg.Points(6), vg.Points(3)}
	}
	return plotutil.Color(mi), dashes
}

func modes(r *Results) []string {
	if len(r.Settings.Modes) > 0 {
		return r.Settings.Modes
	}
	return []string{"weak", "strong"}
}

// rankTicks puts ticks exactly at the measured rank counts.
func rankTicks(r *Results) plot.ConstantTicks {
	var t plot.ConstantTicks
	for _, n := range r.Settings.NProc {
		t = append(t, plot.Tick{Value: float64(n), Label: strconv.Itoa(n)})
	}
	return t
}

// modeTitle names a scaling mode with its batch when every model shares it.
func modeTitle(mode string, r *Results) string {
	s := r.Settings
	switch {
	case mode == "weak" && s.uniform(s.BatchOf) && len(s.Models) > 0:
		return modeTitleFor(mode, r, s.Models[0])
	case mode == "weak":
		return "weak scaling (fixed per-rank batch)"
	case mode == "strong" && s.uniform(s.GlobalBatchOf) && len(s.Models) > 0:
		return modeTitleFor(mode, r, s.Models[0])
	case mode == "strong":
		return "strong scaling (fixed global batch)"
	}
	return mode
}

// modeTitleFor names a scaling mode with model's batch.
func modeTitleFor(mode string, r *Results, model string) string {
	switch mode {
	case "weak":
		return fmt.Sprintf("weak scaling (batch %d per rank)", r.Settings.BatchOf(model))
	case "strong":
		return fmt.Sprintf("strong scaling (global batch %d)", r.Settings.GlobalBatchOf(model))
	}
	return mode
}

// coresLine marks the machine's core count: to its right, ranks share cores.
func coresLine(r *Results, ymin, ymax float64) (*plotter.Line, bool) {
	c := r.Machine.Cores
	maxN := 0
	for _, n := range r.Settings.NProc {
		maxN = max(maxN, n*max(1, r.Settings.ThreadsPerRank))
	}
	if c <= 0 || maxN <= c {
		return nil, false
	}
	x := float64(c) / float64(max(1, r.Settings.ThreadsPerRank))
	l, err := plotter.NewLine(plotter.XYs{{X: x, Y: ymin}, {X: x, Y: ymax}})
	if err != nil {
		return nil, false
	}
	l.Color = color.RGBA{R: 200, A: 255}
	l.Dashes = []vg.Length{vg.Points(2), vg.Points(2)}
	l.Width = vg.Points(1.5)
	return l, true
}

// coreBoundLine is the best efficiency the machine's cores allow at each rank count.
func coreBoundLine(r *Results) (*plotter.Line, bool) {
	fit := r.Machine.Cores / max(1, r.Settings.ThreadsPerRank)
	if fit < 1 {
		return nil, false
	}
	ranks := append([]int(nil), r.Settings.NProc...)
	sort.Ints(ranks)
	var xy plotter.XYs
	for _, n := range ranks {
		xy = append(xy, plotter.XY{X: float64(n), Y: float64(min(n, fit)) / float64(n)})
	}
	l, err := plotter.NewLine(xy)
	if err != nil {
		return nil, false
	}
	l.Color = color.Gray{Y: 90}
	l.Dashes = []vg.Length{vg.Points(5), vg.Points(2), vg.Points(1), vg.Points(2)}
	l.Width = vg.Points(1.5)
	return l, true
}

func efficiencyFigure(r *Results) (figure, bool, error) {
	var row []*plot.Plot
	for _, mode := range modes(r) {
		ss := seriesOf(r, mode)
		if len(ss) == 0 {
			continue
		}
		p := plot.New()
		p.Title.Text = modeTitle(mode, r)
		p.X.Label.Text = "ranks"
		p.Y.Label.Text = "scaling efficiency  tput(N) / (N·tput(1))"
		p.X.Tick.Marker = rankTicks(r)
		p.Legend.Top = false
		p.Legend.Left = true
		ymax := 1.1
		for _, s := range ss {
			var e errXYs
			for _, pt := range s.pts {
				e.XYs = append(e.XYs, plotter.XY{X: float64(pt.Ranks), Y: pt.Efficiency.Median})
				e.YErrors = append(e.YErrors, struct{ Low, High float64 }{pt.Efficiency.Median - pt.Efficiency.Min, pt.Efficiency.Max - pt.Efficiency.Median})
				ymax = math.Max(ymax, pt.Efficiency.Max*1.05)
			}
			if err := addLine(p, r, s, e.XYs, &e); err != nil {
				return figure{}, false, err
			}
		}
		ideal, _ := plotter.NewLine(plotter.XYs{{X: float64(minRanks(r)), Y: 1}, {X: float64(maxRanks(r)), Y: 1}})
		ideal.Color = color.Gray{Y: 140}
		p.Add(ideal)
		p.Legend.Add("ideal", ideal)
		if l, ok := coresLine(r, 0, ymax); ok {
			p.Add(l)
			p.Legend.Add(fmt.Sprintf("%d cores: right of this, ranks share cores", r.Machine.Cores), l)
			// With fewer cores than ranks, N ranks can do at most the work of the cores
			// they share: efficiency ≤ min(N, cores/threads)/N even with free communication.
			if cl, ok := coreBoundLine(r); ok {
				p.Add(cl)
				p.Legend.Add("core-bound ceiling min(N, cores)/N", cl)
			}
		}
		p.Y.Min, p.Y.Max = 0, ymax
		p.Add(plotter.NewGrid())
		row = append(row, p)
	}
	if len(row) == 0 {
		return figure{}, false, nil
	}
	return figure{title: "Scaling efficiency, measured (median, bars min–max over repetitions)" + oversubTag(r),
		cells: [][]*plot.Plot{row}, cellW: 6 * vg.Inch, cellH: 4.5 * vg.Inch}, true, nil
}

func throughputFigure(r *Results) (figure, bool, error) {
	var row []*plot.Plot
	for _, mode := range modes(r) {
		ss := seriesOf(r, mode)
		if len(ss) == 0 {
			continue
		}
		p := plot.New()
		p.Title.Text = modeTitle(mode, r)
		p.X.Label.Text = "ranks"
		p.Y.Label.Text = "samples/s, all ranks"
		p.X.Tick.Marker = rankTicks(r)
		p.Y.Scale = plot.LogScale{}
		p.Y.Tick.Marker = decadeTicks{}
		p.Legend.Top = true
		p.Legend.Left = true
		ymin, ymax := math.Inf(1), 0.0
		for _, s := range ss {
			var e errXYs
			for _, pt := range s.pts {
				if !(pt.SamplesPerS.Min > 0) {
					continue // a log axis cannot show a zero throughput
				}
				e.XYs = append(e.XYs, plotter.XY{X: float64(pt.Ranks), Y: pt.SamplesPerS.Median})
				e.YErrors = append(e.YErrors, struct{ Low, High float64 }{pt.SamplesPerS.Median - pt.SamplesPerS.Min, pt.SamplesPerS.Max - pt.SamplesPerS.Median})
				ymin = math.Min(ymin, pt.SamplesPerS.Min)
				ymax = math.Max(ymax, pt.SamplesPerS.Max)
			}
			if len(e.XYs) == 0 {
				continue
			}
			if err := addLine(p, r, s, e.XYs, &e); err != nil {
				return figure{}, false, err
			}
			// The ideal: N times the single-rank throughput, drawn once per model.
			if s.compress == r.Settings.Compress[0] && s.pts[0].Ranks == 1 {
				var ideal plotter.XYs
				for _, pt := range s.pts {
					ideal = append(ideal, plotter.XY{X: float64(pt.Ranks), Y: float64(pt.Ranks) * s.pts[0].SamplesPerS.Median})
					ymax = math.Max(ymax, ideal[len(ideal)-1].Y)
				}
				l, err := plotter.NewLine(ideal)
				if err != nil {
					return figure{}, false, err
				}
				l.Color, _ = r.style(s.model, "none")
				l.Dashes = []vg.Length{vg.Points(1), vg.Points(3)}
				p.Add(l)
				p.Legend.Add(s.model+" ideal (N × 1 rank)", l)
			}
		}
		if ymax > 0 {
			if l, ok := coresLine(r, ymin/1.2, ymax*1.2); ok {
				p.Add(l)
				p.Legend.Add(fmt.Sprintf("%d cores", r.Machine.Cores), l)
			}
		}
		p.Add(plotter.NewGrid())
		row = append(row, p)
	}
	if len(row) == 0 {
		return figure{}, false, nil
	}
	return figure{title: "Training throughput, measured" + oversubTag(r),
		cells: [][]*plot.Plot{row}, cellW: 6 * vg.Inch, cellH: 4.5 * vg.Inch}, true, nil
}

// addLine draws one series with points and error bars and adds it to the legend.
func addLine(p *plot.Plot, r *Results, s series, xys plotter.XYs, e *errXYs) error {
	l, pts, err := plotter.NewLinePoints(xys)
	if err != nil {
		return err
	}
	c, dashes := r.style(s.model, s.compress)
	l.Color, l.Dashes, l.Width = c, dashes, vg.Points(1.5)
	pts.Color = c
	pts.Shape = draw.CircleGlyph{}
	p.Add(l, pts)
	p.Legend.Add(s.label(), l, pts)
	if e != nil && len(e.XYs) > 0 {
		eb, err := plotter.NewYErrorBars(e)
		if err != nil {
			return err
		}
		eb.Color = c
		p.Add(eb)
	}
	return nil
}

func minRanks(r *Results) int {
	m := math.MaxInt
	for _, n := range r.Settings.NProc {
		m = min(m, n)
	}
	if m == math.MaxInt {
		return 1
	}
	return m
}

func maxRanks(r *Results) int {
	m := 1
	for _, n := range r.Settings.NProc {
		m = max(m, n)
	}
	return m
}

// oversubTag is appended to titles of measured plots when ranks outnumbered cores.
func oversubTag(r *Results) string {
	if n := r.Oversubscribed(); n > 0 {
		return fmt.Sprintf("\nthis machine has %d cores: runs with more than %d rank(s) OVERSUBSCRIBE them (ranks share cores)", r.Machine.Cores, n)
	}
	return ""
}

// Oversubscribed returns the largest rank count that still had a core per thread, when
// some measured rank count exceeded it; 0 when no run oversubscribed the machine.
func (r *Results) Oversubscribed() int {
	tpr := max(1, r.Settings.ThreadsPerRank)
	if r.Machine.Cores <= 0 {
		return 0
	}
	fit := r.Machine.Cores / tpr
	for _, n := range r.Settings.NProc {
		if n > fit {
			return max(fit, 1)
		}
	}
	return 0
}

func breakdownFigure(r *Results) (figure, bool, error) {
	var rows [][]*plot.Plot
	legendDone := false
	for _, mode := range modes(r) {
		var row []*plot.Plot
		for _, model := range r.Settings.Models {
			var pts []ScalingPoint
			for _, s := range seriesOf(r, mode) {
				if s.model != model {
					continue
				}
				for _, pt := range s.pts {
					if pt.Ranks == 1 && s.compress != r.Settings.Compress[0] {
						continue // the single-rank baseline is the same run for every compression
					}
					pts = append(pts, pt)
				}
			}
			if len(pts) == 0 {
				continue
			}
			sort.SliceStable(pts, func(i, j int) bool { return pts[i].Ranks < pts[j].Ranks })
			var compute, exposed, other, comm plotter.Values
			var labels []string
			var commXY plotter.XYs
			for i, pt := range pts {
				c, e, s := pt.ComputeMS.Median, pt.ExposedCommMS.Median, pt.StepMS.Median
				compute = append(compute, c)
				exposed = append(exposed, e)
				other = append(other, math.Max(0, s-c-e))
				comm = append(comm, pt.CommMS.Median)
				commXY = append(commXY, plotter.XY{X: float64(i), Y: pt.CommMS.Median})
				lab := "N=" + strconv.Itoa(pt.Ranks)
				if pt.Ranks > 1 && pt.Compress != "none" && pt.Compress != "" {
					lab += " " + pt.Compress
				}
				labels = append(labels, lab)
			}
			p := plot.New()
			p.Title.Text = fmt.Sprintf("%s, %s", model, modeTitleFor(mode, r, model))
			p.Y.Label.Text = "ms per step (median)"
			w := vg.Points(22)
			bc, err := plotter.NewBarChart(compute, w)
			if err != nil {
				return figure{}, false, err
			}
			be, err := plotter.NewBarChart(exposed, w)
			if err != nil {
				return figure{}, false, err
			}
			bo, err := plotter.NewBarChart(other, w)
			if err != nil {
				return figure{}, false, err
			}
			bc.Color = color.RGBA{R: 66, G: 133, B: 244, A: 255}
			be.Color = color.RGBA{R: 234, G: 67, B: 53, A: 255}
			bo.Color = color.RGBA{R: 190, G: 190, B: 190, A: 255}
			be.StackOn(bc)
			bo.StackOn(be)
			p.Add(bc, be, bo)
			sc, err := plotter.NewScatter(commXY)
			if err != nil {
				return figure{}, false, err
			}
			sc.Shape = draw.PyramidGlyph{}
			sc.Color = color.Black
			sc.Radius = vg.Points(4)
			p.Add(sc)
			p.NominalX(labels...)
			p.Y.Min = 0
			if !legendDone {
				p.Legend.Add("compute (forward+backward)", bc)
				p.Legend.Add("exposed communication", be)
				p.Legend.Add("other (optimizer, data)", bo)
				p.Legend.Add("communication, total (partly hidden)", sc)
				p.Legend.Top = true
				p.Legend.Left = true
				legendDone = true
			}
			p.Add(plotter.NewGrid())
			row = append(row, p)
		}
		if len(row) > 0 {
			rows = append(rows, row)
		}
	}
	if len(rows) == 0 {
		return figure{}, false, nil
	}
	return figure{title: "Step time breakdown, measured (median per configuration)" + oversubTag(r),
		cells: rows, cellW: 4.2 * vg.Inch, cellH: 3.6 * vg.Inch}, true, nil
}

// sweepKey groups sweep rows into lines.
type sweepKey struct {
	op    string
	ranks int
	dtype string
}

// sweepLines groups the rows into one line per (op, ranks, dtype), y the bus bandwidth
// (the link bandwidth for the ring exchange). A size measured more than once (the ring
// exchange runs in both the fp32 and the fp16 sweep) shows its median.
func sweepLines(rows []SweepRow) (map[sweepKey]plotter.XYs, []sweepKey) {
	vals := map[sweepKey]map[int64][]float64{}
	var keys []sweepKey
	for _, s := range rows {
		k := sweepKey{s.Op, s.Ranks, s.Dtype}
		if _, ok := vals[k]; !ok {
			keys = append(keys, k)
			vals[k] = map[int64][]float64{}
		}
		y := s.BusBWGBs
		if s.Op == OpRingExchange && s.LinkGBs > 0 {
			y = s.LinkGBs
		}
		vals[k][s.Bytes] = append(vals[k][s.Bytes], y)
	}
	m := map[sweepKey]plotter.XYs{}
	for k, bySize := range vals {
		for b, ys := range bySize {
			s, _ := Summarize(ys)
			m[k] = append(m[k], plotter.XY{X: float64(b), Y: s.Median})
		}
	}
	sort.Slice(keys, func(i, j int) bool {
		a, b := keys[i], keys[j]
		if a.ranks != b.ranks {
			return a.ranks < b.ranks
		}
		if a.op != b.op {
			return a.op < b.op
		}
		return a.dtype > b.dtype // fp32 before fp16
	})
	for _, k := range keys {
		xy := m[k]
		sort.Slice(xy, func(i, j int) bool { return xy[i].X < xy[j].X })
	}
	return m, keys
}

// OpRingExchange is the op name of the sweep's raw ring link ceiling rows.
const OpRingExchange = "ring-exchange"

func rankColor(r *Results, ranks int) color.Color {
	i := 0
	for j, n := range r.Settings.NProc {
		if n == ranks {
			i = j
		}
	}
	return plotutil.Color(i + 3)
}

func bytesTicks(min, max float64) plot.ConstantTicks {
	var t plot.ConstantTicks
	for b := 1.0; b <= max*1.01; b *= 4 {
		if b < min/1.01 {
			continue
		}
		t = append(t, plot.Tick{Value: b, Label: HumanBytes(int64(b))})
	}
	return t
}

func busbwFigure(r *Results) (figure, bool, error) {
	if len(r.AllReduce) == 0 {
		return figure{}, false, nil
	}
	m, keys := sweepLines(r.AllReduce)
	p := plot.New()
	p.Title.Text = "AllReduce bus bandwidth vs message size, against the ring-exchange ceiling"
	p.X.Label.Text = "message size (bytes, log scale)"
	p.Y.Label.Text = "GB/s (busbw = algbw·2(N−1)/N; ceiling = per-rank link)"
	p.X.Scale = plot.LogScale{}
	p.Legend.Top = true
	p.Legend.Left = true
	xmin, xmax := math.Inf(1), 0.0
	for _, k := range keys {
		xy := m[k]
		xmin = math.Min(xmin, xy[0].X)
		xmax = math.Max(xmax, xy[len(xy)-1].X)
	}
	for _, k := range keys {
		xy := m[k]
		if k.op == OpRingExchange && len(xy) == 1 {
			// One ceiling figure: draw it across the sweep.
			xy = plotter.XYs{{X: xmin, Y: xy[0].Y}, {X: xmax, Y: xy[0].Y}}
		}
		l, pts, err := plotter.NewLinePoints(xy)
		if err != nil {
			return figure{}, false, err
		}
		c := rankColor(r, k.ranks)
		l.Color, pts.Color, l.Width = c, c, vg.Points(1.5)
		label := fmt.Sprintf("%s %s, %d ranks", k.op, k.dtype, k.ranks)
		switch {
		case k.op == OpRingExchange:
			l.Dashes = []vg.Length{vg.Points(1), vg.Points(2)}
			l.Width = vg.Points(2.5)
			pts.Shape = draw.BoxGlyph{}
			label = fmt.Sprintf("ceiling: raw ring exchange, %d ranks", k.ranks)
		case k.dtype == "fp16":
			l.Dashes = []vg.Length{vg.Points(6), vg.Points(3)}
			pts.Shape = draw.TriangleGlyph{}
			label += " (busbw counts fp32 payload bytes)"
		default:
			pts.Shape = draw.CircleGlyph{}
		}
		p.Add(l, pts)
		p.Legend.Add(label, l, pts)
	}
	p.X.Tick.Marker = bytesTicks(xmin, xmax)
	p.Y.Min = 0
	p.Add(plotter.NewGrid())
	return figure{title: "AllReduce sweep through gorun, measured on one host" + oversubTag(r),
		cells: [][]*plot.Plot{{p}}, cellW: 9 * vg.Inch, cellH: 5.5 * vg.Inch}, true, nil
}

func alphaBetaFigure(r *Results) (figure, bool, error) {
	var row []*plot.Plot
	for _, fit := range r.Fits {
		p := plot.New()
		p.Title.Text = fmt.Sprintf("%s: α = %s, 1/β = %.3g GB/s, R² = %.4f", fit.Dtype, HumanSeconds(fit.Alpha), fit.BandwidthGBs(), fit.R2)
		p.X.Label.Text = "message size (bytes)"
		p.Y.Label.Text = "time per AllReduce (µs)"
		p.X.Scale, p.Y.Scale = plot.LogScale{}, plot.LogScale{}
		p.Y.Tick.Marker = decadeTicks{}
		p.Legend.Top, p.Legend.Left = true, true // top left: small messages take the least time
		byRanks := map[int]plotter.XYs{}
		var ranks []int
		xmin, xmax := math.Inf(1), 0.0
		for _, s := range r.AllReduce {
			if s.Op == OpRingExchange || s.Dtype != fit.Dtype || s.Ranks < 2 || !(s.TimeUS > 0) || s.Bytes <= 0 {
				continue
			}
			if _, ok := byRanks[s.Ranks]; !ok {
				ranks = append(ranks, s.Ranks)
			}
			byRanks[s.Ranks] = append(byRanks[s.Ranks], plotter.XY{X: float64(s.Bytes), Y: s.TimeUS})
			xmin, xmax = math.Min(xmin, float64(s.Bytes)), math.Max(xmax, float64(s.Bytes))
		}
		if len(ranks) == 0 {
			continue
		}
		sort.Ints(ranks)
		for _, n := range ranks {
			c := rankColor(r, n)
			sc, err := plotter.NewScatter(byRanks[n])
			if err != nil {
				return figure{}, false, err
			}
			sc.Color = c
			sc.Shape = draw.CircleGlyph{}
			var model plotter.XYs
			for b := xmin; b <= xmax*1.0001; b *= math.Sqrt2 {
				model = append(model, plotter.XY{X: b, Y: fit.Predict(n, b) * 1e6})
			}
			l, err := plotter.NewLine(model)
			if err != nil {
				return figure{}, false, err
			}
			l.Color = c
			p.Add(sc, l)
			p.Legend.Add(fmt.Sprintf("measured, %d ranks", n), sc)
			fitted := false
			for _, f := range fit.Ranks {
				fitted = fitted || f == n
			}
			if fitted || len(fit.Ranks) == 0 {
				p.Legend.Add(fmt.Sprintf("fit 2(N−1)α + 2(N−1)/N·n·β, %d ranks", n), l)
			} else {
				l.Dashes = []vg.Length{vg.Points(4), vg.Points(3)}
				p.Legend.Add(fmt.Sprintf("same fit at %d ranks (not fitted: oversubscribed)", n), l)
			}
		}
		p.X.Tick.Marker = bytesTicks(xmin, xmax)
		p.Add(plotter.NewGrid())
		row = append(row, p)
	}
	if len(row) == 0 {
		return figure{}, false, nil
	}
	return figure{title: "α-β fit of the measured ring AllReduce (relative least squares)",
		cells: [][]*plot.Plot{row}, cellW: 6 * vg.Inch, cellH: 4.5 * vg.Inch}, true, nil
}

func projectionFigure(r *Results) (figure, bool, error) {
	pr := r.Projection
	if pr == nil || len(pr.Curves) == 0 {
		return figure{}, false, nil
	}
	var rows [][]*plot.Plot
	var ticks plot.ConstantTicks
	for _, n := range ProjectionRanks {
		ticks = append(ticks, plot.Tick{Value: float64(n), Label: strconv.Itoa(n)})
	}
	for vi, v := range ProjectionVariants {
		var row []*plot.Plot
		for _, w := range pr.Workloads {
			p := plot.New()
			p.Title.Text = fmt.Sprintf("MODEL: %s, %s", w.Name, v)
			p.X.Label.Text = "ranks (log scale)"
			p.Y.Label.Text = "projected efficiency"
			p.X.Scale = plot.LogScale{}
			p.X.Tick.Marker = ticks
			p.Y.Min, p.Y.Max = 0, 1.05
			p.Legend.Top, p.Legend.Left = false, true
			for li, gbps := range ProjectionLinks {
				for _, c := range pr.Curves {
					if c.Workload != w.Name || c.LinkGbps != gbps || c.Variant != v {
						continue
					}
					var xy plotter.XYs
					for _, e := range c.Points {
						xy = append(xy, plotter.XY{X: float64(e.Ranks), Y: e.Efficiency})
					}
					l, pts, err := plotter.NewLinePoints(xy)
					if err != nil {
						return figure{}, false, err
					}
					col := plotutil.Color(li)
					l.Color, pts.Color, l.Width = col, col, vg.Points(1.5)
					pts.Shape = draw.CircleGlyph{}
					pts.Radius = vg.Points(2)
					p.Add(l, pts)
					if vi == 0 {
						p.Legend.Add(fmt.Sprintf("model, %g Gbit/s", gbps), l, pts)
					}
				}
			}
			ref := pr.Reference
			sc, err := plotter.NewScatter(plotter.XYs{{X: float64(ref.Ranks), Y: ref.Efficiency}})
			if err != nil {
				return figure{}, false, err
			}
			sc.Shape = draw.BoxGlyph{}
			sc.Radius = vg.Points(4)
			sc.Color = color.Black
			p.Add(sc)
			if vi == 0 {
				p.Legend.Add(fmt.Sprintf("Horovod, published (reference): %.0f%% @ %d", 100*ref.Efficiency, ref.Ranks), sc)
			}
			p.Add(plotter.NewGrid())
			row = append(row, p)
		}
		rows = append(rows, row)
	}
	return figure{
		title: fmt.Sprintf("PROJECTION from the α-β model of the ring: NOT a measurement (weak scaling)\n"+
			"α = %s per ring step (%s), β = 8 / line rate\n"+
			"rows: fp32/fp16 × with/without overlap; columns: measured single-rank workloads; ■ = Horovod's published ~90%% at 128 GPUs, for reference",
			HumanSeconds(pr.AlphaS), pr.AlphaSource),
		cells: rows, cellW: 4.3 * vg.Inch, cellH: 3.3 * vg.Inch}, true, nil
}

// HumanBytes writes a byte count with a binary unit (4 KiB, 64 MiB).
func HumanBytes(b int64) string {
	switch {
	case b >= 1<<30 && b%(1<<30) == 0:
		return fmt.Sprintf("%d GiB", b>>30)
	case b >= 1<<20 && b%(1<<20) == 0:
		return fmt.Sprintf("%d MiB", b>>20)
	case b >= 1<<10 && b%(1<<10) == 0:
		return fmt.Sprintf("%d KiB", b>>10)
	case b >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20))
	case b >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(b)/(1<<10))
	}
	return fmt.Sprintf("%d B", b)
}

// HumanSeconds writes a duration in s, ms, µs or ns with three significant digits.
func HumanSeconds(s float64) string {
	a := math.Abs(s)
	switch {
	case a == 0:
		return "0 s"
	case a >= 1:
		return fmt.Sprintf("%.3g s", s)
	case a >= 1e-3:
		return fmt.Sprintf("%.3g ms", s*1e3)
	case a >= 1e-6:
		return fmt.Sprintf("%.3g µs", s*1e6)
	}
	return fmt.Sprintf("%.3g ns", s*1e9)
}

// decadeTicks labels the powers of ten inside a log axis's range, with unlabelled minor
// ticks at 2…9 times them. (plot.LogTicks reserves room for a tick beyond the data, which
// leaves a blank band above the axis.)
type decadeTicks struct{}

// Ticks implements plot.Ticker.
func (decadeTicks) Ticks(min, max float64) []plot.Tick {
	if !(min > 0) || !(max >= min) {
		return nil
	}
	var t []plot.Tick
	for e := math.Floor(math.Log10(min)); e <= math.Ceil(math.Log10(max)); e++ {
		d := math.Pow(10, e)
		for k := 1.0; k < 10; k++ {
			v := k * d
			if v < min*(1-1e-9) || v > max*(1+1e-9) {
				continue
			}
			label := ""
			if k == 1 {
				label = strconv.FormatFloat(v, 'g', -1, 64)
			}
			t = append(t, plot.Tick{Value: v, Label: label})
		}
	}
	return t
}
