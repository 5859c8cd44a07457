package collective

import (
	"math"
	"math/rand/v2"
	"testing"
)

// TestBF16KernelsMatchGo: on CPUs with AVX2 the assembly kernels give bit for bit what the
// portable code gives: encoding every bfloat16 value, every tie and its neighbours, NaN
// payloads that rounding would carry into Inf, random bit patterns; decoding (sum and copy)
// every 16-bit pattern.
func TestBF16KernelsMatchGo(t *testing.T) {
	if !haveF16C {
		t.Skip("no AVX2 on this CPU: the Go code runs alone")
	}
	var src []float32
	for h := range 1 << 16 {
		base := uint32(h) << 16
		for _, low := range []uint32{0, 0x7fff, 0x8000, 0x8001, 0xffff, 1} {
			src = append(src, math.Float32frombits(base|low))
		}
	}
	rng := rand.New(rand.NewPCG(8, 9))
	random := 1 << 18
	if raceEnabled {
		random = 1 << 12
	}
	for range random {
		src = append(src, math.Float32frombits(rng.Uint32()))
	}
	src = src[:len(src)&^15]
	asm := make([]byte, bf16WireBytes(len(src)))
	encodeBF16(asm, src) // AVX2 for all of it (a multiple of 16)
	ha := u16View(asm)
	for i, x := range src {
		if want := f32ToBF16(x); ha[i] != want {
			t.Fatalf("element %d (%#08x): AVX2 %#04x, Go %#04x", i, math.Float32bits(x), ha[i], want)
		}
	}
	all := make([]uint16, 1<<16)
	for h := range all {
		all[h] = uint16(h)
	}
	wire := make([]byte, 2<<16)
	copy(u16View(wire), all)
	for _, copyOnly := range []bool{true, false} {
		dst := make([]float32, 1<<16)
		for i := range dst {
			dst[i] = float32(rng.NormFloat64())
		}
		want := clone(dst)
		withoutF16C(func() { decodeBF16(Sum, copyOnly, want, wire) })
		decodeBF16(Sum, copyOnly, dst, wire)
		for h := range dst {
			if math.Float32bits(dst[h]) != math.Float32bits(want[h]) && !(math.IsNaN(float64(dst[h])) && math.IsNaN(float64(want[h]))) {
				t.Fatalf("copy=%v, %#04x: AVX2 %g, Go %g", copyOnly, h, dst[h], want[h])
			}
		}
	}
}

func BenchmarkBF16EncodeGo(b *testing.B)    { withoutF16C(func() { BenchmarkBF16Encode(b) }) }
func BenchmarkBF16DecodeSumGo(b *testing.B) { withoutF16C(func() { BenchmarkBF16DecodeSum(b) }) }

// TestBF16CodecGo runs TestBF16Codec on the portable loops alone (the unrolled encoder,
// its NaN fallback, the decoders), which on amd64 otherwise only see chunk tails.
func TestBF16CodecGo(t *testing.T) { withoutF16C(func() { TestBF16Codec(t) }) }
