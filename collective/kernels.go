package collective

import (
	"errors"
	"unsafe"
)

// The ring moves float32 values as their in-memory bytes (and fp16 values as uint16 bytes):
// reinterpreting a []float32 as []byte costs nothing and allocates nothing, where an explicit
// encoding loop would cost a pass over memory per hop. The wire format is little-endian, so
// this is only correct on little-endian hosts; New refuses to start elsewhere (every platform
// Go supports for this project — amd64, arm64 — is little-endian).

// errBigEndian is returned by New on a big-endian host.
var errBigEndian = errors.New("collective: this host is big-endian; the wire format is little-endian and the ring reinterprets memory, so it is not supported")

func littleEndian() bool {
	x := uint16(1)
	return *(*byte)(unsafe.Pointer(&x)) == 1
}

// f32Bytes views s as its bytes without copying.
func f32Bytes(s []float32) []byte {
	if len(s) == 0 {
		return nil
	}
	return unsafe.Slice((*byte)(unsafe.Pointer(&s[0])), 4*len(s))
}

// u16View views b (whose start must be 2-byte aligned) as uint16s without copying.
func u16View(b []byte) []uint16 {
	if len(b) < 2 {
		return nil
	}
	return unsafe.Slice((*uint16)(unsafe.Pointer(&b[0])), len(b)/2)
}

// f32View views b (whose start must be 4-byte aligned) as float32s without copying.
func f32View(b []byte) []float32 {
	if len(b) < 4 {
		return nil
	}
	return unsafe.Slice((*float32)(unsafe.Pointer(&b[0])), len(b)/4)
}

// reduceInto sets dst[i] = dst[i] op src[i] for i < len(dst); src must be at least as long.
// Avg reduces as Sum (the division happens once, at the end of the ring).
func reduceInto(op Op, dst, src []float32) {
	switch op {
	case Max:
		maxInto(dst, src)
	case Min:
		minInto(dst, src)
	default:
		sumInto(dst, src)
	}
}

// The loops below take a fixed-size window d := dst[i:i+8:i+8] per step, so the compiler
// checks the bounds once per window and not per element, and the body is unrolled by 8 (by 4
// where each element carries a branch). Check with:
//
//	go build -gcflags=-d=ssa/check_bce ./collective
//
// which reports one check per window (the window slicing) and none on the element accesses.
// Measured against copy in BenchmarkKernel*.

func sumInto(dst, src []float32) {
	src = src[:len(dst)]
	i := sumVector(dst, src) // the AVX2 kernel where there is one (sum_amd64.go)
	for ; i+8 <= len(dst); i += 8 {
		d, s := dst[i:i+8:i+8], src[i:i+8:i+8]
		d[0] += s[0]
		d[1] += s[1]
		d[2] += s[2]
		d[3] += s[3]
		d[4] += s[4]
		d[5] += s[5]
		d[6] += s[6]
		d[7] += s[7]
	}
	for ; i < len(dst); i++ {
		dst[i] += src[i]
	}
}

// max32 returns the larger of a and b, NaN if either is NaN.
func max32(a, b float32) float32 {
	if b > a || b != b {
		return b
	}
	return a
}

// min32 returns the smaller of a and b, NaN if either is NaN.
func min32(a, b float32) float32 {
	if b < a || b != b {
		return b
	}
	return a
}

func maxInto(dst, src []float32) {
	src = src[:len(dst)]
	i := 0
	for ; i+4 <= len(dst); i += 4 {
		d, s := dst[i:i+4:i+4], src[i:i+4:i+4]
		d[0] = max32(d[0], s[0])
		d[1] = max32(d[1], s[1])
		d[2] = max32(d[2], s[2])
		d[3] = max32(d[3], s[3])
	}
	for ; i < len(dst); i++ {
		dst[i] = max32(dst[i], src[i])
	}
}

func minInto(dst, src []float32) {
	src = src[:len(dst)]
	i := 0
	for ; i+4 <= len(dst); i += 4 {
		d, s := dst[i:i+4:i+4], src[i:i+4:i+4]
		d[0] = min32(d[0], s[0])
		d[1] = min32(d[1], s[1])
		d[2] = min32(d[2], s[2])
		d[3] = min32(d[3], s[3])
	}
	for ; i < len(dst); i++ {
		dst[i] = min32(dst[i], src[i])
	}
}

// divideBy sets dst[i] /= n. Division (not multiplication by 1/n) keeps Avg correctly rounded.
func divideBy(dst []float32, n float32) {
	i := 0
	for ; i+4 <= len(dst); i += 4 {
		d := dst[i : i+4 : i+4]
		d[0] /= n
		d[1] /= n
		d[2] /= n
		d[3] /= n
	}
	for ; i < len(dst); i++ {
		dst[i] /= n
	}
}
