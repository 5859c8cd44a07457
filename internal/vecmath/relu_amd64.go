package vecmath

import "golang.org/x/sys/cpu"

var hasAVX512 = cpu.X86.HasAVX512F

//go:noescape
func reluAVX512(y, x *float32, n int)

//go:noescape
func reluGradAVX512(d, dy, x *float32, n int)

//go:noescape
func maxPool2x2AVX512(y, x *float32, w, ow, rows, nfull, m0, m1, mo int, idx *[64]int32)

//go:noescape
func maxPool2x2GradAVX512(dx, dy, x *float32, w, ow, rows, nfull, m0, m1, mo int, idx *[64]int32)
