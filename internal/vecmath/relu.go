package vecmath

import "math"

// Relu sets y[i] = x[i] where x[i] > 0, else +0 (NaN and −0 give +0), for
// i < len(x); y must be at least as long as x.
func Relu(y, x []float32) {
	y = y[:len(x)]
	if len(x) == 0 {
		return
	}
	if hasAVX512 {
		reluAVX512(&y[0], &x[0], len(x))
		return
	}
	reluGo(y, x)
}

// ReluGrad sets d[i] = g[i] where x[i] ≥ 0 (−0 included, NaN excluded),
// else +0, for i < len(x); d and g must be at least as long as x.
func ReluGrad(d, g, x []float32) {
	d, g = d[:len(x)], g[:len(x)]
	if len(x) == 0 {
		return
	}
	if hasAVX512 {
		reluGradAVX512(&d[0], &g[0], &x[0], len(x))
		return
	}
	reluGradGo(d, g, x)
}

// reluGo selects on the bits: a float32 select compiles to a branch, which
// mispredicts on every other element of real activations; an integer
// select is a CMOV.
func reluGo(y, x []float32) {
	y = y[:len(x)]
	for i, v := range x {
		t, vb := uint32(0), math.Float32bits(v)
		if v > 0 {
			t = vb
		}
		y[i] = math.Float32frombits(t)
	}
}

func reluGradGo(d, g, x []float32) {
	g, d = g[:len(x)], d[:len(x)]
	for i, v := range x {
		t, gi := uint32(0), math.Float32bits(g[i])
		if v >= 0 {
			t = gi
		}
		d[i] = math.Float32frombits(t)
	}
}
