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
// with and without error feedback; with error feedback g_r is the gradient plus the carried
// residual, rounded as described at Options.ErrorFeedback.
func FP16Bound(n int, a float64) float64 {
	if n < 1 {
		n = 1
	}
	u := math.Ldexp(1, -11) + math.Ldexp(1, -24)
	nf := float64(n)
	return (math.Pow(1+u, nf)-1)*a/nf + math.Ldexp(1, -24)*a/nf + math.Ldexp(1, -137)
}

// Error feedback rounds a bucket to binary16 values times ONE power-of-two scale for the
// whole bucket, chosen by the rule the ring uses per chunk (the smallest e with
// max|x|·2^-e ≤ 2^15, clamped to [-112, 113]). Since a bucket's maximum is at least any of
// its chunks', the ring's chunk scale 2^c satisfies c ≤ e, and every rounded value
// h·2^e = (h·2^(e−c))·2^c is again a binary16 value (11 significant bits, at most 2^15,
// a multiple of 2^-24) at the ring's scale: the ring's first encoding of this rank's
// contribution is exact, so the rounding error is exactly the residual we keep.

const (
	efMinExp = -112
	efMaxExp = 113
)

// bucketScaleExp returns e for the largest finite magnitude of s.
func bucketScaleExp(s []float32) int {
	var m uint32
	for _, x := range s {
		a := math.Float32bits(x) & 0x7fffffff
		if a > m && a < 0x7f800000 {
			m = a
		}
	}
	if m == 0 {
		return 0
	}
	e := int(m>>23) - 127 - 14 // M = 1.f·2^E: M·2^-e ≤ 2^15 needs e ≥ E−14 ...
	if m&0x7fffff == 0 {
		e-- // ... or E−15 when M is exactly 2^E
	}
	return max(efMinExp, min(efMaxExp, e))
}

// roundF16Grid rounds y (|y| ≤ 2^15 or non-finite) to the nearest binary16 value, ties to
// even, staying in float32: 11 significant bits for |y| ≥ 2^-14, multiples of 2^-24 below.
func roundF16Grid(y float32) float32 {
	b := math.Float32bits(y)
	sign, a := b&0x80000000, b&0x7fffffff
	switch {
	case a >= 0x7f800000: // Inf, NaN
		return y
	case a < 0x38800000: // |y| < 2^-14: binary16 subnormal spacing 2^-24
		// In [0.5, 1) float32 values are 2^-24 apart, so adding 0.5 rounds |y| to that grid
		// (to nearest even); subtracting 0.5 again is exact.
		r := (math.Float32frombits(a) + 0.5) - 0.5
		return math.Float32frombits(math.Float32bits(r) | sign)
	default:
		// Keep 11 of the 24 significant bits: add just under half of the dropped part plus
		// the lowest kept bit (ties to even), then clear the dropped bits. A carry into the
		// exponent is the correct rounding up to the next binade.
		r := (a + 0xfff + (a>>13)&1) &^ 0x1fff
		return math.Float32frombits(r | sign)
	}
}

// pow2f returns 2^k as a float32 for k in [-126, 127].
func pow2f(k int) float32 { return math.Float32frombits(uint32(127+k) << 23) }

// feedback replaces buf by buf+residual rounded to binary16 at one scale and stores the
// rounding error in residual: afterwards buf + residual equals the old buf + residual up
// to one float32 rounding of that sum.
func feedback(buf, residual []float32) {
	for i := range buf {
		buf[i] += residual[i]
	}
	e := bucketScaleExp(buf)
	inv, scale := pow2f(-e), pow2f(e)
	for i, x := range buf {
		q := roundF16Grid(x*inv) * scale
		if e > 112 { // keep the ring's largest exponent from overflowing float32
			q = float32(math.Max(-math.MaxFloat32, math.Min(math.MaxFloat32, float64(q))))
		}
		residual[i] = x - q // exact: q is x rounded to 11 bits (Sterbenz), or 0
		buf[i] = q
	}
}
