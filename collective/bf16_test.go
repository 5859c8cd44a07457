package collective

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"testing"
)

// refBF16 rounds x to bfloat16 independently of f32ToBF16: it takes the two bfloat16
// neighbours of x (x truncated, and the next one up in magnitude) and picks the nearer in
// float64 arithmetic, the one with an even last bit on a tie.
func refBF16(x float32) float32 {
	if math.IsNaN(float64(x)) || math.IsInf(float64(x), 0) {
		return x
	}
	b := math.Float32bits(x)
	lo := b &^ 0xffff
	hi := lo + 0x10000 // next bfloat16 away from zero; 0x7f80 (Inf) beyond the largest
	dl := math.Abs(float64(x) - float64(math.Float32frombits(lo)))
	var dh float64
	if hi&0x7fffffff == 0x7f800000 {
		// Past the largest finite bfloat16: IEEE rounds to Inf from the midpoint
		// (2 − 2^-8)·2^127 on, which the float64 distance to the would-be next value gives.
		dh = math.Abs(math.Ldexp(math.Copysign(1, float64(x)), 128) - float64(x))
	} else {
		dh = math.Abs(float64(math.Float32frombits(hi)) - float64(x))
	}
	switch {
	case dl < dh, dl == dh && (lo>>16)&1 == 0:
		return math.Float32frombits(lo)
	}
	return math.Float32frombits(hi)
}

func TestF32ToBF16(t *testing.T) {
	check := func(x float32) {
		got := bf16ToF32(f32ToBF16(x))
		if math.IsNaN(float64(x)) {
			if !math.IsNaN(float64(got)) {
				t.Fatalf("f32ToBF16(NaN %#08x) = %#04x, not a NaN", math.Float32bits(x), f32ToBF16(x))
			}
			return
		}
		if want := refBF16(x); math.Float32bits(got) != math.Float32bits(want) {
			t.Fatalf("f32ToBF16(%g = %#08x) = %g (%#04x), want %g", x, math.Float32bits(x), got, f32ToBF16(x), want)
		}
	}
	// Every bfloat16 value, every midpoint between neighbours (the tie), one float32 ulp
	// either side of it, and the last float32 below the next value.
	for h := range 1 << 16 {
		base := uint32(h) << 16
		check(math.Float32frombits(base))
		if h&0x7f80 == 0x7f80 {
			continue
		}
		check(math.Float32frombits(base | 0x8000))
		check(math.Float32frombits(base | 0x7fff))
		check(math.Float32frombits(base | 0x8001))
		check(math.Float32frombits(base | 0xffff))
	}
	rng := rand.New(rand.NewPCG(15, 16))
	random := 1 << 20
	if raceEnabled {
		random = 1 << 14 // the exhaustive part above covers every rounding case
	}
	for range random {
		check(math.Float32frombits(rng.Uint32()))
	}
	// Quiet NaN payloads that rounding would carry into Inf stay NaN.
	for _, b := range []uint32{0x7f800001, 0xff800001, 0x7f80ffff, 0x7fffffff} {
		check(math.Float32frombits(b))
	}
}

// TestBF16Codec: the unrolled encoder equals f32ToBF16 element by element (NaN and Inf at
// every position of the four-wide groups, odd lengths), and decoding reduces exactly.
func TestBF16Codec(t *testing.T) {
	rng := rand.New(rand.NewPCG(21, 22))
	specials := []float32{float32(math.NaN()), float32(math.Inf(1)), float32(math.Inf(-1)), 0, float32(math.Copysign(0, -1)), math.MaxFloat32, 1e-45}
	for _, n := range []int{0, 1, 3, 4, 5, 17, 1031} {
		src := make([]float32, n)
		for i := range src {
			if rng.IntN(10) == 0 {
				src[i] = specials[rng.IntN(len(specials))]
			} else {
				src[i] = float32(rng.NormFloat64() * math.Pow(10, rng.Float64()*40-20))
			}
		}
		wire := f32Bytes(make([]float32, (bf16WireBytes(n)+3)/4))[:bf16WireBytes(n)]
		encodeBF16(wire, src)
		h := u16View(wire)
		for i, x := range src {
			if want := f32ToBF16(x); h[i] != want {
				t.Fatalf("n=%d: element %d (%g): %#04x, want %#04x", n, i, x, h[i], want)
			}
		}
		for _, op := range []Op{Sum, Max, Min} {
			for _, copyOnly := range []bool{false, true} {
				dst := make([]float32, n)
				for i := range dst {
					dst[i] = float32(rng.NormFloat64())
				}
				want := clone(dst)
				for i := range want {
					v := bf16ToF32(h[i])
					switch {
					case copyOnly:
						want[i] = v
					case op == Max:
						want[i] = max32(want[i], v)
					case op == Min:
						want[i] = min32(want[i], v)
					default:
						want[i] += v
					}
				}
				if err := decodeBF16(op, copyOnly, dst, wire); err != nil {
					t.Fatal(err)
				}
				for i := range dst {
					if math.Float32bits(dst[i]) != math.Float32bits(want[i]) && !(math.IsNaN(float64(dst[i])) && math.IsNaN(float64(want[i]))) {
						t.Fatalf("n=%d %v copy=%v: element %d = %g, want %g", n, op, copyOnly, i, dst[i], want[i])
					}
				}
			}
		}
	}
}

// TestBF16FeedbackResidualExact: the residual encodeBF16Feedback leaves is exactly what the
// rounding dropped: decoded + residual = the value encoded, in float32 without error.
func TestBF16FeedbackResidualExact(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	const n = 4099
	v := make([]float32, n)
	res := make([]float32, n)
	for i := range v {
		v[i] = float32(rng.NormFloat64() * math.Pow(10, rng.Float64()*60-30))
		res[i] = float32(rng.NormFloat64()) * v[i] * 0x1p-9
	}
	want := make([]float32, n)
	for i := range v {
		want[i] = v[i] + res[i]
	}
	wire := f32Bytes(make([]float32, n/2+1))[:bf16WireBytes(n)]
	encodeBF16Feedback(wire, v, res)
	h := u16View(wire)
	for i := range v {
		if d := bf16ToF32(h[i]); d+res[i] != want[i] || math.Abs(float64(res[i])) > math.Abs(float64(want[i]))*0x1p-8 {
			t.Fatalf("element %d: decoded %g + residual %g != %g (or residual beyond 2^-8 of it)", i, d, res[i], want[i])
		}
	}
}

// bf16Bound is bf16.go's bound for one element: a = Σ_ranks |x| of that element (Max, Min:
// the largest |x|), m roundings.
func bf16Bound(a float64, m int, op Op) float64 {
	u := 0x1p-8 + 0x1p-24
	b := (math.Pow(1+u, float64(m))-1)*a + float64(m)*0x1p-134
	if op == Avg {
		b /= float64(m)
	}
	return b
}

// elementWeights returns Σ_ranks |x| per element (the largest |x| for Max and Min).
func elementWeights(inputs [][]float32, op Op) []float64 {
	w := make([]float64, len(inputs[0]))
	for i := range w {
		for _, in := range inputs {
			if op == Max || op == Min {
				w[i] = max(w[i], math.Abs(float64(in[i])))
			} else {
				w[i] += math.Abs(float64(in[i]))
			}
		}
	}
	return w
}

// TestBF16RingBound: AllReduce and ReduceScatter with BF16 at 2..5 ranks, against a float64
// reference, every element within its own bound (bf16.go), bit-identical on every rank, over
// every fabric. Inputs mix magnitudes (1e30, 1e-20, float32 subnormals) in one chunk, which
// bf16 (no shared scale) must keep apart. The test also checks that compression happened: an
// error larger than float32 accumulation alone could make is seen.
func TestBF16RingBound(t *testing.T) {
	noLeaks(t)
	for _, f := range fabrics() {
		for _, n := range fabricSizes(f, []int{2, 3, 4, 5}) {
			t.Run(name(f, n), func(t *testing.T) {
				j := startJob(t, f, n, Options{ChunkBytes: 2 << 10})
				counts := []int{1, 13, n * 1009, 30011}
				if raceEnabled {
					counts = []int{1, 13, n * 1009} // still several chunks per segment
				}
				for ci, count := range counts {
					for _, op := range []Op{Sum, Avg, Max, Min} {
						for _, kind := range []opKind{kindAllReduce, kindReduceScatter} {
							if kind == kindReduceScatter && count%n != 0 {
								continue
							}
							inputs := make([][]float32, n)
							for r := range inputs {
								inputs[r] = mixedInput(uint64(900+ci*10+int(op)), r, count)
							}
							ref, _ := reference(inputs, op)
							w := elementWeights(inputs, op)
							bufs := make([][]float32, n)
							j.mustEach(func(r int, g *Group) error {
								bufs[r] = clone(inputs[r])
								if kind == kindReduceScatter {
									return g.ReduceScatter(ctxT(t), bufs[r], op, BF16)
								}
								return g.AllReduce(ctxT(t), bufs[r], op, BF16)
							})
							what := fmt.Sprintf("%v(count=%d, %v, bf16)", kind, count, op)
							roundings, lo, hi := n, 0, count
							if kind == kindAllReduce {
								sameBits(t, what, bufs)
							} else {
								roundings = n - 1
							}
							worst := 0.0
							for r := range n {
								if kind == kindReduceScatter {
									lo, hi = count/n*r, count/n*(r+1)
								}
								for i := lo; i < hi; i++ {
									got := bufs[r][i]
									bound := bf16Bound(w[i], roundings, op)
									if op == Avg {
										bound = bf16Bound(w[i], roundings, Sum)/float64(n) + 0x1p-24*math.Abs(ref[i])
									}
									if math.IsInf(float64(got), 0) || math.IsNaN(float64(got)) {
										t.Fatalf("%s: rank %d element %d became %g (reference %g)", what, r, i, got, ref[i])
									}
									d := math.Abs(float64(got) - ref[i])
									if !(d <= bound) {
										t.Fatalf("%s: rank %d element %d = %g, reference %g: error %g exceeds the bound %g (Σ|x| = %g)", what, r, i, got, ref[i], d, bound, w[i])
									}
									if w[i] > 0 {
										worst = max(worst, d/w[i])
									}
								}
								if kind == kindAllReduce {
									break // every rank holds the same bits
								}
							}
							if count > 1000 && worst < 0x1p-20 {
								t.Fatalf("%s: largest relative error %g: values did not go through bfloat16", what, worst)
							}
						}
					}
				}
			})
		}
	}
}

// TestAlgorithmsBF16: rd, rhd and hier with BF16, with and without Feedback, within the
// bound for their number of roundings (n+2 covers all of them, fold included), bit-identical
// on every rank.
func TestAlgorithmsBF16(t *testing.T) {
	noLeaks(t)
	for _, n := range []int{2, 3, 4, 5, 6} {
		for _, c := range algoCases(n) {
			t.Run(fmt.Sprintf("N=%d/%s/perHost=%d", n, c.algo, c.perHost), func(t *testing.T) {
				opts := Options{ChunkBytes: 256, Algorithm: c.algo}
				if c.perHost > 0 {
					opts.Hosts = hostsOf(n, c.perHost)
				}
				j := startJob(t, memFabric, n, opts)
				for _, count := range []int{1, 13, 1031} {
					for _, op := range []Op{Sum, Avg, Max} {
						for _, fb := range []bool{false, true} {
							if fb && op == Max {
								continue
							}
							inputs := make([][]float32, n)
							for r := range inputs {
								inputs[r] = mixedInput(uint64(count+int(op)), r, count)
							}
							ref, _ := reference(inputs, op)
							w := elementWeights(inputs, op)
							bufs := make([][]float32, n)
							algos := make([]string, n)
							j.mustEach(func(r int, g *Group) error {
								bufs[r] = clone(inputs[r])
								ro := []ReduceOption{BF16}
								if fb {
									ro = append(ro, Feedback(make([]float32, count)))
								}
								algos[r] = g.Algorithm(count, ro...)
								return g.AllReduce(ctxT(t), bufs[r], op, ro...)
							})
							what := fmt.Sprintf("AllReduce(count=%d, %v, bf16, feedback=%v) with %s", count, op, fb, algos[0])
							sameBits(t, what, bufs)
							for i, got := range bufs[0] {
								bound := bf16Bound(w[i], n+2, Sum)
								if op == Avg {
									bound = bound/float64(n) + 0x1p-24*math.Abs(ref[i])
								}
								if d := math.Abs(float64(got) - ref[i]); !(d <= bound) {
									t.Fatalf("%s: element %d = %g, reference %g: error %g exceeds %g", what, i, got, ref[i], d, bound)
								}
							}
						}
					}
				}
			})
		}
	}
}

// TestCompressionMismatch: one rank calls with BF16 while the others use FP16 (or no
// compression): every rank fails with a *MismatchError naming both encodings.
func TestCompressionMismatch(t *testing.T) {
	noLeaks(t)
	for _, n := range []int{2, 3} {
		for _, other := range []Compression{FP16, NoCompression} {
			t.Run(fmt.Sprintf("N=%d/bf16-vs-%v", n, other), func(t *testing.T) {
				j := startJob(t, memFabric, n, Options{})
				odd := n - 1
				errs := j.each(func(r int, g *Group) error {
					c := other
					if r == odd {
						c = BF16
					}
					return g.AllReduce(ctxT(t), make([]float32, 1000), Sum, c)
				})
				for r, err := range errs {
					var me *MismatchError
					if !errors.As(err, &me) {
						t.Fatalf("rank %d: %v is not a *MismatchError", r, err)
					}
					if me.Rank != odd && me.PeerRank != odd {
						t.Fatalf("rank %d: %v does not name rank %d, the odd one", r, err, odd)
					}
				}
				otherName := map[Compression]string{FP16: "fp16", NoCompression: "fp32"}[other]
				if s := errs[0].Error(); !strings.Contains(s, "bf16") || !strings.Contains(s, otherName) {
					t.Fatalf("error %q does not name both encodings (bf16, %s)", s, otherName)
				}
			})
		}
	}
}

// FuzzBF16Decode: any bytes off the network decode (every pattern is a value) to exactly the
// float32 whose upper half they are, and never panic.
func FuzzBF16Decode(f *testing.F) {
	wire := make([]byte, bf16WireBytes(4))
	encodeBF16(wire, []float32{1, -2, 1e30, 0})
	f.Add(wire)
	f.Add([]byte{0xff, 0xff, 0x80, 0x7f})
	f.Fuzz(func(t *testing.T, in []byte) {
		in = in[:len(in)&^1]
		buf := f32Bytes(make([]float32, (len(in)+3)/4))[:len(in)]
		copy(buf, in)
		dst := make([]float32, len(in)/2)
		if err := decodeBF16(Sum, true, dst, buf); err != nil {
			t.Fatal(err)
		}
		for i, x := range dst {
			if math.Float32bits(x) != uint32(buf[2*i])<<16|uint32(buf[2*i+1])<<24 {
				t.Fatalf("element %d decoded to %#08x from bytes %#02x %#02x", i, math.Float32bits(x), buf[2*i], buf[2*i+1])
			}
		}
	})
}

// FuzzBF16RoundTrip: whatever float32 values a chunk holds, decode(encode(v)) is within 2^-8
// relative (2^-134 absolute below the normal range), Inf stays Inf, NaN stays NaN.
func FuzzBF16RoundTrip(f *testing.F) {
	f.Add(f32Bytes([]float32{0, 1e-45, -1e-40, 3.4e38, float32(math.Inf(-1)), float32(math.NaN())}))
	f.Fuzz(func(t *testing.T, in []byte) {
		v := make([]float32, len(in)/4)
		copy(f32Bytes(v), in)
		wire := f32Bytes(make([]float32, (bf16WireBytes(len(v))+3)/4))[:bf16WireBytes(len(v))]
		encodeBF16(wire, v)
		out := make([]float32, len(v))
		if err := decodeBF16(Sum, true, out, wire); err != nil {
			t.Fatal(err)
		}
		for i, x := range v {
			y := out[i]
			switch {
			case math.IsNaN(float64(x)):
				if !math.IsNaN(float64(y)) {
					t.Fatalf("NaN became %g", y)
				}
			case math.IsInf(float64(y), 0) && !math.IsInf(float64(x), 0):
				if math.Abs(float64(x)) < math.Ldexp(2-0x1p-8, 127) {
					t.Fatalf("%g became %g", x, y)
				}
			case math.Abs(float64(y)-float64(x)) > max(0x1p-8*math.Abs(float64(x)), 0x1p-134):
				t.Fatalf("%g became %g: beyond 2^-8 relative", x, y)
			}
		}
	})
}

func BenchmarkBF16Encode(b *testing.B) {
	src := randomInput(1, 0, 64<<10)
	dst := make([]byte, bf16WireBytes(len(src)))
	b.SetBytes(int64(4 * len(src)))
	for b.Loop() {
		encodeBF16(dst, src)
	}
}

func BenchmarkBF16DecodeSum(b *testing.B) {
	src := randomInput(1, 0, 64<<10)
	wire := make([]byte, bf16WireBytes(len(src)))
	encodeBF16(wire, src)
	dst := make([]float32, len(src))
	b.SetBytes(int64(4 * len(src)))
	for b.Loop() {
		decodeBF16(Sum, false, dst, wire)
	}
}
