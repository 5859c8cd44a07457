package kernels

import (
	"math"
	"math/rand/v2"
	"testing"
)

// halfValue decodes a finite half without any library: the reference the
// rounding test compares against.
func halfValue(h uint16) float64 {
	e, m := int(h>>10&0x1f), float64(h&0x3ff)
	var v float64
	if e == 0 {
		v = math.Ldexp(m, -24)
	} else {
		v = math.Ldexp(1024+m, e-25)
	}
	if h&0x8000 != 0 {
		v = -v
	}
	return v
}

// refHalf rounds f to the nearest half, ties to the even significand,
// overflowing to ±Inf: for rounding, the code 0x7c00 stands for 2¹⁶, the
// next value after the largest finite half 65504, which is what IEEE
// round-to-nearest does at the top of the range.
func refHalf(f float32) uint16 {
	if f != f {
		return 0x7fff
	}
	var sign uint16
	x := float64(f)
	if math.Signbit(x) {
		sign, x = 0x8000, -x
	}
	val := func(h uint16) float64 {
		if h == 0x7c00 {
			return 65536
		}
		return halfValue(h)
	}
	if x >= 65536 {
		return sign | 0x7c00
	}
	// Largest h in [0, 0x7bff] with val(h) <= x: codes are ordered like values.
	lo, hi := uint16(0), uint16(0x7bff)
	for lo < hi {
		mid := lo + (hi-lo+1)/2
		if val(mid) <= x {
			lo = mid
		} else {
			hi = mid - 1
		}
	}
	if val(lo) == x {
		return sign | lo
	}
	up := lo + 1
	d1, d2 := x-val(lo), val(up)-x // exact: few significant bits
	switch {
	case d1 < d2:
		return sign | lo
	case d2 < d1:
		return sign | up
	case lo&1 == 0:
		return sign | lo
	default:
		return sign | up
	}
}

func TestF16RoundTrip(t *testing.T) {
	for h := 0; h < 1<<16; h++ {
		y := make([]float32, 1)
		F16ToF32([]uint16{uint16(h)}, y, 1)
		isNaN := h&0x7c00 == 0x7c00 && h&0x3ff != 0
		if isNaN {
			if math.Float32bits(y[0]) != 0x7fffffff {
				t.Fatalf("f16_to_f32(%#04x) = %#x, want canonical NaN", h, math.Float32bits(y[0]))
			}
			continue
		}
		if h&0x7fff != 0x7c00 && float64(y[0]) != halfValue(uint16(h)) {
			t.Fatalf("f16_to_f32(%#04x) = %v, want %v", h, y[0], halfValue(uint16(h)))
		}
		back := make([]uint16, 1)
		F32ToF16(y, back, 1)
		if back[0] != uint16(h) {
			t.Fatalf("round trip %#04x → %v → %#04x", h, y[0], back[0])
		}
	}
}

// TestF16Rounding probes every rounding boundary: for each pair of adjacent
// halves of one sign, their midpoint (a tie, exact in float32) and the
// float32 values just either side of it, plus overflow, subnormals and NaN.
func TestF16Rounding(t *testing.T) {
	check := func(f float32) {
		t.Helper()
		got := make([]uint16, 1)
		F32ToF16([]float32{f}, got, 1)
		if want := refHalf(f); got[0] != want {
			t.Fatalf("f32_to_f16(%v = %#08x) = %#04x, want %#04x", f, math.Float32bits(f), got[0], want)
		}
	}
	for h := uint16(0); h < 0x7c00; h++ {
		a, b := halfValue(h), 65536.0
		if h < 0x7bff {
			b = halfValue(h + 1)
		}
		mid := float32((a + b) / 2)
		if float64(mid) != (a+b)/2 {
			t.Fatalf("midpoint after %#04x not exact in float32", h)
		}
		for _, f := range []float32{float32(a), mid, math.Nextafter32(mid, 0), math.Nextafter32(mid, float32(math.Inf(1)))} {
			check(f)
			check(-f)
		}
	}
	inf := float32(math.Inf(1))
	for _, f := range []float32{65504, 65519.99, 65520, 65536, 1e6, inf, -65520, -inf,
		0x1p-24, 0x1p-25, math.Nextafter32(0x1p-25, 1), 0x1.8p-25, 0x1p-26, 1e-40, negZero, 0,
		float32(math.NaN())} {
		check(f)
	}
	got := make([]uint16, 5)
	F32ToF16([]float32{65520, 0x1p-25, math.Nextafter32(0x1p-25, 1), 0x1.8p-24, float32(math.NaN())}, got, 1)
	want := []uint16{0x7c00, 0x0000, 0x0001, 0x0002, 0x7fff} // tie to inf; tie to 0; above tie; 1.5 ulp → even 2
	for i := range got {
		if got[i] != want[i] {
			t.Errorf("case %d: %#04x, want %#04x", i, got[i], want[i])
		}
	}
	// Random bit patterns.
	r := rand.New(rand.NewPCG(19, 20))
	for i := 0; i < 200000; i++ {
		f := math.Float32frombits(r.Uint32())
		check(f)
	}
}

func TestF16Scale(t *testing.T) {
	x := []float32{1, -2.5, 1e5, 3e-3}
	y := make([]uint16, len(x))
	F32ToF16(x, y, 0.5)
	for i, v := range x {
		if y[i] != refHalf(v*0.5) {
			t.Errorf("scaled f32_to_f16(%v) = %#04x, want %#04x", v, y[i], refHalf(v*0.5))
		}
	}
	z := make([]float32, len(y))
	F16ToF32(y, z, 2)
	for i := range z {
		if want := float32(halfValue(y[i])) * 2; !same32(z[i], want) {
			t.Errorf("scaled f16_to_f32(%#04x) = %v, want %v", y[i], z[i], want)
		}
	}
}
