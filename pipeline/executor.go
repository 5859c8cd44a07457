package pipeline

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"sync"
	"time"

	"github.com/ringtrain/ringtrain/collective"
	"github.com/ringtrain/ringtrain/models"
	"github.com/ringtrain/ringtrain/timeline"
)

// ErrConfig is wrapped by every error about an Executor's configuration or
// about the inputs of a Step: the message names the field, flag-like value or
// rank at fault.
var ErrConfig = errors.New("pipeline: bad executor configuration")

// Config configures an Executor. Every rank of the group must pass the same
// values (New checks that they do, except for the functions Loss and Compile,
// which cannot be compared: every rank must pass the same ones).
type Config struct {
	// Stages is the number of pipeline stages K. Zero means the group's size
	// divided by Replicas.
	Stages int
	// Replicas is the number of data-parallel replicas D of every stage. Zero
	// means 1. Stages·Replicas must equal the group's size; see Layout for
	// which rank runs what.
	Replicas int
	// MicroBatches is the number M of micro-batches each replica splits its
	// share of a mini-batch into. Zero means Stages (the smallest M that
	// keeps every stage busy in the steady state). It may not exceed the
	// per-replica batch Batch/Replicas. When M does not divide that batch the
	// first micro-batches take one sample more.
	MicroBatches int
	// Batch is the global mini-batch size B: the samples of one optimizer
	// step summed over all replicas. Required; a multiple of Replicas. The
	// loss is scaled by 1/B on every micro-batch, so the gradients summed over
	// micro-batches and replicas are those of the mean loss over the whole
	// mini-batch.
	Batch int
	// Schedule builds the per-stage action lists. Nil means OneFOneB. A custom
	// schedule must run forwards, and backwards, in the same micro-batch order
	// on neighbouring stages (New checks), and be deadlock-free under
	// SimulateCosts's rules (New checks).
	Schedule Func
	// InputShape is the per-sample shape of the model's input (no batch
	// dimension), e.g. models.ImageShape() for the ready models. Required:
	// New fails with ErrConfig when it is nil.
	InputShape []int
	// Splits are explicit split points (see Balance). Nil means balance the
	// layers with Balance on LayerCosts.
	Splits []int
	// LayerCosts are the per-layer costs Balance uses when Splits is nil: one
	// finite, non-negative value per layer of the model (e.g. measured
	// seconds, see MeasureLayerCosts). Nil means TrainingFLOPs: each layer's
	// estimated training FLOPs per sample.
	LayerCosts []float64
	// SendWait bounds how long the executor, after posting a message to a
	// neighbour, waits for the transport to take it before going on with its
	// next action. Waiting lets the transport's goroutines run now: with few
	// threads per rank (GOMAXPROCS=1, as gorun gives 2 ranks on 2 cores) they
	// otherwise only run when the executor next blocks, after its next
	// compute, and the neighbour idles meanwhile. The bound keeps the sends
	// non-blocking in the sense the schedules need (see SimulateCosts): a
	// transport that holds a message until the peer receives it delays the
	// executor by at most SendWait per message. Zero means DefaultSendWait;
	// negative means never wait.
	SendWait time.Duration
	// Loss is the loss the last stage computes from the model's outputs and
	// the labels, scaled by 1/Batch, and whose gradient it runs backward. Nil
	// means models.SoftmaxCrossEntropy. Every rank must use the same loss (New
	// does not check it: functions do not compare).
	Loss models.Loss
	// Compile, when not nil, turns this rank's stage (a slice of the full
	// model, sharing its parameters) into the model the stage computes with,
	// e.g. the stage compiled onto a GPU. New calls it once, on the slice. Nil
	// means the stage computes on the CPU with the slice itself. A returned
	// models.DeviceResident model is kept in step with the host copies of its
	// parameters (see Step).
	Compile func(stage *models.Sequential) (models.Model, error)
	// Trace makes Step record when each action waited, computed and handed
	// its output over (StepStats.Trace), for timelines. False by default.
	Trace bool
	// TagBase is the first tag of the point-to-point messages: micro-batch m's
	// activation travels with tag TagBase+2m and its gradient with
	// TagBase+2m+1, so that messages of different micro-batches or
	// directions never mix. Zero (the default) is fine unless something else
	// sends tagged messages between the same ranks of the same group.
	TagBase int
}

// DefaultSendWait is Config.SendWait when zero.
const DefaultSendWait = 20 * time.Millisecond

// Executor runs one rank's pipeline stage: the rank's slice of the model,
// its action list of the schedule, the point-to-point hand-offs to the
// neighbouring stages of its replica, and the gradient AllReduce among the
// replicas of its stage.
//
// Inputs and labels. Every rank of a replica builds the same mini-batch
// share (the data pipeline is seeded the same everywhere, which costs a copy
// of a few hundred KB per step): stage 0 reads the inputs and the last stage
// the labels, and the other ranks ignore what they are given. This avoids
// shipping labels along the pipeline and keeps the executor free of any data
// loader.
//
// An Executor is used by one goroutine at a time.
type Executor struct {
	cfg    Config
	g      *collective.Group
	dp     *collective.Group // the stage's data-parallel group; nil when Replicas == 1
	layout Layout
	stage  int
	rep    int
	prev   int // group rank of stage-1 of this replica, -1 on stage 0
	next   int // group rank of stage+1, -1 on the last stage
	tl     stageTrace

	plan  *Plan
	sched Schedule
	loss  models.Loss
	acts  []Action
	slice *models.Sequential    // this stage's layers (shared with the full model)
	model models.Model          // what the stage computes with: slice, or Config.Compile(slice)
	dev   models.DeviceResident // model, when its parameters live on a device; else nil
	param []*models.Param

	inShape, outShape []int // per sample, at this stage's input and output
	sizes, offs       []int // per micro-batch sample counts and offsets in the replica's batch
	flat              []float32
	// actBuf[m] and gradBuf[m] receive micro-batch m's activation and
	// gradient, reused from step to step: an activation buffer is held by
	// the stage's Saved only until the backward of m, which comes before the
	// next step's forward of m. Fresh buffers would cost page faults on every
	// step once the heap is recycled (on a VM, a first touch of a page can
	// cost 10 µs), for nothing.
	actBuf, gradBuf [][]float32
	steps           int
}

// New builds the executor of this rank for the full model, which every rank
// must have built identically (same layers, same seed; New verifies this
// with a checksum of all parameters). The executor keeps only the layers of
// this rank's stage; they share their parameters with full, so an optimizer
// over Params updates full's parameters.
//
// New is collective: every rank of g calls it with the same cfg. It
// exchanges a fingerprint of the configuration and the model with all ranks
// (collective.Group.Agree) and, with Replicas > 1, makes the stage's
// data-parallel subgroup. A rank whose configuration or model differs makes
// New fail on every rank with a *MismatchError naming it; a rank that cannot
// build or compile its stage at all makes every rank fail at once with a
// *collective.AgreementError naming it (wrapping its own error on that rank).
//
// With Config.Compile, New compiles the stage's slice after the checksum of
// the full model's (host) parameters, and pushes them to a models.DeviceResident
// stage model (PushParams) before it returns.
func New(ctx context.Context, full *models.Sequential, g *collective.Group, cfg Config) (*Executor, error) {
	if g == nil {
		return nil, fmt.Errorf("%w: nil group", ErrConfig)
	}
	// A rank that cannot build its executor still takes part in the agreement, so that
	// the others fail at once naming it instead of waiting for it in a collective.
	e, err := build(full, g, cfg)
	if err := checkAgreement(ctx, g, e, full, err); err != nil {
		return nil, err
	}
	// Compiling onto a device can fail on one rank alone (its GPU): agree on it too.
	if err := g.AgreeErr(ctx, e.place(g)); err != nil {
		return nil, fmt.Errorf("pipeline: New: %w", err)
	}
	cfg, layout := e.cfg, e.layout
	e.tl.init(g.Timeline(), e.stage, cfg.MicroBatches)
	if cfg.Replicas > 1 {
		if e.dp, err = g.Subgroup(ctx, layout.StageRanks(e.stage)); err != nil {
			return nil, fmt.Errorf("pipeline: rank %d: data-parallel group of stage %d: %w", g.Rank(), e.stage, err)
		}
		// The flat buffer holds every gradient, then the loss and the count of
		// correct predictions, so that one AllReduce serves both.
		e.flat = make([]float32, models.CountParams(e.param)+2)
	}
	return e, nil
}

// place compiles this rank's stage with Config.Compile, if set, and uploads its
// parameters to a device-resident stage model.
func (e *Executor) place(g *collective.Group) error {
	cfg := e.cfg
	sp := e.plan.Stages[e.stage]
	if cfg.Compile != nil {
		m, err := cfg.Compile(e.slice)
		if err == nil && m == nil {
			err = errors.New("Compile returned no model")
		}
		if err != nil {
			return fmt.Errorf("pipeline: rank %d: compiling stage %d (layers %d-%d): %w", g.Rank(), e.stage, sp.Start, sp.End-1, err)
		}
		if m.Len() != e.slice.Len() {
			return fmt.Errorf("%w: Compile made a model of %d layers from stage %d's %d", ErrConfig, m.Len(), e.stage, e.slice.Len())
		}
		e.model = m
		e.dev, _ = m.(models.DeviceResident)
		e.param = m.Params()
	}
	if e.dev != nil {
		if err := e.dev.PushParams(); err != nil {
			return fmt.Errorf("pipeline: rank %d: uploading stage %d's parameters to %s: %w", g.Rank(), e.stage, e.dev.Device(), err)
		}
	}
	return nil
}

// build makes New's local checks and sets up this rank's executor, before any
// communication.
func build(full *models.Sequential, g *collective.Group, cfg Config) (*Executor, error) {
	if full == nil || full.Len() == 0 {
		return nil, fmt.Errorf("%w: the model has no layers", ErrConfig)
	}
	layout, err := NewLayout(g.Size(), cfg.Stages, cfg.Replicas)
	if err != nil {
		return nil, err
	}
	cfg.Stages, cfg.Replicas = layout.Stages, layout.Replicas
	if cfg.MicroBatches == 0 {
		cfg.MicroBatches = cfg.Stages
	}
	if cfg.Schedule == nil {
		cfg.Schedule = OneFOneB
	}
	if cfg.SendWait == 0 {
		cfg.SendWait = DefaultSendWait
	}
	if cfg.Loss == nil {
		cfg.Loss = models.SoftmaxCrossEntropy
	}
	cfg.InputShape = slices.Clone(cfg.InputShape)
	switch {
	case cfg.InputShape == nil:
		return nil, fmt.Errorf("%w: InputShape (the per-sample input shape, e.g. models.ImageShape()) is required", ErrConfig)
	case cfg.Batch <= 0:
		return nil, fmt.Errorf("%w: Batch (global mini-batch) is %d: must be positive", ErrConfig, cfg.Batch)
	case cfg.Batch%cfg.Replicas != 0:
		return nil, fmt.Errorf("%w: Batch %d is not a multiple of the %d replicas", ErrConfig, cfg.Batch, cfg.Replicas)
	case cfg.MicroBatches < 1:
		return nil, fmt.Errorf("%w: MicroBatches is %d: must be positive", ErrConfig, cfg.MicroBatches)
	case cfg.MicroBatches > cfg.Batch/cfg.Replicas:
		return nil, fmt.Errorf("%w: %d micro-batches for a per-replica batch of %d (Batch %d / %d replicas): at most one micro-batch per sample",
			ErrConfig, cfg.MicroBatches, cfg.Batch/cfg.Replicas, cfg.Batch, cfg.Replicas)
	case cfg.TagBase < 0:
		return nil, fmt.Errorf("%w: TagBase is %d: must be non-negative", ErrConfig, cfg.TagBase)
	}

	e := &Executor{cfg: cfg, g: g, layout: layout, loss: cfg.Loss}
	e.stage, e.rep = layout.Coords(g.Rank())
	e.prev, e.next = -1, -1
	if e.stage > 0 {
		e.prev = layout.Rank(e.stage-1, e.rep)
	}
	if e.stage < layout.Stages-1 {
		e.next = layout.Rank(e.stage+1, e.rep)
	}
	if e.plan, err = makePlan(full, cfg); err != nil {
		return nil, err
	}
	if e.sched, err = checkedSchedule(cfg.Schedule, cfg.Stages, cfg.MicroBatches); err != nil {
		return nil, err
	}
	e.acts = e.sched[e.stage]
	sp := e.plan.Stages[e.stage]
	if e.slice, err = full.Slice(sp.Start, sp.End); err != nil {
		return nil, fmt.Errorf("%w: stage %d: %v", ErrConfig, e.stage, err)
	}
	e.model = e.slice
	e.param = e.slice.Params()
	if e.inShape, err = shapeAfter(full, sp.Start, cfg.InputShape); err != nil {
		return nil, err
	}
	if e.outShape, err = e.slice.OutShape(e.inShape); err != nil {
		return nil, fmt.Errorf("%w: stage %d (layers %d-%d): %v", ErrConfig, e.stage, sp.Start, sp.End-1, err)
	}
	b := cfg.Batch / cfg.Replicas
	e.sizes = make([]int, cfg.MicroBatches)
	e.offs = make([]int, cfg.MicroBatches)
	for m := range e.sizes {
		e.sizes[m] = b / cfg.MicroBatches
		if m < b%cfg.MicroBatches {
			e.sizes[m]++
		}
		if m > 0 {
			e.offs[m] = e.offs[m-1] + e.sizes[m-1]
		}
	}

	e.actBuf = make([][]float32, cfg.MicroBatches)
	e.gradBuf = make([][]float32, cfg.MicroBatches)
	return e, nil
}

// makePlan partitions the model's layers as cfg asks.
func makePlan(full *models.Sequential, cfg Config) (*Plan, error) {
	costs, err := full.Costs(cfg.InputShape)
	if err != nil {
		return nil, fmt.Errorf("%w: the model does not take inputs of shape %v: %v", ErrConfig, cfg.InputShape, err)
	}
	if cfg.LayerCosts != nil && len(cfg.LayerCosts) != len(costs) {
		return nil, fmt.Errorf("%w: LayerCosts has %d entries for a model of %d layers", ErrConfig, len(cfg.LayerCosts), len(costs))
	}
	est := TrainingFLOPs(full, costs)
	layers := make([]Layer, len(costs))
	for i, l := range full.Layers() {
		layers[i] = Layer{Name: l.Name(), Params: costs[i].Params, Cost: est[i]}
		if cfg.LayerCosts != nil {
			layers[i].Cost = cfg.LayerCosts[i]
		}
	}
	if cfg.Splits != nil {
		if len(cfg.Splits)+1 != cfg.Stages {
			return nil, fmt.Errorf("%w: %d split points make %d stages, but the job runs %d stages", ErrConfig, len(cfg.Splits), len(cfg.Splits)+1, cfg.Stages)
		}
		return NewPlan(layers, cfg.Splits)
	}
	return BalancedPlan(layers, cfg.Stages)
}

// TrainingFLOPs estimates the FLOPs per sample of one training step of each
// layer of m from its forward FLOPs (costs, from m.Costs): a backward costs
// about twice its forward (the input gradient and the parameter gradient
// each about one forward), so a layer costs 3× its forward FLOPs, except at
// the front of the model, which stage 0 runs backward with
// BackwardParams: the first layer with parameters computes no input
// gradient (2×) and the parameterless layers before it run no backward at
// all (1×). The default balancing cost of New.
func TrainingFLOPs(m *models.Sequential, costs []models.LayerCost) []float64 {
	out := make([]float64, len(costs))
	first := len(costs)
	for i, l := range m.Layers() {
		if len(l.Params()) > 0 {
			first = i
			break
		}
	}
	for i, c := range costs {
		f := float64(c.FLOPs)
		switch {
		case i < first:
			out[i] = f
		case i == first:
			out[i] = 2 * f
		default:
			out[i] = 3 * f
		}
	}
	return out
}

// checkedSchedule builds the schedule and checks what the executor relies
// on: the shape, deadlock freedom under non-blocking sends, and that
// neighbouring stages hand over micro-batches in the order the receiver
// takes them (each direction has one sending goroutine that sends in order).
func checkedSchedule(f Func, k, m int) (Schedule, error) {
	s, err := f(k, m)
	if err != nil {
		return nil, err
	}
	if len(s) != k || s.Micro() != m {
		return nil, fmt.Errorf("%w: schedule has %d stages and %d micro-batches, want %d and %d", ErrBadSchedule, len(s), s.Micro(), k, m)
	}
	if _, err := Simulate(s, 1, 2); err != nil {
		return nil, err
	}
	order := func(st int, kind ActionKind) []int {
		var o []int
		for _, a := range s[st] {
			if a.Kind == kind {
				o = append(o, a.Micro)
			}
		}
		return o
	}
	for st := 0; st+1 < k; st++ {
		if !slices.Equal(order(st, Forward), order(st+1, Forward)) {
			return nil, fmt.Errorf("%w: stages %d and %d run their forwards in different micro-batch orders", ErrBadSchedule, st, st+1)
		}
		if !slices.Equal(order(st, Backward), order(st+1, Backward)) {
			return nil, fmt.Errorf("%w: stages %d and %d run their backwards in different micro-batch orders", ErrBadSchedule, st, st+1)
		}
	}
	return s, nil
}

// shapeAfter is the per-sample shape after the first n layers of m.
func shapeAfter(m *models.Sequential, n int, in []int) ([]int, error) {
	if n == 0 {
		return slices.Clone(in), nil
	}
	head, err := m.Slice(0, n)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrConfig, err)
	}
	out, err := head.OutShape(in)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrConfig, err)
	}
	return out, nil
}

// Stage is this rank's stage, 0-based.
func (e *Executor) Stage() int { return e.stage }

// Replica is this rank's data-parallel replica, 0-based.
func (e *Executor) Replica() int { return e.rep }

// Layout is the placement of stages and replicas on the group's ranks.
func (e *Executor) Layout() Layout { return e.layout }

// Config returns the configuration with its defaults filled in.
func (e *Executor) Config() Config { return e.cfg }

// Plan is the partition of the model into stages (the same on every rank).
// Its Device fields are empty: the caller fills them in for printing.
func (e *Executor) Plan() *Plan { return e.plan }

// Schedule is the schedule of all stages (the same on every rank).
func (e *Executor) Schedule() Schedule { return e.sched }

// Model is this rank's stage: the slice of the full model it runs, or what
// Config.Compile made of it.
func (e *Executor) Model() models.Model { return e.model }

// Device is where this rank's stage computes: models.DevicePlacement of
// Model ("cpu" unless Config.Compile placed it elsewhere).
func (e *Executor) Device() string { return models.DevicePlacement(e.model) }

// Params are the parameters of this rank's stage; build the optimizer given
// to Step over them (for the stage's device: see Step).
func (e *Executor) Params() []*models.Param { return e.model.Params() }

// MicroBatchSizes returns the number of samples in each micro-batch of a
// replica's share of the mini-batch.
func (e *Executor) MicroBatchSizes() []int { return slices.Clone(e.sizes) }

// ReplicaBatch is the number of samples each replica trains on per step,
// Batch/Replicas: the batch Step expects on stage 0 and the labels it
// expects on the last stage.
func (e *Executor) ReplicaBatch() int { return e.cfg.Batch / e.cfg.Replicas }

// IsFirst reports whether this rank runs stage 0, the one that reads the
// inputs (with one stage it is also the last).
func (e *Executor) IsFirst() bool { return e.stage == 0 }

// IsLast reports whether this rank runs the last stage, the one that
// computes the loss.
func (e *Executor) IsLast() bool { return e.stage == e.layout.Stages-1 }

// Close releases the stage's data-parallel group, if any. The group given
// to New stays open.
func (e *Executor) Close() error {
	if e.dp != nil {
		return e.dp.Close()
	}
	return nil
}

func (e *Executor) tag(m int, kind ActionKind) int { return e.cfg.TagBase + 2*m + int(kind) }

// Step trains on one mini-batch: it runs this stage's actions of the
// schedule over the M micro-batches of the replica's share, AllReduces the
// gradients among the stage's replicas, and applies opt (built over Params;
// nil leaves the summed gradients in Param.Grad and skips the update). opt
// must update the parameters where the stage computes (models.DevicePlacement
// of opt and Model agree), else Step refuses it before doing anything.
//
// With a models.DeviceResident stage model, the gradients stay on the device,
// except that with Replicas > 1 Step downloads them for the AllReduce
// (PullGrads) and uploads the sums (PushGrads) before the update; with nil opt
// and one replica, call PullGrads to read them on the host.
//
// x is the replica's share of the inputs, [Batch/Replicas, InputShape...],
// read by stage 0 only; labels are that share's labels, read by the last
// stage only. Ranks of other stages may pass a zero Tensor and nil. Layers
// keep references to x until Step returns: do not modify it before.
//
// Gradients are cleared at the start of Step and accumulate over the
// micro-batches; the loss of micro-batch m is scaled by 1/Batch, so after
// the AllReduce (a Sum) every replica holds exactly the gradient of the mean
// loss over the global mini-batch, as one process training on the whole
// mini-batch would (up to float rounding order).
//
// On an error the step's state is discarded and the group has usually
// failed (see collective.Group): build a new group and executor to go on.
// An error local to this rank (a bad input, a layer error) does not reach
// the neighbours: they wait for this rank's messages until their contexts
// end or the process exits (gorun then stops the whole job).
func (e *Executor) Step(ctx context.Context, x models.Tensor, labels []int, opt models.Optimizer) (StepStats, error) {
	st := StepStats{Step: e.steps, Steps: 1, Rank: e.g.Rank(), Stage: e.stage, Replica: e.rep, MicroBatches: e.cfg.MicroBatches}
	if err := e.checkInputs(x, labels); err != nil {
		return st, err
	}
	if err := e.checkPlacement(opt); err != nil {
		return st, err
	}
	e.model.ZeroGrad()

	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var fwd, bwd *sender
	if e.next >= 0 {
		fwd = startSender(ctx, cancel, e.g, e.next, len(e.acts), e.cfg.SendWait, &e.tl, e.cfg.TagBase)
	}
	if e.prev >= 0 {
		bwd = startSender(ctx, cancel, e.g, e.prev, len(e.acts), e.cfg.SendWait, &e.tl, e.cfg.TagBase)
	}
	start := time.Now()
	lossSum, correct, runErr := e.run(ctx, x, labels, fwd, bwd, &st)
	for _, s := range []*sender{fwd, bwd} {
		if s == nil {
			continue
		}
		if err := s.finish(ctx); err != nil && runErr == nil {
			runErr = err
		}
		st.PeakSendQueue = max(st.PeakSendQueue, s.peak)
	}
	st.Wall = time.Since(start)
	if runErr != nil {
		return st, runErr
	}

	if e.dp != nil {
		t := time.Now()
		if e.dev != nil {
			if err := e.dev.PullGrads(); err != nil {
				return st, fmt.Errorf("pipeline: rank %d (stage %d): downloading the gradients from %s: %w", e.g.Rank(), e.stage, e.dev.Device(), err)
			}
		}
		off := 0
		for _, p := range e.param {
			off += copy(e.flat[off:], p.Grad)
		}
		e.flat[off], e.flat[off+1] = float32(lossSum), float32(correct)
		if err := e.dp.AllReduce(ctx, e.flat, collective.Sum); err != nil {
			return st, fmt.Errorf("pipeline: rank %d (stage %d, replica %d): gradient AllReduce: %w", e.g.Rank(), e.stage, e.rep, err)
		}
		off = 0
		for _, p := range e.param {
			off += copy(p.Grad, e.flat[off:off+len(p.Grad)])
		}
		lossSum, correct = float64(e.flat[off]), int(e.flat[off+1]+0.5)
		if e.dev != nil {
			if err := e.dev.PushGrads(); err != nil {
				return st, fmt.Errorf("pipeline: rank %d (stage %d): uploading the summed gradients to %s: %w", e.g.Rank(), e.stage, e.dev.Device(), err)
			}
		}
		st.Sync = time.Since(t)
	}
	if e.IsLast() {
		st.Loss, st.Correct, st.Samples = lossSum, correct, e.cfg.Batch
	}
	if opt != nil {
		t, s := time.Now(), e.tl.r.Now()
		if err := opt.Step(); err != nil {
			return st, fmt.Errorf("pipeline: rank %d (stage %d): optimizer: %w", e.g.Rank(), e.stage, err)
		}
		if e.tl.r != nil {
			e.tl.r.Complete(e.tl.tid, "optimizer", "pipeline", s, e.tl.r.Now(), timeline.Int("step", int64(e.steps)))
		}
		st.Optim = time.Since(t)
	}
	e.steps++
	return st, nil
}

// checkPlacement refuses an optimizer that updates the parameters somewhere
// else than where the stage computes.
func (e *Executor) checkPlacement(opt models.Optimizer) error {
	if opt == nil {
		return nil
	}
	md, od := models.DevicePlacement(e.model), models.DevicePlacement(opt)
	if md == od {
		return nil
	}
	hint := "gpu.NewSGD / gpu.NewAdam"
	if md == "cpu" {
		hint = "models.NewSGD / models.NewAdam"
	}
	return fmt.Errorf("%w: rank %d (stage %d): the model computes on %s but the optimizer updates parameters on %s: build the optimizer for the model's device (%s)",
		ErrConfig, e.g.Rank(), e.stage, md, od, hint)
}

func (e *Executor) checkInputs(x models.Tensor, labels []int) error {
	b := e.ReplicaBatch()
	if e.IsFirst() {
		if err := x.Validate(); err != nil {
			return fmt.Errorf("%w: rank %d (stage 0): inputs: %v", ErrConfig, e.g.Rank(), err)
		}
		want := append([]int{b}, e.cfg.InputShape...)
		if !slices.Equal(x.Shape, want) {
			return fmt.Errorf("%w: rank %d (stage 0): inputs have shape %v, want %v (Batch %d / %d replicas, InputShape %v)",
				ErrConfig, e.g.Rank(), x.Shape, want, e.cfg.Batch, e.cfg.Replicas, e.cfg.InputShape)
		}
	}
	if e.IsLast() && len(labels) != b {
		return fmt.Errorf("%w: rank %d (last stage %d): %d labels, want %d (Batch %d / %d replicas)",
			ErrConfig, e.g.Rank(), e.stage, len(labels), b, e.cfg.Batch, e.cfg.Replicas)
	}
	return nil
}

// run executes the stage's action list once. It returns the scaled loss
// summed over the micro-batches and the number of correct predictions (last
// stage; zero elsewhere).
func (e *Executor) run(ctx context.Context, x models.Tensor, labels []int, fwd, bwd *sender, st *StepStats) (float64, int, error) {
	m := e.cfg.MicroBatches
	saved := make([]models.Saved, m)
	savedBytes := make([]int64, m)
	dlogits := make([]models.Tensor, m) // last stage: loss gradient from Forward to Backward
	scale := float32(1 / float64(e.cfg.Batch))
	inElems, outElems := elems(e.inShape), elems(e.outShape)
	var live int
	var liveBytes int64
	var lossSum float64
	var correct int
	where := func(a Action) string {
		return fmt.Sprintf("pipeline: rank %d (stage %d, replica %d) at %v", e.g.Rank(), e.stage, e.rep, a)
	}

	if e.cfg.Trace {
		st.Trace = make([]ActionTrace, 0, len(e.acts))
	}
	for _, a := range e.acts {
		mb, lo := e.sizes[a.Micro], e.offs[a.Micro]
		tr := ActionTrace{Action: a, Begin: time.Now()}
		switch a.Kind {
		case Forward:
			var in models.Tensor
			if e.stage == 0 {
				in = models.Tensor{Shape: append([]int{mb}, e.inShape...), Data: x.Data[lo*inElems : (lo+mb)*inElems]}
			} else {
				in = models.Tensor{Shape: append([]int{mb}, e.inShape...), Data: reuse(&e.actBuf[a.Micro], mb*inElems)}
				t, s := time.Now(), e.tl.r.Now()
				if err := e.g.Recv(ctx, in.Data, e.prev, e.tag(a.Micro, Forward)); err != nil {
					return 0, 0, fmt.Errorf("%s: receiving the activation from rank %d: %w", where(a), e.prev, err)
				}
				st.RecvWait += time.Since(t)
				e.tl.span(a, nameRecv, s)
			}
			t, s := time.Now(), e.tl.r.Now()
			tr.Compute = t
			y, sv, err := e.model.Forward(in, true)
			if err != nil {
				return 0, 0, fmt.Errorf("%s: %w", where(a), err)
			}
			if e.next < 0 {
				loss, dl, err := e.loss(y, labels[lo:lo+mb], scale)
				if err != nil {
					return 0, 0, fmt.Errorf("%s: loss: %w", where(a), err)
				}
				c, err := models.CountCorrect(y, labels[lo:lo+mb])
				if err != nil {
					return 0, 0, fmt.Errorf("%s: accuracy: %w", where(a), err)
				}
				lossSum += loss
				correct += c
				dlogits[a.Micro] = dl
			}
			tr.End = time.Now()
			e.tl.span(a, nameCompute, s)
			d := tr.End.Sub(t)
			st.Busy += d
			st.ForwardBusy += d
			saved[a.Micro], savedBytes[a.Micro] = sv, sv.Bytes()
			live++
			liveBytes += savedBytes[a.Micro]
			st.PeakLive = max(st.PeakLive, live)
			st.PeakLiveBytes = max(st.PeakLiveBytes, liveBytes)
			if e.next >= 0 {
				if err := fwd.post(ctx, y.Data, e.tag(a.Micro, Forward)); err != nil {
					return 0, 0, fmt.Errorf("%s: sending the activation to rank %d: %w", where(a), e.next, err)
				}
			}

		case Backward:
			var dy models.Tensor
			if e.next < 0 {
				dy = dlogits[a.Micro]
				dlogits[a.Micro] = models.Tensor{}
			} else {
				dy = models.Tensor{Shape: append([]int{mb}, e.outShape...), Data: reuse(&e.gradBuf[a.Micro], mb*outElems)}
				t, s := time.Now(), e.tl.r.Now()
				if err := e.g.Recv(ctx, dy.Data, e.next, e.tag(a.Micro, Backward)); err != nil {
					return 0, 0, fmt.Errorf("%s: receiving the gradient from rank %d: %w", where(a), e.next, err)
				}
				st.RecvWait += time.Since(t)
				e.tl.span(a, nameRecv, s)
			}
			t, s := time.Now(), e.tl.r.Now()
			tr.Compute = t
			var dx models.Tensor
			var err error
			if e.prev < 0 {
				err = e.model.BackwardParams(saved[a.Micro], dy, nil)
			} else {
				dx, err = e.model.Backward(saved[a.Micro], dy, nil)
			}
			if err != nil {
				return 0, 0, fmt.Errorf("%s: %w", where(a), err)
			}
			tr.End = time.Now()
			e.tl.span(a, nameCompute, s)
			d := tr.End.Sub(t)
			st.Busy += d
			st.BackwardBusy += d
			saved[a.Micro] = nil
			live--
			liveBytes -= savedBytes[a.Micro]
			if e.prev >= 0 {
				if err := bwd.post(ctx, dx.Data, e.tag(a.Micro, Backward)); err != nil {
					return 0, 0, fmt.Errorf("%s: sending the gradient to rank %d: %w", where(a), e.prev, err)
				}
			}
		}
		if st.Trace != nil {
			tr.Posted = time.Now()
			st.Trace = append(st.Trace, tr)
		}
	}
	return lossSum, correct, nil
}

// reuse returns *buf with n elements, allocating it on first use.
func reuse(buf *[]float32, n int) []float32 {
	if len(*buf) != n {
		*buf = make([]float32, n)
	}
	return *buf
}

func elems(shape []int) int {
	n := 1
	for _, d := range shape {
		n *= d
	}
	return n
}

// sender posts one direction's messages from its own goroutine, in order, so
// that the executor never waits for a neighbour to receive (the schedules'
// deadlock freedom assumes non-blocking sends; see SimulateCosts). Its queue
// holds as many messages as the stage sends per step, so posting never
// blocks either: the memory in flight is bounded by one step's messages of
// one direction, and in practice by the transport's buffering, since each
// message leaves the queue as soon as the transport has taken it.
type sender struct {
	g      *collective.Group
	peer   int
	wait   time.Duration
	timer  *time.Timer
	queue  chan message
	done   chan struct{}
	cancel context.CancelCauseFunc
	tl     *stageTrace
	tid    int // tl's row of this sender
	tag0   int // Config.TagBase: a message's tag tells its micro-batch and direction

	mu     sync.Mutex
	err    error
	queued int
	peak   int
}

type message struct {
	buf  []float32
	tag  int
	sent chan struct{} // closed once the transport has taken the message
}

func startSender(ctx context.Context, cancel context.CancelCauseFunc, g *collective.Group, peer, capacity int, wait time.Duration, tl *stageTrace, tagBase int) *sender {
	s := &sender{g: g, peer: peer, wait: wait, queue: make(chan message, capacity), done: make(chan struct{}), cancel: cancel,
		tl: tl, tid: tl.senderRow(g, peer), tag0: tagBase}
	go s.loop(ctx)
	return s
}

func (s *sender) loop(ctx context.Context) {
	defer close(s.done)
	for msg := range s.queue {
		start := s.tl.r.Now()
		err := s.g.Send(ctx, msg.buf, s.peer, msg.tag)
		s.tl.sent(s.tid, ActionKind((msg.tag-s.tag0)%2), (msg.tag-s.tag0)/2, start, 4*len(msg.buf))
		if err != nil {
			err = fmt.Errorf("pipeline: Send(peer=%d, tag=%d): %w", s.peer, msg.tag, err)
			s.mu.Lock()
			s.err = err
			s.mu.Unlock()
			s.cancel(err) // unblocks the executor's receives
			for range s.queue {
			}
			return
		}
		s.mu.Lock()
		s.queued--
		s.mu.Unlock()
		close(msg.sent)
	}
}

// post queues buf for sending and waits up to s.wait for the transport to
// take it (see Config.SendWait). buf must not be modified afterwards.
func (s *sender) post(ctx context.Context, buf []float32, tag int) error {
	s.mu.Lock()
	if err := s.err; err != nil {
		s.mu.Unlock()
		return err
	}
	s.queued++
	s.peak = max(s.peak, s.queued)
	s.mu.Unlock()
	msg := message{buf: buf, tag: tag, sent: make(chan struct{})}
	select {
	case s.queue <- msg:
	case <-ctx.Done():
		return context.Cause(ctx)
	}
	if s.wait < 0 {
		return nil
	}
	if s.timer == nil {
		s.timer = time.NewTimer(s.wait)
	} else {
		s.timer.Reset(s.wait)
	}
	defer s.timer.Stop()
	select {
	case <-msg.sent:
		// The transport has the bytes, but its own goroutines (quic-go's
		// packer and send queue) may still have to run to put them on the
		// wire: yield once so that they do before the next computation.
		runtime.Gosched()
	case <-s.done: // the sender failed; the next post or finish reports it
	case <-s.timer.C:
	case <-ctx.Done():
		return context.Cause(ctx)
	}
	return nil
}

// finish closes the queue and waits until every message is sent or ctx ends.
func (s *sender) finish(ctx context.Context) error {
	close(s.queue)
	select {
	case <-s.done:
	case <-ctx.Done():
		<-s.done // Send honours ctx, so the loop ends promptly
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return s.err
	}
	return ctx.Err()
}
