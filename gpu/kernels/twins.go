package kernels

import (
	"fmt"
	"math"

	"github.com/x448/float16"
)

// The Go twins of the kernels in kernels.cu, one per kernel, same name in
// Go style. Each does the kernel's arithmetic in the kernel's order, so on
// the same input it returns the same bits as the GPU:
//
//   - float32 operations are written so that Go cannot fuse a*b+c into an
//     FMA (an explicit float32() conversion forces a rounding, per the Go
//     spec); the PTX is compiled with --fmad=false for the same reason.
//   - Sums (ColSum, RowSum, Col2im, MaxPoolBwd) follow the kernel's fixed
//     order, including col_sum's and row_sum's shared-memory trees.
//   - SoftmaxXent uses Go's math.Exp and math.Log where the kernel uses
//     CUDA's double exp and log: both are within an ulp or so of the exact
//     value but not always the same double, so its outputs agree to about
//     1e-15 relative before the final float32 rounding (and then almost
//     always exactly).
//   - NaN payloads are not promised, except that the half conversions
//     produce the canonical NaNs the GPU's cvt instructions produce.
//
// Twins panic when slice lengths do not match the sizes, as a kernel would
// read or write out of bounds.

func need(what string, got, want int) {
	if got != want {
		panic(fmt.Sprintf("kernels: %s has %d elements, want %d", what, got, want))
	}
}

// ReluFwd is relu_fwd: y = x >= 0 ? x : 0.
func ReluFwd(x, y []float32) {
	need("relu_fwd y", len(y), len(x))
	for i, v := range x {
		if v >= 0 {
			y[i] = v
		} else {
			y[i] = 0
		}
	}
}

// ReluBwd is relu_bwd: dx = x >= 0 ? dy : 0 (gradient 1 at exactly 0).
func ReluBwd(x, dy, dx []float32) {
	need("relu_bwd dy", len(dy), len(x))
	need("relu_bwd dx", len(dx), len(x))
	for i, v := range x {
		if v >= 0 {
			dx[i] = dy[i]
		} else {
			dx[i] = 0
		}
	}
}

// Mul is mul: y = a*b.
func Mul(a, b, y []float32) {
	need("mul b", len(b), len(a))
	need("mul y", len(y), len(a))
	for i := range a {
		y[i] = a[i] * b[i]
	}
}

// AddInplace is add_inplace: y += x.
func AddInplace(y, x []float32) {
	need("add_inplace x", len(x), len(y))
	for i := range y {
		y[i] += x[i]
	}
}

// AddBiasRows is add_bias_rows: y[r*cols+c] += b[c] for y [rows, cols].
func AddBiasRows(y, b []float32, rows, cols int) {
	need("add_bias_rows y", len(y), rows*cols)
	need("add_bias_rows b", len(b), cols)
	for r := 0; r < rows; r++ {
		row := y[r*cols : (r+1)*cols]
		for c := range row {
			row[c] += b[c]
		}
	}
}

// treeSum adds part[t+h] into part[t] for t < h, h = len/2, len/4, ..., 1,
// and returns part[0]: the shared-memory tree of col_sum and row_sum.
// len(part) is a power of two.
func treeSum(part []float32) float32 {
	for h := len(part) / 2; h > 0; h >>= 1 {
		for t := 0; t < h; t++ {
			part[t] += part[t+h]
		}
	}
	return part[0]
}

// ColSum is col_sum: out[c] = (accumulate ? out[c] : 0) + Σ_r x[r*cols+c],
// summed in the kernel's order (rows r ≡ t mod 32 into partial t, ascending,
// then the 32-way tree), so the result equals the GPU's bit for bit. Any
// other order (a plain loop over r, gorgonia's sum) agrees only to float32
// rounding: about rows·2⁻²⁴ relative in the worst case.
func ColSum(x, out []float32, rows, cols int, accumulate bool) {
	need("col_sum x", len(x), rows*cols)
	need("col_sum out", len(out), cols)
	// part[t*cols+c] is the partial of thread (c mod 32, t) of column c's
	// block; looping rows outermost reads x sequentially.
	part := make([]float32, ColSumBlockY*cols)
	for r := 0; r < rows; r++ {
		p := part[(r%ColSumBlockY)*cols:][:cols]
		row := x[r*cols : (r+1)*cols]
		for c, v := range row {
			p[c] += v
		}
	}
	var col [ColSumBlockY]float32
	for c := 0; c < cols; c++ {
		for t := range col {
			col[t] = part[t*cols+c]
		}
		s := treeSum(col[:])
		if accumulate {
			out[c] += s
		} else {
			out[c] = s
		}
	}
}

// RowSum is row_sum: out[r] = (accumulate ? out[r] : 0) + Σ_c x[r*cols+c],
// summed in the kernel's order (columns c ≡ t mod 256 into partial t,
// ascending, then the 256-way tree), bit for bit the GPU's result.
func RowSum(x, out []float32, rows, cols int, accumulate bool) {
	need("row_sum x", len(x), rows*cols)
	need("row_sum out", len(out), rows)
	var part [RowSumBlock]float32
	for r := 0; r < rows; r++ {
		clear(part[:])
		row := x[r*cols : (r+1)*cols]
		for c, v := range row {
			part[c%RowSumBlock] += v
		}
		s := treeSum(part[:])
		if accumulate {
			out[r] += s
		} else {
			out[r] = s
		}
	}
}

// ConvOut is conv_out: dst[(b*C+c)*HW+p] = src[(c*B+b)*HW+p] + bias[c],
// from the GEMM layout [C, B, HW] to the layer layout [B, C, HW] plus bias.
func ConvOut(src, bias, dst []float32, B, C, HW int) {
	need("conv_out src", len(src), B*C*HW)
	need("conv_out bias", len(bias), C)
	need("conv_out dst", len(dst), B*C*HW)
	for b := 0; b < B; b++ {
		for c := 0; c < C; c++ {
			d := dst[(b*C+c)*HW:][:HW]
			s := src[(c*B+b)*HW:][:HW]
			for p := range d {
				d[p] = s[p] + bias[c]
			}
		}
	}
}

// ConvGradIn is conv_grad_in: dst[(c*B+b)*HW+p] = dy[(b*C+c)*HW+p], the
// inverse of ConvOut's permutation, without bias.
func ConvGradIn(dy, dst []float32, B, C, HW int) {
	need("conv_grad_in dy", len(dy), B*C*HW)
	need("conv_grad_in dst", len(dst), B*C*HW)
	for b := 0; b < B; b++ {
		for c := 0; c < C; c++ {
			copy(dst[(c*B+b)*HW:][:HW], dy[(b*C+c)*HW:][:HW])
		}
	}
}

func mustValid(what string, g ConvGeom) {
	if err := g.Validate(); err != nil {
		panic(what + ": " + err.Error())
	}
}

// Im2col is im2col: x [B, C, H, W] → col [C*K*K, B*OH*OW],
// col[((c*K+ki)*K+kj)*(B*OH*OW) + (b*OH+oh)*OW+ow] =
// x[b, c, oh*Stride−Pad+ki, ow*Stride−Pad+kj], 0 outside the image.
func Im2col(x, col []float32, g ConvGeom) {
	mustValid("im2col", g)
	need("im2col x", len(x), g.InSize())
	need("im2col col", len(col), g.ColRows()*g.ColCols())
	N := g.ColCols()
	for c := 0; c < g.C; c++ {
		for ki := 0; ki < g.K; ki++ {
			for kj := 0; kj < g.K; kj++ {
				dst := col[((c*g.K+ki)*g.K+kj)*N:][:N]
				j := 0
				for b := 0; b < g.B; b++ {
					plane := x[(b*g.C+c)*g.H*g.W:][:g.H*g.W]
					for oh := 0; oh < g.OH; oh++ {
						h := oh*g.Stride - g.Pad + ki
						for ow := 0; ow < g.OW; ow++ {
							w := ow*g.Stride - g.Pad + kj
							if h >= 0 && h < g.H && w >= 0 && w < g.W {
								dst[j] = plane[h*g.W+w]
							} else {
								dst[j] = 0
							}
							j++
						}
					}
				}
			}
		}
	}
}

// Col2im is col2im, the adjoint of Im2col as a gather: every dx element is
// written, dx[b,c,h,w] = Σ over ki, then kj, ascending, with
// oh = (h+Pad−ki)/Stride and ow = (w+Pad−kj)/Stride exact and in range, of
// col[((c*K+ki)*K+kj)*(B*OH*OW) + (b*OH+oh)*OW+ow].
func Col2im(col, dx []float32, g ConvGeom) {
	mustValid("col2im", g)
	need("col2im col", len(col), g.ColRows()*g.ColCols())
	need("col2im dx", len(dx), g.InSize())
	N := g.ColCols()
	i := 0
	for b := 0; b < g.B; b++ {
		for c := 0; c < g.C; c++ {
			for h := 0; h < g.H; h++ {
				for w := 0; w < g.W; w++ {
					var s float32
					for ki := 0; ki < g.K; ki++ {
						th := h + g.Pad - ki
						if th < 0 || th%g.Stride != 0 {
							continue
						}
						oh := th / g.Stride
						if oh >= g.OH {
							continue
						}
						for kj := 0; kj < g.K; kj++ {
							tw := w + g.Pad - kj
							if tw < 0 || tw%g.Stride != 0 {
								continue
							}
							ow := tw / g.Stride
							if ow >= g.OW {
								continue
							}
							s += col[((c*g.K+ki)*g.K+kj)*N+(b*g.OH+oh)*g.OW+ow]
						}
					}
					dx[i] = s
					i++
				}
			}
		}
	}
}

func mustPool(what string, g ConvGeom) {
	mustValid(what, g)
	if g.Pad != 0 {
		panic(fmt.Sprintf("%s: geometry %+v: max pooling takes no padding", what, g))
	}
}

// MaxPoolFwd is maxpool_fwd (Pad must be 0): y[b,c,oh,ow] is the maximum of
// the K×K window at (oh*Stride, ow*Stride) and arg its index h*W+w within
// the (b, c) plane: the first maximum in row-major window order (the scan
// replaces only on a strict >).
func MaxPoolFwd(x, y []float32, arg []int32, g ConvGeom) {
	mustPool("maxpool_fwd", g)
	need("maxpool_fwd x", len(x), g.InSize())
	need("maxpool_fwd y", len(y), g.OutSize())
	need("maxpool_fwd arg", len(arg), g.OutSize())
	i := 0
	for plane := 0; plane < g.B*g.C; plane++ {
		xp := x[plane*g.H*g.W:][:g.H*g.W]
		for oh := 0; oh < g.OH; oh++ {
			for ow := 0; ow < g.OW; ow++ {
				h0, w0 := oh*g.Stride, ow*g.Stride
				best := h0*g.W + w0
				m := xp[best]
				for ki := 0; ki < g.K; ki++ {
					for kj := 0; kj < g.K; kj++ {
						idx := (h0+ki)*g.W + w0 + kj
						if v := xp[idx]; v > m {
							m, best = v, idx
						}
					}
				}
				y[i], arg[i] = m, int32(best)
				i++
			}
		}
	}
}

// MaxPoolBwd is maxpool_bwd (Pad must be 0), the adjoint of MaxPoolFwd's
// selection as a gather: every dx element is written, dx[b,c,h,w] = Σ over
// the windows containing (h, w), oh then ow ascending, whose arg is h*W+w,
// of dy[b,c,oh,ow].
func MaxPoolBwd(dy []float32, arg []int32, dx []float32, g ConvGeom) {
	mustPool("maxpool_bwd", g)
	need("maxpool_bwd dy", len(dy), g.OutSize())
	need("maxpool_bwd arg", len(arg), g.OutSize())
	need("maxpool_bwd dx", len(dx), g.InSize())
	// Windows oh with oh*Stride <= h < oh*Stride+K.
	lo := func(h int) int {
		if h-g.K+1 <= 0 {
			return 0
		}
		return (h - g.K + 1 + g.Stride - 1) / g.Stride
	}
	i := 0
	for plane := 0; plane < g.B*g.C; plane++ {
		dyp := dy[plane*g.OH*g.OW:][:g.OH*g.OW]
		ap := arg[plane*g.OH*g.OW:][:g.OH*g.OW]
		for h := 0; h < g.H; h++ {
			ohHi := min(h/g.Stride, g.OH-1)
			for w := 0; w < g.W; w++ {
				owHi := min(w/g.Stride, g.OW-1)
				self := int32(h*g.W + w)
				var s float32
				for oh := lo(h); oh <= ohHi; oh++ {
					for ow := lo(w); ow <= owHi; ow++ {
						if o := oh*g.OW + ow; ap[o] == self {
							s += dyp[o]
						}
					}
				}
				dx[i] = s
				i++
			}
		}
	}
}

// SoftmaxXent is softmax_xent: per row i of logits [B, C], in float64,
// m = max, s = Σ_j exp(v_j − m) (j ascending), lse = m + log(s),
// rowloss[i] = scale·(lse − logits[i, label]) and
// dlogits[i, j] = float32(scale·(exp(v_j − lse) − [j == label])): the
// formulas of models.SoftmaxCrossEntropy, whose loss is Σ_i rowloss[i] up
// to the order of the scaling. A label outside [0, C) makes rowloss[i] and
// the row of dlogits NaN.
func SoftmaxXent(logits []float32, labels []int32, rowloss []float64, dlogits []float32, B, C int, scale float32) {
	need("softmax_xent logits", len(logits), B*C)
	need("softmax_xent labels", len(labels), B)
	need("softmax_xent rowloss", len(rowloss), B)
	need("softmax_xent dlogits", len(dlogits), B*C)
	sc := float64(scale)
	for i := 0; i < B; i++ {
		row := logits[i*C : (i+1)*C]
		drow := dlogits[i*C : (i+1)*C]
		lab := int(labels[i])
		if lab < 0 || lab >= C {
			rowloss[i] = math.NaN()
			for j := range drow {
				drow[j] = float32(math.NaN())
			}
			continue
		}
		m := math.Inf(-1)
		for _, v := range row {
			if float64(v) > m {
				m = float64(v)
			}
		}
		var s float64
		for _, v := range row {
			s += math.Exp(float64(v) - m)
		}
		lse := m + math.Log(s)
		rowloss[i] = sc * (lse - float64(row[lab]))
		for j, v := range row {
			p := math.Exp(float64(v) - lse)
			if j == lab {
				p--
			}
			drow[j] = float32(sc * p)
		}
	}
}

// SGDStep is sgd_step, element by element in float32 with every operation
// rounded (no FMA): g' = g + wd·w; with mu == 0, w −= lr·g' and v is not
// touched (it may be nil); otherwise v = mu·v + g' and
// w −= lr·(nesterov ? g' + mu·v : v). Bit for bit models.SGD.Step.
func SGDStep(w, g, v []float32, lr, mu, wd float32, nesterov bool) {
	need("sgd_step g", len(g), len(w))
	if mu == 0 {
		for i, wj := range w {
			gj := g[i] + float32(wd*wj)
			w[i] = wj - float32(lr*gj)
		}
		return
	}
	need("sgd_step v", len(v), len(w))
	for i, wj := range w {
		gj := g[i] + float32(wd*wj)
		vj := float32(mu*v[i]) + gj
		v[i] = vj
		if nesterov {
			w[i] = wj - float32(lr*(gj+float32(mu*vj)))
		} else {
			w[i] = wj - float32(lr*vj)
		}
	}
}

// AdamStep is adam_step, in float32 with every operation rounded (no FMA):
// g' = g + wd·w; m = b1·m + (1−b1)·g'; v = b2·v + (1−b2)·g'·g';
// w −= lr·(m/c1) / (√(v/c2) + eps), with c1 = 1−b1ᵗ and c2 = 1−b2ᵗ. Bit for
// bit models.Adam.Step (whose float32(math.Sqrt(float64(x))) is the
// correctly rounded float32 square root, as the kernel's sqrtf).
func AdamStep(w, g, m, v []float32, lr, b1, b2, eps, wd, c1, c2 float32) {
	need("adam_step g", len(g), len(w))
	need("adam_step m", len(m), len(w))
	need("adam_step v", len(v), len(w))
	for i, wj := range w {
		gj := g[i] + float32(wd*wj)
		mj := float32(b1*m[i]) + float32((1-b1)*gj)
		vj := float32(b2*v[i]) + float32(float32((1-b2)*gj)*gj)
		m[i], v[i] = mj, vj
		w[i] = wj - float32(lr*(mj/c1))/(float32(math.Sqrt(float64(vj/c2)))+eps)
	}
}

// Canonical NaNs: what the GPU's cvt.rn.f16.f32 and cvt.f32.f16 produce for
// any NaN input.
const (
	canonicalNaN16 = 0x7fff
	canonicalNaN32 = 0x7fffffff
)

// F32ToF16 is f32_to_f16: y = half(x·scale), rounded to nearest even,
// overflowing to ±Inf, with subnormal halves; a NaN becomes the canonical
// half NaN 0x7fff.
func F32ToF16(x []float32, y []uint16, scale float32) {
	need("f32_to_f16 y", len(y), len(x))
	for i, v := range x {
		f := v * scale
		if f != f {
			y[i] = canonicalNaN16
			continue
		}
		y[i] = float16.Fromfloat32(f).Bits()
	}
}

// F16ToF32 is f16_to_f32: y = float32(x)·scale (the widening is exact); a
// NaN half becomes the canonical NaN 0x7fffffff before the scaling.
func F16ToF32(x []uint16, y []float32, scale float32) {
	need("f16_to_f32 y", len(y), len(x))
	for i, h := range x {
		f := float16.Frombits(h).Float32()
		if f != f {
			f = math.Float32frombits(canonicalNaN32)
		}
		y[i] = f * scale
	}
}
