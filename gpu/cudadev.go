package gpu

import (
	"fmt"
	"unsafe"

	"github.com/ringtrain/ringtrain/gpu/cuda"
	"github.com/ringtrain/ringtrain/gpu/kernels"
)

// CUDADevice is a Device on an NVIDIA GPU: memory and copies through the
// CUDA driver API, GEMMs through cuBLAS (FP32, no TF32) and every other
// operation through the kernels of gpu/kernels, JIT-compiled from their
// embedded PTX when the device is opened. All of it is loaded at run time
// (gpu/cuda), so binaries start on machines without CUDA.
type CUDADevice struct {
	ctx   *cuda.Context
	funcs map[string]cuda.Function
}

var _ Device = (*CUDADevice)(nil)

// OpenCUDA opens CUDA device ordinal (as CUDA numbers devices: see Select)
// and loads the kernels onto it.
func OpenCUDA(ordinal int) (*CUDADevice, error) {
	drv, err := cuda.Load()
	if err != nil {
		return nil, err
	}
	ctx, err := drv.Open(ordinal)
	if err != nil {
		return nil, err
	}
	mod, err := ctx.LoadModule(kernels.PTX)
	if err != nil {
		ctx.Close()
		return nil, fmt.Errorf("gpu: loading the kernels onto cuda:%d: %w", ordinal, err)
	}
	d := &CUDADevice{ctx: ctx, funcs: make(map[string]cuda.Function, len(kernels.Names))}
	for _, name := range kernels.Names {
		f, err := mod.Function(name)
		if err != nil {
			ctx.Close()
			return nil, fmt.Errorf("gpu: kernel %s on cuda:%d: %w", name, ordinal, err)
		}
		d.funcs[name] = f
	}
	return d, nil
}

// Context is the underlying CUDA context (for events and memory figures).
func (d *CUDADevice) Context() *cuda.Context { return d.ctx }

// Close releases the device.
func (d *CUDADevice) Close() error { return d.ctx.Close() }

// Name implements Device.
func (d *CUDADevice) Name() string { return fmt.Sprintf("cuda:%d", d.ctx.Info().Ordinal) }

// Describe implements Device.
func (d *CUDADevice) Describe() string {
	in := d.ctx.Info()
	return fmt.Sprintf("cuda:%d %s, %.1f GiB, PCI %s, sm_%d%d", in.Ordinal, in.Name, float64(in.TotalMem)/(1<<30), in.PCIBusID, in.Major, in.Minor)
}

// Alloc implements Device.
func (d *CUDADevice) Alloc(bytes int) (Mem, error) {
	p, err := d.ctx.Alloc(bytes)
	if err != nil {
		return Mem{}, err
	}
	return Mem{ptr: uint64(p), bytes: bytes}, nil
}

// Free implements Device.
func (d *CUDADevice) Free(m Mem) {
	if m.ptr != 0 {
		d.ctx.Free(cuda.DevicePtr(m.ptr))
	}
}

// Upload implements Device: straight from Go memory. Staging through a
// pinned buffer (a Go copy into cuMemAllocHost memory, then the DMA) was
// measured slower on the H200 machine: 1.65 ms against 1.25 ms for a 12.8 MB
// batch (benchmarks/results/gpu/run2).
func (d *CUDADevice) Upload(dst Mem, src []byte) error {
	if len(src) > dst.bytes {
		return fmt.Errorf("gpu: upload of %d bytes into %d", len(src), dst.bytes)
	}
	if len(src) == 0 {
		return nil
	}
	return d.ctx.HtoD(cuda.DevicePtr(dst.ptr), unsafe.Pointer(unsafe.SliceData(src)), len(src))
}

// Download implements Device.
func (d *CUDADevice) Download(dst []byte, src Mem) error {
	if len(dst) > src.bytes {
		return fmt.Errorf("gpu: download of %d bytes from %d", len(dst), src.bytes)
	}
	if len(dst) == 0 {
		return nil
	}
	return d.ctx.DtoH(unsafe.Pointer(unsafe.SliceData(dst)), cuda.DevicePtr(src.ptr), len(dst))
}

// Zero implements Device.
func (d *CUDADevice) Zero(m Mem, n int) error {
	if n == 0 {
		return nil
	}
	return d.ctx.Memset32(cuda.DevicePtr(m.ptr), 0, n)
}

// Copy implements Device.
func (d *CUDADevice) Copy(dst, src Mem, n int) error {
	if n == 0 {
		return nil
	}
	return d.ctx.DtoD(cuda.DevicePtr(dst.ptr), cuda.DevicePtr(src.ptr), 4*n)
}

// Sync implements Device.
func (d *CUDADevice) Sync() error { return d.ctx.Sync() }

// Gemm implements Device. cuBLAS is column-major; a row-major matrix is
// its column-major transpose, so row-major C = op(A)·op(B) is computed as
// column-major Cᵀ = op(B)ᵀ·op(A)ᵀ: B and A swap places, each keeping its
// own transpose flag, and each leading dimension is the stored row length.
func (d *CUDADevice) Gemm(transA, transB bool, m, n, k int, alpha float32, a, b Mem, beta float32, c Mem) error {
	lda, ldb := k, n
	if transA {
		lda = m
	}
	if transB {
		ldb = k
	}
	return d.ctx.Sgemm(transB, transA, n, m, k, alpha,
		cuda.DevicePtr(b.ptr), ldb, cuda.DevicePtr(a.ptr), lda, beta, cuda.DevicePtr(c.ptr), n)
}

func (d *CUDADevice) launch(name string, l kernels.Launch, args ...any) error {
	f, ok := d.funcs[name]
	if !ok {
		return fmt.Errorf("gpu: kernel %s not loaded", name)
	}
	if err := d.ctx.Launch(f, l.Grid, l.Block, l.Shared, args...); err != nil {
		return fmt.Errorf("gpu: %s: %w", name, err)
	}
	return nil
}

func p(m Mem) cuda.DevicePtr { return cuda.DevicePtr(m.ptr) }

func flag(b bool) int32 {
	if b {
		return 1
	}
	return 0
}

func geomArgs(g ConvGeom) []any {
	return []any{int32(g.B), int32(g.C), int32(g.H), int32(g.W), int32(g.K), int32(g.Stride), int32(g.Pad), int32(g.OH), int32(g.OW)}
}

func (d *CUDADevice) ReluFwd(x, y Mem, n int) error {
	return d.launch("relu_fwd", kernels.Elementwise(n), p(x), p(y), int32(n))
}
func (d *CUDADevice) ReluBwd(x, dy, dx Mem, n int) error {
	return d.launch("relu_bwd", kernels.Elementwise(n), p(x), p(dy), p(dx), int32(n))
}
func (d *CUDADevice) Mul(a, b, y Mem, n int) error {
	return d.launch("mul", kernels.Elementwise(n), p(a), p(b), p(y), int32(n))
}
func (d *CUDADevice) AddInplace(y, x Mem, n int) error {
	return d.launch("add_inplace", kernels.Elementwise(n), p(y), p(x), int32(n))
}
func (d *CUDADevice) AddBiasRows(y, b Mem, rows, cols int) error {
	return d.launch("add_bias_rows", kernels.Elementwise(rows*cols), p(y), p(b), int32(rows), int32(cols))
}
func (d *CUDADevice) ColSum(x, out Mem, rows, cols int, acc bool) error {
	return d.launch("col_sum", kernels.ColSumLaunch(rows, cols), p(x), p(out), int32(rows), int32(cols), flag(acc))
}
func (d *CUDADevice) RowSum(x, out Mem, rows, cols int, acc bool) error {
	return d.launch("row_sum", kernels.RowSumLaunch(rows, cols), p(x), p(out), int32(rows), int32(cols), flag(acc))
}
func (d *CUDADevice) ConvOut(src, bias, dst Mem, b, c, hw int) error {
	return d.launch("conv_out", kernels.Elementwise(b*c*hw), p(src), p(bias), p(dst), int32(b), int32(c), int32(hw))
}
func (d *CUDADevice) ConvGradIn(dy, dst Mem, b, c, hw int) error {
	return d.launch("conv_grad_in", kernels.Elementwise(b*c*hw), p(dy), p(dst), int32(b), int32(c), int32(hw))
}
func (d *CUDADevice) Im2col(x, col Mem, g ConvGeom) error {
	return d.launch("im2col", kernels.Elementwise(g.ColRows()*g.ColCols()), append([]any{p(x), p(col)}, geomArgs(g)...)...)
}
func (d *CUDADevice) Col2im(col, dx Mem, g ConvGeom) error {
	in, _ := planeSizes(g)
	return d.launch("col2im", kernels.Elementwise(in), append([]any{p(col), p(dx)}, geomArgs(g)...)...)
}
func (d *CUDADevice) MaxPoolFwd(x, y, arg Mem, g ConvGeom) error {
	_, out := planeSizes(g)
	return d.launch("maxpool_fwd", kernels.Elementwise(out), append([]any{p(x), p(y), p(arg)}, poolArgs(g)...)...)
}
func (d *CUDADevice) MaxPoolBwd(dy, arg, dx Mem, g ConvGeom) error {
	in, _ := planeSizes(g)
	return d.launch("maxpool_bwd", kernels.Elementwise(in), append([]any{p(dy), p(arg), p(dx)}, poolArgs(g)...)...)
}
func (d *CUDADevice) SoftmaxXent(logits, labels, rowloss, dlogits Mem, b, c int, scale float32) error {
	return d.launch("softmax_xent", kernels.RowsLaunch(b), p(logits), p(labels), p(rowloss), p(dlogits), int32(b), int32(c), scale)
}
func (d *CUDADevice) SGDStep(w, g, v Mem, n int, lr, mu, wd float32, nesterov bool) error {
	return d.launch("sgd_step", kernels.Elementwise(n), p(w), p(g), p(v), int32(n), lr, mu, wd, flag(nesterov))
}
func (d *CUDADevice) AdamStep(w, g, m, v Mem, n int, lr, b1, b2, eps, wd, c1, c2 float32) error {
	return d.launch("adam_step", kernels.Elementwise(n), p(w), p(g), p(m), p(v), int32(n), lr, b1, b2, eps, wd, c1, c2)
}
func (d *CUDADevice) F32ToF16(x, y Mem, n int, scale float32) error {
	return d.launch("f32_to_f16", kernels.Elementwise(n), p(x), p(y), int32(n), scale)
}
func (d *CUDADevice) F16ToF32(x, y Mem, n int, scale float32) error {
	return d.launch("f16_to_f32", kernels.Elementwise(n), p(x), p(y), int32(n), scale)
}

// poolArgs are the pooling kernels' ints: B C H W k stride OH OW (no pad).
func poolArgs(g ConvGeom) []any {
	return []any{int32(g.B), int32(g.C), int32(g.H), int32(g.W), int32(g.K), int32(g.Stride), int32(g.OH), int32(g.OW)}
}
