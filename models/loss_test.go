package models

import (
	"math"
	"testing"

	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"
)

func TestSoftmaxCrossEntropyValues(t *testing.T) {
	// Two classes, logits (0, ln 3): p = (1/4, 3/4).
	logits := Tensor{Shape: []int{2, 2}, Data: []float32{0, float32(math.Log(3)), 0, float32(math.Log(3))}}
	loss, d, err := SoftmaxCrossEntropy(logits, []int{1, 0}, 0.5)
	if err != nil {
		t.Fatal(err)
	}
	want := 0.5 * (-math.Log(0.75) - math.Log(0.25))
	if math.Abs(loss-want) > 1e-6 {
		t.Errorf("loss %g, want %g", loss, want)
	}
	wantD := []float64{0.5 * 0.25, 0.5 * (0.75 - 1), 0.5 * (0.25 - 1), 0.5 * 0.75}
	for i, w := range wantD {
		if math.Abs(float64(d.Data[i])-w) > 1e-6 {
			t.Errorf("dlogits[%d] = %g, want %g", i, d.Data[i], w)
		}
	}
	// Huge logits stay finite (log-sum-exp with the row maximum).
	big := Tensor{Shape: []int{2, 3}, Data: []float32{1000, 0, -1000, 0, 1e4, 0}}
	loss, d, err = SoftmaxCrossEntropy(big, []int{0, 2}, 1)
	if err != nil || math.IsNaN(loss) || math.IsInf(loss, 0) || math.Abs(loss-1e4) > 1e-3 {
		t.Fatalf("big logits: loss %g, err %v (want 1e4)", loss, err)
	}
	for _, v := range d.Data {
		if math.IsNaN(float64(v)) {
			t.Fatal("NaN gradient for big logits")
		}
	}
	if _, _, err := SoftmaxCrossEntropy(logits, []int{1, 2}, 1); err == nil {
		t.Error("label out of range accepted")
	}
	if _, _, err := SoftmaxCrossEntropy(logits, []int{1}, 1); err == nil {
		t.Error("wrong label count accepted")
	}
	acc, err := Accuracy(big, []int{0, 2})
	if err != nil || acc != 0.5 {
		t.Errorf("accuracy %g (%v), want 0.5", acc, err)
	}
}

// TestGorgoniaLogSoftMaxOverflow documents why SoftmaxCrossEntropy does not
// use gorgonia's LogSoftMax: in gorgonia.org/tensor v0.9.24 the float32
// kernel takes every row's maximum starting from the first element of the
// whole batch, so a later row whose largest logit is in column 0 overflows.
// If this test fails after a dependency upgrade, the bug is fixed and the
// loss could move onto gorgonia.
func TestGorgoniaLogSoftMaxOverflow(t *testing.T) {
	g := G.NewGraph()
	x := G.NewMatrix(g, tensor.Float32, G.WithShape(2, 2), G.WithName("x"))
	lp, err := G.LogSoftMax(x, 1)
	if err != nil {
		t.Fatal(err)
	}
	vm := G.NewTapeMachine(g)
	defer vm.Close()
	// Row 1 = (100, 0): log-softmax is (≈0, −100); exp(100) overflows float32.
	if err := G.Let(x, tensor.New(tensor.WithShape(2, 2), tensor.WithBacking([]float32{0, 0, 100, 0}))); err != nil {
		t.Fatal(err)
	}
	if err := vm.RunAll(); err != nil {
		t.Fatal(err)
	}
	got := lp.Value().Data().([]float32)
	if !math.IsNaN(float64(got[2])) && !math.IsInf(float64(got[2]), 0) {
		t.Fatalf("gorgonia LogSoftMax row 1 = %v: finite, the overflow bug seems fixed", got[2:])
	}
	ours, _, _ := SoftmaxCrossEntropy(Tensor{Shape: []int{2, 2}, Data: []float32{0, 0, 100, 0}}, []int{0, 1}, 1)
	if math.IsNaN(ours) || math.Abs(ours-(math.Log(2)+100)) > 1e-4 {
		t.Fatalf("our loss %g, want %g", ours, math.Log(2)+100)
	}
}
