package kernels

import (
	"math"
	"math/rand/v2"
	"runtime"
	"testing"
)

func randVec(r *rand.Rand, n int) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(r.NormFloat64())
	}
	return v
}

func dot64(a, b []float32) float64 {
	var s float64
	for i := range a {
		s += float64(a[i]) * float64(b[i])
	}
	return s
}

func same32(a, b float32) bool {
	return math.Float32bits(a) == math.Float32bits(b) || (a != a && b != b)
}

func close64(got, want, tol float64) bool {
	return math.Abs(got-want) <= tol*(1+math.Abs(want))
}

var negZero = float32(math.Copysign(0, -1))

func TestReluAndElementwise(t *testing.T) {
	inf := float32(math.Inf(1))
	nan := float32(math.NaN())
	x := []float32{-2, -0.5, negZero, 0, 1e-40, 3, inf, -inf, nan}
	y := make([]float32, len(x))
	ReluFwd(x, y)
	want := []float32{0, 0, negZero, 0, 1e-40, 3, inf, 0, 0}
	for i := range x {
		if !same32(y[i], want[i]) {
			t.Errorf("relu_fwd(%v) = %v, want %v", x[i], y[i], want[i])
		}
	}
	dy := []float32{1, 2, 3, 4, 5, 6, 7, 8, 9}
	dx := make([]float32, len(x))
	ReluBwd(x, dy, dx)
	wantDx := []float32{0, 0, 3, 4, 5, 6, 7, 0, 0} // gradient 1 at ±0
	for i := range x {
		if !same32(dx[i], wantDx[i]) {
			t.Errorf("relu_bwd at %v = %v, want %v", x[i], dx[i], wantDx[i])
		}
	}

	r := rand.New(rand.NewPCG(1, 2))
	a, b := randVec(r, 1000), randVec(r, 1000)
	p := make([]float32, 1000)
	Mul(a, b, p)
	s := append([]float32(nil), a...)
	AddInplace(s, b)
	for i := range a {
		if p[i] != a[i]*b[i] || s[i] != a[i]+b[i] {
			t.Fatalf("mul/add_inplace wrong at %d", i)
		}
	}

	rows, cols := 7, 13
	m := randVec(r, rows*cols)
	bias := randVec(r, cols)
	got := append([]float32(nil), m...)
	AddBiasRows(got, bias, rows, cols)
	for i := range m {
		if got[i] != m[i]+bias[i%cols] {
			t.Fatalf("add_bias_rows wrong at %d", i)
		}
	}
}

func TestColRowSum(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for _, sz := range [][2]int{{1, 1}, {4096, 10}, {37, 45}, {100, 33}, {3, 600}, {1, 1000}, {513, 257}} {
		rows, cols := sz[0], sz[1]
		x := randVec(r, rows*cols)
		// float64 references
		cref := make([]float64, cols)
		rref := make([]float64, rows)
		for i := 0; i < rows; i++ {
			for j := 0; j < cols; j++ {
				cref[j] += float64(x[i*cols+j])
				rref[i] += float64(x[i*cols+j])
			}
		}
		// Error bound of a float32 sum of n terms of |x| ~ 1: n·eps·Σ|x|
		// is loose; partial sums over 32 or 256 lanes and a tree keep it
		// far smaller. Use a generous bound.
		for _, acc := range []bool{false, true} {
			start := float32(0.5)
			out := make([]float32, cols)
			for j := range out {
				out[j] = start
			}
			ColSum(x, out, rows, cols, acc)
			for j := range out {
				want := cref[j]
				if acc {
					want += float64(start)
				}
				if !close64(float64(out[j]), want, 1e-5*math.Sqrt(float64(rows))) {
					t.Errorf("col_sum %dx%d acc=%v col %d: %v, want %v", rows, cols, acc, j, out[j], want)
				}
			}
			rout := make([]float32, rows)
			for i := range rout {
				rout[i] = start
			}
			RowSum(x, rout, rows, cols, acc)
			for i := range rout {
				want := rref[i]
				if acc {
					want += float64(start)
				}
				if !close64(float64(rout[i]), want, 1e-5*math.Sqrt(float64(cols))) {
					t.Errorf("row_sum %dx%d acc=%v row %d: %v, want %v", rows, cols, acc, i, rout[i], want)
				}
			}
		}
	}
}

// TestSumOrder checks the twins follow the kernels' order literally, on
// values where the order matters: x = 1 followed by many 2⁻²⁴-sized terms.
func TestSumOrder(t *testing.T) {
	const rows = 70
	x := make([]float32, rows)
	for i := range x {
		x[i] = float32(math.Ldexp(1, -24)) * float32(1+i%3)
	}
	x[0] = 1
	// Kernel order for col_sum with cols = 1: partial t = Σ x[t + 32k], then
	// the tree.
	var part [32]float32
	for r, v := range x {
		part[r%32] = part[r%32] + v
	}
	for h := 16; h > 0; h >>= 1 {
		for t := 0; t < h; t++ {
			part[t] = part[t] + part[t+h]
		}
	}
	out := []float32{0}
	ColSum(x, out, rows, 1, false)
	if out[0] != part[0] {
		t.Fatalf("col_sum = %v, kernel order gives %v", out[0], part[0])
	}
	var seq float32
	for _, v := range x {
		seq += v
	}
	if seq == part[0] {
		t.Log("sequential and kernel order agree on this input (test is weaker than meant)")
	}
	rout := []float32{0}
	RowSum(x, rout, 1, rows, false)
	// Row order: 70 < 256 partials of one term each, then the tree.
	var rp [256]float32
	for c, v := range x {
		rp[c] = 0 + v
	}
	for h := 128; h > 0; h >>= 1 {
		for t := 0; t < h; t++ {
			rp[t] = rp[t] + rp[t+h]
		}
	}
	if rout[0] != rp[0] {
		t.Fatalf("row_sum = %v, kernel order gives %v", rout[0], rp[0])
	}
}

func TestConvOutGradIn(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	B, C, HW := 3, 4, 5
	src := randVec(r, B*C*HW)
	bias := randVec(r, C)
	dst := make([]float32, len(src))
	ConvOut(src, bias, dst, B, C, HW)
	for b := 0; b < B; b++ {
		for c := 0; c < C; c++ {
			for p := 0; p < HW; p++ {
				if dst[(b*C+c)*HW+p] != src[(c*B+b)*HW+p]+bias[c] {
					t.Fatalf("conv_out wrong at b=%d c=%d p=%d", b, c, p)
				}
			}
		}
	}
	ConvOut(src, make([]float32, C), dst, B, C, HW)
	back := make([]float32, len(src))
	ConvGradIn(dst, back, B, C, HW)
	for i := range src {
		if back[i] != src[i] {
			t.Fatalf("conv_grad_in is not the inverse of conv_out at %d", i)
		}
	}
}

// geometries are odd on purpose: stride 2 and 3, padding, H ≠ W, windows
// that overhang, 1×1 windows.
func geometries() []ConvGeom {
	mk := func(B, C, H, W, K, S, P int) ConvGeom {
		return ConvGeom{B: B, C: C, H: H, W: W, K: K, Stride: S, Pad: P,
			OH: OutSize(H, K, S, P), OW: OutSize(W, K, S, P)}
	}
	return []ConvGeom{
		mk(2, 3, 7, 5, 3, 2, 1),
		mk(1, 2, 6, 9, 4, 3, 2),
		mk(3, 1, 5, 5, 5, 1, 2),
		mk(2, 2, 8, 6, 1, 1, 0),
		mk(1, 3, 9, 4, 2, 2, 0),
		mk(2, 1, 28, 28, 5, 1, 2), // LeNet conv1
		mk(1, 6, 14, 14, 5, 1, 0), // LeNet conv2
	}
}

func TestIm2colCol2imAdjoint(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	for _, g := range geometries() {
		x := randVec(r, g.InSize())
		c := randVec(r, g.ColRows()*g.ColCols())
		col := make([]float32, len(c))
		Im2col(x, col, g)
		dx := make([]float32, len(x))
		for i := range dx {
			dx[i] = float32(math.NaN()) // every element must be written
		}
		Col2im(c, dx, g)
		lhs, rhs := dot64(col, c), dot64(x, dx)
		if !close64(lhs, rhs, 1e-5) {
			t.Errorf("%+v: <im2col(x), c> = %v, <x, col2im(c)> = %v", g, lhs, rhs)
		}
	}
}

// TestConvAsGEMM: im2col, a GEMM and conv_out make a convolution equal to a
// direct one; col2im of Wᵀ·dy is its input gradient.
func TestConvAsGEMM(t *testing.T) {
	r := rand.New(rand.NewPCG(9, 10))
	for _, g := range geometries() {
		F := 4
		x := randVec(r, g.InSize())
		wt := randVec(r, F*g.ColRows()) // [F, C, K, K]
		bias := randVec(r, F)
		col := make([]float32, g.ColRows()*g.ColCols())
		Im2col(x, col, g)
		N, R := g.ColCols(), g.ColRows()
		gemm := make([]float32, F*N) // [F, B, OH*OW]
		for f := 0; f < F; f++ {
			for j := 0; j < N; j++ {
				var s float64
				for k := 0; k < R; k++ {
					s += float64(wt[f*R+k]) * float64(col[k*N+j])
				}
				gemm[f*N+j] = float32(s)
			}
		}
		HW := g.OH * g.OW
		y := make([]float32, g.B*F*HW)
		ConvOut(gemm, bias, y, g.B, F, HW)

		at := func(b, c, h, w int) float64 {
			if h < 0 || h >= g.H || w < 0 || w >= g.W {
				return 0
			}
			return float64(x[((b*g.C+c)*g.H+h)*g.W+w])
		}
		for b := 0; b < g.B; b++ {
			for f := 0; f < F; f++ {
				for oh := 0; oh < g.OH; oh++ {
					for ow := 0; ow < g.OW; ow++ {
						s := float64(bias[f])
						for c := 0; c < g.C; c++ {
							for ki := 0; ki < g.K; ki++ {
								for kj := 0; kj < g.K; kj++ {
									s += float64(wt[((f*g.C+c)*g.K+ki)*g.K+kj]) * at(b, c, oh*g.Stride-g.Pad+ki, ow*g.Stride-g.Pad+kj)
								}
							}
						}
						got := y[((b*F+f)*g.OH+oh)*g.OW+ow]
						if !close64(float64(got), s, 1e-5) {
							t.Fatalf("%+v: conv at b=%d f=%d (%d,%d) = %v, direct %v", g, b, f, oh, ow, got, s)
						}
					}
				}
			}
		}

		// Backward: dy [B, F, OH, OW] → GEMM layout → dcol = Wᵀ·dy → col2im.
		dy := randVec(r, g.B*F*HW)
		dyg := make([]float32, len(dy))
		ConvGradIn(dy, dyg, g.B, F, HW)
		dcol := make([]float32, R*N)
		for k := 0; k < R; k++ {
			for j := 0; j < N; j++ {
				var s float64
				for f := 0; f < F; f++ {
					s += float64(wt[f*R+k]) * float64(dyg[f*N+j])
				}
				dcol[k*N+j] = float32(s)
			}
		}
		dx := make([]float32, g.InSize())
		Col2im(dcol, dx, g)
		want := make([]float64, g.InSize())
		for b := 0; b < g.B; b++ {
			for f := 0; f < F; f++ {
				for oh := 0; oh < g.OH; oh++ {
					for ow := 0; ow < g.OW; ow++ {
						d := float64(dy[((b*F+f)*g.OH+oh)*g.OW+ow])
						for c := 0; c < g.C; c++ {
							for ki := 0; ki < g.K; ki++ {
								for kj := 0; kj < g.K; kj++ {
									h, w := oh*g.Stride-g.Pad+ki, ow*g.Stride-g.Pad+kj
									if h >= 0 && h < g.H && w >= 0 && w < g.W {
										want[((b*g.C+c)*g.H+h)*g.W+w] += float64(wt[((f*g.C+c)*g.K+ki)*g.K+kj]) * d
									}
								}
							}
						}
					}
				}
			}
		}
		for i := range dx {
			if !close64(float64(dx[i]), want[i], 1e-5) {
				t.Fatalf("%+v: dx[%d] = %v, direct %v", g, i, dx[i], want[i])
			}
		}
	}
}

func poolGeom(B, C, H, W, K, S int) ConvGeom {
	return ConvGeom{B: B, C: C, H: H, W: W, K: K, Stride: S, OH: OutSize(H, K, S, 0), OW: OutSize(W, K, S, 0)}
}

func TestMaxPoolFirstMax(t *testing.T) {
	// One 4×4 plane, 2×2 windows, stride 2; ties everywhere.
	x := []float32{
		1, 1, 0, 5,
		1, 0, 5, 5,
		negZero, 0, 2, 3,
		0, negZero, 3, 2,
	}
	g := poolGeom(1, 1, 4, 4, 2, 2)
	y := make([]float32, 4)
	arg := make([]int32, 4)
	MaxPoolFwd(x, y, arg, g)
	wantY := []float32{1, 5, negZero, 3}
	wantArg := []int32{0, 3, 8, 11}
	for i := range y {
		if !same32(y[i], wantY[i]) || arg[i] != wantArg[i] {
			t.Errorf("window %d: max %v at %d, want %v at %d", i, y[i], arg[i], wantY[i], wantArg[i])
		}
	}
	// Overlapping windows (3×3, stride 1) share a maximum: its gradient is
	// the sum over the windows that chose it.
	x2 := []float32{
		0, 0, 0, 0,
		0, 9, 0, 0,
		0, 0, 0, 0,
	}
	g2 := poolGeom(1, 1, 3, 4, 3, 1)
	y2 := make([]float32, g2.OutSize())
	a2 := make([]int32, g2.OutSize())
	MaxPoolFwd(x2, y2, a2, g2)
	dx := make([]float32, len(x2))
	MaxPoolBwd([]float32{1, 2}, a2, dx, g2)
	if a2[0] != 5 || a2[1] != 5 || dx[5] != 3 {
		t.Errorf("shared maximum: arg %v, dx %v", a2, dx)
	}
}

func TestMaxPool(t *testing.T) {
	r := rand.New(rand.NewPCG(11, 12))
	for _, g := range []ConvGeom{
		poolGeom(2, 3, 8, 6, 2, 2),
		poolGeom(1, 2, 7, 9, 3, 2),
		poolGeom(2, 1, 5, 5, 3, 1),
		poolGeom(1, 1, 6, 7, 2, 3), // gaps between windows
		poolGeom(3, 2, 28, 28, 2, 2),
	} {
		x := randVec(r, g.InSize())
		for i := range x { // ties: quantise
			x[i] = float32(math.Round(float64(x[i]) * 2))
		}
		y := make([]float32, g.OutSize())
		arg := make([]int32, g.OutSize())
		MaxPoolFwd(x, y, arg, g)
		for p := 0; p < g.B*g.C; p++ {
			for oh := 0; oh < g.OH; oh++ {
				for ow := 0; ow < g.OW; ow++ {
					best, bi := float32(math.Inf(-1)), -1
					for ki := 0; ki < g.K; ki++ {
						for kj := 0; kj < g.K; kj++ {
							idx := (oh*g.Stride+ki)*g.W + ow*g.Stride + kj
							if v := x[p*g.H*g.W+idx]; bi < 0 || v > best {
								best, bi = v, idx
							}
						}
					}
					o := (p*g.OH+oh)*g.OW + ow
					if y[o] != best || arg[o] != int32(bi) {
						t.Fatalf("%+v: window %d: %v at %d, want %v at %d", g, o, y[o], arg[o], best, bi)
					}
				}
			}
		}
		// Adjoint of the selection S: (S x')[o] = x'[plane(o), arg[o]].
		dy := randVec(r, g.OutSize())
		xp := randVec(r, g.InSize())
		dx := make([]float32, g.InSize())
		for i := range dx {
			dx[i] = float32(math.NaN())
		}
		MaxPoolBwd(dy, arg, dx, g)
		var lhs float64
		for o := range dy {
			p := o / (g.OH * g.OW)
			lhs += float64(dy[o]) * float64(xp[p*g.H*g.W+int(arg[o])])
		}
		if rhs := dot64(xp, dx); !close64(lhs, rhs, 1e-5) {
			t.Errorf("%+v: <dy, S x'> = %v, <maxpool_bwd(dy), x'> = %v", g, lhs, rhs)
		}
	}
}

func TestSoftmaxXent(t *testing.T) {
	r := rand.New(rand.NewPCG(13, 14))
	B, C := 50, 10
	logits := randVec(r, B*C)
	for i := range logits {
		logits[i] *= 5
	}
	logits[3*C+2] = 80 // large logits must not overflow
	logits[3*C+7] = 79
	labels := make([]int32, B)
	for i := range labels {
		labels[i] = int32(r.IntN(C))
	}
	scale := float32(1) / float32(B)
	rowloss := make([]float64, B)
	dl := make([]float32, B*C)
	SoftmaxXent(logits, labels, rowloss, dl, B, C, scale)
	for i := 0; i < B; i++ {
		row := logits[i*C : (i+1)*C]
		// Direct: p = softmax via the largest logit, loss = −log p[label].
		mx := float64(row[0])
		for _, v := range row {
			mx = math.Max(mx, float64(v))
		}
		var z float64
		for _, v := range row {
			z += math.Exp(float64(v) - mx)
		}
		loss := -(float64(row[labels[i]]) - mx - math.Log(z))
		if !close64(rowloss[i], float64(scale)*loss, 1e-13) {
			t.Errorf("row %d: loss %v, want %v", i, rowloss[i], float64(scale)*loss)
		}
		var sum float64
		for j, v := range row {
			p := math.Exp(float64(v)-mx) / z
			if j == int(labels[i]) {
				p--
			}
			want := float32(float64(scale) * p)
			if math.Abs(float64(dl[i*C+j]-want)) > 1e-7*float64(scale) {
				t.Errorf("row %d col %d: dlogit %v, want %v", i, j, dl[i*C+j], want)
			}
			sum += float64(dl[i*C+j])
		}
		if math.Abs(sum) > 1e-6 {
			t.Errorf("row %d: dlogits sum to %v, want 0", i, sum)
		}
	}
	// Out-of-range labels poison their row only.
	labels[4], labels[5] = -1, int32(C)
	SoftmaxXent(logits, labels, rowloss, dl, B, C, scale)
	for i := 3; i <= 6; i++ {
		bad := i == 4 || i == 5
		if math.IsNaN(rowloss[i]) != bad || (dl[i*C] != dl[i*C]) != bad {
			t.Errorf("row %d (label %d): rowloss %v, dlogit %v", i, labels[i], rowloss[i], dl[i*C])
		}
	}
}

// fusesFMA reports whether the Go compiler may fuse x*y+z into an FMA on
// this platform by default (the Go spec allows it): then models' literal
// formulas can differ from the kernels (compiled with --fmad=false) in the
// last bit, and the comparison below is made within an ulp instead.
func fusesFMA() bool {
	switch runtime.GOARCH {
	case "amd64", "386", "wasm":
		return false
	}
	return true
}

func checkBits(t *testing.T, what string, got, want []float32) {
	t.Helper()
	for i := range got {
		if fusesFMA() {
			if math.Abs(float64(got[i]-want[i])) > 2*math.Abs(float64(want[i]))*0x1p-23 {
				t.Fatalf("%s[%d] = %v, want %v", what, i, got[i], want[i])
			}
		} else if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
			t.Fatalf("%s[%d] = %v (%#x), Go formula %v (%#x)", what, i, got[i], math.Float32bits(got[i]), want[i], math.Float32bits(want[i]))
		}
	}
}

func TestSGDStepBitIdentical(t *testing.T) {
	r := rand.New(rand.NewPCG(15, 16))
	const n = 4096
	for _, c := range []struct {
		lr, mu, wd float32
		nesterov   bool
	}{
		{0.1, 0, 0, false}, {0.05, 0, 5e-4, false}, {0.01, 0.9, 0, false},
		{0.01, 0.9, 1e-4, false}, {0.03, 0.9, 1e-4, true}, {0.3, 0.5, 0.1, true},
	} {
		w, g := randVec(r, n), randVec(r, n)
		v := make([]float32, n)
		if c.mu == 0 {
			v = nil
		}
		ww, vv := append([]float32(nil), w...), append([]float32(nil), v...)
		for step := 0; step < 3; step++ {
			SGDStep(w, g, v, c.lr, c.mu, c.wd, c.nesterov)
			// models.SGD.Step, verbatim.
			lr, mu, wd := c.lr, c.mu, c.wd
			if c.mu == 0 {
				for j := range ww {
					ww[j] -= lr * (g[j] + wd*ww[j])
				}
			} else {
				for j := range ww {
					gj := g[j] + wd*ww[j]
					vv[j] = mu*vv[j] + gj
					if c.nesterov {
						ww[j] -= lr * (gj + mu*vv[j])
					} else {
						ww[j] -= lr * vv[j]
					}
				}
			}
			checkBits(t, "sgd w", w, ww)
			if v != nil {
				checkBits(t, "sgd v", v, vv)
			}
			g = randVec(r, n)
		}
	}
}

func TestAdamStepBitIdentical(t *testing.T) {
	r := rand.New(rand.NewPCG(17, 18))
	const n = 4096
	for _, c := range []struct{ lr, b1, b2, eps, wd float32 }{
		{1e-3, 0.9, 0.999, 1e-8, 0}, {3e-4, 0.8, 0.99, 1e-6, 1e-2}, {0.1, 0.5, 0.9, 1e-3, 0.5},
	} {
		w, g := randVec(r, n), randVec(r, n)
		m, v := make([]float32, n), make([]float32, n)
		ww, mm, vv := append([]float32(nil), w...), make([]float32, n), make([]float32, n)
		for step := 0; step < 5; step++ {
			t1 := float64(step + 1)
			c1 := float32(1 - math.Pow(float64(c.b1), t1))
			c2 := float32(1 - math.Pow(float64(c.b2), t1))
			AdamStep(w, g, m, v, c.lr, c.b1, c.b2, c.eps, c.wd, c1, c2)
			// models.Adam.Step, verbatim.
			lr, b1, b2, eps, wd := c.lr, c.b1, c.b2, c.eps, c.wd
			for j := range ww {
				gj := g[j] + wd*ww[j]
				mm[j] = b1*mm[j] + (1-b1)*gj
				vv[j] = b2*vv[j] + (1-b2)*gj*gj
				ww[j] -= lr * (mm[j] / c1) / (float32(math.Sqrt(float64(vv[j]/c2))) + eps)
			}
			checkBits(t, "adam w", w, ww)
			checkBits(t, "adam m", m, mm)
			checkBits(t, "adam v", v, vv)
			g = randVec(r, n)
		}
	}
}
