package sgemm

import "unsafe"

// microKernel is one register-tile kernel: C[mr×nr] (row stride ldc) =
// alpha·Σ_p a[p·mr+i]·b[p·nr+j] + beta·C, reading C only when beta ≠ 0.
// Packing lays A out in slivers of the active kernel's mr, B in slivers of
// its nr.
type microKernel struct {
	name   string
	mr, nr int
	fn     func(kc int, a, b, c *float32, ldc int, alpha, beta float32)
	// narrow, when set, has the same nr and fewer rows; Gemm uses it for
	// products whose m it tiles with less padding (forKernel).
	narrow *microKernel
	// rowA, when set, is the kernel's 8×32 twin that reads A in place,
	// eight rows of stride lda (gemmRowsA).
	rowA func(kc int, a *float32, lda int, b, c *float32, ldc int, alpha, beta float32)
}

// forRows returns the kernel Gemm uses for an m-row product: k, or its narrow
// partner when that pads m to fewer rows (m = 6 or 12: 6 rows, not 8; ties go
// to k, whose tile does more work per load).
func (k microKernel) forRows(m int) microKernel {
	if n := k.narrow; n != nil && ceilDiv(m, n.mr)*n.mr < ceilDiv(m, k.mr)*k.mr {
		return *n
	}
	return k
}

// goKernel6x16, goKernel6x32 and goKernel8x32 are the portable twins of the
// assembly kernels' tiles; the tests run the whole blocked multiply on each.
var (
	goKernel6x16 = microKernel{name: "go-6x16", mr: 6, nr: 16, fn: kernelGo6x16}
	goKernel6x32 = microKernel{name: "go-6x32", mr: 6, nr: 32, fn: kernelGo6x32}
	goKernel8x32 = microKernel{name: "go-8x32", mr: 8, nr: 32, fn: kernelGo8x32, narrow: &goKernel6x32, rowA: kernelGo8x32RowA}
)

// active is the kernel Gemm uses: the first of kernels(), set at start-up.
var active = kernels()[0]

// KernelName says which micro-kernel Gemm uses.
func KernelName() string { return active.name }

func kernelGo6x16(kc int, a, b, c *float32, ldc int, alpha, beta float32) {
	kernelGo(6, 16, kc, a, b, c, ldc, alpha, beta)
}

func kernelGo6x32(kc int, a, b, c *float32, ldc int, alpha, beta float32) {
	kernelGo(6, 32, kc, a, b, c, ldc, alpha, beta)
}

func kernelGo8x32(kc int, a, b, c *float32, ldc int, alpha, beta float32) {
	kernelGo(8, 32, kc, a, b, c, ldc, alpha, beta)
}

// kernelGo is the portable micro-kernel for an mr×nr tile (mr ≤ maxMR, nr ≤ maxNR).
func kernelGo(mr, nr, kc int, a, b, c *float32, ldc int, alpha, beta float32) {
	var acc [maxMR][maxNR]float32
	as := unsafe.Slice(a, kc*mr)
	bs := unsafe.Slice(b, kc*nr)
	for p := range kc {
		av := as[p*mr:][:mr]
		bv := bs[p*nr:][:nr]
		for i := range mr {
			ai := av[i]
			r := acc[i][:nr]
			for j := range r {
				r[j] += ai * bv[j]
			}
		}
	}
	cs := unsafe.Slice(c, (mr-1)*ldc+nr)
	for i := range mr {
		row := cs[i*ldc:][:nr]
		r := acc[i][:nr]
		if beta == 0 {
			for j := range row {
				row[j] = alpha * r[j]
			}
		} else {
			for j := range row {
				row[j] = alpha*r[j] + beta*row[j]
			}
		}
	}
}

// kernelGo8x32RowA is kernelGo8x32 reading its 8 rows of A in place: row i
// at a[i*lda:], k-major within it.
func kernelGo8x32RowA(kc int, a *float32, lda int, b, c *float32, ldc int, alpha, beta float32) {
	var packed [8 * kcBlock]float32
	as := unsafe.Slice(a, 7*lda+kc)
	for p0 := 0; p0 < kc; p0 += kcBlock { // kcBlock steps at a time, adding up in C
		kb := min(kcBlock, kc-p0)
		for i := range 8 {
			for p, v := range as[i*lda+p0:][:kb] {
				packed[p*8+i] = v
			}
		}
		bt := beta
		if p0 > 0 {
			bt = 1
		}
		kernelGo(8, 32, kb, &packed[0], (*float32)(unsafe.Add(unsafe.Pointer(b), p0*32*4)), c, ldc, alpha, bt)
	}
}

// Kernels names the micro-kernels this machine can run, the one Gemm uses
// first, the portable ones last.
func Kernels() []string {
	var names []string
	for _, k := range kernels() {
		names = append(names, k.name)
	}
	return names
}

// UseKernel makes Gemm use the named micro-kernel (one of Kernels) and
// returns a function that restores the previous one. It is for benchmarks
// and tests: it must not run concurrently with Gemm.
func UseKernel(name string) (restore func(), ok bool) {
	for _, k := range kernels() {
		if k.name == name {
			saved := active
			active = k
			return func() { active = saved }, true
		}
	}
	return func() {}, false
}
