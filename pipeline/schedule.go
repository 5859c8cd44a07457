package pipeline

import (
	"errors"
	"fmt"
	"strings"
)

// ActionKind says whether an Action runs a micro-batch forward or backward
// through a stage.
type ActionKind uint8

const (
	// Forward runs one micro-batch forward through the stage: receive the
	// activation from the previous stage (or read the input on stage 0), run
	// the stage's layers, keep what backward needs, send the output on.
	Forward ActionKind = iota
	// Backward runs one micro-batch backward through the stage: receive the
	// gradient from the next stage (or start from the loss on the last stage),
	// accumulate parameter gradients, send the input gradient back, and free
	// the activations stored by the matching Forward.
	Backward
)

// String returns "F" or "B", the letters used in printed schedules.
func (k ActionKind) String() string {
	switch k {
	case Forward:
		return "F"
	case Backward:
		return "B"
	}
	return fmt.Sprintf("ActionKind(%d)", uint8(k))
}

// Action is one step of a stage's schedule: run micro-batch Micro forward or
// backward through the stage.
type Action struct {
	Kind  ActionKind
	Micro int // 0-based micro-batch index
}

// String prints the action as "F3" or "B3".
func (a Action) String() string { return fmt.Sprintf("%s%d", a.Kind, a.Micro) }

// Schedule is a per-stage action list: Schedule[s] is what stage s (0-based)
// runs, in order, for one mini-batch. Stage s hands activations to s+1 and
// gradients to s-1; an executor runs each list in order with blocking
// receives (see Simulate for the exact semantics it must follow).
type Schedule [][]Action

// Stages returns the number of stages in the schedule.
func (s Schedule) Stages() int { return len(s) }

// Micro returns the number of micro-batches the schedule covers: one more
// than the largest micro-batch index it mentions.
func (s Schedule) Micro() int {
	m := 0
	for _, acts := range s {
		for _, a := range acts {
			if a.Micro+1 > m {
				m = a.Micro + 1
			}
		}
	}
	return m
}

// String prints one line per stage, e.g. for OneFOneB(3, 4):
//
//	stage 0: F0 F1 F2 B0 F3 B1 B2 B3
//	stage 1: F0 F1 B0 F2 B1 F3 B2 B3
//	stage 2: F0 B0 F1 B1 F2 B2 F3 B3
func (s Schedule) String() string {
	var b strings.Builder
	w := len(fmt.Sprint(len(s) - 1))
	for st, acts := range s {
		fmt.Fprintf(&b, "stage %*d:", w, st)
		for _, a := range acts {
			b.WriteByte(' ')
			b.WriteString(a.String())
		}
		b.WriteByte('\n')
	}
	return b.String()
}

// ErrBadSchedule is wrapped by every error about schedule arguments or a
// malformed schedule, so callers can test for it with errors.Is.
var ErrBadSchedule = errors.New("pipeline: bad schedule")

func checkShape(stages, micro int) error {
	if stages < 1 {
		return fmt.Errorf("%w: %d stages: need at least 1", ErrBadSchedule, stages)
	}
	if micro < 1 {
		return fmt.Errorf("%w: %d micro-batches: need at least 1", ErrBadSchedule, micro)
	}
	return nil
}

// GPipe returns the GPipe schedule: every stage runs the forwards of all
// micro micro-batches, then all their backwards. Backwards run in forward
// order (B0 first), matching the order in which the last stage produces
// gradients. Each stage stores the activations of all micro micro-batches at
// its peak. It is a pure function of its arguments.
func GPipe(stages, micro int) (Schedule, error) {
	if err := checkShape(stages, micro); err != nil {
		return nil, err
	}
	s := make(Schedule, stages)
	for st := range s {
		acts := make([]Action, 0, 2*micro)
		for m := 0; m < micro; m++ {
			acts = append(acts, Action{Forward, m})
		}
		for m := 0; m < micro; m++ {
			acts = append(acts, Action{Backward, m})
		}
		s[st] = acts
	}
	return s, nil
}

// OneFOneB returns the 1F1B (PipeDream-Flush) schedule. Stage s (0-based) of
// K runs a warmup of min(K-s-1, micro) forwards, then alternates one forward
// and one backward until every forward is issued, then a cooldown of the
// remaining backwards. Stage s thus holds at most min(K-s, micro)
// micro-batches' activations, against micro for GPipe, for the same bubble.
// It is a pure function of its arguments.
func OneFOneB(stages, micro int) (Schedule, error) {
	if err := checkShape(stages, micro); err != nil {
		return nil, err
	}
	s := make(Schedule, stages)
	for st := range s {
		warm := min(stages-st-1, micro)
		acts := make([]Action, 0, 2*micro)
		for m := 0; m < warm; m++ {
			acts = append(acts, Action{Forward, m})
		}
		// Steady state: forward warm+i, then backward i. The backward of i
		// is the oldest micro-batch in flight, so memory stays at warm+1.
		for i := 0; i < micro-warm; i++ {
			acts = append(acts, Action{Forward, warm + i}, Action{Backward, i})
		}
		for m := micro - warm; m < micro; m++ {
			acts = append(acts, Action{Backward, m})
		}
		s[st] = acts
	}
	return s, nil
}

// Func builds a schedule for a number of stages and micro-batches; GPipe and
// OneFOneB are Funcs.
type Func func(stages, micro int) (Schedule, error)

// ByName returns the schedule named by a command-line flag: "gpipe" or
// "1f1b" (also accepted: "onefoneb", "pipedream-flush"; any case).
func ByName(name string) (Func, error) {
	switch strings.ToLower(strings.TrimSpace(name)) {
	case "gpipe":
		return GPipe, nil
	case "1f1b", "onefoneb", "pipedream-flush":
		return OneFOneB, nil
	}
	return nil, fmt.Errorf("%w: unknown schedule %q: want gpipe or 1f1b", ErrBadSchedule, name)
}

// TheoreticalBubble returns the idle fraction (K-1)/(M+K-1) of an ideal
// pipeline of K equal stages and M micro-batches, for both GPipe and 1F1B,
// whatever the ratio of backward to forward time (communication free).
// Pipeline efficiency is 1 minus it. It returns 0 for K < 1 or M < 1.
func TheoreticalBubble(stages, micro int) float64 {
	if stages < 1 || micro < 1 {
		return 0
	}
	return float64(stages-1) / float64(micro+stages-1)
}

// Validate checks that the schedule is well formed for its shape: every
// stage runs each micro-batch 0..Micro()-1 forward exactly once and backward
// exactly once, and its backward after its forward. Cross-stage order and
// deadlock freedom are checked by Simulate.
func (s Schedule) Validate() error {
	if len(s) == 0 {
		return fmt.Errorf("%w: no stages", ErrBadSchedule)
	}
	micro := s.Micro()
	for st, acts := range s {
		fwd := make([]bool, micro)
		bwd := make([]bool, micro)
		for i, a := range acts {
			if a.Micro < 0 {
				return fmt.Errorf("%w: stage %d action %d (%v): negative micro-batch", ErrBadSchedule, st, i, a)
			}
			switch a.Kind {
			case Forward:
				if fwd[a.Micro] {
					return fmt.Errorf("%w: stage %d action %d: forward of micro-batch %d repeated", ErrBadSchedule, st, i, a.Micro)
				}
				fwd[a.Micro] = true
			case Backward:
				if bwd[a.Micro] {
					return fmt.Errorf("%w: stage %d action %d: backward of micro-batch %d repeated", ErrBadSchedule, st, i, a.Micro)
				}
				if !fwd[a.Micro] {
					return fmt.Errorf("%w: stage %d action %d: backward of micro-batch %d before its forward", ErrBadSchedule, st, i, a.Micro)
				}
				bwd[a.Micro] = true
			default:
				return fmt.Errorf("%w: stage %d action %d: unknown kind %d", ErrBadSchedule, st, i, a.Kind)
			}
		}
		for m := 0; m < micro; m++ {
			if !fwd[m] || !bwd[m] {
				return fmt.Errorf("%w: stage %d never runs micro-batch %d %s", ErrBadSchedule, st, m,
					map[bool]string{true: "backward", false: "forward"}[fwd[m]])
			}
		}
	}
	return nil
}
