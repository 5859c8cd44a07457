package main

import (
	"context"
	"flag"
	"fmt"
	"math"
	"math/rand/v2"
	"unsafe"

	"github.com/ringtrain/ringtrain/gpu"
)

// kernelCase runs one kernel on dev with inputs drawn from a fixed seed and
// returns its outputs as float64s, so that the same case run on the CUDA
// device and on the emulator (the Go twins) can be compared.
type kernelCase struct {
	name  string
	exact bool // elementwise float32 arithmetic: the same bits are expected
	run   func(dev gpu.Device, rng *rand.Rand) ([]float64, error)
}

// kbuf allocates and fills device buffers for a case, freeing them at the end.
type kbuf struct {
	dev  gpu.Device
	mems []gpu.Mem
	err  error
}

func (k *kbuf) floats(v []float32) gpu.Mem {
	m, err := upload(k.dev, v)
	k.keep(m, err)
	return m
}

func (k *kbuf) zeros(n int) gpu.Mem { return k.floats(make([]float32, n)) }

func (k *kbuf) bytes(b []byte, n int) gpu.Mem {
	m, err := k.dev.Alloc(max(n, 4))
	if err == nil && len(b) > 0 {
		err = k.dev.Upload(m, b)
	}
	k.keep(m, err)
	return m
}

func (k *kbuf) keep(m gpu.Mem, err error) {
	if err != nil && k.err == nil {
		k.err = err
	}
	k.mems = append(k.mems, m)
}

func (k *kbuf) free() {
	for _, m := range k.mems {
		k.dev.Free(m)
	}
}

func (k *kbuf) out(m gpu.Mem, n int) []float64 {
	v, err := download(k.dev, m, n)
	if err != nil && k.err == nil {
		k.err = err
	}
	r := make([]float64, n)
	for i, x := range v {
		r[i] = float64(x)
	}
	return r
}

func (k *kbuf) outRaw(m gpu.Mem, nbytes int) []byte {
	b := make([]byte, nbytes)
	if err := k.dev.Download(b, m); err != nil && k.err == nil {
		k.err = err
	}
	return b
}

func ints(rng *rand.Rand, n, hi int) []int32 {
	v := make([]int32, n)
	for i := range v {
		v[i] = int32(rng.IntN(hi))
	}
	return v
}

func asBytes[T any](v []T) []byte {
	if len(v) == 0 {
		return nil
	}
	return unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(v))), len(v)*int(unsafe.Sizeof(v[0])))
}

func fromBytes[T any](b []byte) []T {
	var z T
	return unsafe.Slice((*T)(unsafe.Pointer(unsafe.SliceData(b))), len(b)/int(unsafe.Sizeof(z)))
}

// withZeros makes a tensor where some values are exactly 0 and some windows
// tie, so ReLU's and max-pool's edge rules are exercised.
func withZeros(rng *rand.Rand, n int) []float32 {
	v := randFloats(rng, n)
	for i := range v {
		if rng.IntN(5) == 0 {
			v[i] = 0
		}
	}
	return v
}

func kernelCases() []kernelCase {
	const n = 100_003 // not a multiple of any block size
	conv := gpu.ConvGeom{B: 3, C: 2, H: 9, W: 7, K: 3, Stride: 2, Pad: 1}
	conv.OH, conv.OW = (conv.H+2*conv.Pad-conv.K)/conv.Stride+1, (conv.W+2*conv.Pad-conv.K)/conv.Stride+1
	pool := gpu.ConvGeom{B: 3, C: 4, H: 9, W: 8, K: 3, Stride: 2}
	pool.OH, pool.OW = (pool.H-pool.K)/pool.Stride+1, (pool.W-pool.K)/pool.Stride+1
	elem := func(name string, f func(d gpu.Device, k *kbuf, rng *rand.Rand) gpu.Mem) kernelCase {
		return kernelCase{name: name, exact: true, run: func(d gpu.Device, rng *rand.Rand) ([]float64, error) {
			k := &kbuf{dev: d}
			defer k.free()
			y := f(d, k, rng)
			r := k.out(y, n)
			return r, k.err
		}}
	}
	return []kernelCase{
		elem("relu_fwd", func(d gpu.Device, k *kbuf, rng *rand.Rand) gpu.Mem {
			x, y := k.floats(withZeros(rng, n)), k.zeros(n)
			k.keep(y, d.ReluFwd(x, y, n))
			return y
		}),
		elem("relu_bwd", func(d gpu.Device, k *kbuf, rng *rand.Rand) gpu.Mem {
			x, dy, dx := k.floats(withZeros(rng, n)), k.floats(randFloats(rng, n)), k.zeros(n)
			k.keep(dx, d.ReluBwd(x, dy, dx, n))
			return dx
		}),
		elem("mul", func(d gpu.Device, k *kbuf, rng *rand.Rand) gpu.Mem {
			a, b, y := k.floats(randFloats(rng, n)), k.floats(randFloats(rng, n)), k.zeros(n)
			k.keep(y, d.Mul(a, b, y, n))
			return y
		}),
		elem("add_inplace", func(d gpu.Device, k *kbuf, rng *rand.Rand) gpu.Mem {
			y, x := k.floats(randFloats(rng, n)), k.floats(randFloats(rng, n))
			k.keep(y, d.AddInplace(y, x, n))
			return y
		}),
		elem("add_bias_rows", func(d gpu.Device, k *kbuf, rng *rand.Rand) gpu.Mem {
			y, b := k.floats(randFloats(rng, n)), k.floats(randFloats(rng, 1))
			k.keep(y, d.AddBiasRows(y, b, n, 1))
			return y
		}),
		{name: "col_sum", run: func(d gpu.Device, rng *rand.Rand) ([]float64, error) {
			k := &kbuf{dev: d}
			defer k.free()
			var res []float64
			for _, s := range [][2]int{{4096, 10}, {1000, 4096}, {3, 77}} {
				x, o := k.floats(randFloats(rng, s[0]*s[1])), k.floats(randFloats(rng, s[1]))
				k.keep(o, d.ColSum(x, o, s[0], s[1], true))
				res = append(res, k.out(o, s[1])...)
			}
			return res, k.err
		}},
		{name: "row_sum", run: func(d gpu.Device, rng *rand.Rand) ([]float64, error) {
			k := &kbuf{dev: d}
			defer k.free()
			var res []float64
			for _, s := range [][2]int{{6, 401_408}, {16, 10_000}, {5, 3}} {
				x, o := k.floats(randFloats(rng, s[0]*s[1])), k.zeros(s[0])
				k.keep(o, d.RowSum(x, o, s[0], s[1], false))
				res = append(res, k.out(o, s[0])...)
			}
			return res, k.err
		}},
		{name: "conv_out+conv_grad_in", exact: true, run: func(d gpu.Device, rng *rand.Rand) ([]float64, error) {
			k := &kbuf{dev: d}
			defer k.free()
			b, c, hw := 5, 6, 77
			src, bias, dst, back := k.floats(randFloats(rng, b*c*hw)), k.floats(randFloats(rng, c)), k.zeros(b*c*hw), k.zeros(b*c*hw)
			k.keep(dst, d.ConvOut(src, bias, dst, b, c, hw))
			k.keep(back, d.ConvGradIn(dst, back, b, c, hw))
			return append(k.out(dst, b*c*hw), k.out(back, b*c*hw)...), k.err
		}},
		{name: "im2col+col2im", run: func(d gpu.Device, rng *rand.Rand) ([]float64, error) {
			k := &kbuf{dev: d}
			defer k.free()
			in, cn := conv.B*conv.C*conv.H*conv.W, conv.ColRows()*conv.ColCols()
			x, col, dx := k.floats(randFloats(rng, in)), k.zeros(cn), k.zeros(in)
			k.keep(col, d.Im2col(x, col, conv))
			k.keep(dx, d.Col2im(col, dx, conv))
			return append(k.out(col, cn), k.out(dx, in)...), k.err
		}},
		{name: "maxpool_fwd+bwd", exact: true, run: func(d gpu.Device, rng *rand.Rand) ([]float64, error) {
			k := &kbuf{dev: d}
			defer k.free()
			in, on := pool.B*pool.C*pool.H*pool.W, pool.B*pool.C*pool.OH*pool.OW
			x, y, arg := k.floats(withZeros(rng, in)), k.zeros(on), k.bytes(nil, 4*on)
			dy, dx := k.floats(randFloats(rng, on)), k.zeros(in)
			k.keep(y, d.MaxPoolFwd(x, y, arg, pool))
			k.keep(dx, d.MaxPoolBwd(dy, arg, dx, pool))
			res := append(k.out(y, on), k.out(dx, in)...)
			for _, a := range fromBytes[int32](k.outRaw(arg, 4*on)) {
				res = append(res, float64(a))
			}
			return res, k.err
		}},
		{name: "softmax_xent", run: func(d gpu.Device, rng *rand.Rand) ([]float64, error) {
			k := &kbuf{dev: d}
			defer k.free()
			b, c := 513, 10
			logits := randFloats(rng, b*c)
			for i := range logits {
				logits[i] *= 8
			}
			lm, lab := k.floats(logits), k.bytes(asBytes(ints(rng, b, c)), 4*b)
			rl, dl := k.bytes(nil, 8*b), k.zeros(b*c)
			k.keep(dl, d.SoftmaxXent(lm, lab, rl, dl, b, c, 1/float32(b)))
			res := k.out(dl, b*c)
			return append(res, fromBytes[float64](k.outRaw(rl, 8*b))...), k.err
		}},
		{name: "sgd_step", exact: true, run: func(d gpu.Device, rng *rand.Rand) ([]float64, error) {
			k := &kbuf{dev: d}
			defer k.free()
			w, g, v := k.floats(randFloats(rng, n)), k.floats(randFloats(rng, n)), k.floats(randFloats(rng, n))
			w2, g2 := k.floats(randFloats(rng, n)), k.floats(randFloats(rng, n))
			k.keep(w, d.SGDStep(w, g, v, n, 0.05, 0.9, 1e-4, false))
			k.keep(w, d.SGDStep(w, g, v, n, 0.05, 0.9, 1e-4, true))
			k.keep(w2, d.SGDStep(w2, g2, gpu.Mem{}, n, 0.1, 0, 0, false))
			return append(append(k.out(w, n), k.out(v, n)...), k.out(w2, n)...), k.err
		}},
		{name: "adam_step", exact: true, run: func(d gpu.Device, rng *rand.Rand) ([]float64, error) {
			k := &kbuf{dev: d}
			defer k.free()
			w, g, m, v := k.floats(randFloats(rng, n)), k.floats(randFloats(rng, n)), k.zeros(n), k.zeros(n)
			for t := 1; t <= 3; t++ {
				c1, c2 := float32(1-math.Pow(0.9, float64(t))), float32(1-math.Pow(0.999, float64(t)))
				k.keep(w, d.AdamStep(w, g, m, v, n, 1e-3, 0.9, 0.999, 1e-8, 1e-2, c1, c2))
			}
			return append(k.out(w, n), k.out(v, n)...), k.err
		}},
		{name: "f32_to_f16+f16_to_f32", exact: true, run: func(d gpu.Device, rng *rand.Rand) ([]float64, error) {
			k := &kbuf{dev: d}
			defer k.free()
			x := randFloats(rng, n)
			for i := range x {
				x[i] = float32(math.Ldexp(float64(x[i]), rng.IntN(60)-30)) // normals, subnormals, overflow
			}
			xm, h, y := k.floats(x), k.bytes(nil, 2*n), k.zeros(n)
			k.keep(h, d.F32ToF16(xm, h, n, 4))
			k.keep(y, d.F16ToF32(h, y, n, 0.25))
			return k.out(y, n), k.err
		}},
	}
}

// kernelsCmd runs every kernel on the device and on the emulator with the
// same inputs and compares: bit-identical for elementwise arithmetic
// (both sides are built without FMA contraction), within float rounding
// for the reductions (their order differs in the Go twin only where noted
// in gpu/kernels) and for exp/log.
func kernelsCmd(ctx context.Context, args []string, out *Reporter) error {
	fs := flag.NewFlagSet("kernels", flag.ContinueOnError)
	spec := fs.String("device", "cuda", "device to check against the emulator ("+gpu.Specs+")")
	if err := fs.Parse(args); err != nil {
		return err
	}
	dev, err := openDevice(*spec)
	if err != nil {
		return err
	}
	emu := gpu.NewEmulator()
	for _, c := range kernelCases() {
		got, err := c.run(dev, rand.New(rand.NewPCG(11, 12)))
		if err == nil {
			err = dev.Sync()
		}
		if err != nil {
			out.Report(map[string]any{"check": "kernel", "kernel": c.name, "ok": false, "error": err.Error()})
			continue
		}
		want, err := c.run(emu, rand.New(rand.NewPCG(11, 12)))
		if err != nil {
			return fmt.Errorf("%s on the emulator: %w", c.name, err)
		}
		worst, diff := 0.0, 0
		for i := range want {
			if got[i] == want[i] || math.IsNaN(got[i]) && math.IsNaN(want[i]) {
				continue // equal, infinities and NaNs included
			}
			diff++
			d := math.Abs(got[i] - want[i])
			if math.IsNaN(d) || math.IsInf(d, 0) {
				d = math.MaxFloat64 // one side finite, the other not
			}
			worst = max(worst, d/math.Max(1, math.Abs(want[i])))
		}
		ok := len(got) == len(want) && worst <= 1e-5
		if c.exact {
			ok = ok && diff == 0
		}
		out.Report(map[string]any{"check": "kernel", "kernel": c.name, "device": dev.Name(), "values": len(want),
			"differing": diff, "max_rel_diff": worst, "bit_exact_required": c.exact, "ok": ok})
	}
	return nil
}
