//go:build !amd64

package vecmath

const hasAVX512 = false

func reluAVX512(y, x *float32, n int)         { panic("unreachable") }
func reluGradAVX512(d, dy, x *float32, n int) { panic("unreachable") }
