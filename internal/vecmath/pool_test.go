package vecmath

import (
	"math"
	"math/rand/v2"
	"testing"
)

// TestMaxPool2x2MatchesGo: the assembly gives the Go loops' bits on ties,
// NaNs, ±0 and ±Inf, for even and odd sizes, widths around the 16-output
// groups, one plane and several; the gradient lands on the same inputs
// and nothing outside the pooled area changes.
func TestMaxPool2x2MatchesGo(t *testing.T) {
	if !hasAVX512 {
		t.Skip("no AVX-512 here: MaxPool2x2 is the Go loop")
	}
	rng := rand.New(rand.NewPCG(5, 6))
	special := []float32{0, float32(math.Copysign(0, -1)), float32(math.NaN()), float32(math.Inf(1)), float32(math.Inf(-1)), 1, 1, -1}
	for _, sz := range [][3]int{{1, 2, 2}, {6, 28, 28}, {16, 10, 10}, {3, 5, 7}, {2, 4, 32}, {2, 3, 33}, {1, 2, 64}, {4, 6, 66}, {1, 9, 31}, {2, 1, 8}, {1, 8, 1}} {
		planes, h, w := sz[0], sz[1], sz[2]
		x := make([]float32, planes*h*w)
		for i := range x {
			if rng.IntN(4) == 0 {
				x[i] = special[rng.IntN(len(special))]
			} else {
				x[i] = float32(rng.IntN(5)) // ties
			}
		}
		oh, ow := h/2, w/2
		got, want := make([]float32, planes*oh*ow+2), make([]float32, planes*oh*ow+2)
		got[len(got)-1], want[len(want)-1] = 9, 9
		MaxPool2x2(got, x, planes, h, w)
		maxPool2x2Go(want, x, planes, h, w)
		for i := range want {
			if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
				t.Fatalf("%v: y[%d] = %v, want %v", sz, i, got[i], want[i])
			}
		}
		dy := make([]float32, planes*oh*ow)
		for i := range dy {
			dy[i] = float32(rng.NormFloat64())
		}
		gdx, wdx := make([]float32, planes*h*w+1), make([]float32, planes*h*w+1)
		for i := range gdx {
			v := float32(rng.NormFloat64())
			gdx[i], wdx[i] = v, v
		}
		MaxPool2x2Grad(gdx, dy, x, planes, h, w)
		maxPool2x2GradGo(wdx, dy, x, planes, h, w)
		for i := range wdx {
			if math.Float32bits(gdx[i]) != math.Float32bits(wdx[i]) {
				t.Fatalf("%v: dx[%d] = %v, want %v", sz, i, gdx[i], wdx[i])
			}
		}
	}
}
