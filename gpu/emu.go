package gpu

import (
	"fmt"
	"unsafe"

	"github.com/ringtrain/ringtrain/gpu/kernels"
)

// ConvGeom is the geometry of a convolution or pooling launch (see gpu/kernels).
type ConvGeom = kernels.ConvGeom

// Emulator is a Device that runs on the CPU: memory is Go byte slices and
// every kernel is its Go twin from gpu/kernels, so everything above the
// Device interface (layer lowering, layouts, GEMM arguments, optimizers,
// the sync points) is checked against the CPU path without a GPU. It is a
// correctness tool, not a fast path: its GEMM is a plain loop.
type Emulator struct{}

// NewEmulator returns an emulated device.
func NewEmulator() *Emulator { return &Emulator{} }

var _ Device = (*Emulator)(nil)

// Name implements Device.
func (*Emulator) Name() string { return "emu" }

// Describe implements Device.
func (*Emulator) Describe() string { return "emulated device (gpu/kernels Go twins on the CPU)" }

// Alloc implements Device. Memory is word-aligned (backed by uint64s) so
// that it can be viewed as float32, int32 or float64.
func (*Emulator) Alloc(bytes int) (Mem, error) {
	if bytes <= 0 {
		return Mem{}, fmt.Errorf("emu: alloc of %d bytes", bytes)
	}
	words := make([]uint64, (bytes+7)/8)
	return Mem{bytes: bytes, host: unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(words))), bytes)}, nil
}

// Free implements Device.
func (*Emulator) Free(Mem) {}

// Upload implements Device.
func (*Emulator) Upload(dst Mem, src []byte) error {
	if len(src) > len(dst.host) {
		return fmt.Errorf("emu: upload of %d bytes into %d", len(src), len(dst.host))
	}
	copy(dst.host, src)
	return nil
}

// Download implements Device.
func (*Emulator) Download(dst []byte, src Mem) error {
	if len(dst) > len(src.host) {
		return fmt.Errorf("emu: download of %d bytes from %d", len(dst), len(src.host))
	}
	copy(dst, src.host)
	return nil
}

// Zero implements Device.
func (*Emulator) Zero(m Mem, n int) error { clear(f32(m, n)); return nil }

// Copy implements Device.
func (*Emulator) Copy(dst, src Mem, n int) error { copy(f32(dst, n), f32(src, n)); return nil }

// Sync implements Device.
func (*Emulator) Sync() error { return nil }

// Gemm implements Device: row-major C = alpha·op(A)·op(B) + beta·C, summed in
// float32 in k order.
func (*Emulator) Gemm(transA, transB bool, m, n, k int, alpha float32, a, b Mem, beta float32, c Mem) error {
	A, B, C := f32(a, m*k), f32(b, k*n), f32(c, m*n)
	at := func(i, p int) float32 {
		if transA {
			return A[p*m+i]
		}
		return A[i*k+p]
	}
	bt := func(p, j int) float32 {
		if transB {
			return B[j*k+p]
		}
		return B[p*n+j]
	}
	for i := 0; i < m; i++ {
		for j := 0; j < n; j++ {
			var s float32
			for p := 0; p < k; p++ {
				s += at(i, p) * bt(p, j)
			}
			if beta == 0 {
				C[i*n+j] = alpha * s
			} else {
				C[i*n+j] = alpha*s + beta*C[i*n+j]
			}
		}
	}
	return nil
}

// f32 views the first n floats of m; it panics on a short block, which is a
// bug in this package (the CUDA device would read out of bounds).
func f32(m Mem, n int) []float32 {
	if n == 0 {
		return nil
	}
	if 4*n > len(m.host) {
		panic(fmt.Sprintf("gpu/emu: %d floats from a block of %d bytes", n, len(m.host)))
	}
	return unsafe.Slice((*float32)(unsafe.Pointer(unsafe.SliceData(m.host))), n)
}

func i32(m Mem, n int) []int32 {
	if 4*n > len(m.host) {
		panic(fmt.Sprintf("gpu/emu: %d int32s from a block of %d bytes", n, len(m.host)))
	}
	return unsafe.Slice((*int32)(unsafe.Pointer(unsafe.SliceData(m.host))), n)
}

func f64(m Mem, n int) []float64 {
	if 8*n > len(m.host) {
		panic(fmt.Sprintf("gpu/emu: %d float64s from a block of %d bytes", n, len(m.host)))
	}
	return unsafe.Slice((*float64)(unsafe.Pointer(unsafe.SliceData(m.host))), n)
}

func u16(m Mem, n int) []uint16 {
	if 2*n > len(m.host) {
		panic(fmt.Sprintf("gpu/emu: %d halves from a block of %d bytes", n, len(m.host)))
	}
	return unsafe.Slice((*uint16)(unsafe.Pointer(unsafe.SliceData(m.host))), n)
}

func planeSizes(g ConvGeom) (in, out int) {
	return g.B * g.C * g.H * g.W, g.B * g.C * g.OH * g.OW
}

// The kernels: each one is its Go twin over views of the blocks.

func (*Emulator) ReluFwd(x, y Mem, n int) error { kernels.ReluFwd(f32(x, n), f32(y, n)); return nil }
func (*Emulator) ReluBwd(x, dy, dx Mem, n int) error {
	kernels.ReluBwd(f32(x, n), f32(dy, n), f32(dx, n))
	return nil
}
func (*Emulator) Mul(a, b, y Mem, n int) error {
	kernels.Mul(f32(a, n), f32(b, n), f32(y, n))
	return nil
}
func (*Emulator) AddInplace(y, x Mem, n int) error {
	kernels.AddInplace(f32(y, n), f32(x, n))
	return nil
}
func (*Emulator) AddBiasRows(y, b Mem, rows, cols int) error {
	kernels.AddBiasRows(f32(y, rows*cols), f32(b, cols), rows, cols)
	return nil
}
func (*Emulator) ColSum(x, out Mem, rows, cols int, acc bool) error {
	kernels.ColSum(f32(x, rows*cols), f32(out, cols), rows, cols, acc)
	return nil
}
func (*Emulator) RowSum(x, out Mem, rows, cols int, acc bool) error {
	kernels.RowSum(f32(x, rows*cols), f32(out, rows), rows, cols, acc)
	return nil
}
func (*Emulator) ConvOut(src, bias, dst Mem, b, c, hw int) error {
	kernels.ConvOut(f32(src, b*c*hw), f32(bias, c), f32(dst, b*c*hw), b, c, hw)
	return nil
}
func (*Emulator) ConvGradIn(dy, dst Mem, b, c, hw int) error {
	kernels.ConvGradIn(f32(dy, b*c*hw), f32(dst, b*c*hw), b, c, hw)
	return nil
}
func (*Emulator) Im2col(x, col Mem, g ConvGeom) error {
	in, _ := planeSizes(g)
	kernels.Im2col(f32(x, in), f32(col, g.ColRows()*g.ColCols()), g)
	return nil
}
func (*Emulator) Col2im(col, dx Mem, g ConvGeom) error {
	in, _ := planeSizes(g)
	kernels.Col2im(f32(col, g.ColRows()*g.ColCols()), f32(dx, in), g)
	return nil
}
func (*Emulator) MaxPoolFwd(x, y, arg Mem, g ConvGeom) error {
	in, out := planeSizes(g)
	kernels.MaxPoolFwd(f32(x, in), f32(y, out), i32(arg, out), g)
	return nil
}
func (*Emulator) MaxPoolBwd(dy, arg, dx Mem, g ConvGeom) error {
	in, out := planeSizes(g)
	kernels.MaxPoolBwd(f32(dy, out), i32(arg, out), f32(dx, in), g)
	return nil
}
func (*Emulator) SoftmaxXent(logits, labels, rowloss, dlogits Mem, b, c int, scale float32) error {
	kernels.SoftmaxXent(f32(logits, b*c), i32(labels, b), f64(rowloss, b), f32(dlogits, b*c), b, c, scale)
	return nil
}
func (*Emulator) SGDStep(w, g, v Mem, n int, lr, mu, wd float32, nesterov bool) error {
	var vel []float32
	if mu != 0 {
		vel = f32(v, n)
	}
	kernels.SGDStep(f32(w, n), f32(g, n), vel, lr, mu, wd, nesterov)
	return nil
}
func (*Emulator) AdamStep(w, g, m, v Mem, n int, lr, b1, b2, eps, wd, c1, c2 float32) error {
	kernels.AdamStep(f32(w, n), f32(g, n), f32(m, n), f32(v, n), lr, b1, b2, eps, wd, c1, c2)
	return nil
}
func (*Emulator) F32ToF16(x, y Mem, n int, scale float32) error {
	kernels.F32ToF16(f32(x, n), u16(y, n), scale)
	return nil
}
func (*Emulator) F16ToF32(x, y Mem, n int, scale float32) error {
	kernels.F16ToF32(u16(x, n), f32(y, n), scale)
	return nil
}
