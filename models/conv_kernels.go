package models

import "github.com/ringtrain/ringtrain/internal/vecmath"

// Loops behind Conv2D and MaxPool2D: im2col/col2im for one image and max
// pooling over whole planes. They index flat slices only (no interfaces, no
// allocations); slices are re-sliced to their exact length first so the
// compiler can drop most bounds checks.

// convGeom is one image's convolution geometry.
type convGeom struct {
	c, h, w, k, s, pad int
	oh, ow, ohw        int
	ckk                int // rows of col: C·k·k, ordered (channel, kernel row, kernel column) like W's columns
	inSize, outSize    int // values per image of x and y
}

// validCols returns the output columns [lo, hi) whose input column
// q·s − pad + kj lies inside [0, w).
func (g *convGeom) validCols(kj int) (lo, hi int) {
	if d := g.pad - kj; d > 0 {
		lo = (d + g.s - 1) / g.s
	}
	if last := g.w - 1 + g.pad - kj; last >= 0 {
		hi = min(g.ow, last/g.s+1)
	}
	return lo, max(lo, hi)
}

// im2col writes col[((ci·k+ki)·k+kj)·ld + oy·ow+ox] = x[ci][oy·s−pad+ki][ox·s−pad+kj]
// (zero outside the image) for one image x [C H W]: a C·k·k × OH·OW matrix
// with row stride ld (≥ OH·OW; the batch's images sit side by side).
func (g *convGeom) im2col(col []float32, ld int, x []float32) {
	col = col[:(g.ckk-1)*ld+g.ohw]
	r := 0
	for ci := range g.c {
		xc := x[ci*g.h*g.w:][:g.h*g.w]
		for ki := range g.k {
			for kj := range g.k {
				dst := col[r*ld:][:g.ohw]
				r++
				lo, hi := g.validCols(kj)
				off := kj - g.pad // input column of output column 0
				for oy := range g.oh {
					d := dst[oy*g.ow:][:g.ow]
					iy := oy*g.s - g.pad + ki
					if iy < 0 || iy >= g.h {
						clear(d)
						continue
					}
					clear(d[:lo])
					clear(d[hi:])
					xr := xc[iy*g.w:][:g.w]
					if g.s == 1 {
						copy(d[lo:hi], xr[lo+off:hi+off])
						continue
					}
					for ox := lo; ox < hi; ox++ {
						d[ox] = xr[ox*g.s+off]
					}
				}
			}
		}
	}
}

// col2im adds col (row stride ld) back into one image's gradient dx
// [C H W]: the adjoint of im2col (overlapping windows add up).
func (g *convGeom) col2im(dx, col []float32, ld int) {
	col = col[:(g.ckk-1)*ld+g.ohw]
	r := 0
	for ci := range g.c {
		dc := dx[ci*g.h*g.w:][:g.h*g.w]
		for ki := range g.k {
			for kj := range g.k {
				src := col[r*ld:][:g.ohw]
				r++
				lo, hi := g.validCols(kj)
				off := kj - g.pad
				for oy := range g.oh {
					iy := oy*g.s - g.pad + ki
					if iy < 0 || iy >= g.h || lo >= hi {
						continue
					}
					s := src[oy*g.ow:][:g.ow]
					dr := dc[iy*g.w:][:g.w]
					if g.s == 1 {
						d := dr[lo+off : hi+off]
						for i, v := range s[lo:hi] {
							d[i] += v
						}
						continue
					}
					for ox := lo; ox < hi; ox++ {
						dr[ox*g.s+off] += s[ox]
					}
				}
			}
		}
	}
}

// poolGeom is a max pool's geometry on one [H W] plane.
type poolGeom struct{ h, w, k, s, oh, ow int }

// forward writes the window maxima of planes planes of x into y. 2×2
// windows with stride 2 (LeNet's) run on internal/vecmath's loop (AVX-512
// where the CPU has it).
func (g *poolGeom) forward(y, x []float32, planes int) {
	if g.k == 2 && g.s == 2 {
		vecmath.MaxPool2x2(y, x, planes, g.h, g.w)
		return
	}
	hw, ohw := g.h*g.w, g.oh*g.ow
	for p := range planes {
		xp := x[p*hw:][:hw]
		yp := y[p*ohw:][:ohw]
		for oy := range g.oh {
			for ox := range g.ow {
				yp[oy*g.ow+ox] = xp[g.argmax(xp, oy, ox)]
			}
		}
	}
}

// argmax is the index in plane xp of the first maximum (row-major) of the
// window of output (oy, ox).
func (g *poolGeom) argmax(xp []float32, oy, ox int) int {
	base := oy*g.s*g.w + ox*g.s
	best, m := base, xp[base]
	for ki := range g.k {
		row := xp[base+ki*g.w:][:g.k]
		for kj, v := range row {
			if v > m {
				best, m = base+ki*g.w+kj, v
			}
		}
	}
	return best
}

// backward adds each dy value into dx at its window's first maximum in x.
func (g *poolGeom) backward(dx, dy, x []float32, planes int) {
	if g.k == 2 && g.s == 2 {
		vecmath.MaxPool2x2Grad(dx, dy, x, planes, g.h, g.w)
		return
	}
	hw, ohw := g.h*g.w, g.oh*g.ow
	for p := range planes {
		xp := x[p*hw:][:hw]
		dxp := dx[p*hw:][:hw]
		dyp := dy[p*ohw:][:ohw]
		for oy := range g.oh {
			for ox := range g.ow {
				dxp[g.argmax(xp, oy, ox)] += dyp[oy*g.ow+ox]
			}
		}
	}
}

// addBias sets dst = src + b.
func addBias(dst, src []float32, b float32) {
	src = src[:len(dst)]
	for i, v := range src {
		dst[i] = v + b
	}
}

// sum32 adds s in four float32 lanes (fewer dependent adds, less rounding
// drift than one running sum).
func sum32(s []float32) float32 {
	var a0, a1, a2, a3 float32
	i := 0
	for ; i+4 <= len(s); i += 4 {
		q := s[i : i+4 : i+4]
		a0 += q[0]
		a1 += q[1]
		a2 += q[2]
		a3 += q[3]
	}
	for ; i < len(s); i++ {
		a0 += s[i]
	}
	return (a0 + a1) + (a2 + a3)
}
