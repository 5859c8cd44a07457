package ddp

import "time"

// StepStats is the time one synchronised step spent where, on this rank.
type StepStats struct {
	// Compute is the wall time of Forward, the loss and Backward (including the launching
	// of bucket reductions and, with error feedback, the rounding of buckets, which run on
	// the training goroutine between layers). The communication that overlaps backward is
	// not subtracted: where the rank has a spare core it costs backward nothing, but with
	// one thread per rank (GOMAXPROCS=1) the CPU the group's goroutines take while
	// backward runs lengthens Compute.
	Compute time.Duration
	// Comm is the sum of the buckets' AllReduce op times. Ops run one at a time in launch
	// order, so an op's time runs from when it could start (its launch, or the completion
	// of the previous bucket's op, whichever is later) to its completion (as seen by a
	// watcher goroutine, so it may trail by a scheduling delay). Like ExposedComm it
	// includes waiting for the other ranks to launch the same op.
	Comm time.Duration
	// ExposedComm is the wall time Wait spent blocked after backward had finished: the
	// communication that overlap with backward did not hide. It includes waiting for
	// slower ranks (an AllReduce ends only when every rank has contributed), so load
	// imbalance between ranks shows up here too.
	ExposedComm time.Duration
	// Optimizer is the wall time of the optimizer step (TrainStep only).
	Optimizer time.Duration
	// Total is the wall time of the whole step (TrainStep: from its start to the end of the
	// optimizer step; Backward/Wait: from the first Forward or Backward of the step to the
	// end of Wait).
	Total time.Duration
	// Buckets is the number of AllReduce ops and Bytes their payload (float32 bytes before
	// any compression).
	Buckets int
	Bytes   int64
}

// Stats accumulates StepStats over several steps (an epoch, a logging interval).
type Stats struct {
	Steps       int
	Compute     time.Duration
	Comm        time.Duration
	ExposedComm time.Duration
	Optimizer   time.Duration
	Total       time.Duration
	Bytes       int64
}

// Add accumulates one step.
func (s *Stats) Add(st StepStats) {
	s.Steps++
	s.Compute += st.Compute
	s.Comm += st.Comm
	s.ExposedComm += st.ExposedComm
	s.Optimizer += st.Optimizer
	s.Total += st.Total
	s.Bytes += st.Bytes
}

// PerStep returns the mean of each duration over the steps (zero when there are none).
func (s Stats) PerStep() StepStats {
	if s.Steps == 0 {
		return StepStats{}
	}
	n := time.Duration(s.Steps)
	return StepStats{Compute: s.Compute / n, Comm: s.Comm / n, ExposedComm: s.ExposedComm / n,
		Optimizer: s.Optimizer / n, Total: s.Total / n, Bytes: s.Bytes / int64(s.Steps)}
}

// ExposedShare is ExposedComm / Total, the fraction of step time spent waiting for
// communication (0 when Total is 0).
func (s Stats) ExposedShare() float64 {
	if s.Total <= 0 {
		return 0
	}
	return float64(s.ExposedComm) / float64(s.Total)
}
