package pipeline

import (
	"math/rand/v2"
	"testing"
)

// BenchmarkBalance partitions a 200-layer model (a deep ResNet's count)
// into 8 stages.
func BenchmarkBalance(b *testing.B) {
	rng := rand.New(rand.NewPCG(7, 8))
	costs := make([]float64, 200)
	for i := range costs {
		costs[i] = rng.Float64() * 1000
	}
	for b.Loop() {
		if _, err := Balance(costs, 8); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkSimulate1F1B simulates 8 stages x 64 micro-batches.
func BenchmarkSimulate1F1B(b *testing.B) {
	s, _ := OneFOneB(8, 64)
	for b.Loop() {
		if _, err := Simulate(s, 1, 2); err != nil {
			b.Fatal(err)
		}
	}
}
