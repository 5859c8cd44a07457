package collective

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/x448/float16"
)

// TestF16ToF32Exhaustive checks the decoder against x448/float16 on every binary16 value.
func TestF16ToF32Exhaustive(t *testing.T) {
	for h := range 1 << 16 {
		got := f16ToF32(uint16(h))
		want := float16.Frombits(uint16(h)).Float32()
		if math.IsNaN(float64(want)) {
			if !math.IsNaN(float64(got)) {
				t.Fatalf("f16ToF32(%#04x) = %g, want NaN", h, got)
			}
			continue
		}
		if math.Float32bits(got) != math.Float32bits(want) {
			t.Fatalf("f16ToF32(%#04x) = %g (%#08x), want %g (%#08x)", h, got, math.Float32bits(got), want, math.Float32bits(want))
		}
	}
}

// TestF32ToF16 checks the encoder against x448/float16 at every binary16 value, at every
// rounding midpoint between neighbours (ties to even) and one float32 ulp either side, and on
// random float32 bit patterns.
func TestF32ToF16(t *testing.T) {
	check := func(x float32) {
		got := f32ToF16(x)
		want := float16.Fromfloat32(x).Bits()
		if math.IsNaN(float64(x)) {
			if got&0x7c00 != 0x7c00 || got&0x3ff == 0 {
				t.Fatalf("f32ToF16(NaN %#08x) = %#04x, not a NaN", math.Float32bits(x), got)
			}
			return
		}
		if got != want {
			t.Fatalf("f32ToF16(%g = %#08x) = %#04x, want %#04x", x, math.Float32bits(x), got, want)
		}
	}
	for h := range 1 << 16 {
		a := float16.Frombits(uint16(h)).Float32()
		b := float16.Frombits(uint16(h + 1)).Float32()
		check(a)
		if h&0x7fff >= 0x7c00 || uint16(h+1)&0x7fff > 0x7c00 || (h+1)&0x8000 != h&0x8000 {
			continue
		}
		mid := float32((float64(a) + float64(b)) / 2) // exact: a and b have 11 significant bits
		check(mid)
		check(math.Nextafter32(mid, float32(math.Inf(1))))
		check(math.Nextafter32(mid, float32(math.Inf(-1))))
	}
	rng := rand.New(rand.NewPCG(5, 6))
	for range 1 << 20 {
		check(math.Float32frombits(rng.Uint32()))
	}
	check(float32(math.Inf(1)))
	check(65519.99)
	check(65520)
}

// TestEncodeFP16MatchesX448: the encoder's inlined fast path and its exponent choice give, for
// every element, x448/float16's rounding of the element times 2^-e, and Inf/NaN survive.
func TestEncodeFP16MatchesX448(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 10))
	wire := f32Bytes(make([]float32, 600))
	for trial := range 3000 {
		v := make([]float32, 1+rng.IntN(1000))
		scale := math.Pow(2, float64(rng.IntN(250)-125))
		for i := range v {
			switch rng.IntN(20) {
			case 0:
				v[i] = 0
			case 1:
				v[i] = float32(math.Copysign(0, -1))
			case 2:
				v[i] = float32(rng.NormFloat64() * scale * 1e-9) // binary16 subnormal after scaling
			case 3:
				v[i] = float32(math.Inf(1 - 2*rng.IntN(2)))
			case 4:
				v[i] = float32(math.NaN())
			default:
				v[i] = float32(rng.NormFloat64() * scale)
			}
		}
		wire = f32Bytes(make([]float32, (fp16WireBytes(len(v))+3)/4))
		encodeFP16(wire, v)
		e := int32(int16(binary.LittleEndian.Uint16(wire)))
		var m float64
		for _, x := range v {
			if a := math.Abs(float64(x)); a > m && !math.IsInf(a, 0) && !math.IsNaN(a) {
				m = a
			}
		}
		if m > 0 && e > minScaleExp && (m*math.Pow(2, -float64(e)) > 32768 || m*math.Pow(2, -float64(e)) <= 16384) {
			t.Fatalf("trial %d: exponent %d puts the largest magnitude %g at %g, want (2^14, 2^15]", trial, e, m, m*math.Pow(2, -float64(e)))
		}
		h := u16View(wire[4:])
		for i, x := range v {
			want := float16.Fromfloat32(x * pow2(-e)).Bits()
			if e > 112 && want&0x7fff > f16Clamp && want&0x7fff < 0x7c00 {
				want = want&0x8000 | f16Clamp
			}
			if math.IsNaN(float64(x)) {
				if h[i]&0x7c00 != 0x7c00 || h[i]&0x3ff == 0 {
					t.Fatalf("trial %d: NaN encoded as %#04x", trial, h[i])
				}
				continue
			}
			if h[i] != want {
				t.Fatalf("trial %d element %d: %g·2^%d encoded %#04x, want %#04x", trial, i, x, -e, h[i], want)
			}
		}
	}
}

// TestFP16ReencodeExact: decoded chunks re-encode to the very same values (the exponent may
// drop by one, the values do not change), which is what keeps values quantized once in the
// all-gather, and finite values never decode to Inf.
func TestFP16ReencodeExact(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	wire := f32Bytes(make([]float32, (fp16WireBytes(1000)+3)/4))
	roundTrip := func(v []float32) []float32 {
		encodeFP16(wire, v)
		d := make([]float32, len(v))
		if err := decodeFP16(Sum, true, d, wire); err != nil {
			t.Fatal(err)
		}
		return d
	}
	for trial := range 2000 {
		v := make([]float32, 1+rng.IntN(1000))
		scale := math.Pow(2, float64(rng.IntN(250)-125))
		for i := range v {
			v[i] = float32(rng.NormFloat64() * scale)
		}
		if trial%7 == 0 {
			v[0] = math.MaxFloat32 // the saturating case
		}
		q := roundTrip(v)
		r := roundTrip(q)
		for i := range q {
			if math.IsInf(float64(q[i]), 0) {
				t.Fatalf("trial %d: finite %g became %g", trial, v[i], q[i])
			}
			if math.Float32bits(q[i]) != math.Float32bits(r[i]) {
				t.Fatalf("trial %d: re-encoding changed element %d: %g -> %g", trial, i, q[i], r[i])
			}
		}
	}
}

// fp16Bound is the documented error bound of AllReduce with FP16 for one element: A is the
// chunk's largest Σ|x| (for Max and Min: largest |x|), n the group size.
func fp16Bound(a float64, n int, op Op) float64 {
	u := 0x1p-11 + 0x1p-24
	b := (math.Pow(1+u, float64(n))-1)*a + float64(n)*0x1p-137
	if op == Avg {
		b /= float64(n)
	}
	return b
}

// chunkMaxima returns, for every element, the largest w[j] over the elements j of its ring
// chunk, following the ring's geometry (segments of count·j/n, k chunks per segment).
func chunkMaxima(w []float64, n, chunkElems int) []float64 {
	count := len(w)
	out := make([]float64, count)
	if count == 0 {
		return out
	}
	x := ringRun{n: n, count: count, k: ceilDiv(ceilDiv(count, n), chunkElems)}
	for seg := range n {
		for c := range x.k {
			lo, hi := x.chunk(seg, c)
			m := 0.0
			for _, v := range w[lo:hi] {
				if !math.IsInf(v, 0) && !math.IsNaN(v) {
					m = max(m, v)
				}
			}
			for i := lo; i < hi; i++ {
				out[i] = m
			}
		}
	}
	return out
}

// mixedInput has regions of very different magnitude: ordinary values, values far beyond
// binary16's range, tiny gradients, and float32 subnormals.
func mixedInput(seed uint64, r, count int) []float32 {
	rng := rand.New(rand.NewPCG(seed, uint64(r)))
	v := make([]float32, count)
	for i := range v {
		var mag float64
		switch (i / 1500) % 5 {
		case 0:
			mag = 1
		case 1:
			mag = 1e30 // far beyond 65504
		case 2:
			mag = 1e-20 // tiny gradients: would flush to zero in plain binary16
		case 3:
			mag = 1e-42 // float32 subnormals
		case 4:
			mag = math.Pow(10, rng.Float64()*60-30) // every magnitude mixed in one chunk
		}
		v[i] = float32(rng.NormFloat64() * mag)
	}
	return v
}

func TestAllReduceFP16Bound(t *testing.T) {
	noLeaks(t)
	const chunkBytes = 2 << 10
	for _, f := range fabrics() {
		for _, n := range fabricSizes(f, allSizes) {
			t.Run(name(f, n), func(t *testing.T) {
				j := startJob(t, f, n, Options{ChunkBytes: chunkBytes})
				for ci, count := range testCounts(n) {
					if count > 30011 {
						count = 30011 // prime, and dozens of chunks per segment: enough here
					}
					for _, op := range []Op{Sum, Avg, Max, Min} {
						inputs := make([][]float32, n)
						for r := range inputs {
							inputs[r] = mixedInput(uint64(500+ci*10+int(op)), r, count)
						}
						ref, _ := reference(inputs, op)
						w := make([]float64, count)
						for i := range w {
							for _, in := range inputs {
								if op == Max || op == Min {
									w[i] = max(w[i], math.Abs(float64(in[i])))
								} else {
									w[i] += math.Abs(float64(in[i]))
								}
							}
						}
						a := chunkMaximaFor(j.groups[0].Algorithm(count, FP16), w, n, chunkBytes/4)
						bufs := make([][]float32, n)
						j.mustEach(func(r int, g *Group) error {
							bufs[r] = clone(inputs[r])
							return g.AllReduce(ctxT(t), bufs[r], op, FP16)
						})
						what := fmt.Sprintf("AllReduce(count=%d, %v, fp16)", count, op)
						sameBits(t, what, bufs)
						for i, got := range bufs[0] {
							bound := fp16BoundFor(j.groups[0].Algorithm(count, FP16), a[i], n, op)
							if op == Avg {
								bound += 0x1p-24 * math.Abs(ref[i])
							}
							if n == 1 {
								bound = 0
							}
							if math.IsInf(float64(got), 0) || math.IsNaN(float64(got)) {
								t.Fatalf("%s: element %d became %g (reference %g)", what, i, got, ref[i])
							}
							if d := math.Abs(float64(got) - ref[i]); !(d <= bound) {
								t.Fatalf("%s: element %d = %g, reference %g: error %g exceeds the bound %g (chunk A = %g)", what, i, got, ref[i], d, bound, a[i])
							}
						}
					}
				}
			})
		}
	}
}

// TestAllReduceFP16NonFinite: NaN and ±Inf in the inputs give what float32 gives.
func TestAllReduceFP16NonFinite(t *testing.T) {
	noLeaks(t)
	const n = 3
	j := startJob(t, memFabric, n, Options{})
	inf := float32(math.Inf(1))
	nan := float32(math.NaN())
	inputs := [][]float32{
		{1, inf, 1, inf, 5, nan, 100},
		{2, 1, -inf, -inf, 6, 1, 0.5},
		{3, 1, 1, 1, 7, 1, 1},
	}
	for _, comp := range []Compression{NoCompression, FP16} {
		bufs := make([][]float32, n)
		j.mustEach(func(r int, g *Group) error {
			bufs[r] = clone(inputs[r])
			return g.AllReduce(ctxT(t), bufs[r], Sum, comp)
		})
		got := bufs[1]
		if got[1] != inf || got[2] != float32(math.Inf(-1)) || !math.IsNaN(float64(got[3])) || !math.IsNaN(float64(got[5])) {
			t.Fatalf("%v: non-finite results %v", comp, got)
		}
		// Finite neighbours of the Inf/NaN keep their precision.
		if math.Abs(float64(got[0])-6) > 6*0x1p-9 || math.Abs(float64(got[4])-18) > 18*0x1p-9 {
			t.Fatalf("%v: finite results next to non-finite ones are off: %v", comp, got)
		}
	}
}

func BenchmarkFP16Encode(b *testing.B) {
	src := randomInput(1, 0, 64<<10)
	dst := make([]byte, fp16WireBytes(len(src)))
	b.SetBytes(int64(4 * len(src)))
	for b.Loop() {
		encodeFP16(dst, src)
	}
}

func BenchmarkFP16DecodeSum(b *testing.B) {
	src := randomInput(1, 0, 64<<10)
	wire := make([]byte, fp16WireBytes(len(src)))
	encodeFP16(wire, src)
	dst := make([]float32, len(src))
	b.SetBytes(int64(4 * len(src)))
	for b.Loop() {
		decodeFP16(Sum, false, dst, wire)
	}
}

// BenchmarkX448Encode is the same conversion with x448/float16's per-value function, for
// comparison with BenchmarkFP16Encode.
func BenchmarkX448Encode(b *testing.B) {
	src := randomInput(1, 0, 64<<10)
	dst := make([]uint16, len(src))
	b.SetBytes(int64(4 * len(src)))
	for b.Loop() {
		for i, x := range src {
			dst[i] = float16.Fromfloat32(x).Bits()
		}
	}
}

func BenchmarkX448Decode(b *testing.B) {
	src := randomInput(1, 0, 64<<10)
	h := make([]uint16, len(src))
	for i, x := range src {
		h[i] = float16.Fromfloat32(x).Bits()
	}
	dst := make([]float32, len(src))
	b.SetBytes(int64(4 * len(src)))
	for b.Loop() {
		for i, v := range h {
			dst[i] += float16.Frombits(v).Float32()
		}
	}
}

// TestFP16RejectsGarbage: chunk prefixes and scales that the encoder cannot have written
// fail with ErrCorruptChunk. Before, the prefix was a bare int32 exponent, and binary16
// zeros read as one (a stream framed with another chunk size) decoded as a valid scale.
func TestFP16RejectsGarbage(t *testing.T) {
	good := func(v ...float32) []byte {
		w := f32Bytes(make([]float32, (fp16WireBytes(len(v))+3)/4))[:fp16WireBytes(len(v))]
		encodeFP16(w, v)
		return w
	}
	chunk := func(e int16, h ...uint16) []byte {
		w := make([]byte, fp16WireBytes(len(h)))
		binary.LittleEndian.PutUint16(w, uint16(e))
		binary.LittleEndian.PutUint16(w[2:], ^uint16(e))
		for i, x := range h {
			binary.LittleEndian.PutUint16(w[4+2*i:], x)
		}
		return w
	}
	vals := make([]float32, 64)
	for i := range vals {
		vals[i] = float32(i%7) - 3
	}
	a, b := good(vals...), good(vals...)
	misframed := append(append([]byte(nil), a[20:]...), b[:20]...) // read 8 values late
	cases := map[string][]byte{
		"zeros":     make([]byte, fp16WireBytes(8)),
		"misframed": misframed,
		"check":     func() []byte { w := good(1, 2, 3); w[2] ^= 1; return w }(),
		"range": func() []byte {
			w := good(1)
			binary.LittleEndian.PutUint16(w, 200)
			binary.LittleEndian.PutUint16(w[2:], ^uint16(200))
			return w
		}(),
		"small":    chunk(5, 0x3c00, 0x0001), // largest value 1·2^5: the encoder would have picked e = -9
		"large":    chunk(0, 0x7bff, 0x3c00), // 65504: above the 2^15 the encoder scales to
		"clamp":    chunk(113, 0x7bff),       // above f16Clamp at the largest exponent: would overflow
		"tiny":     chunk(-111, 0x0400, 0),   // 2^-14·2^-111: the encoder would have used -112
		"zeros-e5": chunk(5, 0, 0x8000),
	}
	for name, w := range cases {
		buf := f32Bytes(make([]float32, (len(w)+3)/4))[:len(w)]
		copy(buf, w)
		if err := decodeFP16(Sum, true, make([]float32, (len(w)-4)/2), buf); !errors.Is(err, ErrCorruptChunk) {
			t.Errorf("%s: decode = %v, want ErrCorruptChunk", name, err)
		}
	}
	// And the legitimate corner cases pass: all zeros, tiny values at the clamped exponent,
	// huge values at the largest exponent, Inf and NaN only.
	for _, v := range [][]float32{{0, 0}, {1e-40, 0}, {1e-30}, {3e38, -3e38}, {float32(math.Inf(1)), float32(math.NaN())}, {32768}, {16384.5}} {
		w := good(v...)
		if err := decodeFP16(Sum, true, make([]float32, len(v)), w); err != nil {
			t.Errorf("%v: %v", v, err)
		}
	}
}
