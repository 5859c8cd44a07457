package models

import (
	"math/rand/v2"
	"testing"
)

// BenchmarkTrainStep measures one SGD training step (forward, loss,
// backward, optimizer) at batch 64 and reports samples/s and GFLOP/s (the
// layers' forward Cost ×3, less the first layer's unneeded dx). Run on one
// core:
//
//	GOMAXPROCS=1 go test -run=^$ -bench=TrainStep -benchtime=20x ./models
//
// go run ./benchmarks/flops prints the same per layer next to the core's
// measured FMA peak; benchmarks/flops/compare.sh sets it beside an older commit.
func BenchmarkTrainStep(b *testing.B) {
	for _, name := range []string{"mlp", "cnn", "mlp-wide"} {
		b.Run(name, func(b *testing.B) {
			const batch = 64
			m, err := Build(name, 1)
			if err != nil {
				b.Fatal(err)
			}
			opt, _ := NewSGD(m.Params(), SGDConfig{LR: 0.01, Momentum: 0.9})
			rng := rand.New(rand.NewPCG(1, 1))
			x := randTensor(rng, batch, 1, 28, 28)
			labels := make([]int, batch)
			for i := range labels {
				labels[i] = rng.IntN(NumClasses)
			}
			step := func() {
				m.ZeroGrad()
				logits, saved, err := m.Forward(x, true)
				if err != nil {
					b.Fatal(err)
				}
				_, d, err := SoftmaxCrossEntropy(logits, labels, 1.0/batch)
				if err != nil {
					b.Fatal(err)
				}
				if err := m.BackwardParams(saved, d, nil); err != nil {
					b.Fatal(err)
				}
				if err := opt.Step(); err != nil {
					b.Fatal(err)
				}
			}
			costs, err := m.Costs(ImageShape())
			if err != nil {
				b.Fatal(err)
			}
			var flops float64
			first := true // the first layer with parameters computes no dx
			for i, c := range costs {
				f := float64(c.FLOPs) * batch
				hasParams := len(m.Layers()[i].Params()) > 0
				if !hasParams || first {
					first = first && !hasParams
					flops += 2 * f
				} else {
					flops += 3 * f
				}
			}
			step() // build and compile the graphs outside the timing
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				step()
			}
			b.ReportMetric(float64(b.N*batch)/b.Elapsed().Seconds(), "samples/s")
			b.ReportMetric(flops*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
		})
	}
}

// BenchmarkLayer times forward+backward of single layers at batch 64, to see
// where a model's step goes; GFLOP/s counts forward Cost ×3 (dW and dx).
func BenchmarkLayer(b *testing.B) {
	conv1, _ := NewConv2D("conv1", 1, 6, 5, 1, 2, InitHe)
	conv2, _ := NewConv2D("conv2", 6, 16, 5, 1, 0, InitHe)
	pool, _ := NewMaxPool2D("pool", 2, 2)
	fc, _ := NewLinear("fc", 784, 512, InitHe)
	cases := []struct {
		l  Layer
		in []int
	}{
		{conv1, []int{64, 1, 28, 28}},
		{conv2, []int{64, 6, 14, 14}},
		{pool, []int{64, 6, 28, 28}},
		{NewReLU("relu"), []int{64, 6, 28, 28}},
		{fc, []int{64, 784}},
	}
	for _, c := range cases {
		b.Run(c.l.Name(), func(b *testing.B) {
			rng := rand.New(rand.NewPCG(1, 1))
			if in, ok := c.l.(Initializer); ok {
				in.InitParams(rng)
			}
			x := randTensor(rng, c.in...)
			y, s, _ := c.l.Forward(x, true)
			dy := randTensor(rng, y.Shape...)
			flops := 3 * float64(c.l.Cost(c.in[1:]).FLOPs) * float64(c.in[0])
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				_, s, _ = c.l.Forward(x, true)
				if _, err := c.l.Backward(s, dy); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(flops*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
		})
	}
}
