package collective

import (
	"fmt"
	"unsafe"
)

// Number is the element types every collective and Send/Recv accept through the generic
// functions (AllReduce, Reduce, Gather, AllToAll, ... of this package). The ring moves each
// type as its own little-endian bytes and reduces it with a kernel of its own type: int64
// values are never rounded through float32.
type Number interface {
	float32 | float64 | int32 | int64
}

// dtypeOf returns the header's dtype for T.
func dtypeOf[T Number]() dtype {
	var z T
	switch any(z).(type) {
	case float32:
		return dtF32
	case float64:
		return dtF64
	case int32:
		return dtI32
	default: // int64: Number has no other member
		return dtI64
	}
}

// size is the bytes of one element (1 for bytes, 0 for no payload).
func (d dtype) size() int {
	switch d {
	case dtF32, dtI32:
		return 4
	case dtF64, dtI64:
		return 8
	case dtBytes:
		return 1
	}
	return 0
}

// float reports whether the type has a division for Avg.
func (d dtype) float() bool { return d == dtF32 || d == dtF64 }

// asBytes views s as its bytes without copying.
func asBytes[T Number](s []T) []byte {
	if len(s) == 0 {
		return nil
	}
	return unsafe.Slice((*byte)(unsafe.Pointer(&s[0])), len(s)*int(unsafe.Sizeof(s[0])))
}

// viewAs views b as elements of T without copying; b's start must be aligned for T (the
// caller's buffers are; so is the group's scratch, allocated as uint64s).
func viewAs[T Number](b []byte) []T {
	var z T
	n := len(b) / int(unsafe.Sizeof(z))
	if n == 0 {
		return nil
	}
	return unsafe.Slice((*T)(unsafe.Pointer(&b[0])), n)
}

// alignedBytes allocates n bytes aligned for every Number type.
func alignedBytes(n int) []byte {
	return unsafe.Slice((*byte)(unsafe.Pointer(&make([]uint64, (n+7)/8+1)[0])), n)
}

// checkReduction refuses reductions a type does not define. Avg divides the sum by the group
// size, which integers cannot do exactly: rather than pick a rounding for the user, Avg is
// refused for int32 and int64 (reduce with Sum and divide as the program needs).
func checkReduction(call string, dt dtype, op Op) error {
	if !op.valid() {
		return fmt.Errorf("collective: %s: invalid reduction %v", call, op)
	}
	if op == Avg && !dt.float() {
		return fmt.Errorf("collective: %s: Avg is not defined for %v (integer division would round): reduce with Sum and divide", call, dt)
	}
	return nil
}

// reduceBytes sets dst[i] = dst[i] op src[i] over the elements of type dt that dst holds; src
// must be at least as long. Avg reduces as Sum (the division happens once, at the end).
func reduceBytes(dt dtype, op Op, dst, src []byte) {
	switch dt {
	case dtF32:
		if len(dst) >= 4 {
			reduceInto(op, f32View(dst), f32View(src))
		}
	case dtF64:
		reduceT(op, viewAs[float64](dst), viewAs[float64](src))
	case dtI32:
		reduceT(op, viewAs[int32](dst), viewAs[int32](src))
	case dtI64:
		reduceT(op, viewAs[int64](dst), viewAs[int64](src))
	}
}

// divideBytes divides the float elements of dst by n (Avg's last step; integers refuse Avg).
func divideBytes(dt dtype, dst []byte, n int) {
	switch dt {
	case dtF32:
		divideBy(f32View(dst), float32(n))
	case dtF64:
		d := viewAs[float64](dst)
		for i := range d {
			d[i] /= float64(n)
		}
	}
}

// reduceT is the kernel of the types other than float32 (which has the hand-unrolled
// kernels of kernels.go): one generic body, instantiated per type by the compiler (each
// Number has its own GC shape, so there is no dictionary indirection in the loop). Integer
// sums wrap around on overflow, as Go's integer addition does. For floats, a NaN on either
// side makes Max and Min NaN (b != b is false for integers).
func reduceT[T Number](op Op, dst, src []T) {
	src = src[:len(dst)]
	switch op {
	case Max:
		for i, b := range src {
			if b > dst[i] || b != b {
				dst[i] = b
			}
		}
	case Min:
		for i, b := range src {
			if b < dst[i] || b != b {
				dst[i] = b
			}
		}
	default:
		i := 0
		for ; i+4 <= len(dst); i += 4 {
			d, s := dst[i:i+4:i+4], src[i:i+4:i+4]
			d[0] += s[0]
			d[1] += s[1]
			d[2] += s[2]
			d[3] += s[3]
		}
		for ; i < len(dst); i++ {
			dst[i] += src[i]
		}
	}
}

// vec is a caller's buffer as the ops see it: its dtype, its length in elements and its
// memory; f32 is the same memory as a []float32 when the dtype is fp32 (fp16 compression and
// the algorithms of algo.go work on it), nil otherwise.
type vec struct {
	dt  dtype
	n   int
	raw []byte
	f32 []float32
}

func vecOf[T Number](s []T) vec {
	v := vec{dt: dtypeOf[T](), n: len(s), raw: asBytes(s)}
	if f, ok := any(s).([]float32); ok {
		v.f32 = f
	}
	return v
}
