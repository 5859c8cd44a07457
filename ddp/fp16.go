package ddp

import "math"

// FP16Bound is the largest error FP16 compression may add to one element of the averaged
// gradient in one step, for a job of n ranks, where a is an upper bound of Σ_ranks |g_r[j]|
// over the elements j of the element's bucket (the sum of the ranks' gradient magnitudes;
// the largest such sum over the bucket will do). It restates the bound of
// collective.Group.AllReduce for Avg: each value is rounded to binary16 (with a
// power-of-two scale per chunk) at most n times around the ring, each rounding erring by
// at most 2^-11 of the chunk's largest magnitude, and every float32 addition and the final
// division by at most 2^-24 relative:
//
//	|avg_fp16[j] − (1/n)·Σ_r g_r[j]|  ≤  ((1+u)^n − 1)·a/n + 2^-24·a/n + 2^-137,   u = 2^-11 + 2^-24
//
// which is about 2^-11·a for small n (0.05% of the gradients' summed magnitude). It holds
// with and without error feedback; with error feedback the values encoded carry the
// residuals of the step before (see Options.ErrorFeedback), and a bounds them too.
func FP16Bound(n int, a float64) float64 {
	if n < 1 {
		n = 1
	}
	u := math.Ldexp(1, -11) + math.Ldexp(1, -24)
	nf := float64(n)
	return (math.Pow(1+u, nf)-1)*a/nf + math.Ldexp(1, -24)*a/nf + math.Ldexp(1, -137)
}
