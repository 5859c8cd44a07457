package ddp

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"time"

	"github.com/ringtrain/ringtrain/collective"
	"github.com/ringtrain/ringtrain/models"
)

// ErrFailed is matched (errors.Is) by the errors of every call on a DDP after one of its
// steps failed: the ranks' collective ops no longer line up, so it cannot go on.
var ErrFailed = errors.New("ddp: an earlier step failed")

// ErrUsage is matched (errors.Is) by errors of calls made out of order (Wait without a
// synchronising Backward, Backward while a reduction is still pending).
var ErrUsage = errors.New("ddp: call out of order")

// DDP is a model replica trained data-parallel with the other ranks of its group. Make
// it with Wrap; use it from one goroutine.
type DDP struct {
	model  models.Model
	dev    models.DeviceResident // model, when its parameters live on a device; else nil
	g      *collective.Group     // nil when training alone
	opts   resolved
	dist   bool // more than one rank: communicate
	params []*models.Param

	buckets      []*bucket
	layerBuckets [][]*bucket // layer i → the buckets that are complete once layer i is done
	seeded       []seededLayer

	failed error

	// The step in progress.
	inStep      bool  // Forward or Backward called since the last Wait
	pending     bool  // a synchronising Backward launched reductions; Wait must follow
	inTrainStep bool  // TrainStep drives the step (it adds the stats itself)
	steps       int64 // synchronised steps completed
	stepStart   time.Time
	compute     time.Duration
	launchCh    chan *bucket  // buckets launched, in order, for the watcher
	watchDone   chan struct{} // closed when the watcher has timestamped every launched bucket
	launched    []*bucket
	tl          stepTrace

	last StepStats
	acc  Stats
}

// Wrap prepares model for data-parallel training over g, which every rank of g must call
// with a model of the same parameters (names, order and shapes) and the same bucket and
// compression options. It checks that they agree (an error names the rank and the
// parameter or option that differs), then copies rank 0's parameter values to every
// rank, so all replicas start identical whatever their seeds.
//
// g may be nil (or have one member): the DDP then trains alone, without communicating,
// which is what a training program runs when started without a launcher.
//
// Wrap re-points every parameter's Grad into its bucket's flat buffer (keeping its
// values): code that kept an old Grad slice must fetch it again. Wrap a model only once.
//
// model is a *models.Sequential or a model compiled onto a device. When it is a
// models.DeviceResident, Param.Value on the host is taken as the truth at Wrap time:
// Wrap ends with PushParams (after the broadcast, and also when training alone).
func Wrap(ctx context.Context, model models.Model, g *collective.Group, opts Options) (*DDP, error) {
	dist := g != nil && g.Size() > 1
	refs, ro, err := prepare(model, opts)
	if err != nil {
		if dist {
			// The other ranks are about to compare configurations with this one: tell them
			// it failed, so that they return now naming this rank instead of waiting in a
			// collective for the group's timeout. Every rank returns the same error.
			return nil, verifyRanks(ctx, g, nil, nil, ro, err)
		}
		return nil, err
	}
	d := &DDP{model: model, g: g, opts: ro, dist: dist}
	d.dev, _ = model.(models.DeviceResident)
	for _, pr := range refs {
		d.params = append(d.params, pr.p)
	}
	plan := planBuckets(refs, ro.firstCapBytes, ro.capBytes)
	if d.dist {
		if err := verifyRanks(ctx, g, refs, plan, ro, nil); err != nil {
			return nil, err
		}
		if err := broadcastParams(ctx, g, d.params); err != nil {
			return nil, fmt.Errorf("ddp: broadcasting rank 0's parameters: %w", err)
		}
	}
	d.buckets = newBuckets(plan)
	if d.dist {
		if err := d.setupHook(ctx); err != nil {
			return nil, err
		}
	}
	d.layerBuckets = make([][]*bucket, model.Len())
	for _, b := range d.buckets {
		d.layerBuckets[b.minLayer] = append(d.layerBuckets[b.minLayer], b)
	}
	d.seeded = seededLayers(model)
	if opts.Timeline == nil && g != nil {
		opts.Timeline = g.Timeline()
	}
	d.tl.init(opts.Timeline, model, len(d.buckets))
	if d.dev != nil {
		if err := d.dev.PushParams(); err != nil {
			return nil, fmt.Errorf("ddp: Wrap: uploading the parameters to %s: %w", d.dev.Device(), err)
		}
	}
	return d, nil
}

// prepare makes Wrap's local checks: the options and the model's parameters.
func prepare(model models.Model, opts Options) ([]paramRef, resolved, error) {
	if model == nil || isNilSequential(model) {
		return nil, resolved{}, errors.New("ddp: Wrap: nil model")
	}
	ro, err := opts.resolve()
	if err != nil {
		return nil, ro, err
	}
	var refs []paramRef
	for i, l := range model.Layers() {
		for _, p := range l.Params() {
			if p == nil || len(p.Grad) != len(p.Value) || len(p.Value) == 0 {
				return nil, ro, fmt.Errorf("ddp: Wrap: parameter %d of layer %q is nil, empty or has a gradient of the wrong size", len(refs), l.Name())
			}
			refs = append(refs, paramRef{p: p, layer: i})
		}
	}
	if len(refs) == 0 {
		return nil, ro, errors.New("ddp: Wrap: the model has no parameters to train")
	}
	return refs, ro, nil
}

func isNilSequential(m models.Model) bool {
	s, ok := m.(*models.Sequential)
	return ok && s == nil
}

// broadcastParams copies rank 0's parameter values to every rank, one pipelined
// Broadcast per parameter straight from and into Param.Value.
func broadcastParams(ctx context.Context, g *collective.Group, params []*models.Param) error {
	works := make([]*collective.Work, len(params))
	for i, p := range params {
		works[i] = g.BroadcastAsync(ctx, p.Value, 0)
	}
	var first error
	for _, w := range works {
		if err := w.Wait(ctx); err != nil && first == nil {
			first = err
		}
	}
	return first
}

// Model returns the wrapped model.
func (d *DDP) Model() models.Model { return d.model }

// Group returns the group (nil when training alone).
func (d *DDP) Group() *collective.Group { return d.g }

// Rank is this rank in the group (0 when alone) and Size the number of ranks (1 alone).
func (d *DDP) Rank() int {
	if d.g == nil {
		return 0
	}
	return d.g.Rank()
}

// Size is the number of ranks training together (1 when alone).
func (d *DDP) Size() int {
	if d.g == nil {
		return 1
	}
	return d.g.Size()
}

// Steps is the number of synchronised steps completed (successful Waits).
func (d *DDP) Steps() int64 { return d.steps }

// Buckets describes the gradient buckets in launch order.
func (d *DDP) Buckets() []BucketInfo {
	out := make([]BucketInfo, len(d.buckets))
	for i, b := range d.buckets {
		out[i] = b.info()
	}
	return out
}

// Err returns the error that failed the DDP (wrapping ErrFailed), or nil.
func (d *DDP) Err() error { return d.failed }

func (d *DDP) fail(err error) error {
	if d.failed == nil {
		d.failed = fmt.Errorf("%w: %w", ErrFailed, err)
	}
	return err
}

func (d *DDP) check() error {
	if d.failed != nil {
		return d.failed
	}
	return nil
}

func (d *DDP) trace(k EventKind, layer, bkt int) {
	if d.opts.trace != nil {
		d.opts.trace(Event{Kind: k, Step: d.steps, Layer: layer, Bucket: bkt, Time: time.Now()})
	}
}

func (d *DDP) beginStep() {
	if !d.inStep {
		d.inStep = true
		d.stepStart = time.Now()
		d.compute = 0
	}
}

// Forward runs the model's forward pass (timed as compute for the step's StepStats).
func (d *DDP) Forward(x models.Tensor, train bool) (models.Tensor, models.Saved, error) {
	if err := d.check(); err != nil {
		return models.Tensor{}, nil, err
	}
	d.beginStep()
	t0, s := time.Now(), d.tl.r.Now()
	y, saved, err := d.model.Forward(x, train)
	d.compute += time.Since(t0)
	d.tl.span("forward", s, d.steps)
	return y, saved, err
}

// BackwardNoSync runs backward from dL/dy (the gradient of the loss with respect to the
// model's output) and only adds the gradients into Param.Grad, without communicating:
// gradient accumulation over micro-batches, as PyTorch's no_sync. The next Backward adds
// its own gradients to the accumulated ones and reduces the sum.
func (d *DDP) BackwardNoSync(saved models.Saved, dy models.Tensor) error {
	if err := d.check(); err != nil {
		return err
	}
	if d.pending {
		return fmt.Errorf("%w: BackwardNoSync while the previous Backward's reductions are pending: call Wait first", ErrUsage)
	}
	d.beginStep()
	t0, s := time.Now(), d.tl.r.Now()
	err := d.model.BackwardParams(saved, dy, nil)
	d.compute += time.Since(t0)
	d.tl.span("backward (no sync)", s, d.steps)
	if err != nil {
		return fmt.Errorf("ddp: backward: %w", err)
	}
	return nil
}

// Backward runs backward from dL/dy and, layer by layer as gradients complete, launches
// each bucket's AllReduce (Avg) while the earlier layers are still computing. Call Wait
// before reading the gradients or stepping the optimizer. ctx governs the launched ops:
// if it ends before they complete, the group fails (see collective.Group).
//
// Every rank must call Backward (and Wait) the same number of times: each call
// communicates. A failure leaves the DDP failed (ErrFailed), since this rank's ops no
// longer match its peers'.
func (d *DDP) Backward(ctx context.Context, saved models.Saved, dy models.Tensor) error {
	if err := d.check(); err != nil {
		return err
	}
	if d.pending {
		return fmt.Errorf("%w: Backward while the previous Backward's reductions are pending: call Wait first", ErrUsage)
	}
	d.beginStep()
	d.pending = true
	d.launched = d.launched[:0]
	if d.dist {
		d.launchCh = make(chan *bucket, len(d.buckets))
		d.watchDone = make(chan struct{})
		go d.watch(d.launchCh, d.watchDone)
	}
	// Alone and untraced, nothing needs the gradients layer by layer: a nil hook lets a
	// device model keep them on the device (no host round trip).
	var hook func(int)
	if d.dist || d.opts.trace != nil || d.tl.r != nil {
		hook = func(i int) {
			d.tl.layerDone(i, d.steps)
			d.trace(EventLayerDone, i, -1)
			if i >= 0 && i < len(d.layerBuckets) {
				for _, b := range d.layerBuckets[i] {
					d.launch(ctx, b)
				}
			}
		}
	}
	t0, s := time.Now(), d.tl.r.Now()
	d.tl.last = s
	err := d.model.BackwardParams(saved, dy, hook)
	d.compute += time.Since(t0)
	d.tl.span("backward", s, d.steps)
	if hook == nil && err == nil {
		d.launched = append(d.launched, d.buckets...)
	}
	if d.dist {
		close(d.launchCh)
	}
	if err == nil && len(d.launched) != len(d.buckets) && d.dist {
		err = fmt.Errorf("backward reported %d of %d buckets complete", len(d.launched), len(d.buckets))
	}
	d.trace(EventBackwardDone, -1, -1)
	if err != nil {
		return d.fail(fmt.Errorf("ddp: backward: %w", err))
	}
	return nil
}

// launch issues bucket b's reduction (its gradients are complete).
func (d *DDP) launch(ctx context.Context, b *bucket) {
	d.launched = append(d.launched, b)
	if !d.dist {
		return
	}
	b.launchAt = time.Since(d.stepStart).Nanoseconds()
	s := d.tl.r.Now()
	defer d.tl.launched(b, s, d.steps)
	b.work = d.reduce(ctx, b) // hook.go
	d.trace(EventBucketLaunched, -1, b.index)
	d.launchCh <- b
	// Let the group's goroutines start the op (header exchange, first chunks) now: with
	// one thread per rank (GOMAXPROCS=1) they would otherwise wait for the scheduler to
	// preempt this goroutine in the middle of the next layer's backward.
	runtime.Gosched()
}

// watch timestamps the completion of each launched bucket, in launch order (the order in
// which the group runs them).
func (d *DDP) watch(launched <-chan *bucket, done chan<- struct{}) {
	defer close(done)
	for b := range launched {
		if b.work != nil { // nil: the hook finished (or failed) inside Reduce
			<-b.work.Done()
		}
		b.doneAt = time.Since(d.stepStart).Nanoseconds()
		if d.opts.trace != nil {
			d.opts.trace(Event{Kind: EventBucketDone, Step: d.steps, Layer: -1, Bucket: b.index, Time: time.Now()})
		}
	}
}

// Wait waits until every bucket launched by Backward has been reduced. Afterwards
// Param.Grad holds the average over all ranks of the gradients accumulated since the
// last ZeroGrad, identical on every rank, and the step's StepStats are available
// (LastStep). With a models.DeviceResident model, Wait then uploads the averaged
// gradients (PushGrads); trained alone, such a model keeps its gradients on the device
// and Param.Grad is not updated (call PullGrads to read them on the host). If ctx ends first, Wait returns its error and the DDP is failed: the
// buffers still belong to the ops in flight.
func (d *DDP) Wait(ctx context.Context) error {
	if err := d.check(); err != nil {
		return err
	}
	if !d.pending {
		return fmt.Errorf("%w: Wait without a preceding Backward", ErrUsage)
	}
	t0, s := time.Now(), d.tl.r.Now()
	var first error
	if d.dist {
		for _, b := range d.launched {
			sb := d.tl.r.Now()
			if err := b.wait(ctx); err != nil && first == nil {
				first = err
			}
			d.tl.waited(b, sb, d.steps)
		}
	}
	if first == nil && d.dist {
		first = d.finish(ctx) // hook.go
	}
	d.tl.span("wait", s, d.steps)
	var exposed time.Duration
	if d.dist {
		exposed = time.Since(t0)
	}
	if first != nil {
		return d.fail(fmt.Errorf("ddp: reducing gradients: %w", first))
	}
	if d.dist && d.dev != nil {
		// The reduced gradients are in the host buckets: the device's are stale.
		t := time.Now()
		if err := d.dev.PushGrads(); err != nil {
			return d.fail(fmt.Errorf("ddp: uploading the reduced gradients to %s: %w", d.dev.Device(), err))
		}
		d.compute += time.Since(t)
	}
	st := StepStats{Compute: d.compute, ExposedComm: exposed, Buckets: len(d.launched)}
	if d.dist {
		select {
		case <-d.watchDone:
		case <-ctx.Done():
			return d.fail(fmt.Errorf("ddp: waiting for the reductions: %w", ctx.Err()))
		}
		var prevDone int64
		for _, b := range d.launched {
			start := max(b.launchAt, prevDone)
			st.Comm += time.Duration(max(0, b.doneAt-start))
			prevDone = b.doneAt
			st.Bytes += 4 * int64(len(b.flat))
		}
	}
	st.Total = time.Since(d.stepStart)
	d.pending, d.inStep = false, false
	d.last = st
	if !d.inTrainStep {
		d.acc.Add(st)
	}
	d.trace(EventWaitDone, -1, -1)
	d.steps++
	return nil
}

// LastStep returns the StepStats of the last completed synchronised step.
func (d *DDP) LastStep() StepStats { return d.last }

// TakeStats returns the statistics accumulated since the previous call and starts
// afresh (for per-epoch or per-interval reports).
func (d *DDP) TakeStats() Stats {
	s := d.acc
	d.acc = Stats{}
	return s
}

// Batch is one micro-batch of inputs and integer class labels.
type Batch struct {
	X      models.Tensor
	Labels []int
}

// StepResult is what TrainStep reports about one step on this rank.
type StepResult struct {
	Loss    float64 // mean loss (Options.Loss) over this rank's samples of the step
	Correct int     // this rank's samples whose largest output is the label (before the update)
	Samples int     // this rank's samples in the step
	Stats   StepStats
}

// TrainStep runs one synchronised training step with Options.Loss (softmax
// cross-entropy by default): it clears
// the gradients, runs forward and backward on each micro-batch (accumulating locally for
// all but the last, whose backward reduces the sum while it runs), waits for the
// reductions and steps opt. The loss is scaled by 1/(this rank's samples in the step), so
// with the same number of samples on every rank the update equals that of one process
// training on all ranks' samples at once.
//
// opt must update the parameters where the model computes (models.DevicePlacement of
// both agree): a model compiled onto a device needs that device's optimizer.
func (d *DDP) TrainStep(ctx context.Context, opt models.Optimizer, batches ...Batch) (StepResult, error) {
	if err := d.check(); err != nil {
		return StepResult{}, err
	}
	if opt == nil {
		return StepResult{}, errors.New("ddp: TrainStep: nil optimizer")
	}
	if len(batches) == 0 {
		return StepResult{}, errors.New("ddp: TrainStep: no batches")
	}
	if err := checkPlacement(d.model, opt); err != nil {
		return StepResult{}, err
	}
	if d.inStep {
		return StepResult{}, fmt.Errorf("%w: TrainStep inside a step begun with Forward/Backward", ErrUsage)
	}
	var res StepResult
	for i, b := range batches {
		if b.X.Batch() != len(b.Labels) || len(b.Labels) == 0 {
			return StepResult{}, fmt.Errorf("ddp: TrainStep: micro-batch %d has %d samples and %d labels", i, b.X.Batch(), len(b.Labels))
		}
		res.Samples += len(b.Labels)
	}
	d.inTrainStep = true
	defer func() { d.inTrainStep = false }()
	d.tl.beginStep(d.steps)
	defer d.tl.endStep()

	d.beginStep()
	d.model.ZeroGrad()
	scale := 1 / float32(res.Samples)
	for i, b := range batches {
		logits, saved, err := d.Forward(b.X, true)
		if err != nil {
			return res, d.fail(fmt.Errorf("ddp: forward of micro-batch %d: %w", i, err))
		}
		t0, s := time.Now(), d.tl.r.Now()
		loss, dl, err := d.opts.loss(logits, b.Labels, scale)
		if err == nil {
			var c int
			c, err = models.CountCorrect(logits, b.Labels)
			res.Correct += c
		}
		d.compute += time.Since(t0)
		d.tl.span("loss", s, d.steps)
		if err != nil {
			return res, d.fail(fmt.Errorf("ddp: loss of micro-batch %d: %w", i, err))
		}
		res.Loss += loss
		if i < len(batches)-1 {
			err = d.BackwardNoSync(saved, dl)
		} else {
			err = d.Backward(ctx, saved, dl)
		}
		if err != nil {
			return res, d.fail(err)
		}
	}
	if err := d.Wait(ctx); err != nil {
		return res, err
	}
	t0, s := time.Now(), d.tl.r.Now()
	if err := opt.Step(); err != nil {
		return res, d.fail(fmt.Errorf("ddp: optimizer step: %w", err))
	}
	d.tl.span("optimizer", s, d.steps-1) // Wait counted the step already
	d.last.Optimizer = time.Since(t0)
	d.last.Total = time.Since(d.stepStart)
	d.acc.Add(d.last)
	res.Stats = d.last
	return res, nil
}

// checkPlacement refuses an optimizer that updates the parameters somewhere else than
// where the model computes (a host optimizer would step stale host copies of a device
// model's parameters).
func checkPlacement(model models.Model, opt models.Optimizer) error {
	md, od := models.DevicePlacement(model), models.DevicePlacement(opt)
	if md == od {
		return nil
	}
	hint := "gpu.NewSGD / gpu.NewAdam"
	if md == "cpu" {
		hint = "models.NewSGD / models.NewAdam"
	}
	return fmt.Errorf("ddp: the model computes on %s but the optimizer updates parameters on %s: build the optimizer for the model's device (%s)", md, od, hint)
}
