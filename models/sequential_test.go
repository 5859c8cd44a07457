package models

import (
	"errors"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
)

func maxRelDiff(a, b []float32) float64 {
	var num, den float64
	for i := range a {
		num = math.Max(num, math.Abs(float64(a[i])-float64(b[i])))
		den = math.Max(den, math.Max(math.Abs(float64(a[i])), math.Abs(float64(b[i]))))
	}
	if den == 0 {
		return num
	}
	return num / den
}

// relL2 is ‖a−b‖₂ / ‖b‖₂ (float64).
func relL2(a, b []float32) float64 {
	var num, den float64
	for i := range a {
		d := float64(a[i]) - float64(b[i])
		num += d * d
		den += float64(b[i]) * float64(b[i])
	}
	if den == 0 {
		return math.Sqrt(num)
	}
	return math.Sqrt(num / den)
}

func smallMLP(t *testing.T, seed int64) *Sequential {
	t.Helper()
	fc1, _ := NewLinear("fc1", 12, 9, InitHe)
	fc2, _ := NewLinear("fc2", 9, 4, InitGlorot)
	m, err := NewSequential(NewFlatten("flat"), fc1, NewReLU("relu"), fc2)
	if err != nil {
		t.Fatal(err)
	}
	m.Init(seed)
	return m
}

// TestSequentialIsComposition runs the layers one by one by hand and compares
// outputs, input gradients and parameter gradients with Sequential's.
func TestSequentialIsComposition(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 1))
	m := smallMLP(t, 3)
	x := randTensor(rng, 5, 3, 2, 2)
	y, saved, err := m.Forward(x, true)
	if err != nil {
		t.Fatal(err)
	}
	dy := randTensor(rng, y.Shape...)
	m.ZeroGrad()
	dx, err := m.Backward(saved, dy, nil)
	if err != nil {
		t.Fatal(err)
	}
	seqGrads := map[string][]float32{}
	for _, p := range m.Params() {
		seqGrads[p.Name] = slices.Clone(p.Grad)
	}

	m.ZeroGrad()
	layers := m.Layers()
	cur := x
	saves := make([]Saved, len(layers))
	for i, l := range layers {
		cur, saves[i], err = l.Forward(cur, true)
		if err != nil {
			t.Fatal(err)
		}
	}
	if !slices.Equal(cur.Data, y.Data) || !slices.Equal(cur.Shape, y.Shape) {
		t.Fatalf("sequential forward differs from composition")
	}
	g := dy
	for i := len(layers) - 1; i >= 0; i-- {
		if g, err = layers[i].Backward(saves[i], g); err != nil {
			t.Fatal(err)
		}
	}
	if !slices.Equal(g.Data, dx.Data) || !slices.Equal(g.Shape, x.Shape) {
		t.Fatalf("sequential dx differs from composition")
	}
	for _, p := range m.Params() {
		if !slices.Equal(p.Grad, seqGrads[p.Name]) {
			t.Errorf("%s: gradient differs from composition", p.Name)
		}
	}
}

func TestBackwardHookOrderAndCompleteness(t *testing.T) {
	rng := rand.New(rand.NewPCG(2, 2))
	m := smallMLP(t, 3)
	x := randTensor(rng, 4, 12)
	y, saved, err := m.Forward(x, true)
	if err != nil {
		t.Fatal(err)
	}
	m.ZeroGrad()
	var order []int
	layers := m.Layers()
	err = m.BackwardParams(saved, randTensor(rng, y.Shape...), func(i int) {
		order = append(order, i)
		// Layer i's gradients must already be complete: non-zero by now.
		for _, p := range layers[i].Params() {
			var s float64
			for _, g := range p.Grad {
				s += math.Abs(float64(g))
			}
			if s == 0 {
				t.Errorf("hook for layer %d ran before %s had its gradient", i, p.Name)
			}
		}
		// ...and the layers before it must not have started.
		for j := 0; j < i; j++ {
			for _, p := range layers[j].Params() {
				for _, g := range p.Grad {
					if g != 0 {
						t.Errorf("hook for layer %d: earlier layer %d already has gradient", i, j)
						return
					}
				}
			}
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	if want := []int{3, 2, 1, 0}; !slices.Equal(order, want) {
		t.Fatalf("hook order %v, want %v", order, want)
	}
}

// TestBackwardParamsMatchesBackward: skipping the first layer's dx must not
// change any parameter gradient.
func TestBackwardParamsMatchesBackward(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 9))
	fc1, _ := NewLinear("fc1", 12, 5, InitHe)
	fc2, _ := NewLinear("fc2", 5, 3, InitHe)
	direct, _ := NewSequential(fc1, NewReLU("r"), fc2)
	direct.Init(1)
	// smallMLP starts with a parameterless Flatten that BackwardParams skips.
	for _, m := range []*Sequential{direct, smallMLP(t, 2)} {
		x := randTensor(rng, 4, 12)
		y, saved, _ := m.Forward(x, true)
		dy := randTensor(rng, y.Shape...)
		m.ZeroGrad()
		if _, err := m.Backward(saved, dy, nil); err != nil {
			t.Fatal(err)
		}
		want := map[string][]float32{}
		for _, p := range m.Params() {
			want[p.Name] = slices.Clone(p.Grad)
		}
		m.ZeroGrad()
		var hooks []int
		if err := m.BackwardParams(saved, dy, func(i int) { hooks = append(hooks, i) }); err != nil {
			t.Fatal(err)
		}
		if len(hooks) != m.Len() || hooks[len(hooks)-1] != 0 {
			t.Errorf("hooks %v: want every layer down to 0", hooks)
		}
		for _, p := range m.Params() {
			if !slices.Equal(p.Grad, want[p.Name]) {
				t.Errorf("%s differs between Backward and BackwardParams", p.Name)
			}
		}
	}
}

func TestGradientAccumulationAdds(t *testing.T) {
	rng := rand.New(rand.NewPCG(4, 4))
	m := smallMLP(t, 5)
	x1, x2 := randTensor(rng, 3, 12), randTensor(rng, 3, 12)
	grads := func(xs ...Tensor) map[string][]float32 {
		m.ZeroGrad()
		for _, x := range xs {
			y, s, err := m.Forward(x, true)
			if err != nil {
				t.Fatal(err)
			}
			dy := NewTensor(y.Shape...)
			for i := range dy.Data {
				dy.Data[i] = float32(i%5) - 2
			}
			if _, err := m.Backward(s, dy, nil); err != nil {
				t.Fatal(err)
			}
		}
		out := map[string][]float32{}
		for _, p := range m.Params() {
			out[p.Name] = slices.Clone(p.Grad)
		}
		return out
	}
	g1, g2, g12 := grads(x1), grads(x2), grads(x1, x2)
	for name, g := range g12 {
		sum := make([]float32, len(g))
		for i := range sum {
			sum[i] = g1[name][i] + g2[name][i]
		}
		if d := maxRelDiff(g, sum); d > 1e-6 {
			t.Errorf("%s: accumulated gradient differs from the sum by %.2g", name, d)
		}
	}
}

// TestMicroBatchesEqualFullBatch: one batch of N·B through one Backward with
// scale 1/(N·B) equals N micro-batches of B, each with scale 1/(N·B), whose
// forwards are all in flight before their backwards run (as a pipeline does).
func TestMicroBatchesEqualFullBatch(t *testing.T) {
	for _, name := range []string{"mlp", "cnn"} {
		t.Run(name, func(t *testing.T) {
			if name == "cnn" && !cnnAvailable() {
				t.Skip("cnn not built yet")
			}
			rng := rand.New(rand.NewPCG(5, 5))
			m, err := Build(name, 11)
			if err != nil {
				t.Fatal(err)
			}
			const n, b = 4, 8
			x := randTensor(rng, n*b, 1, 28, 28)
			labels := make([]int, n*b)
			for i := range labels {
				labels[i] = rng.IntN(NumClasses)
			}
			scale := float32(1) / (n * b)

			m.ZeroGrad()
			logits, saved, err := m.Forward(x, true)
			if err != nil {
				t.Fatal(err)
			}
			fullLoss, d, err := SoftmaxCrossEntropy(logits, labels, scale)
			if err != nil {
				t.Fatal(err)
			}
			if err := m.BackwardParams(saved, d, nil); err != nil {
				t.Fatal(err)
			}
			full := map[string][]float32{}
			for _, p := range m.Params() {
				full[p.Name] = slices.Clone(p.Grad)
			}

			m.ZeroGrad()
			per := 28 * 28
			var outs []Tensor
			var saves []Saved
			for k := 0; k < n; k++ {
				xb := Tensor{Shape: []int{b, 1, 28, 28}, Data: x.Data[k*b*per : (k+1)*b*per]}
				out, s, err := m.Forward(xb, true)
				if err != nil {
					t.Fatal(err)
				}
				outs, saves = append(outs, out), append(saves, s)
			}
			var microLoss float64
			for k := n - 1; k >= 0; k-- { // backwards in another order than forwards
				l, d, err := SoftmaxCrossEntropy(outs[k], labels[k*b:(k+1)*b], scale)
				if err != nil {
					t.Fatal(err)
				}
				microLoss += l
				if err := m.BackwardParams(saves[k], d, nil); err != nil {
					t.Fatal(err)
				}
			}
			if math.Abs(microLoss-fullLoss) > 1e-6*math.Abs(fullLoss) {
				t.Errorf("loss: micro %.9g full %.9g", microLoss, fullLoss)
			}
			for _, p := range m.Params() {
				// Same sums, different float32 summation order: the
				// relative L2 difference must stay at rounding level.
				d, dmax := relL2(p.Grad, full[p.Name]), maxRelDiff(p.Grad, full[p.Name])
				t.Logf("%s: relative L2 %.2g, max-abs/max %.2g", p.Name, d, dmax)
				tol := 1e-6
				if _, isConv := layerOf(m, p).(*Conv2D); isConv && strings.HasSuffix(p.Name, ".weight") {
					// A convolution weight's gradient is one float32 sum over
					// batch × output positions (32·28·28 = 25,088 terms for
					// conv1) whose terms largely cancel; the rounding of two
					// summation orders then differs by up to ~√K·2⁻²⁴ ≈ 1e-5
					// relative. Measured: 1.5e-6.
					tol = 5e-6
				}
				if d > tol {
					t.Errorf("%s: micro-batched gradient differs by %.2g (relative L2)", p.Name, d)
				}
			}
		})
	}
}

func TestSequentialErrors(t *testing.T) {
	fc, _ := NewLinear("fc", 4, 2, InitHe)
	if _, err := NewSequential(fc, NewReLU("fc")); err == nil {
		t.Fatal("duplicate names accepted")
	}
	m, _ := NewSequential(fc)
	if _, _, err := m.Forward(NewTensor(2, 5), true); !errors.Is(err, ErrShape) {
		t.Fatalf("wrong input width: got %v, want ErrShape", err)
	}
	if _, _, err := m.Forward(Tensor{Shape: []int{2, 4}, Data: make([]float32, 7)}, true); err == nil {
		t.Fatal("short data accepted")
	}
	_, saved, err := m.Forward(NewTensor(2, 4), true)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.Backward(saved, NewTensor(2, 3), nil); !errors.Is(err, ErrShape) {
		t.Fatalf("wrong dy shape: got %v, want ErrShape", err)
	}
	other, _ := NewSequential(NewReLU("r"))
	if _, err := other.Backward(saved, NewTensor(2, 2), nil); !errors.Is(err, ErrSaved) {
		t.Fatalf("foreign saved: got %v, want ErrSaved", err)
	}
	if _, err := m.Slice(1, 1); err == nil {
		t.Fatal("empty slice accepted")
	}
}

func TestForwardBackwardDoNotModifyInputs(t *testing.T) {
	rng := rand.New(rand.NewPCG(6, 6))
	for _, name := range ModelNames() {
		if name == "mlp-wide" || (name == "cnn" && !cnnAvailable()) {
			continue
		}
		m, err := Build(name, 1)
		if err != nil {
			t.Fatal(err)
		}
		x := randTensor(rng, 3, 1, 28, 28)
		x0 := x.Clone()
		vals := map[string][]float32{}
		for _, p := range m.Params() {
			vals[p.Name] = slices.Clone(p.Value)
		}
		for range 2 {
			y, s, err := m.Forward(x, true)
			if err != nil {
				t.Fatal(err)
			}
			dy := randTensor(rng, y.Shape...)
			dy0 := dy.Clone()
			if _, err := m.Backward(s, dy, nil); err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(dy.Data, dy0.Data) {
				t.Errorf("%s: backward modified dy", name)
			}
		}
		if !slices.Equal(x.Data, x0.Data) {
			t.Errorf("%s: forward/backward modified x", name)
		}
		for _, p := range m.Params() {
			if !slices.Equal(p.Value, vals[p.Name]) {
				t.Errorf("%s: %s changed by forward/backward", name, p.Name)
			}
		}
	}
}

// layerOf returns the layer owning p.
func layerOf(m *Sequential, p *Param) Layer {
	for _, l := range m.Layers() {
		for _, q := range l.Params() {
			if q == p {
				return l
			}
		}
	}
	return nil
}
