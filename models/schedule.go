package models

import (
	"fmt"
	"math"
	"strconv"
	"strings"
)

// Schedule gives the learning rate after a number of training samples, summed
// over all ranks. It is defined on samples rather than steps so that it does
// not change when the world size (and with it the steps per epoch) does, and
// a resumed run recomputes it exactly from its checkpoint (step × global batch).
type Schedule interface {
	LR(samples int64) float32
	String() string
}

// ScheduleConfig describes a schedule; the zero value (with Base set) is a
// constant learning rate.
type ScheduleConfig struct {
	Kind          string  // "constant" (default), "step" or "cosine"
	Base          float32 // the learning rate after warm-up; must be > 0
	WarmupSamples int64   // linear warm-up from Base/WarmupSamples·1 to Base over this many samples; 0: none
	// Step: the rate is multiplied by Gamma every StepSamples samples (after warm-up).
	StepSamples int64
	Gamma       float32
	// Cosine: from Base down to Min over TotalSamples (warm-up included), then Min.
	TotalSamples int64
	Min          float32
}

// NewSchedule validates c and returns its schedule.
func NewSchedule(c ScheduleConfig) (Schedule, error) {
	if !(c.Base > 0) || math.IsInf(float64(c.Base), 0) {
		return nil, fmt.Errorf("schedule: learning rate must be positive and finite, got %g", c.Base)
	}
	if c.WarmupSamples < 0 {
		return nil, fmt.Errorf("schedule: warm-up of %d samples", c.WarmupSamples)
	}
	switch c.Kind {
	case "", "constant":
		c.Kind = "constant"
	case "step":
		if c.StepSamples <= 0 || !(c.Gamma > 0 && c.Gamma <= 1) {
			return nil, fmt.Errorf("schedule: step needs a positive step length (got %d samples) and a gamma in (0, 1] (got %g)", c.StepSamples, c.Gamma)
		}
	case "cosine":
		if c.TotalSamples <= c.WarmupSamples {
			return nil, fmt.Errorf("schedule: cosine needs total samples (%d) beyond the warm-up (%d)", c.TotalSamples, c.WarmupSamples)
		}
		if c.Min < 0 || c.Min > c.Base {
			return nil, fmt.Errorf("schedule: cosine minimum %g outside [0, %g]", c.Min, c.Base)
		}
	default:
		return nil, fmt.Errorf("schedule: unknown kind %q (constant, step, cosine)", c.Kind)
	}
	return schedule(c), nil
}

type schedule ScheduleConfig

// LR implements Schedule.
func (s schedule) LR(samples int64) float32 {
	samples = max(samples, 0)
	if samples < s.WarmupSamples {
		// Linear warm-up, never exactly zero (the first step moves).
		return s.Base * float32(samples+1) / float32(s.WarmupSamples)
	}
	after := samples - s.WarmupSamples
	switch s.Kind {
	case "step":
		return s.Base * float32(math.Pow(float64(s.Gamma), float64(after/s.StepSamples)))
	case "cosine":
		span := s.TotalSamples - s.WarmupSamples
		if after >= span {
			return s.Min
		}
		c := 0.5 * (1 + math.Cos(math.Pi*float64(after)/float64(span)))
		return s.Min + float32(c)*(s.Base-s.Min)
	}
	return s.Base
}

// String implements Schedule, e.g. "cosine 0.05→0 over 600000 samples, warm-up 6000".
func (s schedule) String() string {
	var b strings.Builder
	switch s.Kind {
	case "step":
		fmt.Fprintf(&b, "step %g ×%g every %d samples", s.Base, s.Gamma, s.StepSamples)
	case "cosine":
		fmt.Fprintf(&b, "cosine %g→%g over %d samples", s.Base, s.Min, s.TotalSamples)
	default:
		fmt.Fprintf(&b, "constant %g", s.Base)
	}
	if s.WarmupSamples > 0 {
		b.WriteString(", warm-up " + strconv.FormatInt(s.WarmupSamples, 10) + " samples")
	}
	return b.String()
}
