package collective

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"sync"
)

// fp16 wire compression.
//
// A chunk of n float32 values travels as 4+2n bytes: a little-endian int16 exponent e and its
// bitwise complement (a check word), then n IEEE binary16 values h[i] such that
// value[i] ≈ h[i]·2^e. The sender picks e from the largest
// finite magnitude M of the chunk as the smallest integer with M·2^-e ≤ 2^15, so the scaled
// values fill binary16's top binades: nothing finite overflows to Inf (binary16 stops at
// 65504), and a chunk of tiny gradients is scaled up instead of flushing to zero. Because the
// scale is a power of two, scaling is exact; the only rounding is binary16's own
// round-to-nearest-even to 11 significant bits.
//
// Error of one quantization (derivation of the bound documented on AllReduce): the scaled
// value lies in a binade of binary16 with spacing at most 2^4 (the top binade used, [2^14,2^15])
// and M·2^-e > 2^14, so the absolute error is at most 2^3·2^e < 2^-11·M, or, for values in
// binary16's subnormal range, 2^-25·2^e < 2^-39·M. The exponent is clamped to [-112, 113] so
// that 2^e and 2^-e stay normal float32s; below M = 2^-97 (where the clamp binds) the error is
// at most 2^-137 absolute instead. (One more corner: magnitudes within 2^-12 of MaxFloat32
// would round up to 2^128 = Inf; they are clamped down to 32752·2^113 instead, an error of up
// to 2^-10·M for them alone.)
//
// In the all-gather each chunk is encoded once, by the rank that completed it, which keeps
// the decoded values itself; the others decode and forward the very same bytes, so all ranks
// end with bit-identical results. (Re-encoding decoded values would also be exact: they are
// multiples of 2^(e-24) with at most 11 significant bits and magnitude at most 2^15·2^e, and
// re-encoding picks e or e-1; TestFP16ReencodeExact checks it.)
//
// NaN and ±Inf are ignored when choosing e and pass through as NaN and ±Inf.
//
// The decoder rejects a chunk whose prefix or scale could not have come from encodeFP16, so
// that a stream read with the wrong framing fails instead of decoding garbage (the op header
// carries the chunk size, which is the first defence; this is the second):
//
//   - the check word must be the complement of the exponent. Zero bytes (binary16 zeros read
//     as a prefix) fail, and two binary16 values pass only if one of them is a negative NaN
//     with a payload the encoder never produces;
//   - the exponent is in [-112, 113];
//   - the largest finite |h| of the chunk, m, is what the exponent rule leaves: in
//     [2^14, 2^15] whenever e > -112 and the chunk is not all zeros (M·2^-e in (2^14, 2^15],
//     rounded), at most 2^15 when e = -112 (the clamp scales tiny chunks less), and an
//     all-zero (or all non-finite) chunk has e = 0 (or -112, if its values flushed to zero).

const (
	minScaleExp = -112
	maxScaleExp = 113
	// f16Clamp is the largest binary16 magnitude that, times 2^maxScaleExp, is still a finite
	// float32 (32752·2^113 < MaxFloat32 < 32768·2^113).
	f16Clamp = 0x77ff
)

// fp16WireBytes is the wire size of a chunk of n values.
func fp16WireBytes(n int) int { return 4 + 2*n }

// pow2 returns 2^k exactly; k must be in [-126, 127].
func pow2(k int32) float32 { return math.Float32frombits(uint32(127+k) << 23) }

// f32ToF16 converts x to binary16 bits, rounding to nearest with ties to even. Magnitudes at
// or beyond 65520 become ±Inf; NaN becomes a quiet NaN.
func f32ToF16(x float32) uint16 {
	b := math.Float32bits(x)
	sign := uint16(b>>16) & 0x8000
	a := b & 0x7fffffff
	switch {
	case a >= 0x47800000: // |x| ≥ 2^16, Inf or NaN
		if a > 0x7f800000 {
			return sign | 0x7e00
		}
		return sign | 0x7c00
	case a < 0x38800000: // |x| < 2^-14: a binary16 subnormal or zero
		// In [0.5, 1) float32 values are 2^-24 apart, exactly binary16's subnormal spacing, so
		// adding 0.5 makes the FPU round |x| to that grid (to nearest even); the bits above
		// 0.5's are the binary16 mantissa (1024 meaning the smallest normal, which is right).
		return sign | uint16(math.Float32bits(math.Float32frombits(a)+0.5)-0x3f000000)
	default:
		// Normal: drop 13 of the 23 mantissa bits rounding to nearest even (add just under
		// half, plus the lowest kept bit to break ties towards even), then move the exponent
		// bias from 127 to 15. A carry out of the mantissa bumps the exponent, up to Inf.
		r := a + 0xfff + (a>>13)&1
		return sign | uint16((r>>13)-(112<<10))
	}
}

// f16ToF32 converts binary16 bits to float32 exactly.
func f16ToF32(h uint16) float32 {
	sign := uint32(h&0x8000) << 16
	if h&0x7c00 == 0x7c00 { // Inf or NaN
		return math.Float32frombits(sign | 0x7f800000 | uint32(h&0x3ff)<<13)
	}
	// Placing binary16's exponent and mantissa at float32's positions yields the value times
	// 2^-112, for normal and subnormal inputs alike; one exact multiply restores it.
	return math.Float32frombits(sign|uint32(h&0x7fff)<<13) * 0x1p112
}

// maxAbsFiniteBits returns the float32 bits of the largest finite |x| in s (0 if none).
// For non-negative floats the bit patterns order like the values, so integers compare; the
// main loop keeps four branch-free running maxima and ignores that Inf and NaN exist, and
// only a chunk that holds one (rare) is scanned again, skipping them.
func maxAbsFiniteBits(s []float32) uint32 {
	all := s
	var m0, m1, m2, m3 uint32
	if haveF16C && len(s) >= 16 {
		n := len(s) &^ 15
		m0 = maxAbsBitsX16(&s[0], n)
		s = s[n:]
	}
	i := 0
	for ; i+4 <= len(s); i += 4 {
		v := s[i : i+4 : i+4]
		m0 = max(m0, math.Float32bits(v[0])&0x7fffffff)
		m1 = max(m1, math.Float32bits(v[1])&0x7fffffff)
		m2 = max(m2, math.Float32bits(v[2])&0x7fffffff)
		m3 = max(m3, math.Float32bits(v[3])&0x7fffffff)
	}
	for ; i < len(s); i++ {
		m0 = max(m0, math.Float32bits(s[i])&0x7fffffff)
	}
	if m := max(m0, m1, m2, m3); m < 0x7f800000 {
		return m
	}
	return maxAbsFiniteSlow(all)
}

// maxAbsFiniteSlow is maxAbsFiniteBits for a chunk that holds Inf or NaN.
func maxAbsFiniteSlow(s []float32) uint32 {
	var m uint32
	for _, x := range s {
		if a := math.Float32bits(x) & 0x7fffffff; a > m && a < 0x7f800000 {
			m = a
		}
	}
	return m
}

// scaleExp returns the chunk exponent for a largest magnitude with float32 bits m.
func scaleExp(m uint32) int32 {
	if m == 0 {
		return 0
	}
	e := int32(m>>23) - 127 - 14 // M = 1.f·2^E; M·2^-e ≤ 2^15 needs e ≥ E-14 ...
	if m&0x7fffff == 0 {
		e-- // ... or e ≥ E-15 when M is exactly 2^E.
	}
	return max(minScaleExp, min(maxScaleExp, e))
}

// encodeFP16 writes src as a wire chunk into dst, which must hold fp16WireBytes(len(src))
// bytes starting at a 2-byte aligned address.
func encodeFP16(dst []byte, src []float32) {
	e := scaleExp(maxAbsFiniteBits(src))
	binary.LittleEndian.PutUint16(dst, uint16(e))
	binary.LittleEndian.PutUint16(dst[2:], ^uint16(e))
	out := u16View(dst[4:fp16WireBytes(len(src))])
	inv := pow2(-e)
	out = out[:len(src)]
	whole := out
	if haveF16C && len(src) >= 8 {
		n := len(src) &^ 7
		f32ToF16x8(&out[0], &src[0], n, inv)
		out, src = out[n:], src[n:]
	}
	for i, x := range src {
		// f32ToF16's common cases written out here, as the compiler does not inline it:
		// binary16 normals (the scaled chunk lives mostly in the top binades) and zeros.
		// Subnormals, Inf and NaN take the call.
		b := math.Float32bits(x * inv)
		a := b & 0x7fffffff
		switch {
		case a-0x38800000 < 0x47800000-0x38800000: // 2^-14 ≤ |x| < 2^16
			r := a + 0xfff + (a>>13)&1
			out[i] = uint16(b>>16)&0x8000 | uint16((r>>13)-(112<<10))
		case a == 0:
			out[i] = uint16(b>>16) & 0x8000
		default:
			out[i] = f32ToF16(math.Float32frombits(b))
		}
	}
	if e > 112 {
		saturate(whole)
	}
}

// encodeFP16Feedback is encodeFP16 with error feedback: it adds res into v, encodes v, and
// leaves in res what the encoding lost, v − decoded. The difference is exact in float32 (the
// decoded value is v rounded to a coarser grid, so v − decoded is v's dropped low bits).
// Non-finite differences (v was Inf or NaN) are not carried: res becomes 0 there.
func encodeFP16Feedback(dst []byte, v, res []float32) {
	res = res[:len(v)]
	for i := range v {
		v[i] += res[i]
	}
	encodeFP16(dst, v)
	scale := pow2(int32(int16(binary.LittleEndian.Uint16(dst))))
	h := u16View(dst[4:fp16WireBytes(len(v))])[:len(v)]
	tab := f16Values()
	for i, x := range v {
		r := x - tab[h[i]]*scale
		if r-r != 0 { // Inf or NaN
			r = 0
		}
		res[i] = r
	}
}

// saturate keeps finite binary16 values at or below f16Clamp in magnitude, so that decoding
// with the largest exponent cannot overflow float32.
func saturate(out []uint16) {
	for i, h := range out {
		if a := h & 0x7fff; a > f16Clamp && a < 0x7c00 {
			out[i] = h&0x8000 | f16Clamp
		}
	}
}

// ErrCorruptChunk is wrapped by the error of an fp16 chunk that encodeFP16 cannot have
// written: a stream that lost its framing or was corrupted.
var ErrCorruptChunk = errors.New("collective: corrupt fp16 chunk")

// wireExp reads and checks a chunk's exponent and check word.
func wireExp(src []byte) (int32, error) {
	raw, check := binary.LittleEndian.Uint16(src), binary.LittleEndian.Uint16(src[2:])
	if check != ^raw {
		return 0, fmt.Errorf("%w: scale prefix %#04x %#04x is not an exponent and its complement", ErrCorruptChunk, raw, check)
	}
	e := int32(int16(raw))
	if e < minScaleExp || e > maxScaleExp {
		return 0, fmt.Errorf("%w: exponent %d out of range [%d, %d]", ErrCorruptChunk, e, minScaleExp, maxScaleExp)
	}
	return e, nil
}

// maxAbsFiniteF16 returns the largest finite |h| of s, as binary16 bits (0 if none).
func maxAbsFiniteF16(s []uint16) uint16 {
	all := s
	var m0, m1, m2, m3 uint16
	if haveF16C && len(s) >= 32 {
		n := len(s) &^ 31
		m0 = maxAbsBitsU16X32(&s[0], n)
		s = s[n:]
	}
	i := 0
	for ; i+4 <= len(s); i += 4 {
		v := s[i : i+4 : i+4]
		m0 = max(m0, v[0]&0x7fff)
		m1 = max(m1, v[1]&0x7fff)
		m2 = max(m2, v[2]&0x7fff)
		m3 = max(m3, v[3]&0x7fff)
	}
	for ; i < len(s); i++ {
		m0 = max(m0, s[i]&0x7fff)
	}
	if m := max(m0, m1, m2, m3); m < 0x7c00 {
		return m
	}
	var m uint16
	for _, h := range all { // rare: the chunk holds Inf or NaN
		if a := h & 0x7fff; a > m && a < 0x7c00 {
			m = a
		}
	}
	return m
}

// Binary16 bits of 2^14 and 2^15: the binade encodeFP16 scales a chunk's largest magnitude into.
const (
	f16TwoTo14 = 0x7400
	f16TwoTo15 = 0x7800
)

// checkScale checks that a chunk's largest finite magnitude m (binary16 bits) fits its
// exponent e as encodeFP16 chooses it (see the comment at the top of this file).
func checkScale(e int32, m uint16) error {
	switch {
	case m == 0 && (e == 0 || e == minScaleExp):
		return nil
	case m == 0:
		return fmt.Errorf("%w: exponent %d with no nonzero value (an all-zero chunk has exponent 0)", ErrCorruptChunk, e)
	case e == minScaleExp && m <= f16TwoTo15:
		return nil
	case e == maxScaleExp && m >= f16TwoTo14 && m <= f16Clamp:
		return nil
	case e > minScaleExp && e < maxScaleExp && m >= f16TwoTo14 && m <= f16TwoTo15:
		return nil
	}
	return fmt.Errorf("%w: exponent %d but the largest value is %g·2^%d (the encoder keeps it in [2^14, 2^15])", ErrCorruptChunk, e, f16ToF32(m), e)
}

// f16Values maps every binary16 bit pattern to its float32 value. Decoding by lookup is one
// load per value (the 256 KiB table stays in a core's L2 cache while chunks stream through)
// and measured about twice as fast as converting the bits (BenchmarkFP16DecodeSum). Built
// on first use, from f16ToF32.
var f16Values = sync.OnceValue(func() *[1 << 16]float32 {
	t := new([1 << 16]float32)
	for h := range t {
		t[h] = f16ToF32(uint16(h))
	}
	return t
})

// decodeFP16 reduces (or, with copyOnly, copies) the wire chunk src into dst.
func decodeFP16(op Op, copyOnly bool, dst []float32, src []byte) error {
	e, err := wireExp(src)
	if err != nil {
		return err
	}
	in := u16View(src[4:fp16WireBytes(len(dst))])
	in = in[:len(dst)]
	if err := checkScale(e, maxAbsFiniteF16(in)); err != nil {
		return err
	}
	scale := pow2(e)
	if haveF16C && len(dst) >= 8 && (copyOnly || op == Sum || op == Avg) {
		n := len(dst) &^ 7
		if copyOnly {
			f16CopyX8(&dst[0], &in[0], n, scale)
		} else {
			f16AddX8(&dst[0], &in[0], n, scale)
		}
		dst, in = dst[n:], in[n:]
	}
	tab := f16Values()
	// value·2^e is exact (a power-of-two scale), ±Inf and NaN stay what they are.
	switch {
	case copyOnly:
		for i, h := range in {
			dst[i] = tab[h] * scale
		}
	case op == Max:
		for i, h := range in {
			dst[i] = max32(dst[i], tab[h]*scale)
		}
	case op == Min:
		for i, h := range in {
			dst[i] = min32(dst[i], tab[h]*scale)
		}
	default:
		for i, h := range in {
			dst[i] += tab[h] * scale
		}
	}
	return nil
}
