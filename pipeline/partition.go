package pipeline

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
)

// Partition errors. Every error from Balance, Split and NewPlan wraps one of
// these, so callers can test with errors.Is; the message names the layer,
// stage or split point at fault.
var (
	// ErrStageCount: fewer than 1 stage, or more stages than layers.
	ErrStageCount = errors.New("pipeline: bad stage count")
	// ErrSplitRange: a split point outside 1..layers-1.
	ErrSplitRange = errors.New("pipeline: split point out of range")
	// ErrSplitOrder: split points not strictly increasing.
	ErrSplitOrder = errors.New("pipeline: split points not increasing")
	// ErrEmptyStage: a split point repeated, which would leave a stage with
	// no layers.
	ErrEmptyStage = errors.New("pipeline: empty stage")
	// ErrLayerCost: a layer cost that is negative, NaN or infinite, or no
	// layers at all.
	ErrLayerCost = errors.New("pipeline: bad layer cost")
)

// Balance splits len(costs) layers into k contiguous, non-empty stages so
// that the most expensive stage is as cheap as possible (min-max optimal),
// and returns the k-1 split points: stage i holds layers
// [splits[i-1], splits[i]) with splits[-1] = 0 and splits[k-1] = len(costs).
//
// costs[i] is the cost of layer i in any unit: measured seconds per layer,
// or an estimate such as FLOPs per sample, or parameter count; the caller
// chooses. Among the partitions that reach the optimal bottleneck, Balance
// picks the one with the smallest sum of squared stage costs, which spreads
// the rest of the work evenly instead of piling it on early stages (handy
// when the costs are only estimates). If every cost is zero the layers count
// one each, so stages get equal layer counts.
func Balance(costs []float64, k int) ([]int, error) {
	n := len(costs)
	if n == 0 {
		return nil, fmt.Errorf("%w: no layers to partition", ErrLayerCost)
	}
	if k < 1 || k > n {
		return nil, fmt.Errorf("%w: %d stages for %d layers: need 1..%d (every stage needs a layer)", ErrStageCount, k, n, n)
	}
	total := 0.0
	for i, c := range costs {
		if c < 0 || math.IsNaN(c) || math.IsInf(c, 0) {
			return nil, fmt.Errorf("%w: layer %d has cost %v: want a finite value >= 0", ErrLayerCost, i, c)
		}
		total += c
	}
	if math.IsInf(total, 0) {
		return nil, fmt.Errorf("%w: layer costs overflow when summed", ErrLayerCost)
	}
	// pre[i] is the cost of layers [0, i); a stage [i, j) costs pre[j]-pre[i].
	// Every stage cost below is computed by that one expression, so the
	// bottleneck found in pass 1 compares exactly in pass 2.
	pre := make([]float64, n+1)
	for i, c := range costs {
		if total == 0 {
			c = 1
		}
		pre[i+1] = pre[i] + c
	}
	cost := func(i, j int) float64 { return pre[j] - pre[i] }

	// Pass 1: best[j][i] is the smallest bottleneck for layers [0, i) in j
	// stages. O(k n^2) time, which is nothing for the tens to thousands of
	// layers a model has, and exact (a binary search over the bottleneck
	// would only be exact up to its tolerance on float costs).
	inf := math.Inf(1)
	best := make([][]float64, k+1)
	for j := range best {
		best[j] = make([]float64, n+1)
		for i := range best[j] {
			best[j][i] = inf
		}
	}
	best[0][0] = 0
	for j := 1; j <= k; j++ {
		// Layers [0, i) in j stages: i >= j, and n-i >= k-j layers must remain.
		for i := j; i <= n-(k-j); i++ {
			for p := j - 1; p < i; p++ {
				if best[j-1][p] == inf {
					continue
				}
				if v := max(best[j-1][p], cost(p, i)); v < best[j][i] {
					best[j][i] = v
				}
			}
		}
	}
	bottleneck := best[k][n]

	// Pass 2: among partitions whose every stage costs at most the
	// bottleneck, minimise the sum of squared stage costs (an additive
	// objective, so this DP is exact too). from[j][i] remembers the split.
	sq := make([][]float64, k+1)
	from := make([][]int, k+1)
	for j := range sq {
		sq[j] = make([]float64, n+1)
		from[j] = make([]int, n+1)
		for i := range sq[j] {
			sq[j][i] = inf
		}
	}
	sq[0][0] = 0
	for j := 1; j <= k; j++ {
		for i := j; i <= n-(k-j); i++ {
			for p := j - 1; p < i; p++ {
				c := cost(p, i)
				if sq[j-1][p] == inf || c > bottleneck {
					continue
				}
				if v := sq[j-1][p] + c*c; v < sq[j][i] {
					sq[j][i], from[j][i] = v, p
				}
			}
		}
	}
	splits := make([]int, k-1)
	for j, i := k, n; j > 1; j-- {
		i = from[j][i]
		splits[j-2] = i
	}
	return splits, nil
}

// CheckSplits validates user-given split points for n layers (see Balance
// for their meaning): each in 1..n-1, strictly increasing, so that all
// len(splits)+1 stages are non-empty.
func CheckSplits(splits []int, n int) error {
	if n < 1 {
		return fmt.Errorf("%w: no layers to partition", ErrLayerCost)
	}
	if k := len(splits) + 1; k > n {
		return fmt.Errorf("%w: %d split points make %d stages for %d layers: at most %d split points", ErrStageCount, len(splits), k, n, n-1)
	}
	for i, p := range splits {
		if p < 1 || p > n-1 {
			return fmt.Errorf("%w: split point %d is %d: want 1..%d for %d layers (0 or %d would leave a stage empty)", ErrSplitRange, i, p, n-1, n, n)
		}
		if i > 0 && p == splits[i-1] {
			return fmt.Errorf("%w: split point %d repeats %d, leaving stage %d with no layers", ErrEmptyStage, i, p, i)
		}
		if i > 0 && p < splits[i-1] {
			return fmt.Errorf("%w: split point %d is %d, after %d: split points must increase", ErrSplitOrder, i, p, splits[i-1])
		}
	}
	return nil
}

// ParseSplits parses split points written as a flag value, "3,7" for
// stages [0,3) [3,7) [7,n). Validate the result with CheckSplits or NewPlan.
// An empty string means no split points (one stage).
func ParseSplits(s string) ([]int, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return nil, nil
	}
	parts := strings.Split(s, ",")
	out := make([]int, len(parts))
	for i, p := range parts {
		v, err := strconv.Atoi(strings.TrimSpace(p))
		if err != nil {
			return nil, fmt.Errorf("%w: split point %d is %q: not an integer", ErrSplitRange, i, p)
		}
		out[i] = v
	}
	return out, nil
}

// Layer describes one layer of a model's sequence to the partitioner.
type Layer struct {
	Name   string  // printed in the plan; may be empty
	Params int64   // number of parameters, printed in the plan
	Cost   float64 // balancing cost, as for Balance
}

// StagePlan is one stage of a Plan.
type StagePlan struct {
	Index      int     // stage number, 0-based
	Start, End int     // the stage runs layers [Start, End)
	Params     int64   // parameters in those layers
	Cost       float64 // sum of those layers' costs
	// Device is where the stage runs, for printing ("cuda:0", "cpu", "rank 2
	// cuda:1"); the executor fills it in. Empty prints as "-".
	Device string
}

// Layers returns the number of layers in the stage.
func (s StagePlan) Layers() int { return s.End - s.Start }

// Plan is a partition of a layer sequence into contiguous pipeline stages.
type Plan struct {
	Layers []Layer
	Stages []StagePlan
}

// NewPlan builds the plan for explicit split points (see Balance for their
// meaning), validated with CheckSplits and the layer costs checked.
func NewPlan(layers []Layer, splits []int) (*Plan, error) {
	if err := CheckSplits(splits, len(layers)); err != nil {
		return nil, err
	}
	for i, l := range layers {
		if l.Cost < 0 || math.IsNaN(l.Cost) || math.IsInf(l.Cost, 0) {
			return nil, fmt.Errorf("%w: layer %d (%s) has cost %v: want a finite value >= 0", ErrLayerCost, i, l.Name, l.Cost)
		}
		if l.Params < 0 {
			return nil, fmt.Errorf("%w: layer %d (%s) has %d parameters", ErrLayerCost, i, l.Name, l.Params)
		}
	}
	p := &Plan{Layers: append([]Layer(nil), layers...)}
	bounds := append(append([]int{0}, splits...), len(layers))
	for i := 0; i+1 < len(bounds); i++ {
		sp := StagePlan{Index: i, Start: bounds[i], End: bounds[i+1]}
		for _, l := range layers[sp.Start:sp.End] {
			sp.Params += l.Params
			sp.Cost += l.Cost
		}
		p.Stages = append(p.Stages, sp)
	}
	return p, nil
}

// BalancedPlan partitions layers into k stages with Balance on their costs.
func BalancedPlan(layers []Layer, k int) (*Plan, error) {
	costs := make([]float64, len(layers))
	for i, l := range layers {
		costs[i] = l.Cost
	}
	splits, err := Balance(costs, k)
	if err != nil {
		return nil, err
	}
	return NewPlan(layers, splits)
}

// Splits returns the plan's split points (the Start of every stage but the
// first), the form Balance returns and NewPlan takes.
func (p *Plan) Splits() []int {
	out := make([]int, 0, len(p.Stages))
	for _, s := range p.Stages[1:] {
		out = append(out, s.Start)
	}
	return out
}

// StageOf returns the stage that runs layer i, or -1 if there is none.
func (p *Plan) StageOf(layer int) int {
	for _, s := range p.Stages {
		if layer >= s.Start && layer < s.End {
			return s.Index
		}
	}
	return -1
}

// TotalCost returns the cost of all layers.
func (p *Plan) TotalCost() float64 {
	t := 0.0
	for _, s := range p.Stages {
		t += s.Cost
	}
	return t
}

// Bottleneck returns the cost of the most expensive stage, which bounds the
// pipeline's throughput.
func (p *Plan) Bottleneck() float64 {
	b := 0.0
	for _, s := range p.Stages {
		b = max(b, s.Cost)
	}
	return b
}

// Imbalance returns the bottleneck over the mean stage cost: 1 is perfect
// balance; 1.25 means the slowest stage does 25% more than its share, so the
// others wait that much. 1 when all costs are zero.
func (p *Plan) Imbalance() float64 {
	t := p.TotalCost()
	if t == 0 {
		return 1
	}
	return p.Bottleneck() * float64(len(p.Stages)) / t
}

// String prints the plan as a table, for example:
//
//	stage  layers            params  cost share  device
//	0      0 fc1            100,480       84.8%  cuda:0
//	1      1-5 relu1..loss   17,802       15.2%  cuda:1
//	bottleneck 84.8% of total cost, imbalance 1.70 (max/mean stage cost)
func (p *Plan) String() string {
	total := p.TotalCost()
	rows := [][]string{{"stage", "layers", "params", "cost share", "device"}}
	for _, s := range p.Stages {
		span := strconv.Itoa(s.Start)
		if s.End-1 > s.Start {
			span += "-" + strconv.Itoa(s.End-1)
		}
		first, last := p.Layers[s.Start].Name, p.Layers[s.End-1].Name
		switch {
		case first != "" && s.End-1 > s.Start:
			span += " " + first + ".." + last
		case first != "":
			span += " " + first
		}
		share := "-"
		if total > 0 {
			share = fmt.Sprintf("%.1f%%", 100*s.Cost/total)
		}
		dev := s.Device
		if dev == "" {
			dev = "-"
		}
		rows = append(rows, []string{strconv.Itoa(s.Index), span, groupDigits(s.Params), share, dev})
	}
	var b strings.Builder
	writeTable(&b, rows, []bool{false, false, true, true, false})
	if total > 0 {
		fmt.Fprintf(&b, "bottleneck %.1f%% of total cost, imbalance %.2f (max/mean stage cost)\n",
			100*p.Bottleneck()/total, p.Imbalance())
	}
	return b.String()
}

// writeTable writes rows in aligned columns; right[i] right-aligns column i.
func writeTable(b *strings.Builder, rows [][]string, right []bool) {
	width := make([]int, len(rows[0]))
	for _, r := range rows {
		for i, c := range r {
			width[i] = max(width[i], len(c))
		}
	}
	for _, r := range rows {
		line := ""
		for i, c := range r {
			if i > 0 {
				line += "  "
			}
			if right[i] {
				line += strings.Repeat(" ", width[i]-len(c)) + c
			} else if i < len(r)-1 {
				line += c + strings.Repeat(" ", width[i]-len(c))
			} else {
				line += c
			}
		}
		b.WriteString(line)
		b.WriteByte('\n')
	}
}

// groupDigits prints 1234567 as "1,234,567".
func groupDigits(v int64) string {
	s := strconv.FormatInt(v, 10)
	neg := strings.HasPrefix(s, "-")
	if neg {
		s = s[1:]
	}
	var b strings.Builder
	for i, r := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(r)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}
