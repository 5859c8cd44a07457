package directconv

import (
	"math"
	"math/rand/v2"
	"testing"
)

// TestGradRowsKernels checks every weight-gradient kernel this machine runs
// against the definition (float64 sums) over the geometries of
// TestRowsKernels, with partial sums that start non-zero (calls add up),
// then SumAcc against the lanes added by hand.
func TestGradRowsKernels(t *testing.T) {
	impls := map[string]func(*GradRows){"go": gradRowsGo, "native": gradRowsFor(true)}
	if !hasAVX512 {
		delete(impls, "native")
	}
	rng := rand.New(rand.NewPCG(3, 4))
	cases := []struct {
		name                         string
		c, k, nout, xrow, xplane, ow int
		twoRows                      bool
		mask2                        uint16
	}{
		{"conv1", 1, 5, 6, 32, 32 * 32, 28, false, 0x0fff},
		{"conv2", 6, 5, 8, 14, 14 * 14, 10, true, 0x03ff},
		{"conv2-last-row", 6, 5, 8, 14, 14 * 14, 10, true, 0},
		{"k3-seven", 2, 3, 7, 16, 16 * 9, 16, false, 0},
	}
	for _, cs := range cases {
		for name, impl := range impls {
			r := GradRows{NOut: cs.nout, C: cs.c, K: cs.k, XRow: cs.xrow, XPlane: cs.xplane, Mask2: cs.mask2}
			r.Mask1 = uint16(1<<min(cs.ow, 16) - 1)
			if cs.twoRows {
				r.XV2, r.DYV2, r.DYPlane = cs.xrow, cs.ow, 2*cs.ow+3
			} else {
				r.XV2, r.DYV2, r.DYPlane = 16, 16, 32+5
			}
			r.X = randSlice(rng, cs.c*cs.xplane)
			r.DY = randSlice(rng, (cs.nout-1)*r.DYPlane+32)
			r.Acc = randSlice(rng, AccSize(cs.c, cs.k))
			want := make([]float64, len(r.Acc))
			for i, v := range r.Acc {
				want[i] = float64(v)
			}
			masks, xoff, dyoff := [2]uint16{r.Mask1, r.Mask2}, [2]int{0, r.XV2}, [2]int{0, r.DYV2}
			for ci := range cs.c {
				for ki := range cs.k {
					for kj := range cs.k {
						tap := (ci*cs.k+ki)*cs.k + kj
						for o := range cs.nout {
							for v := range 2 {
								for j := range 16 {
									if masks[v]&(1<<j) != 0 {
										want[(tap*Group+o)*16+j] += float64(r.DY[o*r.DYPlane+dyoff[v]+j]) * float64(r.X[ci*cs.xplane+ki*cs.xrow+kj+xoff[v]+j])
									}
								}
							}
						}
					}
				}
			}
			if err := r.check(); err != nil {
				t.Fatalf("%s: %v", cs.name, err)
			}
			impl(&r)
			for i := range want {
				if d := math.Abs(float64(r.Acc[i]) - want[i]); d > 1e-5 {
					t.Fatalf("%s/%s: acc[%d] = %v, want %v", cs.name, name, i, r.Acc[i], want[i])
				}
			}
			taps := cs.c * cs.k * cs.k
			dw := randSlice(rng, cs.nout*(taps+2))
			dw0 := append([]float32(nil), dw...)
			SumAcc(dw, taps+2, cs.nout, taps, r.Acc)
			for o := range cs.nout {
				for tp := range taps + 2 {
					w := float64(dw0[o*(taps+2)+tp])
					if tp < taps {
						for j := range 16 {
							w += float64(r.Acc[(tp*Group+o)*16+j])
						}
					}
					if d := math.Abs(float64(dw[o*(taps+2)+tp]) - w); d > 1e-5 {
						t.Fatalf("%s/%s: SumAcc dw[%d][%d] = %v, want %v", cs.name, name, o, tp, dw[o*(taps+2)+tp], w)
					}
				}
			}
		}
	}
}

// TestGradRowsCheck: a call that would read past its slices is refused.
func TestGradRowsCheck(t *testing.T) {
	r := GradRows{NOut: 6, C: 1, K: 5, XRow: 32, XPlane: 1024, XV2: 16, DYV2: 16, DYPlane: 784,
		X: make([]float32, 1024), DY: make([]float32, 6*784), Acc: make([]float32, AccSize(1, 5)), Mask1: 0xffff, Mask2: 0x0fff}
	if err := r.check(); err != nil {
		t.Fatal(err)
	}
	for name, short := range map[string]GradRows{
		"input":    func() GradRows { s := r; s.X = r.X[:159]; return s }(),
		"gradient": func() GradRows { s := r; s.DY = r.DY[:5*784+27]; return s }(),
		"acc":      func() GradRows { s := r; s.Acc = r.Acc[:len(r.Acc)-1]; return s }(),
	} {
		if err := short.check(); err == nil {
			t.Errorf("short %s accepted", name)
		}
	}
}
