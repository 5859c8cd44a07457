package main

import "golang.org/x/sys/cpu"

//go:noescape
func fmaLoopAVX2(n int)

//go:noescape
func fmaLoopAVX512(n int)

// peakKernels are the FMA loops this CPU can run, with FLOPs per iteration.
func peakKernels() []peakKernel {
	var ks []peakKernel
	if cpu.X86.HasAVX2 && cpu.X86.HasFMA {
		ks = append(ks, peakKernel{"avx2-fma", fmaLoopAVX2, 12 * 8 * 2})
	}
	if cpu.X86.HasAVX512F {
		ks = append(ks, peakKernel{"avx512-fma", fmaLoopAVX512, 12 * 16 * 2})
	}
	return ks
}
