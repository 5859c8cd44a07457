package sgemm

import "unsafe"

// microKernel is one register-tile kernel: C[MR×nr] (row stride ldc) =
// alpha·Σ_p a[p·MR+i]·b[p·nr+j] + beta·C, reading C only when beta ≠ 0.
// Packing lays B out in slivers of the active kernel's nr.
type microKernel struct {
	name string
	nr   int
	fn   func(kc int, a, b, c *float32, ldc int, alpha, beta float32)
}

// goKernel16 and goKernel32 are the portable kernels at both widths; the
// tests run the whole blocked multiply on each.
var (
	goKernel16 = microKernel{"go-6x16", 16, kernelGo16}
	goKernel32 = microKernel{"go-6x32", 32, kernelGo32}
)

// active is the kernel Gemm uses: the first of kernels(), set at start-up.
var active = kernels()[0]

// KernelName says which micro-kernel Gemm uses.
func KernelName() string { return active.name }

func kernelGo16(kc int, a, b, c *float32, ldc int, alpha, beta float32) {
	kernelGoN(16, kc, a, b, c, ldc, alpha, beta)
}

func kernelGo32(kc int, a, b, c *float32, ldc int, alpha, beta float32) {
	kernelGoN(32, kc, a, b, c, ldc, alpha, beta)
}

// kernelGoN is the portable micro-kernel for an nr-wide tile (nr ≤ maxNR).
func kernelGoN(nr, kc int, a, b, c *float32, ldc int, alpha, beta float32) {
	var acc [MR][maxNR]float32
	as := unsafe.Slice(a, kc*MR)
	bs := unsafe.Slice(b, kc*nr)
	for p := range kc {
		av := as[p*MR:][:MR]
		bv := bs[p*nr:][:nr]
		for i := range MR {
			ai := av[i]
			r := acc[i][:nr]
			for j := range r {
				r[j] += ai * bv[j]
			}
		}
	}
	cs := unsafe.Slice(c, (MR-1)*ldc+nr)
	for i := range MR {
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
