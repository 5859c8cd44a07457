package models

import (
	"math"
	"math/rand/v2"
	"testing"

	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"
)

// The layers' previous implementation, gorgonia's Conv2d/MaxPool2D graphs,
// serves as the reference: the im2col/GEMM and loop kernels must give the same
// outputs and gradients within float32 tolerance.

func gorgoniaConv(c *Conv2D) *graphCache {
	return newGraphCache(graphDef{
		layer:  c.name + "-gorgonia",
		params: []*Param{c.weight, c.bias},
		build: func(g *G.ExprGraph, x *G.Node, p, _ []*G.Node) (*G.Node, error) {
			y, err := G.Conv2d(x, p[0], tensor.Shape{c.k, c.k}, []int{c.pad, c.pad}, []int{c.stride, c.stride}, []int{1, 1})
			if err != nil {
				return nil, err
			}
			b4, err := G.Reshape(p[1], tensor.Shape{1, c.out, 1, 1})
			if err != nil {
				return nil, err
			}
			return G.BroadcastAdd(y, b4, nil, []byte{0, 2, 3})
		},
	})
}

func gorgoniaPool(m *MaxPool2D) *graphCache {
	return newGraphCache(graphDef{
		layer: m.name + "-gorgonia",
		build: func(g *G.ExprGraph, x *G.Node, _, _ []*G.Node) (*G.Node, error) {
			return G.MaxPool2D(x, tensor.Shape{m.k, m.k}, []int{0, 0}, []int{m.stride, m.stride})
		},
	})
}

func assertClose(t *testing.T, what string, got, want []float32, tol float64) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d values, want %d", what, len(got), len(want))
	}
	for i := range got {
		if d := math.Abs(float64(got[i] - want[i])); !(d <= tol*math.Max(1, math.Abs(float64(want[i])))) {
			t.Fatalf("%s[%d] = %v, gorgonia %v", what, i, got[i], want[i])
		}
	}
}

func TestConv2DMatchesGorgonia(t *testing.T) {
	for _, c := range []struct{ n, in, out, k, stride, pad, h, w int }{
		{64, 1, 6, 5, 1, 2, 28, 28},  // LeNet conv1
		{64, 6, 16, 5, 1, 0, 14, 14}, // LeNet conv2
		{3, 2, 3, 3, 2, 1, 9, 8},
		{2, 3, 7, 1, 1, 0, 5, 6},
		{2, 2, 4, 4, 3, 2, 11, 7},
		{1, 1, 1, 3, 1, 3, 3, 3}, // padding wider than needed: border outputs see only zeros
	} {
		rng := rand.New(rand.NewPCG(uint64(c.k*100+c.pad), uint64(c.stride)))
		l, err := NewConv2D("conv", c.in, c.out, c.k, c.stride, c.pad, InitHe)
		if err != nil {
			t.Fatal(err)
		}
		l.InitParams(rng)
		for i := range l.bias.Value {
			l.bias.Value[i] = float32(rng.Float64() - 0.5)
		}
		ref := gorgoniaConv(l)
		x := randTensor(rng, c.n, c.in, c.h, c.w)
		y, saved, err := l.Forward(x, true)
		if err != nil {
			t.Fatal(err)
		}
		yr, err := ref.forward(x, nil)
		if err != nil {
			t.Fatal(err)
		}
		if !sameShape(y.Shape, yr.Shape) {
			t.Fatalf("%+v: shape %v, gorgonia %v", c, y.Shape, yr.Shape)
		}
		assertClose(t, "y", y.Data, yr.Data, 1e-5)
		dy := randTensor(rng, y.Shape...)
		zeroGrads(l)
		dx, err := l.Backward(saved, dy)
		if err != nil {
			t.Fatal(err)
		}
		dW, db := append([]float32(nil), l.weight.Grad...), append([]float32(nil), l.bias.Grad...)
		zeroGrads(l)
		dxr, err := ref.backward(x, nil, dy, true)
		if err != nil {
			t.Fatal(err)
		}
		assertClose(t, "dx", dx.Data, dxr.Data, 1e-5)
		assertClose(t, "dW", dW, l.weight.Grad, 1e-4)
		assertClose(t, "db", db, l.bias.Grad, 1e-4)
		// BackwardParams adds the same parameter gradients (added, not overwritten).
		if err := l.BackwardParams(saved, dy); err != nil {
			t.Fatal(err)
		}
		for i := range dW {
			dW[i] *= 2
		}
		assertClose(t, "dW added twice", l.weight.Grad, dW, 1e-4)
	}
}

func zeroGrads(l Layer) {
	for _, p := range l.Params() {
		p.ZeroGrad()
	}
}

func TestMaxPool2DMatchesGorgonia(t *testing.T) {
	rng := rand.New(rand.NewPCG(31, 32))
	for _, c := range []struct{ k, stride, h, w int }{{2, 2, 28, 28}, {2, 2, 5, 7}, {3, 1, 6, 5}, {3, 2, 7, 9}, {2, 3, 8, 8}} {
		l, err := NewMaxPool2D("pool", c.k, c.stride)
		if err != nil {
			t.Fatal(err)
		}
		ref := gorgoniaPool(l)
		x := randTensor(rng, 3, 4, c.h, c.w)
		for i := range x.Data { // ties, so "first maximum" is exercised
			x.Data[i] = float32(math.Round(float64(x.Data[i]) * 3))
		}
		y, saved, err := l.Forward(x, true)
		if err != nil {
			t.Fatal(err)
		}
		yr, err := ref.forward(x, nil)
		if err != nil {
			t.Fatal(err)
		}
		assertClose(t, "y", y.Data, yr.Data, 0)
		dy := randTensor(rng, y.Shape...)
		dx, err := l.Backward(saved, dy)
		if err != nil {
			t.Fatal(err)
		}
		dxr, err := ref.backward(x, nil, dy, true)
		if err != nil {
			t.Fatal(err)
		}
		assertClose(t, "dx", dx.Data, dxr.Data, 1e-6)
	}
}

// TestConvPoolSteadyStateAllocs: after the first call, Forward and Backward
// allocate only what they return (output tensor, Saved, dx), whatever the batch.
func TestConvPoolSteadyStateAllocs(t *testing.T) {
	rng := rand.New(rand.NewPCG(33, 34))
	conv, _ := NewConv2D("conv", 6, 16, 5, 1, 0, InitHe)
	conv.InitParams(rng)
	pool, _ := NewMaxPool2D("pool", 2, 2)
	for _, n := range []int{1, 16} {
		x := randTensor(rng, n, 6, 14, 14)
		y, s, _ := conv.Forward(x, true)
		dy := randTensor(rng, y.Shape...)
		conv.Backward(s, dy)
		allocs := testing.AllocsPerRun(5, func() {
			_, s, _ := conv.Forward(x, true)
			conv.Backward(s, dy)
			py, ps, _ := pool.Forward(y, true)
			pool.Backward(ps, py)
		})
		if allocs > 16 {
			t.Errorf("batch %d: %v allocations per conv+pool step, want only the returned tensors", n, allocs)
		}
	}
}

// TestConv2DDirectMatchesIm2col runs the direct kernels (conv_direct.go)
// and the im2col+GEMM path on the same inputs: outputs and all gradients
// must agree, on the widths where the kernel switches from two rows per
// call to one (16, 17) and at its widest (32), with channel counts that
// leave the last group of eight partly empty.
func TestConv2DDirectMatchesIm2col(t *testing.T) {
	defer func(d bool) { convDirect = d }(convDirect)
	for _, c := range []struct{ n, in, out, k, pad, h, w int }{
		{64, 1, 6, 5, 2, 28, 28},  // LeNet conv1
		{64, 6, 16, 5, 0, 14, 14}, // LeNet conv2
		{3, 2, 9, 3, 1, 16, 16},   // 16 wide: two rows per call
		{3, 2, 3, 3, 1, 7, 17},    // 17 wide: one row, one lane in the second vector
		{2, 3, 5, 1, 0, 4, 32},    // 32 wide, k = 1
		{2, 1, 2, 3, 3, 3, 3},     // pad > k−1: direct forward, im2col backward
	} {
		geom := convGeom{s: 1, ow: (c.w+2*c.pad-c.k)/1 + 1, w: c.w, k: c.k, pad: c.pad}
		convDirect = true
		rng := rand.New(rand.NewPCG(uint64(c.w), uint64(c.out)))
		l, err := NewConv2D("conv", c.in, c.out, c.k, 1, c.pad, InitHe)
		if err != nil {
			t.Fatal(err)
		}
		geom.ckk = c.in * c.k * c.k
		if !l.direct(&geom) {
			t.Fatalf("%+v: not a direct convolution", c)
		}
		l.InitParams(rng)
		for i := range l.bias.Value {
			l.bias.Value[i] = float32(rng.Float64() - 0.5)
		}
		x := randTensor(rng, c.n, c.in, c.h, c.w)
		var dy Tensor
		run := func(direct bool) (y, dx Tensor, dW, db []float32) {
			convDirect = direct
			zeroGrads(l)
			y, saved, err := l.Forward(x, true)
			if err != nil {
				t.Fatal(err)
			}
			dy = randTensor(rand.New(rand.NewPCG(1, 2)), y.Shape...)
			if dx, err = l.Backward(saved, dy); err != nil {
				t.Fatal(err)
			}
			return y, dx, append([]float32(nil), l.weight.Grad...), append([]float32(nil), l.bias.Grad...)
		}
		y0, dx0, dW0, db0 := run(false)
		y1, dx1, dW1, db1 := run(true)
		assertClose(t, "y", y1.Data, y0.Data, 1e-5)
		assertClose(t, "dx", dx1.Data, dx0.Data, 1e-5)
		// dW sums n·OH·OW products (50176 for conv1): both paths round, in
		// different orders; each must be near the float64 sum.
		oh, ow := c.h+2*c.pad-c.k+1, geom.ow
		for o := range c.out {
			for ci := range c.in {
				for ki := range c.k {
					for kj := range c.k {
						var s, mag float64
						for i := range c.n {
							for oy := range oh {
								for ox := range ow {
									iy, ix := oy-c.pad+ki, ox-c.pad+kj
									if iy < 0 || iy >= c.h || ix < 0 || ix >= c.w {
										continue
									}
									p := float64(dy.Data[((i*c.out+o)*oh+oy)*ow+ox]) * float64(x.Data[((i*c.in+ci)*c.h+iy)*c.w+ix])
									s, mag = s+p, mag+math.Abs(p)
								}
							}
						}
						j := ((o*c.in+ci)*c.k+ki)*c.k + kj
						for name, got := range map[string][]float32{"im2col": dW0, "direct": dW1} {
							if d := math.Abs(float64(got[j]) - s); d > 1e-6*mag+1e-6 {
								t.Fatalf("%+v: %s dW[%d] = %v, float64 sum %v (|diff| %.3g, Σ|terms| %.3g)", c, name, j, got[j], s, d, mag)
							}
						}
					}
				}
			}
		}
		assertClose(t, "db", db1, db0, 1e-4)
	}
}

// TestConv2DDirectOnlyThin: a convolution with more taps than
// directMaxTaps runs on im2col and the GEMM even with stride 1 and narrow
// rows; LeNet's run direct.
func TestConv2DDirectOnlyThin(t *testing.T) {
	for _, c := range []struct {
		in, out, k, h int
		want          bool
	}{{1, 6, 5, 28, true}, {6, 16, 5, 14, true}, {128, 8, 3, 8, false}, {8, 128, 3, 8, false}} {
		l, err := NewConv2D("conv", c.in, c.out, c.k, 1, 1, InitHe)
		if err != nil {
			t.Fatal(err)
		}
		g := l.geom([]int{1, c.in, c.h, c.h})
		if got := l.direct(&g); got != c.want {
			t.Errorf("%+v: direct = %v, want %v", c, got, c.want)
		}
	}
}
