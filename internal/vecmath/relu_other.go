//go:build !amd64

package vecmath

const hasAVX512 = false

func reluAVX512(y, x *float32, n int)         { panic("unreachable") }
func reluGradAVX512(d, dy, x *float32, n int) { panic("unreachable") }

func maxPool2x2AVX512(y, x *float32, w, ow, rows, nfull, m0, m1, mo int, idx *[64]int32) {
	panic("unreachable")
}

func maxPool2x2GradAVX512(dx, dy, x *float32, w, ow, rows, nfull, m0, m1, mo int, idx *[64]int32) {
	panic("unreachable")
}
