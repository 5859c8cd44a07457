package sgemm

import "golang.org/x/sys/cpu"

// useAsm says the AVX2+FMA kernel may run: the CPU has both and the OS saves
// the YMM registers (x/sys/cpu folds the OSXSAVE/XGETBV check into HasAVX2).
var useAsm = cpu.X86.HasAVX2 && cpu.X86.HasFMA

// kernel is the micro-kernel Gemm uses, chosen once at start-up.
var kernel = func() func(kc int, a, b, c *float32, ldc int, alpha, beta float32) {
	if useAsm {
		return kernel6x16AVX2
	}
	return kernelGo
}()

// KernelName says which micro-kernel Gemm uses.
func KernelName() string {
	if useAsm {
		return "avx2-fma-6x16"
	}
	return "go"
}

// kernel6x16AVX2 is kernelGo in AVX2+FMA assembly (kernel_amd64.s).
//
//go:noescape
func kernel6x16AVX2(kc int, a, b, c *float32, ldc int, alpha, beta float32)
