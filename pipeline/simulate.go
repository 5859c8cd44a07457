package pipeline

import (
	"errors"
	"fmt"
	"math"
	"strings"
)

// Costs gives Simulate the time each action takes. Times are in any unit
// (seconds, or 1 for "one forward").
type Costs struct {
	// Forward[s] is the time stage s takes for one micro-batch forward.
	// It must have one non-negative, finite entry per stage.
	Forward []float64
	// Backward[s] is the time stage s takes for one micro-batch backward
	// (typically about twice Forward). Same length rules as Forward.
	Backward []float64
	// Transfer is the latency added to every hand-off between neighbouring
	// stages (activation forward, gradient backward). Zero, the default,
	// models free communication, the setting of the textbook bubble formula.
	Transfer float64
}

// SimResult is what Simulate finds when it runs a schedule.
type SimResult struct {
	// Makespan is the time from the start (every stage ready at 0) to the
	// end of the last action on any stage.
	Makespan float64
	// Busy[s] is the time stage s spends computing.
	Busy []float64
	// Bubble is the idle fraction of the pipeline, 1 - sum(Busy)/(K*Makespan):
	// (K-1)/(M+K-1) for an ideal pipeline of equal stages. 0 when Makespan is 0.
	Bubble float64
	// PeakActivations[s] is the largest number of micro-batches stage s holds
	// activations for at once: forwards done whose backwards have not run.
	// 1F1B gives min(K-s, M) and GPipe gives M.
	PeakActivations []int
	// Start[s][i] and End[s][i] are the times action i of stage s ran.
	Start, End [][]float64
}

// Efficiency returns 1 - Bubble, the fraction of stage time spent computing.
func (r SimResult) Efficiency() float64 { return 1 - r.Bubble }

// ErrDeadlock is wrapped by the *DeadlockError Simulate returns when a
// schedule stalls.
var ErrDeadlock = errors.New("pipeline: schedule deadlocks")

// Blocked describes one stage that cannot proceed in a deadlock.
type Blocked struct {
	Stage  int
	Action Action // the action the stage is stuck at
	// WaitsFor is the stage whose action it waits for, and Needs that action.
	WaitsFor int
	Needs    Action
}

// DeadlockError lists the stages that are stuck when a schedule stalls under
// blocking receives. errors.Is(err, ErrDeadlock) holds for it.
type DeadlockError struct {
	Blocked []Blocked
}

func (e *DeadlockError) Error() string {
	var b strings.Builder
	b.WriteString("pipeline: schedule deadlocks:")
	for i, x := range e.Blocked {
		if i > 0 {
			b.WriteByte(';')
		}
		fmt.Fprintf(&b, " stage %d at %v waits for %v on stage %d", x.Stage, x.Action, x.Needs, x.WaitsFor)
	}
	return b.String()
}

// Unwrap makes errors.Is(err, ErrDeadlock) true.
func (e *DeadlockError) Unwrap() error { return ErrDeadlock }

// Simulate runs the schedule with every stage taking fwd per forward and bwd
// per backward, and free communication. See SimulateCosts.
func Simulate(s Schedule, fwd, bwd float64) (SimResult, error) {
	c := Costs{Forward: make([]float64, len(s)), Backward: make([]float64, len(s))}
	for i := range s {
		c.Forward[i], c.Backward[i] = fwd, bwd
	}
	return SimulateCosts(s, c)
}

// SimulateCosts executes the schedule as a pipeline executor would, and so
// proves it deadlock-free or returns a *DeadlockError:
//
//   - each stage runs its own action list in order, one action at a time;
//   - a forward of micro-batch m on stage s > 0 blocks until stage s-1 has
//     finished its forward of m (the activation arrives, Transfer later);
//   - a backward of m on stage s < K-1 blocks until stage s+1 has finished
//     its backward of m (the gradient arrives, Transfer later); on the last
//     stage it only needs its own forward of m, which precedes it;
//   - sends never block: the sender hands the tensor to the transport and
//     goes on (QUIC streams buffer up to their flow-control window). An
//     executor with rendezvous sends must post sends asynchronously to keep
//     this guarantee; 1F1B in particular would deadlock otherwise, since
//     neighbours send to each other at the same time in the steady state.
//
// The schedule is first checked with Validate.
func SimulateCosts(s Schedule, c Costs) (SimResult, error) {
	if err := s.Validate(); err != nil {
		return SimResult{}, err
	}
	k, micro := len(s), s.Micro()
	if err := checkCosts("Forward", c.Forward, k); err != nil {
		return SimResult{}, err
	}
	if err := checkCosts("Backward", c.Backward, k); err != nil {
		return SimResult{}, err
	}
	if c.Transfer < 0 || math.IsNaN(c.Transfer) || math.IsInf(c.Transfer, 0) {
		return SimResult{}, fmt.Errorf("%w: Costs.Transfer is %v: want a finite value >= 0", ErrBadSchedule, c.Transfer)
	}

	// fEnd[s][m] / bEnd[s][m]: when stage s finished forward / backward of
	// m; NaN until it has. Every stage runs its list in a fixed order, so an
	// action's times depend only on its predecessor on the stage and on its
	// one cross-stage dependency: visiting stages round-robin and running
	// each as far as its dependencies allow yields the exact times, and a
	// sweep in which no stage moves is a deadlock.
	fEnd, bEnd := nanGrid(k, micro), nanGrid(k, micro)
	res := SimResult{
		Busy:            make([]float64, k),
		PeakActivations: make([]int, k),
		Start:           make([][]float64, k),
		End:             make([][]float64, k),
	}
	pos := make([]int, k)
	free := make([]float64, k)
	live := make([]int, k)
	total := 0
	for st := range s {
		res.Start[st] = make([]float64, len(s[st]))
		res.End[st] = make([]float64, len(s[st]))
		total += len(s[st])
	}
	for done := 0; done < total; {
		moved := false
		for st := range s {
			for pos[st] < len(s[st]) {
				a := s[st][pos[st]]
				ready, ok := 0.0, true
				switch {
				case a.Kind == Forward && st > 0:
					ready, ok = fEnd[st-1][a.Micro]+c.Transfer, !math.IsNaN(fEnd[st-1][a.Micro])
				case a.Kind == Backward && st < k-1:
					ready, ok = bEnd[st+1][a.Micro]+c.Transfer, !math.IsNaN(bEnd[st+1][a.Micro])
				}
				if !ok {
					break
				}
				start := max(free[st], ready)
				var end float64
				if a.Kind == Forward {
					end = start + c.Forward[st]
					fEnd[st][a.Micro] = end
					live[st]++
					res.PeakActivations[st] = max(res.PeakActivations[st], live[st])
				} else {
					end = start + c.Backward[st]
					bEnd[st][a.Micro] = end
					live[st]--
				}
				res.Start[st][pos[st]], res.End[st][pos[st]] = start, end
				res.Busy[st] += end - start
				res.Makespan = max(res.Makespan, end)
				free[st] = end
				pos[st]++
				done++
				moved = true
			}
		}
		if !moved {
			return SimResult{}, deadlock(s, pos)
		}
	}
	if res.Makespan > 0 {
		sum := 0.0
		for _, b := range res.Busy {
			sum += b
		}
		res.Bubble = 1 - sum/(float64(k)*res.Makespan)
	}
	return res, nil
}

func deadlock(s Schedule, pos []int) error {
	e := &DeadlockError{}
	for st := range s {
		if pos[st] >= len(s[st]) {
			continue
		}
		a := s[st][pos[st]]
		b := Blocked{Stage: st, Action: a, Needs: a}
		if a.Kind == Forward {
			b.WaitsFor = st - 1
		} else {
			b.WaitsFor = st + 1
		}
		e.Blocked = append(e.Blocked, b)
	}
	return e
}

func nanGrid(k, m int) [][]float64 {
	g := make([][]float64, k)
	for i := range g {
		g[i] = make([]float64, m)
		for j := range g[i] {
			g[i][j] = math.NaN()
		}
	}
	return g
}

func checkCosts(name string, v []float64, k int) error {
	if len(v) != k {
		return fmt.Errorf("%w: Costs.%s has %d entries for %d stages", ErrBadSchedule, name, len(v), k)
	}
	for i, x := range v {
		if x < 0 || math.IsNaN(x) || math.IsInf(x, 0) {
			return fmt.Errorf("%w: Costs.%s[%d] is %v: want a finite value >= 0", ErrBadSchedule, name, i, x)
		}
	}
	return nil
}
