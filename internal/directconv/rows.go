package directconv

import (
	"fmt"
	"math/bits"
)

// Group is the number of output channels one call computes.
const Group = 8

// Rows is one call of the row kernel: for output channels o < NOut and
// lanes j of two output vectors v ∈ {1, 2} (lane j of v is valid when bit j
// of Mask1 / Mask2 is set),
//
//	y[v][o][j] = Bias[o] + Σ_{ci<C, ki<K, kj<K} W[((ci·K+ki)·K+kj)·8+o] · x[v][ci·XPlane + ki·XRow + kj + j]
//
// where vector 1 of y starts at Y[0] and of x at X[0], vector 2 at Y[YV2]
// and X[XV2], and output channel o at Y[o·YPlane]. Offsets count floats.
// With XV2 = 16 the two vectors are one row up to 32 wide; with XV2 = XRow,
// YV2 = the output width, two rows of up to 16.
type Rows struct {
	Y            []float32
	YV2, YPlane  int
	NOut         int
	X            []float32
	XV2, XRow    int
	XPlane, C, K int
	W            []float32 // C·K·K taps × 8 channels
	Bias         *[Group]float32
	Mask1, Mask2 uint16
}

// check returns an error naming the first argument the call would read or
// write outside of.
func (r *Rows) check() error {
	if r.NOut < 1 || r.NOut > Group || r.C < 1 || r.K < 1 || r.XV2 < 0 || r.YV2 < 0 || r.XRow < 0 || r.XPlane < 0 || r.YPlane < 0 {
		return fmt.Errorf("directconv: bad geometry %+v", *r)
	}
	if len(r.W) < r.C*r.K*r.K*Group {
		return fmt.Errorf("directconv: %d packed weights, need %d", len(r.W), r.C*r.K*r.K*Group)
	}
	last := func(m uint16) int { return bits.Len16(m) - 1 } // highest valid lane, -1 for none
	xEnd := (r.C-1)*r.XPlane + (r.K-1)*r.XRow + r.K - 1
	yEnd := (r.NOut - 1) * r.YPlane
	need := func(n, end, off int, m uint16) int {
		if j := last(m); j >= 0 {
			return max(n, end+off+j+1)
		}
		return n
	}
	if nx := need(need(0, xEnd, 0, r.Mask1), xEnd, r.XV2, r.Mask2); len(r.X) < nx {
		return fmt.Errorf("directconv: input has %d values, the call reads %d", len(r.X), nx)
	}
	if ny := need(need(0, yEnd, 0, r.Mask1), yEnd, r.YV2, r.Mask2); len(r.Y) < ny {
		return fmt.Errorf("directconv: output has %d values, the call writes %d", len(r.Y), ny)
	}
	return nil
}

// Do runs the call. It panics on a call that would touch memory outside its
// slices (a bug in the caller, which derives them from a checked layer
// geometry).
func (r *Rows) Do() {
	if err := r.check(); err != nil {
		panic(err)
	}
	rowsImpl(r)
}

// rowsGo is the portable kernel.
func rowsGo(r *Rows) {
	var acc [2][Group][16]float32
	for v := range 2 {
		for o := range Group {
			for j := range acc[v][o] {
				acc[v][o][j] = r.Bias[o]
			}
		}
	}
	masks := [2]uint16{r.Mask1, r.Mask2}
	xoff := [2]int{0, r.XV2}
	t := 0
	for ci := range r.C {
		for ki := range r.K {
			for kj := range r.K {
				w := r.W[t*Group:][:Group]
				t++
				for v := range 2 {
					base := ci*r.XPlane + ki*r.XRow + kj + xoff[v]
					for j := range 16 {
						if masks[v]&(1<<j) == 0 {
							continue
						}
						xv := r.X[base+j]
						for o, wo := range w {
							acc[v][o][j] += wo * xv
						}
					}
				}
			}
		}
	}
	yoff := [2]int{0, r.YV2}
	for v := range 2 {
		for o := range r.NOut {
			for j := range 16 {
				if masks[v]&(1<<j) != 0 {
					r.Y[o*r.YPlane+yoff[v]+j] = acc[v][o][j]
				}
			}
		}
	}
}
