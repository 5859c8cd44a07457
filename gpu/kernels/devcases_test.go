package kernels

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
)

// Device cases: TestWriteDeviceCases writes, into the folder named by
// $RINGTRAIN_KERNELS_DEVCASES, inputs for every kernel and the outputs the
// Go twins give for them; testdata/devcheck.py (Python and ctypes only, as
// the lent GPU machines have no Go) loads kernels.ptx there, launches each
// case and compares the GPU's outputs with the twins' bit for bit
// (softmax_xent within a tolerance: CUDA's exp and log are not Go's). It
// skips unless the variable is set.

const devCasesEnv = "RINGTRAIN_KERNELS_DEVCASES"

type devArg struct {
	Buf string   `json:"buf,omitempty"`
	I32 *int32   `json:"i32,omitempty"`
	F32 *float32 `json:"f32,omitempty"`
}

type devCheck struct {
	Buf    string  `json:"buf"`
	File   string  `json:"file"`
	RelTol float64 `json:"reltol,omitempty"` // 0: bit for bit
}

type devCase struct {
	Name     string            `json:"name"`
	Kernel   string            `json:"kernel"`
	Launches []Launch          `json:"launches"`
	Bufs     map[string]string `json:"bufs"` // buffer → input file
	Args     []devArg          `json:"args"`
	Checks   []devCheck        `json:"checks"`
}

type devWriter struct {
	t     *testing.T
	dir   string
	cases []devCase
	cur   *devCase
}

func (w *devWriter) file(name string, data any) string {
	p := filepath.Join(w.dir, name)
	f, err := os.Create(p)
	if err != nil {
		w.t.Fatal(err)
	}
	defer f.Close()
	if err := binary.Write(f, binary.LittleEndian, data); err != nil {
		w.t.Fatal(err)
	}
	return name
}

func (w *devWriter) start(name, kernel string, launches ...Launch) {
	w.cases = append(w.cases, devCase{Name: name, Kernel: kernel, Launches: launches, Bufs: map[string]string{}})
	w.cur = &w.cases[len(w.cases)-1]
}

// in adds a buffer argument with its initial contents.
func (w *devWriter) in(buf string, data any) {
	w.cur.Bufs[buf] = w.file(w.cur.Name+"."+buf+".in", data)
	w.cur.Args = append(w.cur.Args, devArg{Buf: buf})
}

func (w *devWriter) i32(v int) {
	x := int32(v)
	w.cur.Args = append(w.cur.Args, devArg{I32: &x})
}

func (w *devWriter) f32(v float32) { w.cur.Args = append(w.cur.Args, devArg{F32: &v}) }

func (w *devWriter) want(buf string, data any, reltol float64) {
	w.cur.Checks = append(w.cur.Checks, devCheck{Buf: buf, File: w.file(w.cur.Name+"."+buf+".want", data), RelTol: reltol})
}

func clone[T any](s []T) []T { return append([]T(nil), s...) }

func TestWriteDeviceCases(t *testing.T) {
	dir := os.Getenv(devCasesEnv)
	if dir == "" {
		t.Skipf("set %s to a folder to write device cases for testdata/devcheck.py", devCasesEnv)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	w := &devWriter{t: t, dir: dir}
	r := rand.New(rand.NewPCG(42, 43))
	// Elementwise kernels must be right under any 1-D grid: also run them
	// on a small grid that makes every thread loop.
	small := Launch{Grid: [3]uint32{3, 1, 1}, Block: [3]uint32{64, 1, 1}}
	ew := func(n int) []Launch { return []Launch{Elementwise(n), small} }

	const n = 50003
	x := randVec(r, n)
	inf, nan := float32(math.Inf(1)), float32(math.NaN())
	copy(x, []float32{0, negZero, inf, -inf, nan, 1e-40, -1e-40})
	dy := randVec(r, n)
	y := make([]float32, n)
	ReluFwd(x, y)
	w.start("relu_fwd", "relu_fwd", ew(n)...)
	w.in("x", x)
	w.in("y", make([]float32, n))
	w.i32(n)
	w.want("y", y, 0)

	dx := make([]float32, n)
	ReluBwd(x, dy, dx)
	w.start("relu_bwd", "relu_bwd", ew(n)...)
	w.in("x", x)
	w.in("dy", dy)
	w.in("dx", make([]float32, n))
	w.i32(n)
	w.want("dx", dx, 0)

	a, b := randVec(r, n), randVec(r, n)
	Mul(a, b, y)
	w.start("mul", "mul", ew(n)...)
	w.in("a", a)
	w.in("b", b)
	w.in("y", make([]float32, n))
	w.i32(n)
	w.want("y", y, 0)

	s := clone(a)
	AddInplace(s, b)
	w.start("add_inplace", "add_inplace", ew(n)...)
	w.in("y", a)
	w.in("x", b)
	w.i32(n)
	w.want("y", s, 0)

	{
		rows, cols := 37, 1001
		m, bias := randVec(r, rows*cols), randVec(r, cols)
		got := clone(m)
		AddBiasRows(got, bias, rows, cols)
		w.start("add_bias_rows", "add_bias_rows", ew(rows*cols)...)
		w.in("y", m)
		w.in("b", bias)
		w.i32(rows)
		w.i32(cols)
		w.want("y", got, 0)
	}

	for _, c := range []struct {
		rows, cols int
		acc        bool
	}{{1024, 1024, false}, {4096, 10, false}, {37, 45, true}, {1, 70, true}, {70, 1, false}} {
		x := randVec(r, c.rows*c.cols)
		out0 := randVec(r, c.cols)
		out := clone(out0)
		ColSum(x, out, c.rows, c.cols, c.acc)
		w.start(fmt.Sprintf("col_sum_%dx%d_acc%v", c.rows, c.cols, c.acc), "col_sum", ColSumLaunch(c.rows, c.cols),
			Launch{Grid: [3]uint32{1, 1, 1}, Block: [3]uint32{32, 32, 1}}) // one block looping over column groups
		w.in("x", x)
		w.in("out", out0)
		w.i32(c.rows)
		w.i32(c.cols)
		w.i32(map[bool]int{false: 0, true: 1}[c.acc])
		w.want("out", out, 0)

		x2 := randVec(r, c.rows*c.cols)
		rout0 := randVec(r, c.rows)
		rout := clone(rout0)
		RowSum(x2, rout, c.rows, c.cols, c.acc)
		w.start(fmt.Sprintf("row_sum_%dx%d_acc%v", c.rows, c.cols, c.acc), "row_sum", RowSumLaunch(c.rows, c.cols),
			Launch{Grid: [3]uint32{2, 1, 1}, Block: [3]uint32{256, 1, 1}})
		w.in("x", x2)
		w.in("out", rout0)
		w.i32(c.rows)
		w.i32(c.cols)
		w.i32(map[bool]int{false: 0, true: 1}[c.acc])
		w.want("out", rout, 0)
	}
	{
		rows, cols := 6, 100000 // a conv bias gradient
		x := randVec(r, rows*cols)
		out := make([]float32, rows)
		RowSum(x, out, rows, cols, false)
		w.start("row_sum_6x100000", "row_sum", RowSumLaunch(rows, cols))
		w.in("x", x)
		w.in("out", make([]float32, rows))
		w.i32(rows)
		w.i32(cols)
		w.i32(0)
		w.want("out", out, 0)
	}

	{
		B, C, HW := 16, 6, 784
		src, bias := randVec(r, B*C*HW), randVec(r, C)
		dst := make([]float32, B*C*HW)
		ConvOut(src, bias, dst, B, C, HW)
		w.start("conv_out", "conv_out", ew(B*C*HW)...)
		w.in("src", src)
		w.in("bias", bias)
		w.in("dst", make([]float32, B*C*HW))
		w.i32(B)
		w.i32(C)
		w.i32(HW)
		w.want("dst", dst, 0)

		g := make([]float32, B*C*HW)
		ConvGradIn(src, g, B, C, HW)
		w.start("conv_grad_in", "conv_grad_in", ew(B*C*HW)...)
		w.in("dy", src)
		w.in("dst", make([]float32, B*C*HW))
		w.i32(B)
		w.i32(C)
		w.i32(HW)
		w.want("dst", g, 0)
	}

	geomArgs := func(g ConvGeom, withPad bool) {
		w.i32(g.B)
		w.i32(g.C)
		w.i32(g.H)
		w.i32(g.W)
		w.i32(g.K)
		w.i32(g.Stride)
		if withPad {
			w.i32(g.Pad)
		}
		w.i32(g.OH)
		w.i32(g.OW)
	}
	for i, g := range geometries() {
		x := randVec(r, g.InSize())
		col := make([]float32, g.ColRows()*g.ColCols())
		Im2col(x, col, g)
		w.start(fmt.Sprintf("im2col_%d", i), "im2col", ew(len(col))...)
		w.in("x", x)
		w.in("col", make([]float32, len(col)))
		geomArgs(g, true)
		w.want("col", col, 0)

		c := randVec(r, len(col))
		d := make([]float32, g.InSize())
		Col2im(c, d, g)
		nanFill := make([]float32, len(d))
		for j := range nanFill {
			nanFill[j] = nan // every element must be written
		}
		w.start(fmt.Sprintf("col2im_%d", i), "col2im", ew(len(d))...)
		w.in("col", c)
		w.in("dx", nanFill)
		geomArgs(g, true)
		w.want("dx", d, 0)
	}

	for i, g := range []ConvGeom{poolGeom(16, 6, 28, 28, 2, 2), poolGeom(2, 3, 7, 9, 3, 2), poolGeom(2, 2, 5, 6, 3, 1), poolGeom(1, 2, 6, 7, 2, 3)} {
		x := randVec(r, g.InSize())
		for j := range x {
			x[j] = float32(math.Round(float64(x[j]) * 2)) // ties
		}
		y := make([]float32, g.OutSize())
		arg := make([]int32, g.OutSize())
		MaxPoolFwd(x, y, arg, g)
		w.start(fmt.Sprintf("maxpool_fwd_%d", i), "maxpool_fwd", ew(len(y))...)
		w.in("x", x)
		w.in("y", make([]float32, len(y)))
		w.in("arg", make([]int32, len(arg)))
		geomArgs(g, false)
		w.want("y", y, 0)
		w.want("arg", arg, 0)

		dy := randVec(r, len(y))
		dx := make([]float32, g.InSize())
		MaxPoolBwd(dy, arg, dx, g)
		nanFill := make([]float32, len(dx))
		for j := range nanFill {
			nanFill[j] = nan
		}
		w.start(fmt.Sprintf("maxpool_bwd_%d", i), "maxpool_bwd", ew(len(dx))...)
		w.in("dy", dy)
		w.in("arg", arg)
		w.in("dx", nanFill)
		geomArgs(g, false)
		w.want("dx", dx, 0)
	}

	{
		B, C := 1000, 10
		logits := randVec(r, B*C)
		for j := range logits {
			logits[j] *= 4
		}
		logits[7*C+3] = 85
		labels := make([]int32, B)
		for j := range labels {
			labels[j] = int32(r.IntN(C))
		}
		labels[11], labels[12] = -1, int32(C)
		rowloss := make([]float64, B)
		dl := make([]float32, B*C)
		SoftmaxXent(logits, labels, rowloss, dl, B, C, 1/float32(B))
		w.start("softmax_xent", "softmax_xent", RowsLaunch(B), small)
		w.in("logits", logits)
		w.in("labels", labels)
		w.in("rowloss", make([]float64, B))
		w.in("dlogits", make([]float32, B*C))
		w.i32(B)
		w.i32(C)
		w.f32(1 / float32(B))
		w.want("rowloss", rowloss, 1e-14)
		w.want("dlogits", dl, 1e-6)
	}

	for i, c := range []struct {
		lr, mu, wd float32
		nest       bool
	}{{0.1, 0, 5e-4, false}, {0.01, 0.9, 1e-4, false}, {0.03, 0.9, 1e-4, true}} {
		wv, g, v := randVec(r, n), randVec(r, n), randVec(r, n)
		w2, v2 := clone(wv), clone(v)
		SGDStep(w2, g, v2, c.lr, c.mu, c.wd, c.nest)
		w.start(fmt.Sprintf("sgd_step_%d", i), "sgd_step", ew(n)...)
		w.in("w", wv)
		w.in("g", g)
		w.in("v", v)
		w.i32(n)
		w.f32(c.lr)
		w.f32(c.mu)
		w.f32(c.wd)
		w.i32(map[bool]int{false: 0, true: 1}[c.nest])
		w.want("w", w2, 0)
		w.want("v", v2, 0)
	}
	{
		wv, g, m, v := randVec(r, n), randVec(r, n), randVec(r, n), randVec(r, n)
		for j := range v {
			v[j] *= v[j]
		}
		w2, m2, v2 := clone(wv), clone(m), clone(v)
		lr, b1, b2, eps, wd := float32(1e-3), float32(0.9), float32(0.999), float32(1e-8), float32(1e-2)
		c1, c2 := float32(1-math.Pow(0.9, 3)), float32(1-math.Pow(0.999, 3))
		AdamStep(w2, g, m2, v2, lr, b1, b2, eps, wd, c1, c2)
		w.start("adam_step", "adam_step", ew(n)...)
		w.in("w", wv)
		w.in("g", g)
		w.in("m", m)
		w.in("v", v)
		w.i32(n)
		for _, f := range []float32{lr, b1, b2, eps, wd, c1, c2} {
			w.f32(f)
		}
		w.want("w", w2, 0)
		w.want("m", m2, 0)
		w.want("v", v2, 0)
	}

	{
		// Every half's rounding boundary (see TestF16Rounding), specials,
		// and random bit patterns (NaNs with payloads among them).
		var xs []float32
		for h := uint16(0); h < 0x7c00; h++ {
			a, b := halfValue(h), 65536.0
			if h < 0x7bff {
				b = halfValue(h + 1)
			}
			mid := float32((a + b) / 2)
			for _, f := range []float32{float32(a), mid, math.Nextafter32(mid, 0), math.Nextafter32(mid, inf)} {
				xs = append(xs, f, -f)
			}
		}
		xs = append(xs, inf, -inf, nan, math.Float32frombits(0x7f800001), math.Float32frombits(0xffc01234), 1e-40, -1e-45)
		for j := 0; j < 100000; j++ {
			xs = append(xs, math.Float32frombits(r.Uint32()))
		}
		for _, scale := range []float32{1, 0.25} {
			ys := make([]uint16, len(xs))
			F32ToF16(xs, ys, scale)
			w.start(fmt.Sprintf("f32_to_f16_scale%v", scale), "f32_to_f16", ew(len(xs))...)
			w.in("x", xs)
			w.in("y", make([]uint16, len(xs)))
			w.i32(len(xs))
			w.f32(scale)
			w.want("y", ys, 0)
		}
		hs := make([]uint16, 1<<16)
		for j := range hs {
			hs[j] = uint16(j)
		}
		for _, scale := range []float32{1, 4} {
			fs := make([]float32, len(hs))
			F16ToF32(hs, fs, scale)
			w.start(fmt.Sprintf("f16_to_f32_scale%v", scale), "f16_to_f32", ew(len(hs))...)
			w.in("x", hs)
			w.in("y", make([]float32, len(hs)))
			w.i32(len(hs))
			w.f32(scale)
			w.want("y", fs, 0)
		}
	}

	man, err := json.MarshalIndent(map[string]any{"cases": w.cases}, "", " ")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "cases.json"), man, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("%d cases in %s", len(w.cases), dir)
}
