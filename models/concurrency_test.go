package models

import (
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
)

// TestIndependentModelsConcurrently trains two separate models in parallel
// goroutines (as ranks simulated in one process would) and checks each got
// exactly the parameters of a run alone: gorgonia shares no mutable state
// between separate graphs. Meaningful under -race.
func TestIndependentModelsConcurrently(t *testing.T) {
	train := func(seed int64) []float32 {
		m, err := Build("cnn", seed)
		if err != nil {
			t.Error(err)
			return nil
		}
		opt, _ := NewSGD(m.Params(), SGDConfig{LR: 0.1})
		rng := rand.New(rand.NewPCG(uint64(seed), 0))
		for range 3 {
			x := randTensor(rng, 4, 1, 28, 28)
			labels := []int{1, 2, 3, 4}
			m.ZeroGrad()
			y, s, err := m.Forward(x, true)
			if err != nil {
				t.Error(err)
				return nil
			}
			_, d, _ := SoftmaxCrossEntropy(y, labels, 0.25)
			if err := m.BackwardParams(s, d, nil); err != nil {
				t.Error(err)
				return nil
			}
			opt.Step()
		}
		var out []float32
		for _, p := range m.Params() {
			out = append(out, p.Value...)
		}
		return out
	}
	alone := [2][]float32{train(1), train(2)}
	var wg sync.WaitGroup
	var together [2][]float32
	for i := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			together[i] = train(int64(i + 1))
		}()
	}
	wg.Wait()
	for i := range 2 {
		if !slices.Equal(alone[i], together[i]) {
			t.Errorf("model %d: concurrent training gave other parameters than training alone", i)
		}
	}
}

// TestMicroBatchesInFlightOnSlices runs a model as a two-stage pipeline
// (Slice) with several micro-batches between forward and backward on both
// stages, and compares with the whole model.
func TestMicroBatchesInFlightOnSlices(t *testing.T) {
	m, _ := Build("cnn", 3)
	s1, err := m.Slice(0, 5)
	if err != nil {
		t.Fatal(err)
	}
	s2, _ := m.Slice(5, m.Len())
	rng := rand.New(rand.NewPCG(8, 8))
	xs := []Tensor{randTensor(rng, 3, 1, 28, 28), randTensor(rng, 3, 1, 28, 28), randTensor(rng, 3, 1, 28, 28)}
	dys := []Tensor{randTensor(rng, 3, 10), randTensor(rng, 3, 10), randTensor(rng, 3, 10)}

	m.ZeroGrad()
	var wantDX []Tensor
	for i, x := range xs {
		_, s, _ := m.Forward(x, true)
		dx, err := m.Backward(s, dys[i], nil)
		if err != nil {
			t.Fatal(err)
		}
		wantDX = append(wantDX, dx)
	}
	want := map[string][]float32{}
	for _, p := range m.Params() {
		want[p.Name] = slices.Clone(p.Grad)
	}

	m.ZeroGrad()
	var saved1, saved2 []Saved
	for _, x := range xs { // all forwards first (GPipe-like)
		h, sv1, err := s1.Forward(x, true)
		if err != nil {
			t.Fatal(err)
		}
		_, sv2, err := s2.Forward(h, true)
		if err != nil {
			t.Fatal(err)
		}
		saved1, saved2 = append(saved1, sv1), append(saved2, sv2)
	}
	if saved1[0].Bytes() <= 0 || saved2[0].Bytes() <= 0 {
		t.Errorf("saved bytes %d, %d: want positive", saved1[0].Bytes(), saved2[0].Bytes())
	}
	for _, i := range []int{2, 0, 1} { // backwards in another order
		dh, err := s2.Backward(saved2[i], dys[i], nil)
		if err != nil {
			t.Fatal(err)
		}
		dx, err := s1.Backward(saved1[i], dh, nil)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(dx.Data, wantDX[i].Data) {
			t.Errorf("micro-batch %d: dx differs from the whole model's", i)
		}
	}
	for _, p := range m.Params() {
		if d := relL2(p.Grad, want[p.Name]); d > 1e-6 {
			t.Errorf("%s: pipelined gradient differs by %.2g", p.Name, d)
		}
	}
}
