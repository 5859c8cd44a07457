package models

import "github.com/ringtrain/ringtrain/internal/directconv"

// convDirect switches the direct kernels on (tests turn it off to compare
// them with the im2col path).
var convDirect = true

// direct reports whether the forward and the weight gradient run on
// internal/directconv's row kernels instead of im2col and a GEMM: stride 1
// and output rows up to 32 wide (LeNet's 28×28 and 10×10 maps). Such
// convolutions are thin: for conv1 (6 channels, C·k·k = 25) im2col writes a
// 5 MB column matrix for 15 MFLOP, and the GEMM packs it again; the direct
// kernels read each input row from L1 and copy nothing but a padded image.
func (g *convGeom) direct() bool { return convDirect && g.s == 1 && g.ow <= 32 }

// directMaxTaps bounds the convolutions that run direct: beyond about a
// thousand taps (C·k·k, and Out·k·k for dx) a GEMM amortizes its packing,
// and the weight gradient's partial sums (64 bytes per tap and channel)
// outgrow L2. LeNet's have 25 and 150 (400 for conv2's dx).
const directMaxTaps = 1024

// direct reports whether this layer runs g on the direct kernels.
func (c *Conv2D) direct(g *convGeom) bool {
	return g.direct() && g.ckk <= directMaxTaps && c.out*g.k*g.k <= directMaxTaps
}

// directDX reports whether the input gradient runs on the forward row
// kernel too: for stride 1 it is the convolution of the output gradient,
// padded by k−1−pad, with the filters flipped and their channels swapped,
// and its rows are the input's (up to 32 wide).
func (g *convGeom) directDX() bool { return g.direct() && g.pad <= g.k-1 && g.w <= 32 }

const convGroup = directconv.Group

// packTaps fills wp with the weights of out channels over taps taps, by
// groups of eight channels, tap-major (directconv.Rows.W): w(o, t) goes to
// wp[((o/8)·taps + t)·8 + o%8]; channels past out in the last group are 0.
func packTaps(wp []float32, out, taps int, w func(o, t int) float32) {
	clear(wp)
	for o := range out {
		dst := wp[(o/convGroup)*taps*convGroup+o%convGroup:]
		for t := range taps {
			dst[t*convGroup] = w(o, t)
		}
	}
}

// padPlanes copies c planes h×w of src into dst with a zero border of pad.
func padPlanes(dst, src []float32, c, h, w, pad int) {
	ph, pw := h+2*pad, w+2*pad
	clear(dst[:c*ph*pw])
	for ci := range c {
		for iy := range h {
			copy(dst[(ci*ph+iy+pad)*pw+pad:][:w], src[(ci*h+iy)*w:][:w])
		}
	}
}

// rowGeom is one image's shape for the row kernels: c input planes ph×pw
// (padded), out channels of oh×ow outputs, k×k taps.
type rowGeom struct{ c, ph, pw, k, out, oh, ow int }

// setRows fills the fields of a row-kernel call that depend on the output
// row oy: one row per call when it is wider than 16 (lanes 0-15 and the
// rest), else rows oy and oy+1. It returns the step to the next oy.
func (g *rowGeom) setRows(oy int, xv2, yv2 *int, m1, m2 *uint16) int {
	if g.ow > 16 {
		*xv2, *yv2, *m1, *m2 = 16, 16, 0xffff, uint16(1)<<(g.ow-16)-1
		return 1
	}
	mask := uint16(1)<<g.ow - 1
	*xv2, *yv2, *m1, *m2 = g.pw, g.ow, mask, mask
	if oy+1 == g.oh {
		*m2 = 0
	}
	return 2
}

// convImage computes y [out][oh][ow] = the convolution of xp (padded) with
// the packed weights wp, plus bias, for one image. r is caller-owned (the
// kernel is called through a function variable: a Rows on the stack would
// escape).
func convImage(r *directconv.Rows, g *rowGeom, y, xp, wp []float32, bias [][convGroup]float32) {
	taps, ohw := g.c*g.k*g.k, g.oh*g.ow
	for grp := range bias {
		o0 := grp * convGroup
		*r = directconv.Rows{NOut: min(convGroup, g.out-o0), YPlane: ohw, XRow: g.pw, XPlane: g.ph * g.pw, C: g.c, K: g.k,
			W: wp[grp*taps*convGroup:], Bias: &bias[grp]}
		for oy := 0; oy < g.oh; {
			step := g.setRows(oy, &r.XV2, &r.YV2, &r.Mask1, &r.Mask2)
			r.X, r.Y = xp[oy*g.pw:], y[o0*ohw+oy*g.ow:]
			r.Do()
			oy += step
		}
	}
}

// gradImage adds one image's contribution to the weight gradient's partial
// sums acc (directconv.AccSize per group of eight channels): dy [out][oh][ow]
// against xp (padded).
func gradImage(r *directconv.GradRows, g *rowGeom, acc, dy, xp []float32) {
	ohw, size := g.oh*g.ow, directconv.AccSize(g.c, g.k)
	for grp := 0; grp*convGroup < g.out; grp++ {
		o0 := grp * convGroup
		*r = directconv.GradRows{Acc: acc[grp*size:][:size], NOut: min(convGroup, g.out-o0), DYPlane: ohw,
			XRow: g.pw, XPlane: g.ph * g.pw, C: g.c, K: g.k}
		for oy := 0; oy < g.oh; {
			step := g.setRows(oy, &r.XV2, &r.DYV2, &r.Mask1, &r.Mask2)
			r.X, r.DY = xp[oy*g.pw:], dy[o0*ohw+oy*g.ow:]
			r.Do()
			oy += step
		}
	}
}

func groupsOf(n int) int { return (n + convGroup - 1) / convGroup }

// forwardDirect computes y [N Out OH OW] = conv(x) + bias for n images with
// the row kernel.
func (c *Conv2D) forwardDirect(g *convGeom, y, x []float32, n int, sc *convScratch) {
	rg := c.directGeom(g)
	sc.wp = grow(sc.wp, groupsOf(c.out)*g.ckk*convGroup)
	packTaps(sc.wp, c.out, g.ckk, func(o, t int) float32 { return c.weight.Value[o*g.ckk+t] })
	bias := sc.biasGroups(c.out)
	for o, b := range c.bias.Value {
		bias[o/convGroup][o%convGroup] = b
	}
	for i := range n {
		xp := sc.paddedImage(g, &rg, x, i)
		convImage(&sc.rows, &rg, y[i*g.outSize:][:g.outSize], xp, sc.wp, bias)
	}
}

// directGeom is the row kernels' view of the layer: the padded input planes and the output.
func (c *Conv2D) directGeom(g *convGeom) rowGeom {
	return rowGeom{c: g.c, ph: g.h + 2*g.pad, pw: g.w + 2*g.pad, k: g.k, out: c.out, oh: g.oh, ow: g.ow}
}

// paddedImage returns image i of x, zero-padded into the scratch when the layer pads.
func (sc *convScratch) paddedImage(g *convGeom, rg *rowGeom, x []float32, i int) []float32 {
	xp := x[i*g.inSize:][:g.inSize]
	if g.pad == 0 {
		return xp
	}
	sc.xpad = grow(sc.xpad, g.c*rg.ph*rg.pw)
	padPlanes(sc.xpad, xp, g.c, g.h, g.w, g.pad)
	return sc.xpad
}

// backwardDirect adds the weight and bias gradients of dy for n images of
// x, and computes dx when it is non-nil.
func (c *Conv2D) backwardDirect(g *convGeom, dx, dy, x []float32, n int, sc *convScratch) {
	db := c.bias.Grad
	for i := range n {
		dyn := dy[i*g.outSize:][:g.outSize]
		for o := range db {
			db[o] += sum32(dyn[o*g.ohw:][:g.ohw])
		}
	}
	rg := c.directGeom(g)
	size := directconv.AccSize(g.c, g.k)
	sc.acc = grow(sc.acc, groupsOf(c.out)*size)
	clear(sc.acc)
	for i := range n {
		xp := sc.paddedImage(g, &rg, x, i)
		gradImage(&sc.grad, &rg, sc.acc, dy[i*g.outSize:][:g.outSize], xp)
	}
	for grp := 0; grp*convGroup < c.out; grp++ {
		o0 := grp * convGroup
		directconv.SumAcc(c.weight.Grad[o0*g.ckk:], g.ckk, min(convGroup, c.out-o0), g.ckk, sc.acc[grp*size:][:size])
	}
	if dx == nil {
		return
	}
	// dx[ci][iy][ix] = Σ_{o,a,b} w[o][ci][k−1−a][k−1−b] · dypad[o][iy+a][ix+b],
	// dy padded by q = k−1−pad: a forward convolution from Out channels to C.
	q := g.k - 1 - g.pad
	tg := rowGeom{c: c.out, ph: g.oh + 2*q, pw: g.ow + 2*q, k: g.k, out: g.c, oh: g.h, ow: g.w}
	kk := g.k * g.k
	sc.wt = grow(sc.wt, groupsOf(g.c)*c.out*kk*convGroup)
	packTaps(sc.wt, g.c, c.out*kk, func(ci, t int) float32 {
		o, ab := t/kk, t%kk // ab = a·k+b; the flipped tap is kk−1−ab
		return c.weight.Value[(o*g.c+ci)*kk+kk-1-ab]
	})
	zero := sc.biasGroups(g.c)
	sc.dypad = grow(sc.dypad, c.out*tg.ph*tg.pw)
	for i := range n {
		padPlanes(sc.dypad, dy[i*g.outSize:][:g.outSize], c.out, g.oh, g.ow, q)
		convImage(&sc.rows, &tg, dx[i*g.inSize:][:g.inSize], sc.dypad, sc.wt, zero)
	}
}

// biasGroups returns zeroed bias groups for out channels.
func (sc *convScratch) biasGroups(out int) [][convGroup]float32 {
	if cap(sc.bias) < groupsOf(out) {
		sc.bias = make([][convGroup]float32, groupsOf(out))
	}
	b := sc.bias[:groupsOf(out)]
	clear(b)
	return b
}

// grow returns s with length n, reallocated when its capacity is short.
func grow(s []float32, n int) []float32 {
	if cap(s) < n {
		return make([]float32, n)
	}
	return s[:n]
}
