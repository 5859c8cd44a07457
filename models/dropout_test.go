package models

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
)

// replayDropout restarts the mask stream before every Forward, so finite
// differences see the same mask in every call.
type replayDropout struct{ *Dropout }

func (r replayDropout) Forward(x Tensor, train bool) (Tensor, Saved, error) {
	r.SetState(77, 5)
	return r.Dropout.Forward(x, train)
}

func TestGradDropout(t *testing.T) {
	rng := rand.New(rand.NewPCG(13, 14))
	d, err := NewDropout("drop", 0.4, 1)
	if err != nil {
		t.Fatal(err)
	}
	checkLayerGrads(t, replayDropout{d}, randTensor(rng, 3, 4, 5), true, rng)
	checkLayerGrads(t, d, randTensor(rng, 3, 4, 5), false, rng) // identity
}

func TestDropoutBehaviour(t *testing.T) {
	const p = 0.3
	d, _ := NewDropout("drop", p, 9)
	x := NewTensor(50, 200)
	for i := range x.Data {
		x.Data[i] = 1
	}
	y, _, err := d.Forward(x, true)
	if err != nil {
		t.Fatal(err)
	}
	zeros, sum := 0, 0.0
	for _, v := range y.Data {
		if v == 0 {
			zeros++
		} else if math.Abs(float64(v)-1/(1-p)) > 1e-6 {
			t.Fatalf("kept value %g, want %g", v, 1/(1-p))
		}
		sum += float64(v)
	}
	n := float64(len(y.Data))
	// 10,000 Bernoulli(0.3) draws: 5 standard deviations is ±0.023.
	if frac := float64(zeros) / n; math.Abs(frac-p) > 0.023 {
		t.Errorf("dropped fraction %.3f, want %.2f", frac, p)
	}
	if mean := sum / n; math.Abs(mean-1) > 0.05 {
		t.Errorf("mean %.3f, want ≈1 (inverted dropout preserves expectation)", mean)
	}
	y2, _, _ := d.Forward(x, true)
	if slices.Equal(y.Data, y2.Data) {
		t.Error("two training calls drew the same mask")
	}
	// Same seed and position: same masks.
	e, _ := NewDropout("drop", p, 9)
	y3, _, _ := e.Forward(x, true)
	if !slices.Equal(y.Data, y3.Data) {
		t.Error("same seed gave a different mask")
	}
	// Inference: identity.
	yi, _, _ := d.Forward(x, false)
	if !slices.Equal(yi.Data, x.Data) {
		t.Error("inference is not the identity")
	}
	if _, err := NewDropout("bad", 1, 0); err == nil {
		t.Error("p = 1 accepted")
	}
}
