package sgemm

import "golang.org/x/sys/cpu"

// kernels lists the micro-kernels this machine can run, preferred first,
// the portable ones last: AVX-512F (8×32, zmm) where the CPU has it and the
// OS saves the ZMM state (x/sys/cpu folds the XGETBV check into
// HasAVX512F), AVX2+FMA (6×16, ymm), then Go.
func kernels() []microKernel {
	var ks []microKernel
	if cpu.X86.HasAVX512F {
		ks = append(ks, microKernel{name: "avx512-8x32", mr: 8, nr: 32, fn: kernel8x32AVX512,
			narrow: &microKernel{name: "avx512-6x32", mr: 6, nr: 32, fn: kernel6x32AVX512},
			rowA:   kernel8x32AVX512RowA})
	}
	if cpu.X86.HasAVX2 && cpu.X86.HasFMA {
		ks = append(ks, microKernel{name: "avx2-fma-6x16", mr: 6, nr: 16, fn: kernel6x16AVX2})
	}
	return append(ks, goKernel6x16, goKernel8x32)
}

// kernel6x16AVX2 is kernelGo6x16 in AVX2+FMA assembly (kernel_amd64.s).
//
//go:noescape
func kernel6x16AVX2(kc int, a, b, c *float32, ldc int, alpha, beta float32)

// kernel8x32AVX512 is kernelGo8x32 in AVX-512F assembly (kernel512_amd64.s).
//
//go:noescape
func kernel8x32AVX512(kc int, a, b, c *float32, ldc int, alpha, beta float32)

// kernel6x32AVX512 is kernelGo6x32 in AVX-512F assembly (kernel512x6_amd64.s).
//
//go:noescape
func kernel6x32AVX512(kc int, a, b, c *float32, ldc int, alpha, beta float32)

// kernel8x32AVX512RowA is kernelGo8x32RowA in AVX-512F assembly
// (kernel512rowa_amd64.s).
//
//go:noescape
func kernel8x32AVX512RowA(kc int, a *float32, lda int, b, c *float32, ldc int, alpha, beta float32)
