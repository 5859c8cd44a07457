package ddp

import "math"

// BF16Bound is the largest error BF16 compression may add to one element of the averaged
// gradient in one step, for a job of n ranks, where a is Σ_ranks |g_r[j]| for that element
// itself (bfloat16 has no shared scale: an element's error depends on its own magnitude
// only, unlike FP16Bound's bucket-wide a). It restates collective's bound (bf16.go) for Avg:
// n roundings of at most 2^-8 relative each around the ring, float32 additions and the final
// division of 2^-24 relative:
//
//	|avg_bf16[j] − (1/n)·Σ_r g_r[j]|  ≤  ((1+u)^n − 1)·a/n + 2^-24·a/n + 2^-134,   u = 2^-8 + 2^-24
//
// about 2^-8·a for small n (0.4% of the element's summed magnitude: eight times FP16's
// relative step, but never coarser because a neighbour is large). It holds with and without
// error feedback, a then bounding the values encoded, residuals included.
func BF16Bound(n int, a float64) float64 {
	if n < 1 {
		n = 1
	}
	u := math.Ldexp(1, -8) + math.Ldexp(1, -24)
	nf := float64(n)
	return (math.Pow(1+u, nf)-1)*a/nf + math.Ldexp(1, -24)*a/nf + math.Ldexp(1, -134)
}
