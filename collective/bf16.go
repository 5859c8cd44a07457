package collective

import (
	"math"
)

// bf16 wire compression (Compression BF16).
//
// A chunk of n float32 values travels as 2n bytes: n bfloat16 values, the upper 16 bits of
// each float32 after rounding to nearest with ties to even. bfloat16 keeps float32's 8-bit
// exponent, so every float32 magnitude keeps its binade and no scale is needed (unlike
// fp16.go's per-chunk exponent); what it gives up is 16 of the 24 significant bits.
// Decoding is exact: a bfloat16 is a float32 whose low 16 bits are zero.
//
// Error of one rounding. A normal float32 x in [2^E, 2^(E+1)) rounds to a grid of spacing
// 2^(E-7), so |bf16(x) − x| ≤ 2^(E-8) ≤ 2^-8·|x|: relative 2^-8 per rounding (bfloat16's
// unit roundoff; 8 significant bits). Below float32's smallest normal 2^-126 the grid is
// 2^-133 wide, an absolute error of at most 2^-134. Finite values of magnitude at least
// (2 − 2^-8)·2^127 (within 2^-9 of MaxFloat32) round to ±Inf, as IEEE rounding does; NaN
// stays NaN (quiet) and ±Inf stays ±Inf.
//
// How the roundings compose over a ring AllReduce of n ranks: an element is rounded once per
// reduce-scatter hop (n−1 partial sums) and once more when its owner, having added the last
// contribution, starts the all-gather, which forwards those same bytes unchanged: n
// roundings in all, each of at most 2^-8 of the partial sum being sent. A partial sum's
// magnitude is at most A = Σ_ranks |x_rank[i]| grown by the earlier roundings, so
//
//	|result[i] − Σ_ranks x_rank[i]|  ≤  ((1+u)^n − 1)·A + n·2^-134,   u = 2^-8 + 2^-24
//
// (the 2^-24 is float32's own addition at each hop): ≈ n·2^-8·A for small n. Unlike FP16,
// A is per element, not the largest of a chunk: bf16 never trades a small value's precision
// for a large neighbour's range. For Avg divide by n (and add float32's 2^-24 relative for
// the division); Max and Min round the winner, A = max |x|. rd and rhd round each element
// at most log2(p)+1 times (see rdouble.go): the same bound with that count for n.
// TestBF16RingBound checks it against a float64 reference at 2..5 ranks.
//
// Error feedback (Feedback) works as with FP16: the residual v − bf16(v) is exact in
// float32 (it is v's dropped low 16 bits), and each position is rounded once per op by the
// rank responsible for it.
//
// Speed: on amd64 with AVX2 the kernels of bf16_amd64.s convert 16 (encode) or 8 (decode)
// values per loop; elsewhere, and for the tail of a chunk, the Go loops below. The Go
// encoder alone measured ~5 GB/s of float32 on this machine, below the shared-memory ring's
// ~3 GB/s per direction times the three codec passes a 2-rank AllReduce makes per element,
// which made bf16 slower than fp32 there (benchmarks/results/bf16/codec_bench.txt).
//
// There is nothing in a bf16 chunk to validate (every 16-bit pattern is a value); its
// framing is guarded by the op header, which carries the compression and the chunk size
// (a rank that disagrees fails the op with a *MismatchError).

// bf16WireBytes is the wire size of a chunk of n values.
func bf16WireBytes(n int) int { return 2 * n }

// f32ToBF16 rounds x to bfloat16 bits, to nearest with ties to even.
func f32ToBF16(x float32) uint16 {
	b := math.Float32bits(x)
	if b&0x7fffffff > 0x7f800000 { // NaN: rounding could carry it into Inf
		return uint16(b>>16) | 0x0040
	}
	// Add just under half an ulp of the kept part, plus its lowest bit to break ties towards
	// even; a carry out of the mantissa moves to the next binade (or Inf), as it should.
	return uint16((b + 0x7fff + (b>>16)&1) >> 16)
}

// bf16ToF32 widens bfloat16 bits to float32 exactly.
func bf16ToF32(h uint16) float32 { return math.Float32frombits(uint32(h) << 16) }

// encodeBF16 writes src as a bf16 wire chunk into dst, which must hold bf16WireBytes(len(src))
// bytes starting at a 2-byte aligned address.
func encodeBF16(dst []byte, src []float32) {
	out := u16View(dst[:bf16WireBytes(len(src))])[:len(src)]
	if haveF16C && len(src) >= 16 {
		n := len(src) &^ 15
		f32ToBF16x16(&out[0], &src[0], n)
		out, src = out[n:], src[n:]
	}
	i := 0
	// Four at a time with the NaN test hoisted out: one OR-reduction says whether the group
	// may hold a NaN (or Inf: exponent all ones), which real gradients almost never do.
	for ; i+4 <= len(src); i += 4 {
		v := src[i : i+4 : i+4]
		o := out[i : i+4 : i+4]
		b0, b1, b2, b3 := math.Float32bits(v[0]), math.Float32bits(v[1]), math.Float32bits(v[2]), math.Float32bits(v[3])
		if (b0|b1|b2|b3)&0x7f800000 == 0x7f800000 && (b0&0x7f800000 == 0x7f800000 || b1&0x7f800000 == 0x7f800000 || b2&0x7f800000 == 0x7f800000 || b3&0x7f800000 == 0x7f800000) {
			o[0], o[1], o[2], o[3] = f32ToBF16(v[0]), f32ToBF16(v[1]), f32ToBF16(v[2]), f32ToBF16(v[3])
			continue
		}
		o[0] = uint16((b0 + 0x7fff + (b0>>16)&1) >> 16)
		o[1] = uint16((b1 + 0x7fff + (b1>>16)&1) >> 16)
		o[2] = uint16((b2 + 0x7fff + (b2>>16)&1) >> 16)
		o[3] = uint16((b3 + 0x7fff + (b3>>16)&1) >> 16)
	}
	for ; i < len(src); i++ {
		out[i] = f32ToBF16(src[i])
	}
}

// encodeBF16Feedback is encodeBF16 with error feedback: it adds res into v, encodes v, and
// leaves in res what the rounding lost, v − decoded (exact in float32). Non-finite
// differences (v was Inf or NaN, or rounded up to Inf) are not carried: res becomes 0 there.
func encodeBF16Feedback(dst []byte, v, res []float32) {
	res = res[:len(v)]
	for i := range v {
		v[i] += res[i]
	}
	encodeBF16(dst, v)
	h := u16View(dst[:bf16WireBytes(len(v))])[:len(v)]
	for i, x := range v {
		r := x - bf16ToF32(h[i])
		if r-r != 0 { // Inf or NaN
			r = 0
		}
		res[i] = r
	}
}

// decodeBF16 reduces (or, with copyOnly, copies) the bf16 wire chunk src into dst. Every
// bit pattern is a value, so it cannot fail; the error result keeps the codecs' shape.
func decodeBF16(op Op, copyOnly bool, dst []float32, src []byte) error {
	in := u16View(src[:bf16WireBytes(len(dst))])[:len(dst)]
	if haveF16C && len(dst) >= 8 && (copyOnly || op == Sum || op == Avg) {
		n := len(dst) &^ 7
		if copyOnly {
			bf16CopyX8(&dst[0], &in[0], n)
		} else {
			bf16AddX8(&dst[0], &in[0], n)
		}
		dst, in = dst[n:], in[n:]
	}
	switch {
	case copyOnly:
		for i, h := range in {
			dst[i] = math.Float32frombits(uint32(h) << 16)
		}
	case op == Max:
		for i, h := range in {
			dst[i] = max32(dst[i], math.Float32frombits(uint32(h)<<16))
		}
	case op == Min:
		for i, h := range in {
			dst[i] = min32(dst[i], math.Float32frombits(uint32(h)<<16))
		}
	default:
		i := 0
		for ; i+4 <= len(in); i += 4 {
			d := dst[i : i+4 : i+4]
			s := in[i : i+4 : i+4]
			d[0] += math.Float32frombits(uint32(s[0]) << 16)
			d[1] += math.Float32frombits(uint32(s[1]) << 16)
			d[2] += math.Float32frombits(uint32(s[2]) << 16)
			d[3] += math.Float32frombits(uint32(s[3]) << 16)
		}
		for ; i < len(in); i++ {
			dst[i] += math.Float32frombits(uint32(in[i]) << 16)
		}
	}
	return nil
}

// The codec dispatch: the ring and rd/rhd call these with the op's compression (never
// NoCompression, which moves float32 bytes directly). One switch per chunk, no per-element
// indirection.

// wireBytes is the wire size of a chunk of n values.
func (c Compression) wireBytes(n int) int {
	if c == BF16 {
		return bf16WireBytes(n)
	}
	return fp16WireBytes(n)
}

// prefixBytes is the fixed per-chunk overhead of the wire format (fp16's scale word).
func (c Compression) prefixBytes() int { return c.wireBytes(0) }

// encode writes src as one wire chunk; with res non-nil, with error feedback (Feedback).
func (c Compression) encode(dst []byte, src, res []float32) {
	switch {
	case c == BF16 && res != nil:
		encodeBF16Feedback(dst, src, res)
	case c == BF16:
		encodeBF16(dst, src)
	case res != nil:
		encodeFP16Feedback(dst, src, res)
	default:
		encodeFP16(dst, src)
	}
}

// decode reduces (or copies) one wire chunk into dst.
func (c Compression) decode(op Op, copyOnly bool, dst []float32, src []byte) error {
	if c == BF16 {
		return decodeBF16(op, copyOnly, dst, src)
	}
	return decodeFP16(op, copyOnly, dst, src)
}
