package collective

import (
	"math"
	"math/rand/v2"
	"testing"
)

// withoutF16C runs f with the vector kernels switched off (the portable Go code).
func withoutF16C(f func()) {
	saved := haveF16C
	haveF16C = false
	defer func() { haveF16C = saved }()
	f()
}

// TestF16CKernelsMatchGo: on CPUs with F16C the assembly kernels give bit for bit what the
// portable code gives, for encoding (every rounding case, zeros, subnormals, Inf, NaN, the
// saturating exponent) and for decoding every binary16 value.
func TestF16CKernelsMatchGo(t *testing.T) {
	if !haveF16C {
		t.Skip("this CPU lacks AVX2/F16C; the portable code is the only path")
	}
	rng := rand.New(rand.NewPCG(11, 12))
	for trial := range 2000 {
		n := 1 + rng.IntN(300)
		v := make([]float32, n)
		scale := math.Pow(2, float64(rng.IntN(250)-125))
		for i := range v {
			switch rng.IntN(16) {
			case 0:
				v[i] = 0
			case 1:
				v[i] = float32(rng.NormFloat64() * scale * 1e-7)
			case 2:
				if trial%5 == 0 {
					v[i] = float32(math.Inf(1 - 2*rng.IntN(2)))
				}
			case 3:
				if trial%5 == 1 {
					v[i] = float32(math.NaN())
				}
			case 4:
				if trial%7 == 0 {
					v[i] = math.MaxFloat32 * float32(1-2*rng.IntN(2))
				}
			default:
				v[i] = float32(rng.NormFloat64() * scale)
			}
		}
		if got, want := maxAbsFiniteBits(v), maxAbsFiniteSlow(v); got != want {
			t.Fatalf("trial %d: maxAbsFiniteBits = %#x, want %#x", trial, got, want)
		}
		asm := f32Bytes(make([]float32, (fp16WireBytes(n)+3)/4))[:fp16WireBytes(n)]
		gow := f32Bytes(make([]float32, (fp16WireBytes(n)+3)/4))[:fp16WireBytes(n)]
		encodeFP16(asm, v)
		withoutF16C(func() { encodeFP16(gow, v) })
		ha, hg := u16View(asm[4:]), u16View(gow[4:])
		for i := range v {
			nan := ha[i]&0x7c00 == 0x7c00 && ha[i]&0x3ff != 0 && hg[i]&0x7c00 == 0x7c00 && hg[i]&0x3ff != 0
			if ha[i] != hg[i] && !nan || string(asm[:4]) != string(gow[:4]) {
				t.Fatalf("trial %d element %d (%g): F16C encodes %#04x, Go %#04x", trial, i, v[i], ha[i], hg[i])
			}
		}
		for _, op := range []Op{Sum, Max} {
			for _, copyOnly := range []bool{false, true} {
				base := make([]float32, n)
				for i := range base {
					base[i] = float32(rng.NormFloat64())
				}
				a, b := clone(base), clone(base)
				if err := decodeFP16(op, copyOnly, a, gow); err != nil {
					t.Fatal(err)
				}
				withoutF16C(func() { decodeFP16(op, copyOnly, b, gow) })
				for i := range a {
					if math.Float32bits(a[i]) != math.Float32bits(b[i]) && !(math.IsNaN(float64(a[i])) && math.IsNaN(float64(b[i]))) {
						t.Fatalf("trial %d %v copy=%v element %d: F16C decodes %g, Go %g", trial, op, copyOnly, i, a[i], b[i])
					}
				}
			}
		}
	}
	// Every binary16 value through the vector decoder.
	all := make([]uint16, 1<<16)
	for h := range all {
		all[h] = uint16(h)
	}
	dst := make([]float32, len(all))
	f16CopyX8(&dst[0], &all[0], len(all), 1)
	for h, got := range dst {
		want := f16ToF32(uint16(h))
		if math.Float32bits(got) != math.Float32bits(want) && !(math.IsNaN(float64(got)) && math.IsNaN(float64(want))) {
			t.Fatalf("VCVTPH2PS(%#04x) = %g, want %g", h, got, want)
		}
	}
}

func BenchmarkFP16EncodeGo(b *testing.B) { withoutF16C(func() { BenchmarkFP16Encode(b) }) }
func BenchmarkFP16DecodeSumGo(b *testing.B) {
	withoutF16C(func() { BenchmarkFP16DecodeSum(b) })
}
