package models

import "github.com/ringtrain/ringtrain/internal/directconv"

// convDirect switches the direct forward on (tests turn it off to compare
// it with the im2col path).
var convDirect = true

// direct reports whether the forward runs on internal/directconv's row
// kernel instead of im2col and a GEMM: stride 1 and output rows up to 32
// wide (LeNet's 28×28 and 10×10 maps). Such convolutions are thin: for
// conv1 (6 channels, C·k·k = 25) im2col writes a 5 MB column matrix for
// 15 MFLOP, and the GEMM packs it again; the direct kernel reads each input
// row from L1 and copies nothing.
func (g *convGeom) direct() bool { return convDirect && g.s == 1 && g.ow <= 32 }

// forwardDirect computes y [N Out OH OW] = conv(x) + bias for n images with
// the row kernel: eight output channels at a time, one output row per call
// when it is wider than 16, else two. The weights are packed tap-major,
// eight channels side by side (directconv.Rows.W); a padded convolution
// copies each image into a zero-bordered buffer first.
func (c *Conv2D) forwardDirect(g *convGeom, y, x []float32, n int, sc *convScratch) {
	const G = directconv.Group
	groups := (c.out + G - 1) / G
	sc.wp = grow(sc.wp, groups*g.ckk*G)
	wp := sc.wp[:groups*g.ckk*G]
	clear(wp)
	for o := range c.out {
		grp, lane := o/G, o%G
		w := c.weight.Value[o*g.ckk:][:g.ckk]
		dst := wp[grp*g.ckk*G:]
		for t, v := range w {
			dst[t*G+lane] = v
		}
	}
	if cap(sc.bias) < groups {
		sc.bias = make([][G]float32, groups)
	}
	bias := sc.bias[:groups]
	clear(bias)
	for o, b := range c.bias.Value {
		bias[o/G][o%G] = b
	}
	ph, pw := g.h+2*g.pad, g.w+2*g.pad
	if g.pad > 0 {
		sc.xpad = grow(sc.xpad, g.c*ph*pw)
	}
	for i := range n {
		xi := x[i*g.inSize:][:g.inSize]
		if g.pad > 0 {
			xp := sc.xpad[:g.c*ph*pw]
			clear(xp)
			for ci := range g.c {
				for iy := range g.h {
					copy(xp[(ci*ph+iy+g.pad)*pw+g.pad:][:g.w], xi[(ci*g.h+iy)*g.w:][:g.w])
				}
			}
			xi = xp
		}
		yi := y[i*g.outSize:][:g.outSize]
		for grp := range groups {
			o0 := grp * G
			// in the scratch: the kernel is called through a function
			// variable, so a Rows on the stack would escape
			r := &sc.rows
			*r = directconv.Rows{NOut: min(G, c.out-o0), YPlane: g.ohw, XRow: pw, XPlane: ph * pw, C: g.c, K: g.k,
				W: wp[grp*g.ckk*G:], Bias: &bias[grp]}
			if g.ow > 16 { // one row: lanes 0-15 and 16-(ow-1)
				r.XV2, r.YV2, r.Mask1, r.Mask2 = 16, 16, 0xffff, uint16(1)<<(g.ow-16)-1
				for oy := range g.oh {
					r.X, r.Y = xi[oy*pw:], yi[o0*g.ohw+oy*g.ow:]
					r.Do()
				}
				continue
			}
			mask := uint16(1)<<g.ow - 1 // rows oy and oy+1
			r.XV2, r.YV2, r.Mask1 = pw, g.ow, mask
			for oy := 0; oy < g.oh; oy += 2 {
				r.Mask2 = mask
				if oy+1 == g.oh {
					r.Mask2 = 0
				}
				r.X, r.Y = xi[oy*pw:], yi[o0*g.ohw+oy*g.ow:]
				r.Do()
			}
		}
	}
}

// grow returns s with length n, reallocated when its capacity is short.
func grow(s []float32, n int) []float32 {
	if cap(s) < n {
		return make([]float32, n)
	}
	return s[:n]
}
