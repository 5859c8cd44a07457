package sgemm

import "golang.org/x/sys/cpu"

// haveTranspose8 says whether transpose8 runs in assembly (AVX).
var haveTranspose8 = cpu.X86.HasAVX

// transpose8AVX is transpose8 in AVX assembly (transpose_amd64.s).
//
//go:noescape
func transpose8AVX(d *float32, ldd int, b *float32, ldb int, blocks int)

func transpose8(d []float32, ldd int, b []float32, ldb int, blocks int) {
	if haveTranspose8 {
		transpose8AVX(&d[0], ldd, &b[0], ldb, blocks)
		return
	}
	transpose8Go(d, ldd, b, ldb, blocks)
}
