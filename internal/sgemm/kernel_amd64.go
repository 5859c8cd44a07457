package sgemm

import "golang.org/x/sys/cpu"

// kernels lists the micro-kernels this machine can run, preferred first,
// the portable ones last: AVX-512F (6×32, zmm) where the CPU has it and the
// OS saves the ZMM state (x/sys/cpu folds the XGETBV check into
// HasAVX512F), AVX2+FMA (6×16, ymm), then Go.
func kernels() []microKernel {
	var ks []microKernel
	if cpu.X86.HasAVX512F {
		ks = append(ks, microKernel{"avx512-6x32", 32, kernel6x32AVX512})
	}
	if cpu.X86.HasAVX2 && cpu.X86.HasFMA {
		ks = append(ks, microKernel{"avx2-fma-6x16", 16, kernel6x16AVX2})
	}
	return append(ks, goKernel16, goKernel32)
}

// kernel6x16AVX2 is kernelGo16 in AVX2+FMA assembly (kernel_amd64.s).
//
//go:noescape
func kernel6x16AVX2(kc int, a, b, c *float32, ldc int, alpha, beta float32)

// kernel6x32AVX512 is kernelGo32 in AVX-512F assembly (kernel512_amd64.s).
//
//go:noescape
func kernel6x32AVX512(kc int, a, b, c *float32, ldc int, alpha, beta float32)
