package directconv

import (
	"fmt"
	"math/bits"
)

// GradRows is one call of the weight-gradient kernel, the adjoint of Rows in
// its weights: with the same geometry fields (DY, DYV2, DYPlane in the
// places of Y, YV2, YPlane), for taps t = (ci·K+ki)·K+kj, channels o < NOut
// and lanes j valid under the masks,
//
//	Acc[(t·8+o)·16 + j] += Σ_v DY[v][o][j] · X[v][ci·XPlane + ki·XRow + kj + j]
//
// Acc keeps one 16-lane partial sum per tap and channel; the weight
// gradient of (o, t) is the sum of its lanes after the last call (SumAcc).
type GradRows struct {
	Acc           []float32 // C·K·K taps × 8 channels × 16 lanes
	DY            []float32
	DYV2, DYPlane int
	NOut          int
	X             []float32
	XV2, XRow     int
	XPlane, C, K  int
	Mask1, Mask2  uint16
}

// AccSize is the length of GradRows.Acc for c input channels and k×k taps.
func AccSize(c, k int) int { return c * k * k * Group * 16 }

func (r *GradRows) check() error {
	if r.NOut < 1 || r.NOut > Group || r.C < 1 || r.K < 1 || r.XV2 < 0 || r.DYV2 < 0 || r.XRow < 0 || r.XPlane < 0 || r.DYPlane < 0 {
		return fmt.Errorf("directconv: bad gradient geometry %+v", *r)
	}
	if len(r.Acc) < AccSize(r.C, r.K) {
		return fmt.Errorf("directconv: %d partial sums, need %d", len(r.Acc), AccSize(r.C, r.K))
	}
	need := func(end, off int, m uint16) int {
		if j := bits.Len16(m) - 1; j >= 0 {
			return end + off + j + 1
		}
		return 0
	}
	xEnd := (r.C-1)*r.XPlane + (r.K-1)*r.XRow + r.K - 1
	if nx := max(need(xEnd, 0, r.Mask1), need(xEnd, r.XV2, r.Mask2)); len(r.X) < nx {
		return fmt.Errorf("directconv: input has %d values, the call reads %d", len(r.X), nx)
	}
	dyEnd := (r.NOut - 1) * r.DYPlane
	if nd := max(need(dyEnd, 0, r.Mask1), need(dyEnd, r.DYV2, r.Mask2)); len(r.DY) < nd {
		return fmt.Errorf("directconv: output gradient has %d values, the call reads %d", len(r.DY), nd)
	}
	return nil
}

// Do runs the call; like Rows.Do it panics on a call that would read
// outside its slices.
func (r *GradRows) Do() {
	if err := r.check(); err != nil {
		panic(err)
	}
	gradRowsImpl(r)
}

// SumAcc adds the lanes of acc's partial sums into dw [nout][C·K·K] (the
// layout of a convolution's weight rows, row stride ldw): dw[o·ldw+t] +=
// Σ_j acc[(t·8+o)·16+j].
func SumAcc(dw []float32, ldw, nout, taps int, acc []float32) {
	for t := range taps {
		for o := range nout {
			a := acc[(t*Group+o)*16:][:16]
			var s0, s1, s2, s3 float32
			for j := 0; j < 16; j += 4 {
				s0 += a[j]
				s1 += a[j+1]
				s2 += a[j+2]
				s3 += a[j+3]
			}
			dw[o*ldw+t] += (s0 + s1) + (s2 + s3)
		}
	}
}

// gradRowsGo is the portable weight-gradient kernel.
func gradRowsGo(r *GradRows) {
	masks := [2]uint16{r.Mask1, r.Mask2}
	xoff, dyoff := [2]int{0, r.XV2}, [2]int{0, r.DYV2}
	t := 0
	for ci := range r.C {
		for ki := range r.K {
			for kj := range r.K {
				for v := range 2 {
					base := ci*r.XPlane + ki*r.XRow + kj + xoff[v]
					for o := range r.NOut {
						acc := r.Acc[(t*Group+o)*16:][:16]
						dy := r.DY[o*r.DYPlane+dyoff[v]:]
						for j := range 16 {
							if masks[v]&(1<<j) != 0 {
								acc[j] += dy[j] * r.X[base+j]
							}
						}
					}
				}
				t++
			}
		}
	}
}
