package vecmath

import (
	"math"
	"math/rand/v2"
	"testing"
)

// TestReluMatchesGo: the assembly gives the portable loops' bits on
// special values (±0, NaN, ±Inf, subnormals) and random ones, at every
// length around the 16- and 64-float steps, and writes nothing past n.
func TestReluMatchesGo(t *testing.T) {
	if !hasAVX512 {
		t.Skip("no AVX-512 here: Relu is reluGo")
	}
	rng := rand.New(rand.NewPCG(1, 2))
	special := []float32{0, float32(math.Copysign(0, -1)), float32(math.NaN()), float32(math.Inf(1)), float32(math.Inf(-1)), 1e-40, -1e-40, 1, -1}
	for n := 0; n <= 150; n++ {
		x, g := make([]float32, n), make([]float32, n)
		for i := range x {
			if rng.IntN(3) == 0 {
				x[i] = special[rng.IntN(len(special))]
			} else {
				x[i] = float32(rng.NormFloat64())
			}
			g[i] = float32(rng.NormFloat64())
		}
		for _, f := range []struct {
			name     string
			asm, ref func(out []float32)
		}{
			{"relu", func(o []float32) { Relu(o, x) }, func(o []float32) { reluGo(o, x) }},
			{"reluGrad", func(o []float32) { ReluGrad(o, g, x) }, func(o []float32) { reluGradGo(o, g, x) }},
		} {
			got, want := make([]float32, n+3), make([]float32, n+3)
			for i := range got {
				got[i], want[i] = 7, 7
			}
			f.asm(got)
			f.ref(want)
			for i := range got {
				if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
					t.Fatalf("%s n=%d: [%d] = %v (x %v), want %v", f.name, n, i, got[i], x[min(i, max(n-1, 0))], want[i])
				}
			}
		}
	}
}
