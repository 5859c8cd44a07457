package main

import (
	"fmt"
	"math"

	"github.com/ringtrain/ringtrain/collective"
)

// Inputs are a hash of (seed, op, world rank, element): every rank can generate any rank's
// input for any op, and so compute any result independently of the collective package.

func mix(x uint64) uint64 {
	x ^= x >> 33
	x *= 0xff51afd7ed558ccd
	x ^= x >> 33
	x *= 0xc4ceb9fe1a85ec53
	x ^= x >> 33
	return x
}

// stream is the key of one (op, rank, purpose) input.
func stream(seed uint64, opIndex, rank int, purpose uint64) uint64 {
	return mix(seed*0x9e3779b97f4a7c15 ^ mix(uint64(opIndex)<<20^uint64(rank)<<4^purpose))
}

const (
	purposeInput   = 1
	purposeGarbage = 2
)

// intAt is element j of an integer input stream: an integer in [-2^mag, 2^mag).
func intAt(key uint64, j, mag int) float32 {
	h := mix(key + uint64(j)*0x9e3779b97f4a7c15)
	return float32(int64(h>>(63-mag)) - 1<<mag)
}

// bitsAt is element j of a bit-pattern stream: any finite float32 (signs, subnormals and
// zeros included), for ops that only move data.
func bitsAt(key uint64, j int) float32 {
	b := uint32(mix(key + uint64(j)*0x9e3779b97f4a7c15))
	if b&0x7f800000 == 0x7f800000 {
		b &^= 0x00800000 // Inf/NaN → largest binade, finite
	}
	return math.Float32frombits(b)
}

func fillInts(buf []float32, key uint64, mag int) {
	for j := range buf {
		buf[j] = intAt(key, j, mag)
	}
}

func fillBits(buf []float32, key uint64) {
	for j := range buf {
		buf[j] = bitsAt(key, j)
	}
}

// reduceExpect is the exact reduction of the members' integer inputs over elements [lo, hi)
// (exact in float32: every partial sum is an integer below 2^24), and abs the largest
// Σ|x| (Sum, Avg) or max |x| (Max, Min) over those elements: the A of the fp16 bound.
func reduceExpect(seed uint64, o *op, members []int, lo, hi int) (want []float32, abs float64) {
	want = make([]float32, hi-lo)
	keys := make([]uint64, len(members))
	for m, r := range members {
		keys[m] = stream(seed, o.index, r, purposeInput)
	}
	n := float32(len(members))
	for j := lo; j < hi; j++ {
		var acc float32
		var a float64
		for m := range members {
			x := intAt(keys[m], j, o.mag)
			switch {
			case m == 0:
				acc = x
			case o.red == collective.Max:
				acc = max(acc, x)
			case o.red == collective.Min:
				acc = min(acc, x)
			default:
				acc += x
			}
			if o.red == collective.Max || o.red == collective.Min {
				a = max(a, math.Abs(float64(x)))
			} else {
				a += math.Abs(float64(x))
			}
		}
		if o.red == collective.Avg {
			acc /= n // one correctly rounded division, as the collective documents
		}
		want[j-lo] = acc
		abs = max(abs, a)
	}
	return want, abs
}

// fp16Bound is the documented error bound of an fp16 reduction whose values are quantized
// q times (n for AllReduce, n-1 for ReduceScatter) in a group of n, for the largest
// magnitude A (see collective.AllReduce): ((1+u)^q − 1)·A + q·2^-137, u = 2^-11 + 2^-24; for
// Avg divided by n plus float32's relative rounding of the division. A is taken over the
// whole buffer, which bounds every chunk's own A, so the check can only be looser than the
// documented bound, never stricter.
func fp16Bound(red collective.Op, q, n int, abs float64) float64 {
	u := math.Ldexp(1, -11) + math.Ldexp(1, -24)
	b := (math.Pow(1+u, float64(q))-1)*abs + float64(q)*math.Ldexp(1, -137)
	if red == collective.Avg {
		b = b/float64(n) + math.Ldexp(1, -24)*(abs/float64(n)+b/float64(n))
	}
	return b
}

// mismatch describes the first differing element of got against want, and how many differ.
type mismatch struct {
	count int
	first int
	got   float32
	want  float32
	bound float64 // fp16 checks: the bound exceeded; 0 for bit-exact checks
}

func (m *mismatch) String() string {
	if m.bound > 0 {
		return fmt.Sprintf("%d elements beyond the fp16 bound %.4g; first [%d] = %v, want %v ± bound (error %.4g)",
			m.count, m.bound, m.first, m.got, m.want, math.Abs(float64(m.got)-float64(m.want)))
	}
	return fmt.Sprintf("%d elements differ; first [%d] = %v (0x%08x), want %v (0x%08x)",
		m.count, m.first, m.got, math.Float32bits(m.got), m.want, math.Float32bits(m.want))
}

// compareBits checks got against want bit for bit; nil when equal.
func compareBits(got, want []float32, offset int) *mismatch {
	var m *mismatch
	for j := range got {
		if math.Float32bits(got[j]) != math.Float32bits(want[j]) {
			if m == nil {
				m = &mismatch{first: offset + j, got: got[j], want: want[j]}
			}
			m.count++
		}
	}
	return m
}

// compareBound checks |got − want| ≤ bound element-wise (and that got is finite); nil when
// every element is within.
func compareBound(got, want []float32, offset int, bound float64) *mismatch {
	var m *mismatch
	bound = max(bound, math.SmallestNonzeroFloat64)
	for j := range got {
		g := float64(got[j])
		if !(math.Abs(g-float64(want[j])) <= bound) { // NaN fails too
			if m == nil {
				m = &mismatch{first: offset + j, got: got[j], want: want[j], bound: bound}
			}
			m.count++
		}
	}
	return m
}
