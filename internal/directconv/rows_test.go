package directconv

import (
	"math"
	"math/rand/v2"
	"testing"
)

// naiveRows is the definition of Rows, written out with no vectors.
func naiveRows(r *Rows) []float32 {
	y := append([]float32(nil), r.Y...)
	masks := [2]uint16{r.Mask1, r.Mask2}
	xoff, yoff := [2]int{0, r.XV2}, [2]int{0, r.YV2}
	for v := range 2 {
		for o := range r.NOut {
			for j := range 16 {
				if masks[v]&(1<<j) == 0 {
					continue
				}
				s := float64(r.Bias[o])
				for ci := range r.C {
					for ki := range r.K {
						for kj := range r.K {
							s += float64(r.W[((ci*r.K+ki)*r.K+kj)*Group+o]) * float64(r.X[ci*r.XPlane+ki*r.XRow+kj+xoff[v]+j])
						}
					}
				}
				y[o*r.YPlane+yoff[v]+j] = float32(s)
			}
		}
	}
	return y
}

func randSlice(rng *rand.Rand, n int) []float32 {
	s := make([]float32, n)
	for i := range s {
		s[i] = float32(2*rng.Float64() - 1)
	}
	return s
}

// TestRowsKernels checks every kernel this machine runs against naiveRows
// on one wide row (LeNet's conv1: 28 of 32 lanes), pairs of narrow rows
// (conv2: 10 of 16, and an odd last row) and ragged channel counts; the
// values outside the masked lanes must stay as they were.
func TestRowsKernels(t *testing.T) {
	impls := map[string]func(*Rows){"go": rowsGo, "native": rowsFor(true)}
	if !hasAVX512 {
		delete(impls, "native")
	}
	rng := rand.New(rand.NewPCG(1, 2))
	cases := []struct {
		name                         string
		c, k, nout, xrow, xplane, ow int
		twoRows                      bool
		mask2                        uint16
	}{
		{"conv1", 1, 5, 6, 32, 32 * 32, 28, false, 0x0fff},
		{"conv2", 6, 5, 8, 14, 14 * 14, 10, true, 0x03ff},
		{"conv2-last-row", 6, 5, 8, 14, 14 * 14, 10, true, 0},
		{"conv2dx", 16, 5, 6, 18, 18 * 18, 14, true, 0x3fff},
		{"k1-one-channel", 3, 1, 1, 20, 400, 20, false, 0x000f},
		{"k3-seven", 2, 3, 7, 16, 16 * 9, 16, false, 0},
	}
	for _, cs := range cases {
		for name, impl := range impls {
			r := Rows{NOut: cs.nout, C: cs.c, K: cs.k, XRow: cs.xrow, XPlane: cs.xplane, Mask2: cs.mask2}
			r.Mask1 = uint16(1<<min(cs.ow, 16) - 1)
			if cs.twoRows {
				r.XV2, r.YV2, r.YPlane = cs.xrow, cs.ow, 2*cs.ow+3
			} else {
				r.XV2, r.YV2, r.YPlane = 16, 16, 32+5
			}
			r.X = randSlice(rng, cs.c*cs.xplane)
			r.W = randSlice(rng, cs.c*cs.k*cs.k*Group)
			r.Bias = new([Group]float32)
			for o := range r.Bias {
				r.Bias[o] = float32(rng.Float64())
			}
			r.Y = randSlice(rng, cs.nout*r.YPlane+8)
			if err := r.check(); err != nil {
				t.Fatalf("%s: %v", cs.name, err)
			}
			want := naiveRows(&r)
			impl(&r)
			for i := range want {
				if d := math.Abs(float64(r.Y[i] - want[i])); d > 1e-5*float64(cs.c*cs.k*cs.k) {
					t.Fatalf("%s/%s: y[%d] = %v, want %v", cs.name, name, i, r.Y[i], want[i])
				}
			}
		}
	}
}

// TestRowsCheck: a call that would read or write past its slices is
// refused with an error naming what is short.
func TestRowsCheck(t *testing.T) {
	r := Rows{NOut: 6, C: 1, K: 5, XRow: 32, XPlane: 1024, XV2: 16, YV2: 16, YPlane: 784,
		X: make([]float32, 1024), W: make([]float32, 25*Group), Bias: new([Group]float32), Y: make([]float32, 6*784),
		Mask1: 0xffff, Mask2: 0x0fff}
	if err := r.check(); err != nil {
		t.Fatal(err)
	}
	short := r
	short.X = r.X[:4*32+4+16+11]
	if err := short.check(); err == nil {
		t.Fatal("short input accepted")
	}
	short = r
	short.Y = r.Y[:5*784+27]
	if err := short.check(); err == nil {
		t.Fatal("short output accepted")
	}
	short = r
	short.W = r.W[:24*Group]
	if err := short.check(); err == nil {
		t.Fatal("short weights accepted")
	}
	defer func() {
		if recover() == nil {
			t.Fatal("Do ran a call that reads past its input")
		}
	}()
	short = r
	short.X = r.X[:100]
	short.Do()
}
