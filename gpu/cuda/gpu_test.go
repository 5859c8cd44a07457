package cuda

// Tests that need a GPU: they skip where Load fails. Build them here with
// `go test -c ./gpu/cuda` and run the binary on a GPU machine.

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
	"unsafe"
)

// openGPU opens device 0, closed when the test ends; it skips without a
// driver.
func openGPU(t *testing.T) (*Driver, *Context) {
	t.Helper()
	d, err := Load()
	if err != nil {
		t.Skipf("no CUDA driver: %v", err)
	}
	c, err := d.Open(0)
	if err != nil {
		t.Fatalf("Open(0): %v", err)
	}
	t.Cleanup(func() {
		if err := c.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return d, c
}

// upload allocates device memory holding xs.
func upload(t *testing.T, c *Context, xs []float32) DevicePtr {
	t.Helper()
	p, err := c.Alloc(4 * len(xs))
	if err != nil {
		t.Fatalf("Alloc(%d): %v", 4*len(xs), err)
	}
	t.Cleanup(func() {
		if err := c.Free(p); err != nil {
			t.Errorf("Free: %v", err)
		}
	})
	if err := c.HtoD(p, unsafe.Pointer(&xs[0]), 4*len(xs)); err != nil {
		t.Fatalf("HtoD: %v", err)
	}
	return p
}

func download(t *testing.T, c *Context, p DevicePtr, n int) []float32 {
	t.Helper()
	out := make([]float32, n)
	if err := c.DtoH(unsafe.Pointer(&out[0]), p, 4*n); err != nil {
		t.Fatalf("DtoH: %v", err)
	}
	return out
}

func randFloats(r *rand.Rand, n int) []float32 {
	xs := make([]float32, n)
	for i := range xs {
		xs[i] = float32(r.NormFloat64())
	}
	return xs
}

func TestGPUDevices(t *testing.T) {
	d, c := openGPU(t)
	if d.Version() < 11000 {
		t.Errorf("driver version %d, want ≥ 11000", d.Version())
	}
	if v := d.CublasVersion(); v < 110000 {
		t.Errorf("cuBLAS version %d, want ≥ 110000 (11.0)", v)
	}
	if libs := d.Libraries(); len(libs) != 2 || !strings.Contains(libs[0], "libcuda.so") || !strings.Contains(libs[1], "libcublas.so") {
		t.Errorf("libraries %q", libs)
	}
	devs, err := d.Devices()
	if err != nil || len(devs) == 0 {
		t.Fatalf("Devices: %v %v", devs, err)
	}
	busID := regexp.MustCompile(`^[0-9A-Fa-f]{4,8}:[0-9A-Fa-f]{2}:[0-9A-Fa-f]{2}\.[0-9A-Fa-f]$`)
	for i, dev := range devs {
		if dev.Ordinal != i || dev.Name == "" || dev.TotalMem < 1<<30 || dev.Major < 5 || dev.SMs <= 0 || !busID.MatchString(dev.PCIBusID) {
			t.Errorf("device %d: %+v", i, dev)
		}
	}
	if c.Info() != devs[0] {
		t.Errorf("Info %+v, Devices[0] %+v", c.Info(), devs[0])
	}
	free, total, err := c.MemInfo()
	if err != nil || total == 0 || free > total || total != devs[0].TotalMem {
		t.Errorf("MemInfo free %d total %d err %v (device total %d)", free, total, err, devs[0].TotalMem)
	}
	t.Logf("driver %d, cuBLAS %d, %q; device 0: %+v", d.Version(), d.CublasVersion(), d.Libraries(), devs[0])

	_, err = d.Open(len(devs))
	if err == nil || !strings.Contains(err.Error(), fmt.Sprint(len(devs))) {
		t.Errorf("Open(%d) = %v, want an error naming the ordinal and count", len(devs), err)
	}
}

func TestGPUMemoryRoundTrip(t *testing.T) {
	_, c := openGPU(t)
	r := rand.New(rand.NewPCG(1, 2))
	xs := randFloats(r, 1001)
	a := upload(t, c, xs)
	b := upload(t, c, make([]float32, len(xs)))
	if err := c.DtoD(b, a, 4*len(xs)); err != nil {
		t.Fatal(err)
	}
	got := download(t, c, b, len(xs))
	for i := range xs {
		if got[i] != xs[i] {
			t.Fatalf("element %d: %v, want %v", i, got[i], xs[i])
		}
	}
	// Memset32 of part of b: words 10..19 only.
	if err := c.Memset32(b+40, math.Float32bits(-3.5), 10); err != nil {
		t.Fatal(err)
	}
	got = download(t, c, b, len(xs))
	for i := range xs {
		want := xs[i]
		if i >= 10 && i < 20 {
			want = -3.5
		}
		if got[i] != want {
			t.Fatalf("after Memset32, element %d: %v, want %v", i, got[i], want)
		}
	}
	if err := c.Sync(); err != nil {
		t.Fatal(err)
	}
}

func TestGPUAllocErrors(t *testing.T) {
	_, c := openGPU(t)
	_, err := c.Alloc(1 << 60)
	if !IsOutOfMemory(err) {
		t.Errorf("Alloc(1<<60) = %v, want CUDA_ERROR_OUT_OF_MEMORY", err)
	}
	var e *Error
	if !errors.As(err, &e) || e.Call != "cuMemAlloc_v2" || e.Name != "CUDA_ERROR_OUT_OF_MEMORY" {
		t.Errorf("error %#v", e)
	}
	// The context stays usable after a failed call.
	p, err := c.Alloc(256)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Free(p); err != nil {
		t.Fatal(err)
	}
}

func TestGPUPinnedHost(t *testing.T) {
	_, c := openGPU(t)
	const n = 1 << 16
	h, err := c.AllocHost(4 * n)
	if err != nil {
		t.Fatal(err)
	}
	if len(h) != 4*n {
		t.Fatalf("AllocHost len %d", len(h))
	}
	fs := unsafe.Slice((*float32)(unsafe.Pointer(&h[0])), n)
	for i := range fs {
		fs[i] = float32(i) * 0.5
	}
	p, err := c.Alloc(4 * n)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Free(p)
	if err := c.HtoD(p, unsafe.Pointer(&h[0]), 4*n); err != nil {
		t.Fatal(err)
	}
	clear(h)
	if err := c.DtoH(unsafe.Pointer(&h[0]), p, 4*n); err != nil {
		t.Fatal(err)
	}
	for i := range fs {
		if fs[i] != float32(i)*0.5 {
			t.Fatalf("pinned round trip, element %d: %v", i, fs[i])
		}
	}
	if err := c.FreeHost(make([]byte, 8)); err == nil {
		t.Error("FreeHost accepted Go memory")
	}
	if err := c.FreeHost(h[:1]); err != nil {
		t.Fatal(err)
	}
	if err := c.FreeHost(h); err == nil {
		t.Error("double FreeHost accepted")
	}
}

// refGemm is column-major C = alpha·op(A)·op(B) + beta·C in float64; it
// also returns, per element, the sum of |terms|, for an error bound.
func refGemm(transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) (want, scale []float64) {
	want = make([]float64, len(c))
	scale = make([]float64, len(c))
	for i := range c {
		want[i] = float64(c[i])
	}
	at := func(i, l int) float64 {
		if transA {
			return float64(a[l+i*lda])
		}
		return float64(a[i+l*lda])
	}
	bt := func(l, j int) float64 {
		if transB {
			return float64(b[j+l*ldb])
		}
		return float64(b[l+j*ldb])
	}
	for j := range n {
		for i := range m {
			var s, abs float64
			for l := range k {
				p := at(i, l) * bt(l, j)
				s += p
				abs += math.Abs(p)
			}
			idx := i + j*ldc
			want[idx] = float64(alpha)*s + float64(beta)*float64(c[idx])
			scale[idx] = math.Abs(float64(alpha))*abs + math.Abs(float64(beta)*float64(c[idx]))
		}
	}
	return want, scale
}

// closeEnough allows FP32 rounding over k products; TF32 (10-bit
// mantissa) would miss it by two orders of magnitude.
func closeEnough(got float32, want, scale float64) bool {
	return math.Abs(float64(got)-want) <= 1e-5*scale+1e-6
}

func TestGPUSgemm(t *testing.T) {
	_, c := openGPU(t)
	r := rand.New(rand.NewPCG(3, 4))
	for _, sz := range [][3]int{{37, 23, 19}, {1, 7, 5}, {257, 129, 300}} {
		m, n, k := sz[0], sz[1], sz[2]
		for _, tr := range [][2]bool{{false, false}, {true, false}, {false, true}, {true, true}} {
			transA, transB := tr[0], tr[1]
			t.Run(fmt.Sprintf("m%d_n%d_k%d_tA%v_tB%v", m, n, k, transA, transB), func(t *testing.T) {
				rowsA, colsA := m, k
				if transA {
					rowsA, colsA = k, m
				}
				rowsB, colsB := k, n
				if transB {
					rowsB, colsB = n, k
				}
				lda, ldb, ldc := rowsA+3, rowsB+1, m+2 // padded leading dimensions
				a := randFloats(r, lda*colsA)
				b := randFloats(r, ldb*colsB)
				cc := randFloats(r, ldc*n)
				const alpha, beta = 1.5, 0.5
				want, scale := refGemm(transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, cc, ldc)
				A, B, C := upload(t, c, a), upload(t, c, b), upload(t, c, cc)
				if err := c.Sgemm(transA, transB, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc); err != nil {
					t.Fatal(err)
				}
				got := download(t, c, C, len(cc))
				for j := range n {
					for i := range ldc {
						idx := i + j*ldc
						if i >= m { // padding rows must be untouched
							if got[idx] != cc[idx] {
								t.Fatalf("padding C[%d,%d] changed: %v → %v", i, j, cc[idx], got[idx])
							}
							continue
						}
						if !closeEnough(got[idx], want[idx], scale[idx]) {
							t.Fatalf("C[%d,%d] = %v, want %v (scale %v)", i, j, got[idx], want[idx], scale[idx])
						}
					}
				}
			})
		}
	}
}

// TestGPUSgemmRowMajor checks the row-major recipe in Sgemm's doc.
func TestGPUSgemmRowMajor(t *testing.T) {
	_, c := openGPU(t)
	const m, n, k = 5, 3, 4
	a := make([]float32, m*k) // row-major m×k
	b := make([]float32, k*n) // row-major k×n
	for i := range a {
		a[i] = float32(i%7) - 3
	}
	for i := range b {
		b[i] = float32(i%5) - 2
	}
	A, B, C := upload(t, c, a), upload(t, c, b), upload(t, c, make([]float32, m*n))
	if err := c.Sgemm(false, false, n, m, k, 1, B, n, A, k, 0, C, n); err != nil {
		t.Fatal(err)
	}
	got := download(t, c, C, m*n)
	for i := range m {
		for j := range n {
			var s float32
			for l := range k {
				s += a[i*k+l] * b[l*n+j]
			}
			if got[i*n+j] != s {
				t.Fatalf("row-major C[%d][%d] = %v, want %v", i, j, got[i*n+j], s)
			}
		}
	}
}

func TestGPUSgemmStridedBatched(t *testing.T) {
	_, c := openGPU(t)
	r := rand.New(rand.NewPCG(5, 6))
	const m, n, k, batch = 13, 11, 9, 4
	for _, sharedA := range []bool{false, true} {
		t.Run(fmt.Sprintf("sharedA=%v", sharedA), func(t *testing.T) {
			lda, ldb, ldc := k, k, m // A transposed (stored k×m), B plain k×n
			strideA := int64(lda*m + 5)
			if sharedA {
				strideA = 0 // one A for every batch entry, like a convolution's weights
			}
			strideB, strideC := int64(ldb*n+3), int64(ldc*n+1)
			a := randFloats(r, int(strideA)*(batch-1)+lda*m)
			b := randFloats(r, int(strideB)*(batch-1)+ldb*n)
			cc := randFloats(r, int(strideC)*(batch-1)+ldc*n)
			A, B, C := upload(t, c, a), upload(t, c, b), upload(t, c, cc)
			const alpha, beta = -0.75, 2
			if err := c.SgemmStridedBatched(true, false, m, n, k, alpha, A, lda, strideA, B, ldb, strideB, beta, C, ldc, strideC, batch); err != nil {
				t.Fatal(err)
			}
			got := download(t, c, C, len(cc))
			for e := range batch {
				oa, ob, oc := int(strideA)*e, int(strideB)*e, int(strideC)*e
				want, scale := refGemm(true, false, m, n, k, alpha, a[oa:], lda, b[ob:], ldb, beta, cc[oc:oc+ldc*n], ldc)
				for i := range want {
					if !closeEnough(got[oc+i], want[i], scale[i]) {
						t.Fatalf("batch %d element %d = %v, want %v", e, i, got[oc+i], want[i])
					}
				}
			}
		})
	}
}

// testPTX holds two hand-written kernels (ISA 7.8, sm_75: JIT-compiled by
// drivers ≥ 520 for Turing through Hopper and later):
//
//	scale(x, y *float32, a float32, n uint32): y[i] = a·x[i] for i < n
//	store64(p *byte, v int64, d float64, i int32): *(int64*)p = v,
//	    *(double*)(p+8) = d, *(int32*)(p+16) = i
//
// store64 checks that 8-byte and mixed-size arguments arrive intact.
const testPTX = `
.version 7.8
.target sm_75
.address_size 64

.visible .entry scale(
	.param .u64 scale_x,
	.param .u64 scale_y,
	.param .f32 scale_a,
	.param .u32 scale_n
)
{
	.reg .pred %p<2>;
	.reg .b32 %r<6>;
	.reg .f32 %f<4>;
	.reg .b64 %rd<8>;

	ld.param.u64 %rd1, [scale_x];
	ld.param.u64 %rd2, [scale_y];
	ld.param.f32 %f1, [scale_a];
	ld.param.u32 %r1, [scale_n];
	mov.u32 %r2, %ctaid.x;
	mov.u32 %r3, %ntid.x;
	mov.u32 %r4, %tid.x;
	mad.lo.s32 %r5, %r2, %r3, %r4;
	setp.ge.u32 %p1, %r5, %r1;
	@%p1 bra DONE;
	cvta.to.global.u64 %rd3, %rd1;
	cvta.to.global.u64 %rd4, %rd2;
	mul.wide.u32 %rd5, %r5, 4;
	add.s64 %rd6, %rd3, %rd5;
	add.s64 %rd7, %rd4, %rd5;
	ld.global.f32 %f2, [%rd6];
	mul.f32 %f3, %f2, %f1;
	st.global.f32 [%rd7], %f3;
DONE:
	ret;
}

.visible .entry store64(
	.param .u64 store64_p,
	.param .s64 store64_v,
	.param .f64 store64_d,
	.param .s32 store64_i
)
{
	.reg .b32 %r<2>;
	.reg .f64 %fd<2>;
	.reg .b64 %rd<4>;

	ld.param.u64 %rd1, [store64_p];
	ld.param.s64 %rd2, [store64_v];
	ld.param.f64 %fd1, [store64_d];
	ld.param.s32 %r1, [store64_i];
	cvta.to.global.u64 %rd3, %rd1;
	st.global.s64 [%rd3], %rd2;
	st.global.f64 [%rd3+8], %fd1;
	st.global.s32 [%rd3+16], %r1;
	ret;
}
`

func loadTestKernels(t *testing.T, c *Context) *Module {
	t.Helper()
	mod, err := c.LoadModule([]byte(testPTX)) // no trailing NUL: LoadModule adds it
	if err != nil {
		t.Fatalf("LoadModule: %v", err)
	}
	t.Cleanup(func() {
		if err := mod.Unload(); err != nil {
			t.Errorf("Unload: %v", err)
		}
	})
	return mod
}

func TestGPULaunch(t *testing.T) {
	_, c := openGPU(t)
	mod := loadTestKernels(t, c)
	scale, err := mod.Function("scale")
	if err != nil {
		t.Fatal(err)
	}
	const n = 1000
	xs := make([]float32, n+24) // elements past n must stay untouched
	for i := range xs {
		xs[i] = float32(i) - 100
	}
	x := upload(t, c, xs)
	y := upload(t, c, make([]float32, len(xs)))
	if err := c.Launch(scale, [3]uint32{(n + 127) / 128, 1, 1}, [3]uint32{128, 1, 1}, 0, x, y, float32(2), uint32(n)); err != nil {
		t.Fatal(err)
	}
	if err := c.Sync(); err != nil {
		t.Fatal(err)
	}
	got := download(t, c, y, len(xs))
	for i := range xs {
		want := float32(0)
		if i < n {
			want = xs[i] * 2
		}
		if got[i] != want {
			t.Fatalf("y[%d] = %v, want %v", i, got[i], want)
		}
	}

	store, err := mod.Function("store64")
	if err != nil {
		t.Fatal(err)
	}
	buf, err := c.Alloc(24)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Free(buf)
	if err := c.Launch(store, [3]uint32{1, 1, 1}, [3]uint32{1, 1, 1}, 0, buf, int64(-5_000_000_000), 3.25, -7); err != nil {
		t.Fatal(err)
	}
	var out struct {
		V int64
		D float64
		I int32
		_ int32
	}
	if err := c.DtoH(unsafe.Pointer(&out), buf, 24); err != nil {
		t.Fatal(err)
	}
	if out.V != -5_000_000_000 || out.D != 3.25 || out.I != -7 {
		t.Fatalf("store64 wrote %+v", out)
	}
}

func TestGPUModuleErrors(t *testing.T) {
	_, c := openGPU(t)
	mod := loadTestKernels(t, c)
	_, err := mod.Function("no_such_kernel")
	var e *Error
	if !errors.As(err, &e) || e.Call != "cuModuleGetFunction" || !strings.Contains(err.Error(), "no_such_kernel") {
		t.Errorf("missing kernel: %v", err)
	}
	bad := ".version 7.8\n.target sm_75\n.address_size 64\n.visible .entry broken() { bogus.instruction; ret; }\x00"
	_, err = c.LoadModule([]byte(bad))
	if !errors.As(err, &e) || e.Call != "cuModuleLoadDataEx" {
		t.Fatalf("bad PTX: %v, want a cuModuleLoadDataEx error", err)
	}
	if !strings.Contains(err.Error(), "JIT log") {
		t.Errorf("bad PTX error lacks the JIT log: %v", err)
	}
	t.Logf("bad PTX: %v", err)
	// Still usable.
	if err := c.Sync(); err != nil {
		t.Fatal(err)
	}
}

func TestGPUEvents(t *testing.T) {
	_, c := openGPU(t)
	const n = 512
	r := rand.New(rand.NewPCG(7, 8))
	A := upload(t, c, randFloats(r, n*n))
	C := upload(t, c, make([]float32, n*n))
	start, err := c.NewEvent()
	if err != nil {
		t.Fatal(err)
	}
	end, err := c.NewEvent()
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Record(start); err != nil {
		t.Fatal(err)
	}
	for range 10 {
		if err := c.Sgemm(false, false, n, n, n, 1, A, n, A, n, 0, C, n); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.Record(end); err != nil {
		t.Fatal(err)
	}
	el, err := c.Elapsed(start, end)
	if err != nil {
		t.Fatal(err)
	}
	if el <= 0 || el > 10*time.Second {
		t.Errorf("10 Sgemms of %d³ took %v", n, el)
	}
	t.Logf("10 × Sgemm %d³: %v (%.1f GFLOP/s)", n, el, 10*2*n*n*n/el.Seconds()/1e9)
	for _, e := range []*Event{start, end} {
		if err := c.DestroyEvent(e); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.Record(start); err == nil {
		t.Error("Record of a destroyed event accepted")
	}
}

// TestGPUConcurrent uses one Context from many goroutines: each call must
// find the context current on whatever thread it lands on.
func TestGPUConcurrent(t *testing.T) {
	_, c := openGPU(t)
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for g := range 16 {
		wg.Go(func() {
			xs := make([]float32, 4096)
			for i := range xs {
				xs[i] = float32(g*10000 + i)
			}
			for range 20 {
				p, err := c.Alloc(4 * len(xs))
				if err != nil {
					errs <- err
					return
				}
				got := make([]float32, len(xs))
				err = errors.Join(c.HtoD(p, unsafe.Pointer(&xs[0]), 4*len(xs)),
					c.DtoH(unsafe.Pointer(&got[0]), p, 4*len(xs)), c.Free(p))
				if err != nil {
					errs <- err
					return
				}
				for i := range xs {
					if got[i] != xs[i] {
						errs <- fmt.Errorf("goroutine %d: element %d = %v, want %v", g, i, got[i], xs[i])
						return
					}
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestGPUClose(t *testing.T) {
	d, err := Load()
	if err != nil {
		t.Skipf("no CUDA driver: %v", err)
	}
	c, err := d.Open(0)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Alloc(16); !errors.Is(err, errClosed) {
		t.Errorf("Alloc after Close: %v", err)
	}
	if err := c.Close(); !errors.Is(err, errClosed) {
		t.Errorf("second Close: %v", err)
	}
	// Two Contexts on one device share the primary context.
	c1, err := d.Open(0)
	if err != nil {
		t.Fatal(err)
	}
	c2, err := d.Open(0)
	if err != nil {
		t.Fatal(err)
	}
	p, err := c1.Alloc(64)
	if err != nil {
		t.Fatal(err)
	}
	if err := c2.Memset32(p, 1, 16); err != nil {
		t.Errorf("memory of one Context used through another on the same device: %v", err)
	}
	if err := errors.Join(c1.Free(p), c1.Close(), c2.Close()); err != nil {
		t.Fatal(err)
	}
}
