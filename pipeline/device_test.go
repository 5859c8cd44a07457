package pipeline_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/ringtrain/ringtrain/collective"
	"github.com/ringtrain/ringtrain/models"
	"github.com/ringtrain/ringtrain/pipeline"
)

// stageDevice is a models.DeviceResident stage whose "device" is a slice of
// another model of the same architecture, with its own parameters: it computes
// only with the device copies, so the host copies are right only if the
// executor calls Pull/Push at the right points. It logs every call.
type stageDevice struct {
	host, dev *models.Sequential
	hp, dp    []*models.Param

	mu  sync.Mutex
	log []string
}

const stageDeviceName = "fake:0"

func (f *stageDevice) record(ev string) {
	f.mu.Lock()
	f.log = append(f.log, ev)
	f.mu.Unlock()
}

func (f *stageDevice) events() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	l := f.log
	f.log = nil
	return l
}

func (f *stageDevice) Device() string          { return stageDeviceName }
func (f *stageDevice) Layers() []models.Layer  { return f.host.Layers() }
func (f *stageDevice) Len() int                { return f.host.Len() }
func (f *stageDevice) Params() []*models.Param { return f.host.Params() }
func (f *stageDevice) ZeroGrad() {
	f.record("zero-grad")
	f.host.ZeroGrad()
	f.dev.ZeroGrad()
}
func (f *stageDevice) Forward(x models.Tensor, train bool) (models.Tensor, models.Saved, error) {
	f.record("forward")
	return f.dev.Forward(x, train)
}
func (f *stageDevice) Backward(sv models.Saved, dy models.Tensor, hook func(int)) (models.Tensor, error) {
	f.record(fmt.Sprintf("backward hook=%v", hook != nil))
	if hook != nil {
		return models.Tensor{}, errors.New("the pipeline has no use for a hook")
	}
	return f.dev.Backward(sv, dy, nil)
}
func (f *stageDevice) BackwardParams(sv models.Saved, dy models.Tensor, hook func(int)) error {
	_, err := f.Backward(sv, dy, hook)
	return err
}

func (f *stageDevice) copyAll(grad, toDevice bool) {
	for i, h := range f.hp {
		d := f.dp[i]
		switch {
		case grad && toDevice:
			copy(d.Grad, h.Grad)
		case grad:
			copy(h.Grad, d.Grad)
		case toDevice:
			copy(d.Value, h.Value)
		default:
			copy(h.Value, d.Value)
		}
	}
}

func (f *stageDevice) PullParams() error {
	f.record("pull-params")
	f.copyAll(false, false)
	return nil
}
func (f *stageDevice) PushParams() error { f.record("push-params"); f.copyAll(false, true); return nil }
func (f *stageDevice) PullGrads() error  { f.record("pull-grads"); f.copyAll(true, false); return nil }
func (f *stageDevice) PushGrads() error  { f.record("push-grads"); f.copyAll(true, true); return nil }

var _ models.DeviceResident = (*stageDevice)(nil)

// compileFake is a Config.Compile that puts the stage on a fake device whose
// values start from another seed (stale until PushParams).
func compileFake(t testing.TB, sizes []int, out **stageDevice, got **models.Sequential) func(*models.Sequential) (models.Model, error) {
	return func(stage *models.Sequential) (models.Model, error) {
		*got = stage
		other := testModel(t, 1000, sizes...)
		start := slices.IndexFunc(other.Layers(), func(l models.Layer) bool { return l.Name() == stage.Layers()[0].Name() })
		dev, err := other.Slice(start, start+stage.Len())
		if err != nil {
			return nil, err
		}
		*out = &stageDevice{host: stage, dev: dev, hp: stage.Params(), dp: dev.Params()}
		return *out, nil
	}
}

// deviceOpt is an optimizer over the fake device's parameters.
type deviceOpt struct {
	models.Optimizer
	f *stageDevice
}

func (o deviceOpt) Device() string { return stageDeviceName }
func (o deviceOpt) Step() error {
	o.f.record("opt-step")
	return o.Optimizer.Step()
}

// TestCompiledStages trains 2 stages × 2 replicas whose stages compute on a
// fake device: Compile gets the stage's slice of the full model, New uploads
// the parameters, every step downloads the gradients for the replicas'
// AllReduce and uploads the sums before the device optimizer steps, and the
// result matches single-process training on the CPU.
func TestCompiledStages(t *testing.T) {
	const batch, steps = 16, 3
	cfg := pipeline.Config{Stages: 2, Replicas: 2, MicroBatches: 4, Batch: batch, InputShape: testInput}
	src := testData(t)
	res := make([]rankResult, 4)
	errs := onRanks(t, 4, func(ctx context.Context, g *collective.Group) error {
		c := cfg
		sizes := microSizes(batch/2, 4)
		full := testModel(t, 1, sizes...)
		var f *stageDevice
		var slice *models.Sequential
		c.Compile = compileFake(t, sizes, &f, &slice)
		e, err := pipeline.New(ctx, full, g, c)
		if err != nil {
			return err
		}
		defer e.Close()
		sp := e.Plan().Stages[e.Stage()]
		if slice == nil || slice.Len() != sp.End-sp.Start {
			return fmt.Errorf("Compile got %v, want stage %d's %d layers", slice, e.Stage(), sp.End-sp.Start)
		}
		for i, l := range slice.Layers() {
			if l != full.Layers()[sp.Start+i] {
				return fmt.Errorf("Compile's layer %d is not the full model's layer %d", i, sp.Start+i)
			}
		}
		if e.Model() != models.Model(f) || e.Device() != stageDeviceName {
			return fmt.Errorf("Model() = %T on %s, want the compiled model on %s", e.Model(), e.Device(), stageDeviceName)
		}
		if got := f.events(); !slices.Equal(got, []string{"push-params"}) {
			return fmt.Errorf("New called %v, want [push-params]", got)
		}
		sgd, err := newSGD(f.dev.Params())
		if err != nil {
			return err
		}
		opt := deviceOpt{Optimizer: sgd, f: f}
		r := rankResult{stage: e.Stage(), replica: e.Replica(), params: map[string][]float32{}}
		for step := range steps {
			x, y, err := replicaBatch(src, batch, 2, e.Replica(), step)
			if err != nil {
				return err
			}
			st, err := e.Step(ctx, x, y, opt)
			if err != nil {
				return err
			}
			r.stats = append(r.stats, st)
			ev := f.events()
			n := len(ev)
			if n < 4 || ev[0] != "zero-grad" || !slices.Equal(ev[n-3:], []string{"pull-grads", "push-grads", "opt-step"}) {
				return fmt.Errorf("step %d called %v, want zero-grad … pull-grads push-grads opt-step", step, ev)
			}
			for _, s := range ev[1 : n-3] {
				if s != "forward" && s != "backward hook=false" {
					return fmt.Errorf("step %d called %v during the schedule", step, s)
				}
			}
		}
		if err := f.PullParams(); err != nil {
			return err
		}
		for _, p := range e.Params() {
			r.params[p.Name] = slices.Clone(p.Value)
		}
		res[g.Rank()] = r
		return nil
	})
	for r, err := range errs {
		if err != nil {
			t.Fatalf("rank %d: %v", r, err)
		}
	}
	checkAgainstReference(t, res, batch, steps)
}

// TestCompiledOneReplica: with one replica the gradients never leave the
// device.
func TestCompiledOneReplica(t *testing.T) {
	errs := onRanks(t, 2, func(ctx context.Context, g *collective.Group) error {
		sizes := microSizes(8, 2)
		var f *stageDevice
		var slice *models.Sequential
		e, err := pipeline.New(ctx, testModel(t, 1, sizes...), g, pipeline.Config{Batch: 8, MicroBatches: 2, InputShape: testInput,
			Compile: compileFake(t, sizes, &f, &slice)})
		if err != nil {
			return err
		}
		defer e.Close()
		sgd, err := newSGD(f.dev.Params())
		if err != nil {
			return err
		}
		x, y, err := replicaBatch(testData(t), 8, 1, 0, 0)
		if err != nil {
			return err
		}
		f.events()
		if _, err := e.Step(ctx, x, y, deviceOpt{Optimizer: sgd, f: f}); err != nil {
			return err
		}
		for _, ev := range f.events() {
			if strings.Contains(ev, "grads") || strings.Contains(ev, "params") {
				return fmt.Errorf("one replica: Step called %s", ev)
			}
		}
		return nil
	})
	for r, err := range errs {
		if err != nil {
			t.Errorf("rank %d: %v", r, err)
		}
	}
}

// TestInputShapeRequired: a nil InputShape is refused, naming the field.
func TestInputShapeRequired(t *testing.T) {
	errs := onRanks(t, 1, func(ctx context.Context, g *collective.Group) error {
		_, err := pipeline.New(ctx, testModel(t, 1), g, pipeline.Config{Batch: 8})
		return err
	})
	if !errors.Is(errs[0], pipeline.ErrConfig) || !strings.Contains(errs[0].Error(), "InputShape") {
		t.Fatalf("nil InputShape: got %v, want ErrConfig naming InputShape", errs[0])
	}
}

// TestOptimizerPlacement: Step refuses an optimizer placed elsewhere than the
// stage computes, before communicating.
func TestOptimizerPlacement(t *testing.T) {
	errs := onRanks(t, 1, func(ctx context.Context, g *collective.Group) error {
		sizes := microSizes(8, 1)
		var f *stageDevice
		var slice *models.Sequential
		e, err := pipeline.New(ctx, testModel(t, 1, sizes...), g, pipeline.Config{Batch: 8, MicroBatches: 1, InputShape: testInput,
			Compile: compileFake(t, sizes, &f, &slice)})
		if err != nil {
			return err
		}
		defer e.Close()
		host, err := newSGD(e.Params())
		if err != nil {
			return err
		}
		x, y, err := replicaBatch(testData(t), 8, 1, 0, 0)
		if err != nil {
			return err
		}
		_, err = e.Step(ctx, x, y, host)
		if !errors.Is(err, pipeline.ErrConfig) || !strings.Contains(err.Error(), "the model computes on fake:0 but the optimizer updates parameters on cpu") {
			return fmt.Errorf("host optimizer on a device stage: got %v", err)
		}
		cpu, err := pipeline.New(ctx, testModel(t, 1, sizes...), g, pipeline.Config{Batch: 8, MicroBatches: 1, InputShape: testInput})
		if err != nil {
			return err
		}
		defer cpu.Close()
		_, err = cpu.Step(ctx, x, y, deviceOpt{Optimizer: host, f: f})
		if !errors.Is(err, pipeline.ErrConfig) || !strings.Contains(err.Error(), "computes on cpu but the optimizer updates parameters on fake:0") {
			return fmt.Errorf("device optimizer on a CPU stage: got %v", err)
		}
		return nil
	})
	if errs[0] != nil {
		t.Fatal(errs[0])
	}
}

// TestCustomLoss: Config.Loss replaces softmax cross-entropy on the last stage.
func TestCustomLoss(t *testing.T) {
	var calls sync.Map
	errs := onRanks(t, 2, func(ctx context.Context, g *collective.Group) error {
		sizes := microSizes(8, 2)
		n := 0
		double := func(logits models.Tensor, labels []int, scale float32) (float64, models.Tensor, error) {
			n++
			return models.SoftmaxCrossEntropy(logits, labels, 2*scale)
		}
		run := func(loss models.Loss) (float64, error) {
			e, err := pipeline.New(ctx, testModel(t, 1, sizes...), g, pipeline.Config{Batch: 8, MicroBatches: 2, InputShape: testInput, Loss: loss})
			if err != nil {
				return 0, err
			}
			defer e.Close()
			x, y, err := replicaBatch(testData(t), 8, 1, 0, 0)
			if err != nil {
				return 0, err
			}
			st, err := e.Step(ctx, x, y, nil)
			return st.Loss, err
		}
		def, err := run(nil)
		if err != nil {
			return err
		}
		two, err := run(double)
		if err != nil {
			return err
		}
		calls.Store(g.Rank(), [3]float64{float64(n), def, two})
		return nil
	})
	for r, err := range errs {
		if err != nil {
			t.Fatalf("rank %d: %v", r, err)
		}
	}
	first, _ := calls.Load(0)
	last, _ := calls.Load(1)
	if f := first.([3]float64); f[0] != 0 {
		t.Errorf("stage 0 called the loss %v times", f[0])
	}
	if l := last.([3]float64); l[0] != 2 || l[2] != 2*l[1] || l[1] <= 0 {
		t.Errorf("last stage: %v loss calls for 2 micro-batches, loss %g with the doubled loss vs %g", l[0], l[2], l[1])
	}
}
