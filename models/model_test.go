package models

import (
	"math/rand/v2"
	"slices"
	"testing"
)

func TestAccessors(t *testing.T) {
	c, err := NewConv2D("c", 3, 8, 5, 2, 1, InitHe)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := c.Geometry(), (ConvGeometry{In: 3, Out: 8, Kernel: 5, Stride: 2, Pad: 1}); got != want {
		t.Errorf("Geometry() = %+v, want %+v", got, want)
	}
	p, err := NewMaxPool2D("p", 3, 2)
	if err != nil {
		t.Fatal(err)
	}
	if k, s := p.Window(); k != 3 || s != 2 {
		t.Errorf("Window() = %d, %d, want 3, 2", k, s)
	}
	a, b := ImageShape(), ImageShape()
	if !slices.Equal(a, []int{1, 28, 28}) {
		t.Errorf("ImageShape() = %v", a)
	}
	a[0] = 99
	if b[0] != 1 || ImageShape()[0] != 1 {
		t.Error("ImageShape returns a shared slice")
	}
}

// refMask is the mask Dropout.Forward drew before NextMask existed.
func refMask(seed, call uint64, p float64, n int) []float32 {
	rng := rand.New(rand.NewPCG(seed, call))
	mask := make([]float32, n)
	keep := float32(1 / (1 - p))
	for i := range mask {
		if rng.Float64() >= p {
			mask[i] = keep
		}
	}
	return mask
}

func TestDropoutNextMask(t *testing.T) {
	d, _ := NewDropout("drop", 0.25, 0)
	d.SetState(42, 3)
	for call := uint64(3); call < 6; call++ {
		if got := d.NextMask(37); !slices.Equal(got, refMask(42, call, 0.25, 37)) {
			t.Fatalf("call %d: NextMask differs from the reference stream", call)
		}
	}
	if _, calls := d.State(); calls != 6 {
		t.Errorf("calls = %d after three masks from 3, want 6", calls)
	}
	// Forward applies exactly the next mask.
	x := NewTensor(4, 9)
	for i := range x.Data {
		x.Data[i] = float32(i + 1)
	}
	y, _, err := d.Forward(x, true)
	if err != nil {
		t.Fatal(err)
	}
	m := refMask(42, 6, 0.25, len(x.Data))
	for i, v := range y.Data {
		if v != x.Data[i]*m[i] {
			t.Fatalf("Forward element %d = %g, want %g", i, v, x.Data[i]*m[i])
		}
	}
	z, _ := NewDropout("z", 0, 1)
	if z.NextMask(5) != nil {
		t.Error("P = 0: NextMask returned a mask")
	}
	if _, calls := z.State(); calls != 0 {
		t.Error("P = 0: NextMask advanced the stream")
	}
}

// evalModel is a Model that is not a *Sequential.
type evalModel struct{ *Sequential }

func TestEvaluateTakesModelAndLoss(t *testing.T) {
	m, err := Build("mlp", 1)
	if err != nil {
		t.Fatal(err)
	}
	x := NewTensor(6, 1, 28, 28)
	labels := []int{0, 1, 2, 3, 4, 5}
	l1, a1, err := Evaluate(evalModel{m}, nil, x, labels, 4)
	if err != nil {
		t.Fatal(err)
	}
	calls := 0
	double := func(logits Tensor, labels []int, scale float32) (float64, Tensor, error) {
		calls++
		l, d, err := SoftmaxCrossEntropy(logits, labels, scale)
		return 2 * l, d, err
	}
	l2, a2, err := Evaluate(m, double, x, labels, 4)
	if err != nil {
		t.Fatal(err)
	}
	if calls != 2 || l2 != 2*l1 || a1 != a2 {
		t.Errorf("custom loss: %d calls, loss %g (default %g), accuracy %g vs %g", calls, l2, l1, a2, a1)
	}
	if DevicePlacement(m) != "cpu" || DevicePlacement(nil) != "cpu" {
		t.Error("a Sequential is not placed on the cpu")
	}
}
