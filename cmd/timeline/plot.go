package main

import (
	"fmt"
	"image/color"
	"math"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/ringtrain/ringtrain/timeline"
	"gonum.org/v1/plot"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
)

// class is how an event is coloured: what kind of work it is.
type class struct {
	label string
	color color.RGBA
}

var classes = []class{
	{"step (ddp)", color.RGBA{225, 225, 225, 255}},
	{"forward", color.RGBA{66, 133, 244, 255}},
	{"loss", color.RGBA{0, 150, 136, 255}},
	{"backward", color.RGBA{255, 204, 128, 255}},
	{"backward of a layer / micro-batch", color.RGBA{245, 124, 0, 255}},
	{"bucket launch", color.RGBA{211, 47, 47, 255}},
	{"wait for buckets", color.RGBA{120, 120, 120, 255}},
	{"optimizer", color.RGBA{142, 36, 170, 255}},
	{"AllReduce", color.RGBA{46, 160, 67, 255}},
	{"other collective", color.RGBA{158, 157, 36, 255}},
	{"send / recv", color.RGBA{141, 110, 99, 255}},
	{"other", color.RGBA{180, 180, 180, 255}},
}

func classOf(e *timeline.Event) int {
	n := e.Name
	switch {
	case n == "step":
		return 0
	case n == "forward" || strings.HasPrefix(n, "forward "):
		return 1
	case n == "loss":
		return 2
	case n == "backward" || n == "backward (no sync)":
		return 3
	case strings.HasPrefix(n, "backward "):
		return 4
	case strings.HasPrefix(n, "launch bucket"):
		return 5
	case n == "wait" || strings.HasPrefix(n, "wait bucket"):
		return 6
	case n == "optimizer":
		return 7
	case e.Cat == "collective" && n == "AllReduce":
		return 8
	case e.Cat == "collective":
		return 9
	case strings.HasPrefix(n, "send ") || strings.HasPrefix(n, "recv "):
		return 10
	}
	return 11
}

type row struct {
	pid, tid int
	name     string
}

type bar struct {
	row, depth, class int
	from, to          float64 // ms from the window's start
}

// gantt is a gonum plotter drawing bars on nominal rows.
type gantt struct {
	bars []bar
}

func (g *gantt) Plot(c draw.Canvas, p *plot.Plot) {
	trX, trY := p.Transforms(&c)
	for _, b := range g.bars {
		h := 0.8 - 0.18*float64(min(b.depth, 3)) // nested slices drawn thinner, on top
		y0, y1 := trY(float64(b.row)-h/2), trY(float64(b.row)+h/2)
		x0, x1 := trX(b.from), trX(b.to)
		if x1-x0 < 0.3 { // keep the shortest slices visible
			x1 = x0 + 0.3
		}
		c.FillPolygon(classes[b.class].color, []vg.Point{{X: x0, Y: y0}, {X: x1, Y: y0}, {X: x1, Y: y1}, {X: x0, Y: y1}})
	}
}

type swatch color.RGBA

func (s swatch) Thumbnail(c *draw.Canvas) {
	r := c.Rectangle
	c.FillPolygon(color.RGBA(s), []vg.Point{r.Min, {X: r.Max.X, Y: r.Min.Y}, r.Max, {X: r.Min.X, Y: r.Max.Y}})
}

// plotTrace draws t's complete events as a Gantt chart, one row per (rank, thread), into out
// (.png or .svg). lastSteps > 0 limits it to rank 0's last DDP steps; else a window with
// window[1] > window[0] limits it to those milliseconds from the trace's first event.
func plotTrace(t *timeline.Trace, out string, lastSteps int, window [2]float64, widthCM float64) error {
	procName := map[int]string{}
	threadName := map[[2]int]string{}
	for i := range t.TraceEvents {
		e := &t.TraceEvents[i]
		var name string
		switch {
		case e.Ph == "M" && e.Name == "process_name" && e.Arg("name", &name):
			procName[*e.Pid] = name
		case e.Ph == "M" && e.Name == "thread_name" && e.Tid != nil && e.Arg("name", &name):
			threadName[[2]int{*e.Pid, *e.Tid}] = name
		}
	}
	slices := t.Slices() // X events, and B/E pairs as X
	xs := make([]*timeline.Event, len(slices))
	for i := range slices {
		xs[i] = &slices[i]
	}
	if len(xs) == 0 {
		return fmt.Errorf("the trace has no intervals (X events or B/E pairs) to draw")
	}
	from, to := xs[0].Start(), xs[0].End()
	for _, e := range xs {
		from, to = min(from, e.Start()), max(to, e.End())
	}
	title := "timeline"
	if window[1] > window[0] {
		from, to = from+window[0]*1e3, from+window[1]*1e3
		title = fmt.Sprintf("timeline: %g to %g ms", window[0], window[1])
	}
	if lastSteps > 0 {
		var steps []*timeline.Event
		for _, e := range xs {
			if e.Name == "step" && *e.Pid == 0 {
				steps = append(steps, e)
			}
		}
		if len(steps) == 0 {
			return fmt.Errorf("-last-steps: rank 0 has no DDP step in the trace")
		}
		sort.Slice(steps, func(a, b int) bool { return steps[a].Start() < steps[b].Start() })
		steps = steps[max(0, len(steps)-lastSteps):]
		from, to = steps[0].Start(), steps[len(steps)-1].End()
		pad := (to - from) * 0.02
		from, to = from-pad, to+pad
		title = fmt.Sprintf("timeline: rank 0's last %d DDP step(s)", len(steps))
	}

	// Rows: every (rank, thread) with an event in the window, by rank then thread.
	rowOf := map[[2]int]int{}
	var rows []row
	var inWin []*timeline.Event
	for _, e := range xs {
		if e.End() < from || e.Start() > to || e.Tid == nil {
			continue
		}
		inWin = append(inWin, e)
		k := [2]int{*e.Pid, *e.Tid}
		if _, ok := rowOf[k]; !ok {
			rowOf[k] = 0
			rows = append(rows, row{pid: k[0], tid: k[1]})
		}
	}
	sort.Slice(rows, func(a, b int) bool {
		if rows[a].pid != rows[b].pid {
			return rows[a].pid > rows[b].pid // rank 0 at the top: rows count up from the bottom
		}
		return rows[a].tid > rows[b].tid
	})
	names := make([]string, len(rows))
	for i, r := range rows {
		k := [2]int{r.pid, r.tid}
		rowOf[k] = i
		p, th := procName[r.pid], threadName[k]
		if p == "" {
			p = fmt.Sprintf("pid %d", r.pid)
		}
		if th == "" {
			th = fmt.Sprintf("tid %d", r.tid)
		}
		names[i] = p + " · " + th
	}

	// Depth of each event within its row (the slices nest; see timeline.Check).
	sort.SliceStable(inWin, func(a, b int) bool {
		if inWin[a].Start() != inWin[b].Start() {
			return inWin[a].Start() < inWin[b].Start()
		}
		return inWin[a].End() > inWin[b].End()
	})
	stacks := map[int][]float64{} // row → ends of the open slices
	g := &gantt{}
	used := map[int]bool{}
	for _, e := range inWin {
		r := rowOf[[2]int{*e.Pid, *e.Tid}]
		st := stacks[r]
		for len(st) > 0 && st[len(st)-1] <= e.Start()+0.0005 {
			st = st[:len(st)-1]
		}
		c := classOf(e)
		used[c] = true
		g.bars = append(g.bars, bar{row: r, depth: len(st), class: c,
			from: (max(e.Start(), from) - from) / 1e3, to: (min(e.End(), to) - from) / 1e3})
		stacks[r] = append(st, e.End())
	}
	sort.SliceStable(g.bars, func(a, b int) bool { return g.bars[a].depth < g.bars[b].depth })

	p := plot.New()
	p.Title.Text = title
	p.X.Label.Text = "time (ms)"
	p.X.Min, p.X.Max = 0, (to-from)/1e3
	p.X.Tick.Marker = msTicks{}
	p.Add(g)
	p.NominalY(names...)
	legend := 0
	for i, c := range classes {
		if used[i] {
			p.Legend.Add(c.label, swatch(c.color))
			legend++
		}
	}
	// The legend sits in a band of its own above the rows, in two columns.
	p.Legend.Top, p.Legend.Left = true, false
	p.Legend.TextStyle.Font.Size = vg.Points(9)
	p.Legend.ThumbnailWidth = vg.Points(14)
	bandRows := float64(legend)*0.3 + 0.2
	p.Y.Min, p.Y.Max = -0.6, float64(len(rows))-0.4+bandRows
	height := vg.Length((float64(len(rows))+bandRows)*1.0+2.5) * vg.Centimeter
	if err := p.Save(vg.Length(widthCM)*vg.Centimeter, height, out); err != nil {
		return fmt.Errorf("writing %s: %w", filepath.Base(out), err)
	}
	return nil
}

// msTicks labels about ten round times (1, 2 or 5 × a power of ten ms) across the axis:
// gonum's default labels only three or four on a wide chart.
type msTicks struct{}

func (msTicks) Ticks(lo, hi float64) []plot.Tick {
	span := hi - lo
	if span <= 0 {
		return nil
	}
	step := math.Pow(10, math.Floor(math.Log10(span/10)))
	for _, m := range []float64{1, 2, 5, 10} {
		if span/(step*m) <= 12 {
			step *= m
			break
		}
	}
	var ticks []plot.Tick
	for v := math.Ceil(lo/step) * step; v <= hi+step*1e-9; v += step {
		ticks = append(ticks, plot.Tick{Value: v, Label: strconv.FormatFloat(v, 'f', -1, 64)})
		for k := 1; k < 5; k++ { // unlabelled minor ticks
			if m := v + float64(k)*step/5; m <= hi {
				ticks = append(ticks, plot.Tick{Value: m})
			}
		}
	}
	return ticks
}
