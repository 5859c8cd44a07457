package vecmath

import (
	"math"
	"unsafe"
)

// poolIdx holds the permutations of the AVX-512 pooling: the even and the
// odd lanes of 32 inputs, then the interleave of two 16-lane vectors back
// into 32 (low half, high half).
var poolIdx = func() (t [64]int32) {
	for i := range 16 {
		t[i], t[16+i] = int32(2*i), int32(2*i+1)
		t[32+i] = int32(i/2 + 16*(i%2))
		t[48+i] = int32(8 + i/2 + 16*(i%2))
	}
	return t
}()

// poolCall is the row geometry of the assembly: per row ow outputs in
// nfull groups of 16 and a tail of mo lanes reading m0, m1 lanes of input.
func poolCall(w int) (ow, nfull, m0, m1, mo int) {
	ow = w / 2
	nfull = ow / 16
	rem := ow - 16*nfull
	in := 2 * rem
	return ow, nfull, 1<<min(in, 16) - 1, 1<<max(in-16, 0) - 1, 1<<rem - 1
}

// MaxPool2x2 writes the maxima of the 2×2 windows (stride 2, no padding) of
// planes planes h×w of x into y (planes of h/2 × w/2): the first maximum
// in row-major order, compared with > as max2 (a NaN in a window's first
// element wins over the rest).
func MaxPool2x2(y, x []float32, planes, h, w int) {
	oh, ow := h/2, w/2
	if planes == 0 || oh == 0 || ow == 0 {
		return
	}
	_ = x[planes*h*w-1]
	_ = y[planes*oh*ow-1]
	if !hasAVX512 {
		maxPool2x2Go(y, x, planes, h, w)
		return
	}
	_, nfull, m0, m1, mo := poolCall(w)
	if h%2 == 0 { // the planes' row pairs follow each other
		maxPool2x2AVX512(&y[0], &x[0], w, ow, planes*oh, nfull, m0, m1, mo, &poolIdx)
		return
	}
	for p := range planes {
		maxPool2x2AVX512(&y[p*oh*ow], &x[p*h*w], w, ow, oh, nfull, m0, m1, mo, &poolIdx)
	}
}

// MaxPool2x2Grad adds each dy value into dx at its window's first maximum
// in x (MaxPool2x2's choice). The other three inputs of a window get +0
// added, which leaves every value but −0 as it was (a fresh dx holds +0).
func MaxPool2x2Grad(dx, dy, x []float32, planes, h, w int) {
	oh, ow := h/2, w/2
	if planes == 0 || oh == 0 || ow == 0 {
		return
	}
	_ = x[planes*h*w-1]
	_ = dx[planes*h*w-1]
	_ = dy[planes*oh*ow-1]
	if !hasAVX512 {
		maxPool2x2GradGo(dx, dy, x, planes, h, w)
		return
	}
	_, nfull, m0, m1, mo := poolCall(w)
	if h%2 == 0 {
		maxPool2x2GradAVX512(&dx[0], &dy[0], &x[0], w, ow, planes*oh, nfull, m0, m1, mo, &poolIdx)
		return
	}
	for p := range planes {
		maxPool2x2GradAVX512(&dx[p*h*w], &dy[p*oh*ow], &x[p*h*w], w, ow, oh, nfull, m0, m1, mo, &poolIdx)
	}
}

func maxPool2x2Go(y, x []float32, planes, h, w int) {
	oh, ow := h/2, w/2
	for p := range planes {
		xp := x[p*h*w:][:h*w]
		yp := y[p*oh*ow:][:oh*ow]
		for oy := range oh {
			r0 := xp[2*oy*w:][:w]
			r1 := xp[(2*oy+1)*w:][:w]
			yr := yp[oy*ow:][:ow]
			for ox := range yr {
				// branch-free: random data would mispredict every comparison
				yr[ox] = max2(max2(r0[2*ox], r0[2*ox+1]), max2(r1[2*ox], r1[2*ox+1]))
			}
		}
	}
}

func maxPool2x2GradGo(dx, dy, x []float32, planes, h, w int) {
	oh, ow := h/2, w/2
	for p := range planes {
		xp := x[p*h*w:][:h*w]
		dxp := dx[p*h*w:][:h*w]
		dyp := dy[p*oh*ow:][:oh*ow]
		for oy := range oh {
			i0 := 2 * oy * w
			r0 := xp[i0:][:w]
			r1 := xp[i0+w:][:w]
			for ox, d := range dyp[oy*ow:][:ow] {
				a, b, c, e := r0[2*ox], r0[2*ox+1], r1[2*ox], r1[2*ox+1]
				// the first of the four holding the maximum: the same > chain
				// as max2, the index computed from the comparisons' 0/1 values
				j := i0 + 2*ox
				kab := j + b2i(b > a)
				kce := j + w + b2i(e > c)
				k := kab + (kce-kab)*b2i(max2(c, e) > max2(a, b))
				dxp[k] += d
			}
		}
	}
}

// max2 is b if b > a, else a, selected on the bits (a CMOV: Go compiles a
// float32 select to a branch).
func max2(a, b float32) float32 {
	ta, tb := math.Float32bits(a), math.Float32bits(b)
	if b > a {
		ta = tb
	}
	return math.Float32frombits(ta)
}

// b2i is 1 for true, 0 for false, read from the bool's byte (a SETcc).
func b2i(b bool) int { return int(*(*uint8)(unsafe.Pointer(&b))) }
