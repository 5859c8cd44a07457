package pipeline

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"testing"
)

// tickResult is what the reference simulator below finds.
type tickResult struct {
	makespan int
	busy     []int
	stalled  bool
	fEnd     map[[2]int]int // (stage, micro) -> end tick of the forward
	bEnd     map[[2]int]int
	fStart   map[[2]int]int
	bStart   map[[2]int]int
}

// tickSim is a reference executor written independently of SimulateCosts:
// it advances a clock one tick at a time, and at each tick every idle stage
// starts its next action if the blocking receive it needs has completed
// (the sender finished at least transfer ticks ago). Costs must be >= 1.
// It reports a stall when the clock passes a bound no deadlock-free schedule
// can reach: every tick, something computes or is in flight, so the
// makespan is at most the sum over actions of (cost + transfer).
func tickSim(s Schedule, fwd, bwd []int, transfer int) tickResult {
	k := len(s)
	r := tickResult{
		busy: make([]int, k),
		fEnd: map[[2]int]int{}, bEnd: map[[2]int]int{},
		fStart: map[[2]int]int{}, bStart: map[[2]int]int{},
	}
	pos := make([]int, k)
	busyUntil := make([]int, k)
	bound := 0
	for st, acts := range s {
		for _, a := range acts {
			if a.Kind == Forward {
				bound += fwd[st] + transfer
			} else {
				bound += bwd[st] + transfer
			}
		}
	}
	for t := 0; ; t++ {
		left := false
		for st := range s {
			if pos[st] == len(s[st]) {
				continue
			}
			left = true
			if busyUntil[st] > t {
				continue
			}
			a := s[st][pos[st]]
			key := [2]int{st, a.Micro}
			if a.Kind == Forward && st > 0 {
				e, ok := r.fEnd[[2]int{st - 1, a.Micro}]
				if !ok || e+transfer > t {
					continue
				}
			}
			if a.Kind == Backward && st < k-1 {
				e, ok := r.bEnd[[2]int{st + 1, a.Micro}]
				if !ok || e+transfer > t {
					continue
				}
			}
			cost := fwd[st]
			if a.Kind == Backward {
				cost = bwd[st]
				r.bStart[key], r.bEnd[key] = t, t+cost
			} else {
				r.fStart[key], r.fEnd[key] = t, t+cost
			}
			busyUntil[st] = t + cost
			r.busy[st] += cost
			r.makespan = max(r.makespan, t+cost)
			pos[st]++
		}
		if !left {
			return r
		}
		if t > bound {
			r.stalled = true
			return r
		}
	}
}

// checkComplete verifies, without the package's Validate, that every stage
// runs each micro-batch's forward and backward exactly once, forward first.
func checkComplete(t *testing.T, name string, s Schedule, k, m int) {
	t.Helper()
	if len(s) != k {
		t.Fatalf("%s: %d stages, want %d", name, len(s), k)
	}
	for st, acts := range s {
		if len(acts) != 2*m {
			t.Fatalf("%s: stage %d has %d actions, want %d", name, st, len(acts), 2*m)
		}
		seen := map[Action]int{}
		for i, a := range acts {
			if a.Micro < 0 || a.Micro >= m {
				t.Fatalf("%s: stage %d action %d: micro-batch %d out of 0..%d", name, st, i, a.Micro, m-1)
			}
			if _, dup := seen[a]; dup {
				t.Fatalf("%s: stage %d runs %v twice", name, st, a)
			}
			seen[a] = i
		}
		for mb := 0; mb < m; mb++ {
			fi, okF := seen[Action{Forward, mb}]
			bi, okB := seen[Action{Backward, mb}]
			if !okF || !okB {
				t.Fatalf("%s: stage %d misses F%d or B%d", name, st, mb, mb)
			}
			if bi < fi {
				t.Fatalf("%s: stage %d runs B%d before F%d", name, st, mb, mb)
			}
		}
	}
}

// peaks counts, per stage, the most micro-batches forwarded but not yet
// backwarded at any point of its list.
func peaks(s Schedule) []int {
	out := make([]int, len(s))
	for st, acts := range s {
		live := 0
		for _, a := range acts {
			if a.Kind == Forward {
				live++
			} else {
				live--
			}
			out[st] = max(out[st], live)
		}
	}
	return out
}

func TestSchedulesAllShapes(t *testing.T) {
	type sched struct {
		name string
		fn   Func
		peak func(k, m, s int) int
	}
	scheds := []sched{
		{"gpipe", GPipe, func(k, m, s int) int { return m }},
		{"1f1b", OneFOneB, func(k, m, s int) int { return min(k-s, m) }},
	}
	for _, sc := range scheds {
		for k := 1; k <= 8; k++ {
			for m := 1; m <= 16; m++ {
				name := fmt.Sprintf("%s K=%d M=%d", sc.name, k, m)
				s, err := sc.fn(k, m)
				if err != nil {
					t.Fatalf("%s: %v", name, err)
				}
				checkComplete(t, name, s, k, m)
				if err := s.Validate(); err != nil {
					t.Fatalf("%s: Validate: %v", name, err)
				}
				if s.Stages() != k || s.Micro() != m {
					t.Fatalf("%s: shape %d x %d", name, s.Stages(), s.Micro())
				}
				for st, p := range peaks(s) {
					if want := sc.peak(k, m, st); p != want {
						t.Fatalf("%s: stage %d stores up to %d activations, want %d", name, st, p, want)
					}
				}
				for _, bwd := range []int{1, 2} {
					checkAgainstReference(t, fmt.Sprintf("%s bwd=%d", name, bwd), s, uniform(k, 1), uniform(k, bwd), 0, true)
				}
			}
		}
	}
}

func uniform(k, v int) []int {
	out := make([]int, k)
	for i := range out {
		out[i] = v
	}
	return out
}

func floats(v []int) []float64 {
	out := make([]float64, len(v))
	for i, x := range v {
		out[i] = float64(x)
	}
	return out
}

// checkAgainstReference runs s through SimulateCosts and tickSim, and checks
// that they agree, that the timings respect every send/recv dependency, and
// (ideal: equal stages, no transfer) that the bubble is (K-1)/(M+K-1).
func checkAgainstReference(t *testing.T, name string, s Schedule, fwd, bwd []int, transfer int, ideal bool) {
	t.Helper()
	k, m := len(s), s.Micro()
	ref := tickSim(s, fwd, bwd, transfer)
	if ref.stalled {
		t.Fatalf("%s: reference executor stalls", name)
	}
	got, err := SimulateCosts(s, Costs{Forward: floats(fwd), Backward: floats(bwd), Transfer: float64(transfer)})
	if err != nil {
		t.Fatalf("%s: SimulateCosts: %v", name, err)
	}
	if got.Makespan != float64(ref.makespan) {
		t.Fatalf("%s: makespan %v, reference %d", name, got.Makespan, ref.makespan)
	}
	sumBusy := 0
	for st := range s {
		if got.Busy[st] != float64(ref.busy[st]) {
			t.Fatalf("%s: stage %d busy %v, reference %d", name, st, got.Busy[st], ref.busy[st])
		}
		sumBusy += ref.busy[st]
	}
	wantBubble := 1 - float64(sumBusy)/float64(k*ref.makespan)
	if math.Abs(got.Bubble-wantBubble) > 1e-12 {
		t.Fatalf("%s: bubble %v, reference %v", name, got.Bubble, wantBubble)
	}
	if ideal {
		if th := TheoreticalBubble(k, m); math.Abs(got.Bubble-th) > 1e-12 {
			t.Fatalf("%s: bubble %v, theory (K-1)/(M+K-1) = %v", name, got.Bubble, th)
		}
	}
	want := peaks(s)
	for st := range s {
		if got.PeakActivations[st] != want[st] {
			t.Fatalf("%s: stage %d peak activations %d, want %d", name, st, got.PeakActivations[st], want[st])
		}
	}
	// Per-action times: equal to the reference's, and every receive after
	// its send (+transfer), every action after the previous one on its stage.
	for st, acts := range s {
		prevEnd := 0.0
		for i, a := range acts {
			key := [2]int{st, a.Micro}
			start, end := got.Start[st][i], got.End[st][i]
			rs := ref.fStart[key]
			if a.Kind == Backward {
				rs = ref.bStart[key]
			}
			if start != float64(rs) {
				t.Fatalf("%s: stage %d %v starts at %v, reference %d", name, st, a, start, rs)
			}
			if start < prevEnd {
				t.Fatalf("%s: stage %d %v starts at %v before its previous action ends at %v", name, st, a, start, prevEnd)
			}
			prevEnd = end
			switch {
			case a.Kind == Forward && st > 0:
				if dep := ref.fEnd[[2]int{st - 1, a.Micro}]; start < float64(dep+transfer) {
					t.Fatalf("%s: F(%d,%d) at %v before F(%d,%d) arrives at %d", name, st, a.Micro, start, st-1, a.Micro, dep+transfer)
				}
			case a.Kind == Backward:
				if dep := ref.fEnd[key]; end <= float64(dep) && bwd[st] > 0 {
					t.Fatalf("%s: B(%d,%d) ends before its forward", name, st, a.Micro)
				}
				if st < k-1 {
					if dep := ref.bEnd[[2]int{st + 1, a.Micro}]; start < float64(dep+transfer) {
						t.Fatalf("%s: B(%d,%d) at %v before B(%d,%d) arrives at %d", name, st, a.Micro, start, st+1, a.Micro, dep+transfer)
					}
				}
			}
		}
	}
	_ = m
}

// The makespan of GPipe with unit forwards, unit-time hand-offs and
// backwards of 2 is known in closed form; check the simulator reproduces it.
func TestGPipeMakespanWithTransfer(t *testing.T) {
	for k := 1; k <= 6; k++ {
		for m := 1; m <= 8; m++ {
			s, _ := GPipe(k, m)
			r, err := SimulateCosts(s, Costs{Forward: floats(uniform(k, 1)), Backward: floats(uniform(k, 2)), Transfer: 0.5})
			if err != nil {
				t.Fatal(err)
			}
			// Forward: first micro-batch reaches the end after (K-1)(1+0.5)+1,
			// the rest follow one per unit; backward mirrors it with cost 2.
			want := float64(k-1)*1.5 + float64(m) + 2*float64(m) + float64(k-1)*2.5
			if math.Abs(r.Makespan-want) > 1e-9 {
				t.Fatalf("K=%d M=%d: makespan %v, want %v", k, m, r.Makespan, want)
			}
		}
	}
}

func TestSimulateUnevenStagesAndTransfer(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for trial := 0; trial < 200; trial++ {
		k, m := 1+rng.IntN(6), 1+rng.IntN(10)
		fwd, bwd := make([]int, k), make([]int, k)
		for i := range fwd {
			fwd[i], bwd[i] = 1+rng.IntN(4), 1+rng.IntN(6)
		}
		transfer := rng.IntN(3)
		for _, fn := range []Func{GPipe, OneFOneB} {
			s, _ := fn(k, m)
			checkAgainstReference(t, fmt.Sprintf("trial %d K=%d M=%d", trial, k, m), s, fwd, bwd, transfer, false)
		}
	}
}

func TestSimulateDetectsDeadlock(t *testing.T) {
	// Stage 0 waits for B0 right after F0, but stage 1 wants F1 before it
	// runs B0: each waits on the other.
	s := Schedule{
		{{Forward, 0}, {Backward, 0}, {Forward, 1}, {Backward, 1}},
		{{Forward, 0}, {Forward, 1}, {Backward, 0}, {Backward, 1}},
	}
	if err := s.Validate(); err != nil {
		t.Fatalf("Validate: %v (the schedule is well formed per stage)", err)
	}
	if ref := tickSim(s, []int{1, 1}, []int{1, 1}, 0); !ref.stalled {
		t.Fatal("reference executor did not stall on a cyclic schedule")
	}
	_, err := Simulate(s, 1, 1)
	if !errors.Is(err, ErrDeadlock) {
		t.Fatalf("Simulate: %v, want ErrDeadlock", err)
	}
	var de *DeadlockError
	if !errors.As(err, &de) || len(de.Blocked) != 2 {
		t.Fatalf("want a DeadlockError with 2 blocked stages, got %#v", err)
	}
	b0, b1 := de.Blocked[0], de.Blocked[1]
	if b0.Stage != 0 || b0.Action != (Action{Backward, 0}) || b0.WaitsFor != 1 ||
		b1.Stage != 1 || b1.Action != (Action{Forward, 1}) || b1.WaitsFor != 0 {
		t.Fatalf("blocked: %+v", de.Blocked)
	}
	if !strings.Contains(err.Error(), "stage 0 at B0 waits for B0 on stage 1") {
		t.Fatalf("message %q does not say who waits for what", err)
	}
}

func TestValidateRejectsMalformed(t *testing.T) {
	cases := map[string]Schedule{
		"no stages":         {},
		"missing backward":  {{{Forward, 0}, {Forward, 1}, {Backward, 0}}},
		"repeated forward":  {{{Forward, 0}, {Forward, 0}, {Backward, 0}}},
		"repeated backward": {{{Forward, 0}, {Backward, 0}, {Backward, 0}}},
		"backward first":    {{{Backward, 0}, {Forward, 0}}},
		"negative micro":    {{{Forward, -1}, {Backward, -1}}},
		"unknown kind":      {{{Forward, 0}, {ActionKind(7), 0}}},
		"stage misses one":  {{{Forward, 0}, {Backward, 0}, {Forward, 1}, {Backward, 1}}, {{Forward, 0}, {Backward, 0}}},
	}
	for name, s := range cases {
		if err := s.Validate(); !errors.Is(err, ErrBadSchedule) {
			t.Errorf("%s: Validate = %v, want ErrBadSchedule", name, err)
		}
		if _, err := Simulate(s, 1, 1); !errors.Is(err, ErrBadSchedule) {
			t.Errorf("%s: Simulate = %v, want ErrBadSchedule", name, err)
		}
	}
}

func TestBadArguments(t *testing.T) {
	for _, fn := range []Func{GPipe, OneFOneB} {
		for _, km := range [][2]int{{0, 4}, {-1, 4}, {3, 0}, {3, -2}} {
			if s, err := fn(km[0], km[1]); !errors.Is(err, ErrBadSchedule) || s != nil {
				t.Errorf("(%d, %d): %v, %v; want ErrBadSchedule", km[0], km[1], s, err)
			}
		}
	}
	s, _ := OneFOneB(2, 2)
	bad := []Costs{
		{Forward: []float64{1}, Backward: []float64{1, 1}},
		{Forward: []float64{1, -1}, Backward: []float64{1, 1}},
		{Forward: []float64{1, 1}, Backward: []float64{math.NaN(), 1}},
		{Forward: []float64{1, 1}, Backward: []float64{1, math.Inf(1)}},
		{Forward: []float64{1, 1}, Backward: []float64{1, 1}, Transfer: -1},
	}
	for i, c := range bad {
		if _, err := SimulateCosts(s, c); !errors.Is(err, ErrBadSchedule) {
			t.Errorf("costs %d: %v, want ErrBadSchedule", i, err)
		}
	}
	if b := TheoreticalBubble(0, 3); b != 0 {
		t.Errorf("TheoreticalBubble(0,3) = %v", b)
	}
}

func TestZeroCosts(t *testing.T) {
	s, _ := OneFOneB(3, 3)
	r, err := Simulate(s, 0, 0)
	if err != nil || r.Makespan != 0 || r.Bubble != 0 {
		t.Fatalf("zero costs: %+v, %v", r, err)
	}
}

func TestByName(t *testing.T) {
	for name, want := range map[string]string{"gpipe": "gpipe", "GPipe": "gpipe", "1f1b": "1f1b", " 1F1B ": "1f1b", "pipedream-flush": "1f1b"} {
		fn, err := ByName(name)
		if err != nil {
			t.Fatalf("%q: %v", name, err)
		}
		got, _ := fn(3, 5)
		ref, _ := map[string]Func{"gpipe": GPipe, "1f1b": OneFOneB}[want](3, 5)
		if got.String() != ref.String() {
			t.Errorf("%q gave\n%s want\n%s", name, got, ref)
		}
	}
	if _, err := ByName("zero-bubble"); !errors.Is(err, ErrBadSchedule) || !strings.Contains(err.Error(), "zero-bubble") {
		t.Errorf("unknown name: %v", err)
	}
}

func TestScheduleString(t *testing.T) {
	s, _ := GPipe(11, 2)
	lines := strings.Split(strings.TrimSuffix(s.String(), "\n"), "\n")
	if len(lines) != 11 || lines[0] != "stage  0: F0 F1 B0 B1" || lines[10] != "stage 10: F0 F1 B0 B1" {
		t.Fatalf("String:\n%s", s)
	}
	if got := (Action{Backward, 12}).String(); got != "B12" {
		t.Fatalf("Action.String = %q", got)
	}
	if got := ActionKind(9).String(); got != "ActionKind(9)" {
		t.Fatalf("ActionKind.String = %q", got)
	}
}
