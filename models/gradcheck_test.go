package models

import (
	"math"
	"math/rand/v2"
	"testing"
)

// This file checks every layer's Backward against central finite differences
// of its Forward. The objective is f = Σ y·r for a fixed random r, computed
// in float64 from the float32 outputs, so ∂f/∂y = r is the upstream gradient.
// Finite differences use the actually representable float32 perturbation.

const (
	fdEps = 1e-2
	fdTol = 2e-3 // relative to max(1, |analytic|): float32 rounding in f is ~1e-6
)

func randTensor(rng *rand.Rand, shape ...int) Tensor {
	t := NewTensor(shape...)
	for i := range t.Data {
		t.Data[i] = float32(2*rng.Float64() - 1)
	}
	return t
}

func dot64(a []float32, b []float32) float64 {
	var s float64
	for i := range a {
		s += float64(a[i]) * float64(b[i])
	}
	return s
}

// fdIndices picks up to n indices of a slice of length size (all if small).
func fdIndices(rng *rand.Rand, size, n int) []int {
	if size <= n {
		idx := make([]int, size)
		for i := range idx {
			idx[i] = i
		}
		return idx
	}
	return rng.Perm(size)[:n]
}

// checkLayerGrads compares analytic and numeric gradients w.r.t. x and every
// parameter of l at input x. forward must be deterministic across calls.
func checkLayerGrads(t *testing.T, l Layer, x Tensor, train bool, rng *rand.Rand) {
	t.Helper()
	forward := func() Tensor {
		y, _, err := l.Forward(x, train)
		if err != nil {
			t.Fatalf("%s forward: %v", l.Name(), err)
		}
		return y
	}
	y0, saved, err := l.Forward(x, train)
	if err != nil {
		t.Fatalf("%s forward: %v", l.Name(), err)
	}
	r := randTensor(rng, y0.Shape...)
	for _, p := range l.Params() {
		p.ZeroGrad()
	}
	dx, err := l.Backward(saved, r)
	if err != nil {
		t.Fatalf("%s backward: %v", l.Name(), err)
	}
	if !sameShape(dx.Shape, x.Shape) {
		t.Fatalf("%s: dx shape %v, want %v", l.Name(), dx.Shape, x.Shape)
	}
	f := func() float64 { return dot64(forward().Data, r.Data) }
	check := func(what string, vals []float32, analytic []float32) {
		t.Helper()
		worst := 0.0
		for _, i := range fdIndices(rng, len(vals), 60) {
			orig := vals[i]
			vals[i] = orig + fdEps
			hp := float64(vals[i]) - float64(orig)
			fp := f()
			vals[i] = orig - fdEps
			hm := float64(orig) - float64(vals[i])
			fm := f()
			vals[i] = orig
			num := (fp - fm) / (hp + hm)
			ana := float64(analytic[i])
			rel := math.Abs(num-ana) / math.Max(1, math.Abs(ana))
			worst = math.Max(worst, rel)
			if rel > fdTol {
				t.Errorf("%s: d/d%s[%d]: analytic %.6g, numeric %.6g (rel err %.2g)", l.Name(), what, i, ana, num, rel)
				return
			}
		}
		t.Logf("%s: d/d%s worst relative error %.2g", l.Name(), what, worst)
	}
	check("x", x.Data, dx.Data)
	for _, p := range l.Params() {
		check(p.Name, p.Value, p.Grad)
	}
}

// awayFromZero pushes values out of (−margin, margin) so ReLU-like kinks are
// not crossed by a finite-difference step.
func awayFromZero(t Tensor, margin float32) {
	for i, v := range t.Data {
		if v >= 0 && v < margin {
			t.Data[i] = v + margin
		} else if v < 0 && v > -margin {
			t.Data[i] = v - margin
		}
	}
}

func TestGradLinear(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	l, err := NewLinear("fc", 7, 5, InitHe)
	if err != nil {
		t.Fatal(err)
	}
	l.InitParams(rng)
	for i := range l.bias.Value {
		l.bias.Value[i] = float32(rng.Float64() - 0.5)
	}
	checkLayerGrads(t, l, randTensor(rng, 3, 7), true, rng)
}

func TestGradReLU(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	x := randTensor(rng, 4, 2, 3, 3)
	awayFromZero(x, 3*fdEps)
	checkLayerGrads(t, NewReLU("relu"), x, true, rng)
}

func TestGradFlatten(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	checkLayerGrads(t, NewFlatten("flat"), randTensor(rng, 3, 2, 4, 5), true, rng)
}

func TestGradSoftmaxCrossEntropy(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	logits := randTensor(rng, 6, 5)
	for i := range logits.Data {
		logits.Data[i] *= 3
	}
	labels := []int{0, 4, 2, 2, 1, 3}
	const scale = 1.0 / 6
	_, d, err := SoftmaxCrossEntropy(logits, labels, scale)
	if err != nil {
		t.Fatal(err)
	}
	for i := range logits.Data {
		orig := logits.Data[i]
		logits.Data[i] = orig + fdEps
		hp := float64(logits.Data[i]) - float64(orig)
		lp, _, _ := SoftmaxCrossEntropy(logits, labels, scale)
		logits.Data[i] = orig - fdEps
		hm := float64(orig) - float64(logits.Data[i])
		lm, _, _ := SoftmaxCrossEntropy(logits, labels, scale)
		logits.Data[i] = orig
		num := (lp - lm) / (hp + hm)
		if math.Abs(num-float64(d.Data[i])) > 1e-4 {
			t.Errorf("dlogits[%d]: analytic %.6g numeric %.6g", i, d.Data[i], num)
		}
	}
}

func TestGradConv2D(t *testing.T) {
	for _, c := range []struct{ in, out, k, stride, pad, h, w int }{
		{2, 3, 3, 1, 1, 5, 5},
		{1, 2, 3, 2, 0, 7, 6},
		{3, 2, 2, 1, 0, 4, 4},
	} {
		rng := rand.New(rand.NewPCG(uint64(c.k), uint64(c.stride)))
		l, err := NewConv2D("conv", c.in, c.out, c.k, c.stride, c.pad, InitHe)
		if err != nil {
			t.Fatal(err)
		}
		l.InitParams(rng)
		for i := range l.bias.Value {
			l.bias.Value[i] = float32(rng.Float64() - 0.5)
		}
		checkLayerGrads(t, l, randTensor(rng, 2, c.in, c.h, c.w), true, rng)
	}
}

// distinctInput has values whose gaps exceed the finite-difference step, so
// no perturbation changes which element is a window's maximum.
func distinctInput(rng *rand.Rand, shape ...int) Tensor {
	t := NewTensor(shape...)
	for i, j := range rng.Perm(len(t.Data)) {
		t.Data[i] = float32(j)*5*fdEps - 1
	}
	return t
}

func TestGradMaxPool2D(t *testing.T) {
	rng := rand.New(rand.NewPCG(11, 12))
	for _, c := range []struct{ k, stride, h, w int }{{2, 2, 6, 6}, {2, 2, 5, 7}, {3, 1, 5, 5}} {
		l, err := NewMaxPool2D("pool", c.k, c.stride)
		if err != nil {
			t.Fatal(err)
		}
		checkLayerGrads(t, l, distinctInput(rng, 2, 3, c.h, c.w), true, rng)
	}
}

// TestLinearForwardReadsParamValueInPlace: the graph reads Param.Value
// itself, so an in-place update (optimizer step, broadcast) is seen by the
// next Forward; outputs match a float64 reference.
func TestLinearForwardReadsParamValueInPlace(t *testing.T) {
	rng := rand.New(rand.NewPCG(21, 22))
	l, _ := NewLinear("fc", 5, 3, InitHe)
	l.InitParams(rng)
	x := randTensor(rng, 2, 5)
	ref := func() []float64 {
		out := make([]float64, 6)
		for b := 0; b < 2; b++ {
			for o := 0; o < 3; o++ {
				s := float64(l.bias.Value[o])
				for i := 0; i < 5; i++ {
					s += float64(x.Data[b*5+i]) * float64(l.weight.Value[i*3+o])
				}
				out[b*3+o] = s
			}
		}
		return out
	}
	for round := 0; round < 2; round++ {
		y, _, err := l.Forward(x, false)
		if err != nil {
			t.Fatal(err)
		}
		for i, want := range ref() {
			if math.Abs(float64(y.Data[i])-want) > 1e-5 {
				t.Fatalf("round %d: y[%d] = %g, want %g", round, i, y.Data[i], want)
			}
		}
		for i := range l.weight.Value { // in-place update, as an optimizer does
			l.weight.Value[i] *= -2
		}
		l.bias.Value[1] = 3
	}
}
