package ddp

import (
	"context"
	"fmt"
	"math"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/ringtrain/ringtrain/models"
)

// fakeDevice is a models.DeviceResident model whose "device" is a second Sequential of
// the same architecture with its own parameters: it computes only with the device
// copies, so the host copies (the Params ddp sees) are right only if ddp calls the
// Pull/Push methods at the right points. It logs every call.
type fakeDevice struct {
	host, dev *models.Sequential
	hp, dp    [][]*models.Param // per layer: host and device parameters

	mu  sync.Mutex
	log []string
}

const fakeDeviceName = "fake:0"

func newFakeDevice(t testing.TB, host, dev *models.Sequential) *fakeDevice {
	t.Helper()
	f := &fakeDevice{host: host, dev: dev}
	hl, dl := host.Layers(), dev.Layers()
	if len(hl) != len(dl) {
		t.Fatal("fake device: architectures differ")
	}
	for i := range hl {
		f.hp = append(f.hp, hl[i].Params())
		f.dp = append(f.dp, dl[i].Params())
	}
	return f
}

func (f *fakeDevice) record(ev string) {
	f.mu.Lock()
	f.log = append(f.log, ev)
	f.mu.Unlock()
}

// events returns the log and clears it.
func (f *fakeDevice) events() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	l := f.log
	f.log = nil
	return l
}

func (f *fakeDevice) Device() string             { return fakeDeviceName }
func (f *fakeDevice) Layers() []models.Layer     { return f.host.Layers() }
func (f *fakeDevice) Len() int                   { return f.host.Len() }
func (f *fakeDevice) Params() []*models.Param    { return f.host.Params() }
func (f *fakeDevice) devParams() []*models.Param { return f.dev.Params() }

func (f *fakeDevice) ZeroGrad() {
	f.record("zero-grad")
	f.host.ZeroGrad()
	f.dev.ZeroGrad()
}

func (f *fakeDevice) Forward(x models.Tensor, train bool) (models.Tensor, models.Saved, error) {
	f.record("forward")
	return f.dev.Forward(x, train)
}

// download wraps a hook so that layer i's device gradients reach the host before it runs.
func (f *fakeDevice) download(hook func(int)) func(int) {
	if hook == nil {
		return nil
	}
	return func(i int) {
		for j, p := range f.hp[i] {
			copy(p.Grad, f.dp[i][j].Grad)
		}
		hook(i)
	}
}

func (f *fakeDevice) Backward(saved models.Saved, dy models.Tensor, hook func(int)) (models.Tensor, error) {
	f.record(fmt.Sprintf("backward hook=%v", hook != nil))
	return f.dev.Backward(saved, dy, f.download(hook))
}

func (f *fakeDevice) BackwardParams(saved models.Saved, dy models.Tensor, hook func(int)) error {
	f.record(fmt.Sprintf("backward hook=%v", hook != nil))
	return f.dev.BackwardParams(saved, dy, f.download(hook))
}

func (f *fakeDevice) copyAll(grad, toDevice bool) {
	for i := range f.hp {
		for j, h := range f.hp[i] {
			d := f.dp[i][j]
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
}

func (f *fakeDevice) PullParams() error { f.record("pull-params"); f.copyAll(false, false); return nil }
func (f *fakeDevice) PushParams() error { f.record("push-params"); f.copyAll(false, true); return nil }
func (f *fakeDevice) PullGrads() error  { f.record("pull-grads"); f.copyAll(true, false); return nil }
func (f *fakeDevice) PushGrads() error  { f.record("push-grads"); f.copyAll(true, true); return nil }

var _ models.DeviceResident = (*fakeDevice)(nil)
var _ models.Model = (*fakeDevice)(nil)

// fakeOpt is an optimizer over the fake device's parameters, logging its steps.
type fakeOpt struct {
	models.Optimizer
	f *fakeDevice
}

func (o fakeOpt) Device() string { return fakeDeviceName }
func (o fakeOpt) Step() error {
	o.f.record("opt-step")
	return o.Optimizer.Step()
}

// onDevice wraps a fresh small model (seed) onto a fake device whose own values start
// from another seed (the device is stale until PushParams).
func onDevice(t testing.TB, seed int64) (*fakeDevice, models.Optimizer) {
	t.Helper()
	f := newFakeDevice(t, smallModel(t, 40, seed), smallModel(t, 40, seed+1000))
	return f, fakeOpt{Optimizer: sgd(t, f.dev), f: f}
}

func countOf(log []string, ev string) int {
	n := 0
	for _, e := range log {
		if e == ev {
			n++
		}
	}
	return n
}

// TestDeviceResidentDistributed trains two ranks whose models compute on a fake device
// with a device optimizer: Wrap must upload rank 0's parameters, every Wait must upload
// the reduced gradients before the optimizer steps, SaveCheckpoint must download the
// parameters and LoadCheckpoint upload them; then training matches one process.
func TestDeviceResidentDistributed(t *testing.T) {
	const n, b, steps = 2, 6, 4
	gs := startJob(t, n)
	dir := t.TempDir()
	final := make([][][]float32, n)
	mustRanks(t, n, func(ctx context.Context, r int) error {
		f, opt := onDevice(t, int64(1+r))
		d, err := Wrap(ctx, f, gs[r], tinyCaps)
		if err != nil {
			return err
		}
		if got := f.events(); !slices.Equal(got, []string{"push-params"}) {
			return fmt.Errorf("Wrap called %v, want [push-params] (after the broadcast)", got)
		}
		if err := sameBits(paramsOf(f.dev), paramsOf(f.host)); err != nil {
			return fmt.Errorf("after Wrap the device does not hold rank 0's values: %v", err)
		}
		for s := range steps {
			mine := shard(globalBatch(s, n*b), r, n)
			x1, l1 := sample(mine[:b/2])
			x2, l2 := sample(mine[b/2:])
			if _, err := d.TrainStep(ctx, opt, Batch{X: x1, Labels: l1}, Batch{X: x2, Labels: l2}); err != nil {
				return fmt.Errorf("step %d: %w", s, err)
			}
			want := []string{"zero-grad", "forward", "backward hook=false", "forward", "backward hook=true", "push-grads", "opt-step"}
			if got := f.events(); !slices.Equal(got, want) {
				return fmt.Errorf("step %d called %v, want %v", s, got, want)
			}
		}
		if _, err := d.SaveCheckpoint(ctx, dir, TrainState{Step: steps}, opt); err != nil {
			return err
		}
		got := f.events()
		if want := map[bool]int{true: 1, false: 0}[r == 0]; countOf(got, "pull-params") != want || len(got) != want {
			return fmt.Errorf("SaveCheckpoint on rank %d called %v, want pull-params %d time(s) and nothing else", r, got, want)
		}
		// Resume into a fresh device model: the loaded values must reach the device.
		g, opt2 := onDevice(t, 77)
		d2, err := Wrap(ctx, g, gs[r], tinyCaps)
		if err != nil {
			return err
		}
		g.events()
		if _, _, err := d2.LoadCheckpoint(ctx, dir, opt2); err != nil {
			return err
		}
		if got := g.events(); !slices.Equal(got, []string{"push-params"}) {
			return fmt.Errorf("LoadCheckpoint called %v, want [push-params]", got)
		}
		if err := f.PullParams(); err != nil {
			return err
		}
		if err := sameBits(paramsOf(g.dev), paramsOf(f.host)); err != nil {
			return fmt.Errorf("the resumed device differs from the trained one: %v", err)
		}
		final[r] = paramsOf(f.host)
		return nil
	})
	if err := sameBits(final[0], final[1]); err != nil {
		t.Fatalf("ranks differ: %v", err)
	}
	ref := smallModel(t, 40, 1)
	referenceTrain(t, ref, sgd(t, ref), steps, n*b)
	for i, w := range paramsOf(ref) {
		if dd := relDiff(final[0][i], w); dd > 1e-5 {
			t.Errorf("parameter %d: relative difference %.3g from one process on the CPU", i, dd)
		}
	}
}

// TestDeviceResidentAlone: trained alone (and untraced), a device model gets a nil hook
// and no gradient transfer at all, and still trains exactly as the CPU path.
func TestDeviceResidentAlone(t *testing.T) {
	const b, steps = 12, 3
	ctx := context.Background()
	f, opt := onDevice(t, 1)
	d, err := Wrap(ctx, f, nil, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if got := f.events(); !slices.Equal(got, []string{"push-params"}) {
		t.Fatalf("Wrap alone called %v, want [push-params]", got)
	}
	for s := range steps {
		x, labels := sample(globalBatch(s, b))
		res, err := d.TrainStep(ctx, opt, Batch{X: x, Labels: labels})
		if err != nil {
			t.Fatal(err)
		}
		if res.Stats.Buckets != len(d.Buckets()) {
			t.Errorf("step %d: %d buckets reported, want %d", s, res.Stats.Buckets, len(d.Buckets()))
		}
		want := []string{"zero-grad", "forward", "backward hook=false", "opt-step"}
		if got := f.events(); !slices.Equal(got, want) {
			t.Fatalf("step %d called %v, want %v", s, got, want)
		}
	}
	ref := smallModel(t, 40, 1)
	referenceTrain(t, ref, sgd(t, ref), steps, b)
	if err := sameBits(paramsOf(f.dev), paramsOf(ref)); err != nil {
		t.Fatalf("device training differs from plain training: %v", err)
	}
	// With a trace, the hook is needed (layer-done events) and gradients come down.
	var mu sync.Mutex
	layers := 0
	g, opt2 := onDevice(t, 1)
	d2, err := Wrap(ctx, g, nil, Options{Trace: func(e Event) {
		if e.Kind == EventLayerDone {
			mu.Lock()
			layers++
			mu.Unlock()
		}
	}})
	if err != nil {
		t.Fatal(err)
	}
	x, labels := sample(globalBatch(0, b))
	if _, err := d2.TrainStep(ctx, opt2, Batch{X: x, Labels: labels}); err != nil {
		t.Fatal(err)
	}
	if got := g.events(); !slices.Contains(got, "backward hook=true") || layers != g.Len() {
		t.Fatalf("traced: calls %v, %d layer events", got, layers)
	}
}

// TestOptimizerPlacement: an optimizer that updates parameters elsewhere than the model
// computes is refused with an error naming both devices.
func TestOptimizerPlacement(t *testing.T) {
	ctx := context.Background()
	f, _ := onDevice(t, 1)
	d, err := Wrap(ctx, f, nil, Options{})
	if err != nil {
		t.Fatal(err)
	}
	x, labels := sample(globalBatch(0, 4))
	_, err = d.TrainStep(ctx, sgd(t, f.host), Batch{X: x, Labels: labels})
	want := "ddp: the model computes on fake:0 but the optimizer updates parameters on cpu: build the optimizer for the model's device (gpu.NewSGD / gpu.NewAdam)"
	if err == nil || err.Error() != want {
		t.Fatalf("host optimizer on a device model: got %v, want %q", err, want)
	}
	if d.Err() != nil {
		t.Fatalf("a refused step failed the DDP: %v", d.Err())
	}
	m := smallModel(t, 40, 1)
	dc, err := Wrap(ctx, m, nil, Options{})
	if err != nil {
		t.Fatal(err)
	}
	_, err = dc.TrainStep(ctx, fakeOpt{Optimizer: sgd(t, m), f: f}, Batch{X: x, Labels: labels})
	if err == nil || !strings.Contains(err.Error(), "computes on cpu but the optimizer updates parameters on fake:0") {
		t.Fatalf("device optimizer on a CPU model: got %v", err)
	}
}

// TestCustomLoss: Options.Loss replaces softmax cross-entropy in TrainStep.
func TestCustomLoss(t *testing.T) {
	ctx := context.Background()
	idx := globalBatch(0, 8)
	x1, l1 := sample(idx[:4])
	x2, l2 := sample(idx[4:])
	run := func(loss models.Loss) (StepResult, [][]float32) {
		m := smallModel(t, 40, 1)
		d, err := Wrap(ctx, m, nil, Options{Loss: loss})
		if err != nil {
			t.Fatal(err)
		}
		res, err := d.TrainStep(ctx, sgd(t, m), Batch{X: x1, Labels: l1}, Batch{X: x2, Labels: l2})
		if err != nil {
			t.Fatal(err)
		}
		return res, paramsOf(m)
	}
	calls := 0
	// Three times the cross-entropy: three times the loss and the gradient.
	triple := func(logits models.Tensor, labels []int, scale float32) (float64, models.Tensor, error) {
		calls++
		return models.SoftmaxCrossEntropy(logits, labels, 3*scale)
	}
	def, p1 := run(nil)
	cus, p3 := run(triple)
	if calls != 2 {
		t.Errorf("custom loss called %d times for 2 micro-batches", calls)
	}
	if math.Abs(cus.Loss-3*def.Loss) > 1e-6*math.Abs(def.Loss) {
		t.Errorf("loss %g with the tripled loss, %g by default", cus.Loss, def.Loss)
	}
	if relDiff(p3[0], p1[0]) == 0 {
		t.Error("the custom loss's gradient did not change the update")
	}
}
