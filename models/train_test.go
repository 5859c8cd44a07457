package models_test

import (
	"testing"
	"time"

	"github.com/ringtrain/ringtrain/models"
	"github.com/ringtrain/ringtrain/models/data"
)

// TestMLPLearnsEmbeddedFashionMNIST trains the mlp model for a few hundred
// steps on the embedded subset and checks it generalises: a real end-to-end
// check of layers, loss, optimizer, loader and sampler together.
func TestMLPLearnsEmbeddedFashionMNIST(t *testing.T) {
	if raceOn {
		t.Skip("single-goroutine training: nothing for -race to find, ten times slower")
	}
	ds, err := data.Embedded()
	if err != nil {
		t.Fatal(err)
	}
	m, err := models.Build("mlp", 1)
	if err != nil {
		t.Fatal(err)
	}
	opt, err := models.NewSGD(m.Params(), models.SGDConfig{LR: 0.05, Momentum: 0.9})
	if err != nil {
		t.Fatal(err)
	}
	const batch, steps = 64, 200
	sampler, err := data.NewDistributedSampler(data.SamplerConfig{N: ds.Train.Len(), Batch: batch, Seed: 7})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	for step := 0; step < steps; step++ {
		k := step % sampler.NumBatches()
		if k == 0 {
			sampler.SetEpoch(step / sampler.NumBatches())
		}
		x, labels, err := sampler.Batch(ds.Train, k)
		if err != nil {
			t.Fatal(err)
		}
		m.ZeroGrad()
		logits, saved, err := m.Forward(x, true)
		if err != nil {
			t.Fatal(err)
		}
		_, dl, err := models.SoftmaxCrossEntropy(logits, labels, 1.0/batch)
		if err != nil {
			t.Fatal(err)
		}
		if err := m.BackwardParams(saved, dl, nil); err != nil {
			t.Fatal(err)
		}
		if err := opt.Step(); err != nil {
			t.Fatal(err)
		}
	}
	x, labels := ds.Test.All()
	loss, acc, err := models.Evaluate(m, nil, x, labels, 500)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("after %d steps (%v): test loss %.3f, accuracy %.1f%%", steps, time.Since(start).Round(time.Millisecond), loss, 100*acc)
	if acc < 0.75 {
		t.Fatalf("test accuracy %.1f%% after %d steps, want ≥ 75%%", 100*acc, steps)
	}
}
