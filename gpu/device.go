package gpu

import (
	"fmt"
	"unsafe"
)

// Device is the narrow surface the compiled models and optimizers run on:
// memory, copies, a row-major GEMM and one method per kernel of package
// gpu/kernels. Two implementations: the CUDA device (driver API + cuBLAS +
// the embedded PTX, loaded at run time) and the emulator, which runs the
// kernels' Go twins on the CPU so that CI checks everything above this
// interface without a GPU.
//
// Work is issued in order (one stream); Download and Sync wait for all work
// issued before them. A Device is safe for use by one goroutine at a time
// per Model; the CUDA device serialises its calls internally.
type Device interface {
	// Name is where the work runs: "cuda:0", "emu".
	Name() string
	// Describe is a one-line description for logs (product, memory, PCI bus id).
	Describe() string

	// Alloc returns device memory of at least bytes bytes, contents undefined.
	Alloc(bytes int) (Mem, error)
	// Free returns memory to the device.
	Free(m Mem)
	// Upload copies host bytes to m (len(src) ≤ m.Bytes).
	Upload(dst Mem, src []byte) error
	// Download copies the first len(dst) bytes of src to the host, after all
	// work issued before it.
	Download(dst []byte, src Mem) error
	// Zero sets the first n 32-bit words of m to zero.
	Zero(m Mem, n int) error
	// Copy copies n 32-bit words from src to dst.
	Copy(dst, src Mem, n int) error
	// Sync waits until all issued work is done and reports its errors.
	Sync() error

	// Gemm computes, ROW-MAJOR, C = alpha·op(A)·op(B) + beta·C, with op(A)
	// m×k, op(B) k×n and C m×n, every matrix densely packed (leading
	// dimension = its stored row length).
	Gemm(transA, transB bool, m, n, k int, alpha float32, a, b Mem, beta float32, c Mem) error

	kernelSet
}

// kernelSet is one method per kernel of gpu/kernels (see there for the
// exact semantics); lengths are element counts.
type kernelSet interface {
	ReluFwd(x, y Mem, n int) error
	ReluBwd(x, dy, dx Mem, n int) error
	Mul(a, b, y Mem, n int) error
	AddInplace(y, x Mem, n int) error
	AddBiasRows(y, b Mem, rows, cols int) error
	ColSum(x, out Mem, rows, cols int, accumulate bool) error
	RowSum(x, out Mem, rows, cols int, accumulate bool) error
	ConvOut(src, bias, dst Mem, b, c, hw int) error
	ConvGradIn(dy, dst Mem, b, c, hw int) error
	Im2col(x, col Mem, g ConvGeom) error
	Col2im(col, dx Mem, g ConvGeom) error
	MaxPoolFwd(x, y, arg Mem, g ConvGeom) error
	MaxPoolBwd(dy, arg, dx Mem, g ConvGeom) error
	SoftmaxXent(logits, labels, rowloss, dlogits Mem, b, c int, scale float32) error
	SGDStep(w, g, v Mem, n int, lr, mu, wd float32, nesterov bool) error
	AdamStep(w, g, m, v Mem, n int, lr, b1, b2, eps, wd, c1, c2 float32) error
	F32ToF16(x, y Mem, n int, scale float32) error
	F16ToF32(x, y Mem, n int, scale float32) error
}

// Mem is a block of device memory. The zero Mem is "no memory" (a Nesterov-
// less SGD passes it for the unused velocity).
type Mem struct {
	ptr   uint64 // CUDA device pointer
	bytes int
	host  []byte // the emulator's backing store
}

// Ptr is the CUDA device pointer (0 on the emulator), for code that calls
// gpu/cuda directly.
func (m Mem) Ptr() uint64 { return m.ptr }

// Bytes is the block's size.
func (m Mem) Bytes() int { return m.bytes }

// IsZero reports whether m is the zero Mem.
func (m Mem) IsZero() bool { return m.bytes == 0 && m.ptr == 0 && m.host == nil }

// floatBytes views a float32 slice as bytes (no copy).
func floatBytes(f []float32) []byte {
	if len(f) == 0 {
		return nil
	}
	return unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(f))), 4*len(f))
}

// int32Bytes views an int32 slice as bytes (no copy).
func int32Bytes(v []int32) []byte {
	if len(v) == 0 {
		return nil
	}
	return unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(v))), 4*len(v))
}

// float64Bytes views a float64 slice as bytes (no copy).
func float64Bytes(v []float64) []byte {
	if len(v) == 0 {
		return nil
	}
	return unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(v))), 8*len(v))
}

// UploadFloats copies src into m.
func UploadFloats(d Device, m Mem, src []float32) error {
	if 4*len(src) > m.bytes {
		return fmt.Errorf("gpu: upload of %d floats into %d bytes", len(src), m.bytes)
	}
	return d.Upload(m, floatBytes(src))
}

// DownloadFloats copies len(dst) floats out of m.
func DownloadFloats(d Device, dst []float32, m Mem) error {
	if 4*len(dst) > m.bytes {
		return fmt.Errorf("gpu: download of %d floats from %d bytes", len(dst), m.bytes)
	}
	return d.Download(floatBytes(dst), m)
}
