package sgemm

import "golang.org/x/sys/cpu"

// packRows32AVX512 is packRows32Go in AVX-512F assembly (pack_amd64.s).
//
//go:noescape
func packRows32AVX512(dst, src *float32, ldb, kb, slivers int)

// packRows32 copies kb rows of b (stride ldb) into slivers 32-wide slivers
// of dst, as packRows32Go.
func packRows32(dst, b []float32, ldb, kb, slivers int) {
	if kb <= 0 || slivers <= 0 {
		return
	}
	if !cpu.X86.HasAVX512F {
		packRows32Go(dst, b, ldb, kb, slivers)
		return
	}
	// The slices bound what the assembly touches.
	_ = dst[(slivers*kb)*32-1]
	_ = b[(kb-1)*ldb+slivers*32-1]
	packRows32AVX512(&dst[0], &b[0], ldb, kb, slivers)
}
