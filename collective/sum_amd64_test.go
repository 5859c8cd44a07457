package collective

import (
	"math"
	"math/rand/v2"
	"testing"
)

// TestSumVectorMatchesScalar checks the AVX2 Sum kernel against one IEEE addition per
// element, bit for bit, over lengths around its 32-element step and its window, at offsets
// that leave the slices unaligned, with infinities, NaNs, signed zeros and subnormals.
func TestSumVectorMatchesScalar(t *testing.T) {
	if !haveF16C {
		t.Skip("this CPU has no AVX2: sumInto runs the portable loop only")
	}
	rng := rand.New(rand.NewPCG(1, 2))
	special := []float32{0, float32(math.Copysign(0, -1)), float32(math.Inf(1)), float32(math.Inf(-1)),
		float32(math.NaN()), math.SmallestNonzeroFloat32, -math.MaxFloat32, math.MaxFloat32, 1e-40}
	value := func() float32 {
		if rng.IntN(8) == 0 {
			return special[rng.IntN(len(special))]
		}
		return float32(rng.NormFloat64() * math.Pow(10, float64(rng.IntN(20)-10)))
	}
	for _, n := range []int{0, 1, 31, 32, 33, 63, 64, 100, 1000, sumWindow - 1, sumWindow, sumWindow + 33, 3*sumWindow + 7} {
		for _, off := range []int{0, 1, 3} {
			dst := make([]float32, n+off)[off:]
			src := make([]float32, n+off+5)[off:] // longer than dst, as reduceInto allows
			for i := range dst {
				dst[i] = value()
			}
			for i := range src {
				src[i] = value()
			}
			want := make([]float32, n)
			for i := range want {
				want[i] = dst[i] + src[i]
			}
			sumInto(dst, src)
			for i := range want {
				if math.Float32bits(dst[i]) != math.Float32bits(want[i]) && !(want[i] != want[i] && dst[i] != dst[i]) {
					t.Fatalf("n=%d off=%d: element %d is %v (%#x), want %v (%#x)", n, off, i, dst[i], math.Float32bits(dst[i]), want[i], math.Float32bits(want[i]))
				}
			}
		}
	}
}
