package vecmath

import "golang.org/x/sys/cpu"

var hasAVX512 = cpu.X86.HasAVX512F

//go:noescape
func reluAVX512(y, x *float32, n int)

//go:noescape
func reluGradAVX512(d, dy, x *float32, n int)
