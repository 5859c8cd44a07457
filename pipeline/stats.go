package pipeline

import (
	"context"
	"encoding/binary"
	"fmt"
	"math"
	"strings"
	"time"
)

// StepStats is what one rank measured in one Step, or, summed with Add, over
// several steps.
//
// The measured bubble of a rank is 1 − Busy/Wall (see Bubble): the share of
// the schedule phase that the rank spent not computing. Wall starts when the
// rank begins its first action, so the time a later stage waits for the
// first activation of the step counts as idle, as in the textbook bubble
// (K−1)/(M+K−1); the gradient AllReduce and the optimizer step come after
// Wall and are reported apart (Sync, Optim).
type StepStats struct {
	Step    int // index of the step (of the first one, after Add)
	Steps   int // number of steps summed in: 1 for one Step
	Rank    int // group rank
	Stage   int
	Replica int

	// Wall is the schedule phase: from the start of the rank's first action
	// to the end of its last, including the wait until the transport has
	// taken every message it sent.
	Wall time.Duration
	// Busy is the time spent computing: the layers' Forward and Backward and,
	// on the last stage, the loss. Not counted: waiting in Recv, posting
	// sends, bookkeeping. ForwardBusy and BackwardBusy split it (the loss
	// counts as forward), over MicroBatches micro-batches per step.
	Busy                      time.Duration
	ForwardBusy, BackwardBusy time.Duration
	MicroBatches              int
	// RecvWait is the time spent blocked receiving activations and gradients
	// (the neighbour's lateness plus the transfer).
	RecvWait time.Duration
	// Sync is the gradient AllReduce among the stage's replicas (0 with one
	// replica), Optim the optimizer step (0 without an optimizer).
	Sync, Optim time.Duration

	// PeakLive is the largest number of micro-batches whose activations the
	// stage held at once (forwards done, backwards not yet); PeakLiveBytes
	// the largest total size of those activations (models.Saved.Bytes). With
	// Add, the maximum over the steps.
	PeakLive      int
	PeakLiveBytes int64
	// PeakSendQueue is the largest number of outgoing messages, in one
	// direction, posted but not yet taken by the transport.
	PeakSendQueue int

	// Loss is, on the last stage, the mean loss over the global mini-batch
	// (all replicas); with Add, the sum over steps (divide by Steps). 0 on
	// the other stages.
	Loss float64
	// Trace is the timeline of the step's actions when Config.Trace is set
	// (nil otherwise, and after Add; Gather does not carry it).
	Trace []ActionTrace

	// Correct is, on the last stage, the number of correct predictions over
	// the global mini-batch, out of Samples (summed by Add). 0 elsewhere.
	Correct, Samples int
}

// ActionTrace is when one action of a step ran on its rank (wall-clock
// times, comparable between the processes of one host).
type ActionTrace struct {
	Action Action
	// Begin is when the action started, waiting for its input from a
	// neighbour if it has one; Compute and End bound its computation;
	// Posted is when its output was handed over (after Config.SendWait at
	// most), or End when it sends nothing.
	Begin, Compute, End, Posted time.Time
}

// Bubble is the rank's measured idle share of the schedule phase,
// 1 − Busy/Wall; 0 when Wall is 0.
func (s StepStats) Bubble() float64 {
	if s.Wall <= 0 {
		return 0
	}
	return 1 - float64(s.Busy)/float64(s.Wall)
}

// Add accumulates o, a later step of the same rank, into s: times, losses
// and counts add up, peaks take the maximum. Adding to a zero StepStats
// takes o's identity (rank, stage, replica, step).
func (s *StepStats) Add(o StepStats) {
	if s.Steps == 0 {
		s.Step, s.Rank, s.Stage, s.Replica = o.Step, o.Rank, o.Stage, o.Replica
	}
	s.Trace = nil
	s.Steps += o.Steps
	s.Wall += o.Wall
	s.Busy += o.Busy
	s.ForwardBusy += o.ForwardBusy
	s.BackwardBusy += o.BackwardBusy
	s.MicroBatches = o.MicroBatches
	s.RecvWait += o.RecvWait
	s.Sync += o.Sync
	s.Optim += o.Optim
	s.PeakLive = max(s.PeakLive, o.PeakLive)
	s.PeakLiveBytes = max(s.PeakLiveBytes, o.PeakLiveBytes)
	s.PeakSendQueue = max(s.PeakSendQueue, o.PeakSendQueue)
	s.Loss += o.Loss
	s.Correct += o.Correct
	s.Samples += o.Samples
}

// fields lists StepStats as float64 values, for exchange between ranks.
func (s StepStats) fields() []float64 {
	return []float64{float64(s.Step), float64(s.Steps), float64(s.Rank), float64(s.Stage), float64(s.Replica),
		float64(s.Wall), float64(s.Busy), float64(s.RecvWait), float64(s.Sync), float64(s.Optim),
		float64(s.PeakLive), float64(s.PeakLiveBytes), float64(s.PeakSendQueue),
		s.Loss, float64(s.Correct), float64(s.Samples),
		float64(s.ForwardBusy), float64(s.BackwardBusy), float64(s.MicroBatches)}
}

const statFields = 19

func statsFromFields(f []float64) StepStats {
	return StepStats{Step: int(f[0]), Steps: int(f[1]), Rank: int(f[2]), Stage: int(f[3]), Replica: int(f[4]),
		Wall: time.Duration(f[5]), Busy: time.Duration(f[6]), RecvWait: time.Duration(f[7]), Sync: time.Duration(f[8]), Optim: time.Duration(f[9]),
		PeakLive: int(f[10]), PeakLiveBytes: int64(f[11]), PeakSendQueue: int(f[12]),
		Loss: f[13], Correct: int(f[14]), Samples: int(f[15]),
		ForwardBusy: time.Duration(f[16]), BackwardBusy: time.Duration(f[17]), MicroBatches: int(f[18])}
}

// Gather collects every rank's stats (typically a total over steps, built
// with Add) on every rank, indexed by group rank. It is collective: every
// rank of the group calls it, with the stats of the same steps.
func (e *Executor) Gather(ctx context.Context, s StepStats) ([]StepStats, error) {
	all, err := e.g.AllGatherBytes(ctx, encodeStats(s))
	if err != nil {
		return nil, fmt.Errorf("pipeline: rank %d: gathering step statistics: %w", e.g.Rank(), err)
	}
	out := make([]StepStats, len(all))
	for r, blk := range all {
		if out[r], err = decodeStats(blk); err != nil {
			return nil, fmt.Errorf("pipeline: rank %d: step statistics of rank %d: %w", e.g.Rank(), r, err)
		}
	}
	return out, nil
}

// encodeStats is a rank's Gather message: its fields as little-endian float64 bits.
func encodeStats(s StepStats) []byte {
	b := make([]byte, 0, 8*statFields)
	for _, v := range s.fields() {
		b = binary.LittleEndian.AppendUint64(b, math.Float64bits(v))
	}
	return b
}

// decodeStats parses encodeStats' output as it arrives from a peer.
func decodeStats(b []byte) (StepStats, error) {
	if len(b) != 8*statFields {
		return StepStats{}, fmt.Errorf("%d bytes, want %d", len(b), 8*statFields)
	}
	f := make([]float64, statFields)
	for i := range f {
		f[i] = math.Float64frombits(binary.LittleEndian.Uint64(b[8*i:]))
	}
	return statsFromFields(f), nil
}

// StageSummary is the measurement of one stage over its replicas.
type StageSummary struct {
	Stage int
	Ranks []int // the stage's ranks, replica order
	// Wall and Busy are summed over the stage's replicas and the steps.
	Wall, Busy time.Duration
	// Bubble is 1 − Busy/Wall.
	Bubble float64
	// PeakLive and PeakLiveBytes are the maxima over the replicas (see
	// StepStats).
	PeakLive      int
	PeakLiveBytes int64
}

// Summary is the pipeline's measured bubble and memory, next to the theory.
type Summary struct {
	Stages, Replicas, MicroBatches int
	Steps                          int // steps measured on every rank
	PerStage                       []StageSummary
	// Bubble is the mean of the stages' measured bubbles: the idle share of
	// the pipeline, comparable with Theory.
	Bubble float64
	// Theory is TheoreticalBubble(Stages, MicroBatches), (K−1)/(M+K−1): the
	// bubble of equal stages with free communication.
	Theory float64
	// Simulated is the bubble SimulateCosts predicts for the schedule with
	// each stage's measured mean forward and backward time per micro-batch
	// (mean over replicas) and free communication: what the stages'
	// imbalance alone explains. Bubble − Simulated is the cost of
	// communication and scheduling. NaN when it cannot be computed.
	Simulated float64
	// ForwardTime and BackwardTime are each stage's measured mean time per
	// micro-batch, the inputs of Simulated.
	ForwardTime, BackwardTime []time.Duration
	// Loss is the mean loss over the measured steps and Accuracy the share of
	// correct predictions (from the last stage's replica 0); NaN when no step
	// was measured.
	Loss, Accuracy float64
}

// Efficiency is 1 − Bubble, the measured pipeline efficiency.
func (s Summary) Efficiency() float64 { return 1 - s.Bubble }

// TheoreticalEfficiency is 1 − Theory, M/(M+K−1).
func (s Summary) TheoreticalEfficiency() float64 { return 1 - s.Theory }

// Summarize combines every rank's stats (from Gather, indexed by rank) into
// a per-stage Summary for layout l and the schedule that ran.
func Summarize(all []StepStats, l Layout, sched Schedule) (Summary, error) {
	if len(all) != l.Size() {
		return Summary{}, fmt.Errorf("%w: stats of %d ranks for a layout of %d", ErrLayout, len(all), l.Size())
	}
	if len(sched) != l.Stages {
		return Summary{}, fmt.Errorf("%w: a schedule of %d stages for a layout of %d", ErrBadSchedule, len(sched), l.Stages)
	}
	micro := sched.Micro()
	sum := Summary{Stages: l.Stages, Replicas: l.Replicas, MicroBatches: micro,
		Theory: TheoreticalBubble(l.Stages, micro), Simulated: math.NaN(), Loss: math.NaN(), Accuracy: math.NaN()}
	costs := Costs{Forward: make([]float64, l.Stages), Backward: make([]float64, l.Stages)}
	sum.Steps = all[0].Steps
	for _, s := range all {
		sum.Steps = min(sum.Steps, s.Steps)
	}
	for st := 0; st < l.Stages; st++ {
		ss := StageSummary{Stage: st, Ranks: l.StageRanks(st)}
		var fwd, bwd time.Duration
		var n int
		for _, r := range ss.Ranks {
			s := all[r]
			ss.Wall += s.Wall
			ss.Busy += s.Busy
			fwd += s.ForwardBusy
			bwd += s.BackwardBusy
			n += s.Steps * s.MicroBatches
			ss.PeakLive = max(ss.PeakLive, s.PeakLive)
			ss.PeakLiveBytes = max(ss.PeakLiveBytes, s.PeakLiveBytes)
		}
		if ss.Wall > 0 {
			ss.Bubble = 1 - float64(ss.Busy)/float64(ss.Wall)
		}
		sum.Bubble += ss.Bubble / float64(l.Stages)
		sum.PerStage = append(sum.PerStage, ss)
		if n > 0 {
			fwd, bwd = fwd/time.Duration(n), bwd/time.Duration(n)
		}
		sum.ForwardTime = append(sum.ForwardTime, fwd)
		sum.BackwardTime = append(sum.BackwardTime, bwd)
		costs.Forward[st], costs.Backward[st] = fwd.Seconds(), bwd.Seconds()
	}
	if r, err := SimulateCosts(sched, costs); err == nil && r.Makespan > 0 {
		sum.Simulated = r.Bubble
	}
	if last := all[l.Rank(l.Stages-1, 0)]; last.Steps > 0 {
		sum.Loss = last.Loss / float64(last.Steps)
		if last.Samples > 0 {
			sum.Accuracy = float64(last.Correct) / float64(last.Samples)
		}
	}
	return sum, nil
}

// String prints the summary: a line with the word "bubble", the measured and
// theoretical values, then one line per stage.
func (s Summary) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "bubble: measured %.3f (efficiency %.1f%%), theory (K-1)/(M+K-1) = %.3f (efficiency %.1f%%) for K=%d stages, M=%d micro-batches, %d replica(s), %d step(s); simulated from the measured stage times %.3f\n",
		s.Bubble, 100*s.Efficiency(), s.Theory, 100*s.TheoreticalEfficiency(), s.Stages, s.MicroBatches, s.Replicas, s.Steps, s.Simulated)
	for i, st := range s.PerStage {
		fmt.Fprintf(&b, "stage %d (ranks %v): busy %v of %v wall, bubble %.3f, forward %v + backward %v per micro-batch, peak stored activations %d micro-batch(es), %s\n",
			st.Stage, st.Ranks, st.Busy.Round(time.Microsecond), st.Wall.Round(time.Microsecond), st.Bubble,
			s.ForwardTime[i].Round(time.Microsecond), s.BackwardTime[i].Round(time.Microsecond), st.PeakLive, humanBytes(st.PeakLiveBytes))
	}
	return b.String()
}

func humanBytes(n int64) string {
	switch {
	case n >= 1<<20:
		return fmt.Sprintf("%.2f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}
