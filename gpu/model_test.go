package gpu

import (
	"errors"
	"math"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"

	"github.com/ringtrain/ringtrain/models"
)

// countingDevice counts allocations, to check the caching allocator.
type countingDevice struct {
	*Emulator
	allocs int
}

func (c *countingDevice) Alloc(n int) (Mem, error) { c.allocs++; return c.Emulator.Alloc(n) }

func randomBatch(rng *rand.Rand, b int, shape []int, classes int) (models.Tensor, []int) {
	x := models.NewTensor(append([]int{b}, shape...)...)
	for i := range x.Data {
		x.Data[i] = float32(rng.NormFloat64())
	}
	labels := make([]int, b)
	for i := range labels {
		labels[i] = rng.IntN(classes)
	}
	return x, labels
}

// closeTo reports the first element where got and want differ by more than
// tol·max(1, |want|).
func closeTo(t *testing.T, what string, got, want []float32, tol float64) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d values, want %d", what, len(got), len(want))
	}
	for i := range got {
		if d := math.Abs(float64(got[i] - want[i])); d > tol*math.Max(1, math.Abs(float64(want[i]))) || math.IsNaN(float64(got[i])) {
			t.Fatalf("%s[%d] = %g, CPU path %g (|Δ| %.3g > %g)", what, i, got[i], want[i], d, tol)
		}
	}
}

type stepper struct {
	m   models.Model
	opt models.Optimizer
}

// trainSteps runs the same steps on the CPU path (gorgonia) and on the
// emulated device, comparing loss, gradients and parameters after each.
func trainSteps(t *testing.T, build func() *models.Sequential, inShape []int, batch, steps int, mkOpt func(models.Model) models.Optimizer, hook bool) {
	cpuSeq, devSeq := build(), build()
	dm, err := Compile(devSeq, NewEmulator())
	if err != nil {
		t.Fatal(err)
	}
	defer dm.Close()
	cpu, dev := stepper{cpuSeq, mkOpt(cpuSeq)}, stepper{dm, mkOpt(dm)}
	rng := rand.New(rand.NewPCG(7, 8))
	const tol = 1e-5
	for step := 0; step < steps; step++ {
		x, labels := randomBatch(rng, batch, inShape, 10)
		var losses [2]float64
		for k, s := range []stepper{cpu, dev} {
			s.m.ZeroGrad()
			logits, sv, err := s.m.Forward(x, true)
			if err != nil {
				t.Fatalf("step %d model %d: forward: %v", step, k, err)
			}
			loss, dl, err := models.SoftmaxCrossEntropy(logits, labels, 1/float32(batch))
			if err != nil {
				t.Fatal(err)
			}
			losses[k] = loss
			var done []int
			var h func(int)
			if hook {
				h = func(i int) { done = append(done, i) }
			}
			if err := s.m.BackwardParams(sv, dl, h); err != nil {
				t.Fatalf("step %d model %d: backward: %v", step, k, err)
			}
			if hook && len(done) != s.m.Len() {
				t.Fatalf("hook called for %v, want every layer", done)
			}
		}
		if d := math.Abs(losses[0] - losses[1]); d > tol*math.Max(1, math.Abs(losses[0])) {
			t.Fatalf("step %d: loss on the device %.9g, CPU path %.9g", step, losses[1], losses[0])
		}
		if !hook {
			if err := dm.PullGrads(); err != nil {
				t.Fatal(err)
			}
		}
		for i, p := range dm.Params() {
			closeTo(t, "step "+strconv.Itoa(step)+" grad "+p.Name, p.Grad, cpuSeq.Params()[i].Grad, tol)
		}
		for _, s := range []stepper{cpu, dev} {
			if err := s.opt.Step(); err != nil {
				t.Fatal(err)
			}
		}
		if err := dm.PullParams(); err != nil {
			t.Fatal(err)
		}
		for i, p := range dm.Params() {
			closeTo(t, "step "+strconv.Itoa(step)+" param "+p.Name, p.Value, cpuSeq.Params()[i].Value, tol)
		}
	}
}

func buildNamed(t *testing.T, name string) func() *models.Sequential {
	return func() *models.Sequential {
		m, err := models.Build(name, 42)
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
}

func sgdMomentum(t *testing.T) func(models.Model) models.Optimizer {
	return func(m models.Model) models.Optimizer {
		o, err := NewSGDFor(m, models.SGDConfig{LR: 0.05, Momentum: 0.9, WeightDecay: 1e-4})
		if err != nil {
			t.Fatal(err)
		}
		return o
	}
}

func TestEmulatedMLPMatchesCPU(t *testing.T) {
	trainSteps(t, buildNamed(t, "mlp"), []int{1, 28, 28}, 8, 3, sgdMomentum(t), false)
}

func TestEmulatedCNNMatchesCPU(t *testing.T) {
	trainSteps(t, buildNamed(t, "cnn"), []int{1, 28, 28}, 4, 3, sgdMomentum(t), true)
}

func TestEmulatedAdamAndDropoutMatchCPU(t *testing.T) {
	build := func() *models.Sequential {
		fc1, _ := models.NewLinear("fc1", 12, 16, models.InitHe)
		drop, err := models.NewDropout("drop", 0.3, 5)
		if err != nil {
			t.Fatal(err)
		}
		fc2, _ := models.NewLinear("fc2", 16, 10, models.InitGlorot)
		conv, _ := models.NewConv2D("conv", 2, 3, 3, 2, 1, models.InitHe)
		pool, _ := models.NewMaxPool2D("pool", 2, 1)
		m, err := models.NewSequential(conv, models.NewReLU("r0"), pool, models.NewFlatten("flat"), fc1, models.NewReLU("r1"), drop, fc2)
		if err != nil {
			t.Fatal(err)
		}
		m.Init(3)
		return m
	}
	// conv 2×5×5 (stride 2, pad 1) → 3×3×3; pool 2/1 → 3×2×2 = 12 features.
	adam := func(m models.Model) models.Optimizer {
		o, err := NewAdamFor(m, models.AdamConfig{LR: 0.01, WeightDecay: 1e-3})
		if err != nil {
			t.Fatal(err)
		}
		return o
	}
	trainSteps(t, build, []int{2, 5, 5}, 6, 3, adam, true)
}

func TestBackwardWithInputGradientMatchesCPU(t *testing.T) {
	cpu := buildNamed(t, "cnn")()
	dm, err := Compile(buildNamed(t, "cnn")(), NewEmulator())
	if err != nil {
		t.Fatal(err)
	}
	x, labels := randomBatch(rand.New(rand.NewPCG(1, 2)), 3, []int{1, 28, 28}, 10)
	var dxs [2]models.Tensor
	for k, m := range []models.Model{cpu, dm} {
		logits, sv, err := m.Forward(x, true)
		if err != nil {
			t.Fatal(err)
		}
		_, dl, _ := models.SoftmaxCrossEntropy(logits, labels, 1)
		if dxs[k], err = m.Backward(sv, dl, nil); err != nil {
			t.Fatal(err)
		}
	}
	closeTo(t, "dx", dxs[1].Data, dxs[0].Data, 1e-5)
	if got, want := dxs[1].Shape, x.Shape; len(got) != len(want) || got[1] != want[1] || got[3] != want[3] {
		t.Fatalf("dx shape %v, want %v", got, want)
	}
}

func TestSteadyStateAllocatesNothing(t *testing.T) {
	dev := &countingDevice{Emulator: NewEmulator()}
	dm, err := Compile(buildNamed(t, "cnn")(), dev)
	if err != nil {
		t.Fatal(err)
	}
	opt, err := NewSGD(dm, models.SGDConfig{LR: 0.01, Momentum: 0.9})
	if err != nil {
		t.Fatal(err)
	}
	x, labels := randomBatch(rand.New(rand.NewPCG(3, 4)), 2, []int{1, 28, 28}, 10)
	step := func() {
		dm.ZeroGrad()
		logits, sv, err := dm.Forward(x, true)
		if err != nil {
			t.Fatal(err)
		}
		_, dl, _ := models.SoftmaxCrossEntropy(logits, labels, 0.5)
		if err := dm.BackwardParams(sv, dl, nil); err != nil {
			t.Fatal(err)
		}
		if err := opt.Step(); err != nil {
			t.Fatal(err)
		}
	}
	step()
	after1 := dev.allocs
	step()
	step()
	if dev.allocs != after1 {
		t.Fatalf("steps 2 and 3 allocated %d device blocks; the caching allocator should reuse step 1's", dev.allocs-after1)
	}
	if inUse, _, _ := dm.MemoryStats(); inUse != 0 {
		t.Fatalf("%d bytes still in use after the backward", inUse)
	}
}

func TestInferenceForwardFreesAndRefusesBackward(t *testing.T) {
	dm, err := Compile(buildNamed(t, "mlp")(), NewEmulator())
	if err != nil {
		t.Fatal(err)
	}
	x, _ := randomBatch(rand.New(rand.NewPCG(5, 6)), 2, []int{1, 28, 28}, 10)
	logits, sv, err := dm.Forward(x, false)
	if err != nil {
		t.Fatal(err)
	}
	if inUse, _, _ := dm.MemoryStats(); inUse != 0 {
		t.Fatalf("inference kept %d bytes on the device", inUse)
	}
	if _, err := dm.Backward(sv, logits, nil); !errors.Is(err, ErrInference) {
		t.Fatalf("backward after an inference forward: %v, want ErrInference", err)
	}
}

type customLayer struct{ *models.ReLU }

func TestUnsupportedLayerIsNamed(t *testing.T) {
	fc, _ := models.NewLinear("fc", 4, 2, models.InitHe)
	seq, err := models.NewSequential(fc, customLayer{models.NewReLU("mystery")})
	if err != nil {
		t.Fatal(err)
	}
	_, err = Compile(seq, NewEmulator())
	if !errors.Is(err, ErrUnsupportedLayer) || !strings.Contains(err.Error(), `"mystery"`) {
		t.Fatalf("Compile: %v, want ErrUnsupportedLayer naming the layer", err)
	}
	// auto falls back to the CPU; cuda refuses (here because no GPU, on a GPU
	// machine because of the layer).
	m, note, err := Place(seq, "auto", 0)
	if err != nil || m != models.Model(seq) || !strings.HasPrefix(note, "cpu") {
		t.Fatalf("Place auto: %v, %q, %v; want the Sequential on the CPU", m, note, err)
	}
	if _, _, err := Place(seq, "emu", 0); !errors.Is(err, ErrUnsupportedLayer) {
		t.Fatalf("Place emu: %v, want ErrUnsupportedLayer", err)
	}
}

func TestOptimizerStateRoundTrip(t *testing.T) {
	dm, err := Compile(buildNamed(t, "mlp")(), NewEmulator())
	if err != nil {
		t.Fatal(err)
	}
	opt, err := NewAdam(dm, models.AdamConfig{})
	if err != nil {
		t.Fatal(err)
	}
	x, labels := randomBatch(rand.New(rand.NewPCG(9, 9)), 2, []int{1, 28, 28}, 10)
	logits, sv, _ := dm.Forward(x, true)
	_, dl, _ := models.SoftmaxCrossEntropy(logits, labels, 0.5)
	if err := dm.BackwardParams(sv, dl, nil); err != nil {
		t.Fatal(err)
	}
	if err := opt.Step(); err != nil {
		t.Fatal(err)
	}
	st := opt.State()
	host, _ := models.NewAdam(dm.Params(), models.AdamConfig{})
	if err := host.LoadState(st); err != nil {
		t.Fatalf("device Adam state is not models.Adam's format: %v", err)
	}
	opt2, _ := NewAdam(dm, models.AdamConfig{})
	if err := opt2.LoadState(st); err != nil {
		t.Fatal(err)
	}
	st2 := opt2.State()
	if st2.Step != 1 || len(st2.Slices) != len(st.Slices) {
		t.Fatalf("reloaded state: step %d, %d slices", st2.Step, len(st2.Slices))
	}
	closeTo(t, "reloaded m", st2.Slices[0].Data, st.Slices[0].Data, 0)
	bad := st
	bad.Kind = "sgd"
	if err := opt2.LoadState(bad); err == nil {
		t.Fatal("LoadState accepted an SGD snapshot")
	}
}

func TestSelect(t *testing.T) {
	if d, note, err := Select("cpu", 0); d != nil || err != nil || note == "" {
		t.Fatalf("cpu: %v %q %v", d, note, err)
	}
	if _, _, err := Select("gpu", 0); err == nil || !strings.Contains(err.Error(), Specs) {
		t.Fatalf("bad spec: %v", err)
	}
	if _, _, err := Select("cuda:x", 0); err == nil {
		t.Fatal("cuda:x accepted")
	}
	d, note, err := Select("auto", 0)
	if err != nil {
		t.Fatal(err)
	}
	if d == nil {
		// No GPU here: auto says why, cuda fails naming what was missing.
		if !strings.HasPrefix(note, "cpu (--device auto: ") {
			t.Fatalf("auto note %q", note)
		}
		_, _, err := Select("cuda", 0)
		if !errors.Is(err, ErrNoGPU) || !strings.Contains(err.Error(), "--device cuda") {
			t.Fatalf("cuda without a GPU: %v", err)
		}
	} else if !strings.HasPrefix(d.Name(), "cuda:") {
		t.Fatalf("auto picked %s", d.Name())
	}
}
