package gpu

import (
	"errors"
	"fmt"

	"github.com/ringtrain/ringtrain/models"
)

// ErrUnsupportedLayer is matched (errors.Is) by Compile's error for a layer
// type the device backend has no kernels for.
var ErrUnsupportedLayer = errors.New("layer type not supported on the GPU backend")

// act is an activation on the device: a batch of len(shape)-dimensional
// float32 data, shape[0] the batch size.
type act struct {
	m     Mem
	shape []int
}

func (a act) n() int { return numElems(a.shape) }

func numElems(s []int) int {
	n := 1
	for _, d := range s {
		n *= d
	}
	return n
}

// devParam is a parameter's device copy: value and gradient.
type devParam struct {
	p         *models.Param
	val, grad Mem
}

func (d *devParam) n() int { return len(d.p.Value) }

// op is one layer lowered onto a device. forward takes its output memory
// from fa (released after the matching backward); backward takes its
// temporaries from ba, ADDS the parameter gradients into the device
// gradients, and returns dL/dx only when wantDX.
type op interface {
	forward(dev Device, fa *arena, x act, train bool) (y act, saved any, err error)
	backward(dev Device, ba *arena, saved any, dy act, wantDX bool) (dx act, err error)
}

// lower builds the op of one layer, or an ErrUnsupportedLayer error naming it.
func lower(l models.Layer, params map[*models.Param]*devParam) (op, error) {
	switch l := l.(type) {
	case *models.Linear:
		ps := l.Params()
		return &linearOp{in: l.In(), out: l.Out(), w: params[ps[0]], b: params[ps[1]]}, nil
	case *models.ReLU:
		return reluOp{}, nil
	case *models.Flatten:
		return flattenOp{}, nil
	case *models.Dropout:
		return &dropoutOp{d: l}, nil
	case *models.Conv2D:
		ps := l.Params()
		return &convOp{g: l.Geometry(), w: params[ps[0]], b: params[ps[1]]}, nil
	case *models.MaxPool2D:
		k, s := l.Window()
		return &poolOp{k: k, stride: s}, nil
	}
	return nil, fmt.Errorf("%w: layer %q is a %T (supported: Linear, ReLU, Flatten, Dropout, Conv2D, MaxPool2D)", ErrUnsupportedLayer, l.Name(), l)
}

// linearOp: y = x·W + b with W [in, out] row-major, as models.Linear.
type linearOp struct {
	in, out int
	w, b    *devParam
}

func (o *linearOp) forward(dev Device, fa *arena, x act, _ bool) (act, any, error) {
	B := x.shape[0]
	y, err := fa.floats(B * o.out)
	if err != nil {
		return act{}, nil, err
	}
	if err := dev.Gemm(false, false, B, o.out, o.in, 1, x.m, o.w.val, 0, y); err != nil {
		return act{}, nil, err
	}
	if err := dev.AddBiasRows(y, o.b.val, B, o.out); err != nil {
		return act{}, nil, err
	}
	return act{y, []int{B, o.out}}, x, nil
}

func (o *linearOp) backward(dev Device, ba *arena, saved any, dy act, wantDX bool) (act, error) {
	x := saved.(act)
	B := x.shape[0]
	// dW += xᵀ·dy ; db += Σ_rows dy ; dx = dy·Wᵀ
	if err := dev.Gemm(true, false, o.in, o.out, B, 1, x.m, dy.m, 1, o.w.grad); err != nil {
		return act{}, err
	}
	if err := dev.ColSum(dy.m, o.b.grad, B, o.out, true); err != nil {
		return act{}, err
	}
	if !wantDX {
		return act{}, nil
	}
	dx, err := ba.floats(B * o.in)
	if err != nil {
		return act{}, err
	}
	if err := dev.Gemm(false, true, B, o.in, o.out, 1, dy.m, o.w.val, 0, dx); err != nil {
		return act{}, err
	}
	return act{dx, x.shape}, nil
}

// reluOp keeps its input for the backward (gradient 1 at exactly 0).
type reluOp struct{}

func (reluOp) forward(dev Device, fa *arena, x act, _ bool) (act, any, error) {
	y, err := fa.floats(x.n())
	if err != nil {
		return act{}, nil, err
	}
	return act{y, x.shape}, x, dev.ReluFwd(x.m, y, x.n())
}

func (reluOp) backward(dev Device, ba *arena, saved any, dy act, _ bool) (act, error) {
	x := saved.(act)
	dx, err := ba.floats(x.n())
	if err != nil {
		return act{}, err
	}
	return act{dx, x.shape}, dev.ReluBwd(x.m, dy.m, dx, x.n())
}

// flattenOp moves no data: the same memory with a 2-D shape.
type flattenOp struct{}

func (flattenOp) forward(_ Device, _ *arena, x act, _ bool) (act, any, error) {
	return act{x.m, []int{x.shape[0], numElems(x.shape[1:])}}, x.shape, nil
}

func (flattenOp) backward(_ Device, _ *arena, saved any, dy act, _ bool) (act, error) {
	return act{dy.m, saved.([]int)}, nil
}

// dropoutOp multiplies by the layer's next mask, drawn on the host from the
// layer's own seeded stream (the same masks the CPU path draws).
type dropoutOp struct{ d *models.Dropout }

func (o *dropoutOp) forward(dev Device, fa *arena, x act, train bool) (act, any, error) {
	if !train || o.d.P() == 0 {
		return x, Mem{}, nil
	}
	mask := o.d.NextMask(x.n())
	mm, err := fa.floats(x.n())
	if err != nil {
		return act{}, nil, err
	}
	if err := UploadFloats(dev, mm, mask); err != nil {
		return act{}, nil, err
	}
	y, err := fa.floats(x.n())
	if err != nil {
		return act{}, nil, err
	}
	return act{y, x.shape}, mm, dev.Mul(x.m, mm, y, x.n())
}

func (o *dropoutOp) backward(dev Device, ba *arena, saved any, dy act, _ bool) (act, error) {
	mask := saved.(Mem)
	if mask.IsZero() {
		return dy, nil
	}
	dx, err := ba.floats(dy.n())
	if err != nil {
		return act{}, err
	}
	return act{dx, dy.shape}, dev.Mul(dy.m, mask, dx, dy.n())
}

// convOp lowers a convolution to one GEMM over the whole batch: im2col
// writes the patches as [C·k·k, B·OH·OW] (every image side by side), so
// W [Out, C·k·k] · col gives [Out, B·OH·OW], which conv_out permutes to
// NCHW while adding the bias. The backward is two more single GEMMs over
// the same layout (deterministic: no per-image accumulation order to keep)
// and a gather (col2im).
type convOp struct {
	g    models.ConvGeometry
	w, b *devParam
}

type convSaved struct {
	col Mem
	g   ConvGeom
}

func (o *convOp) geom(x act) ConvGeom {
	g := ConvGeom{B: x.shape[0], C: x.shape[1], H: x.shape[2], W: x.shape[3], K: o.g.Kernel, Stride: o.g.Stride, Pad: o.g.Pad}
	g.OH = (g.H+2*g.Pad-g.K)/g.Stride + 1
	g.OW = (g.W+2*g.Pad-g.K)/g.Stride + 1
	return g
}

func (o *convOp) forward(dev Device, fa *arena, x act, _ bool) (act, any, error) {
	g := o.geom(x)
	rows, cols := g.ColRows(), g.ColCols() // C·k·k, B·OH·OW
	col, err := fa.floats(rows * cols)
	if err != nil {
		return act{}, nil, err
	}
	if err := dev.Im2col(x.m, col, g); err != nil {
		return act{}, nil, err
	}
	yp, err := fa.floats(o.g.Out * cols)
	if err != nil {
		return act{}, nil, err
	}
	if err := dev.Gemm(false, false, o.g.Out, cols, rows, 1, o.w.val, col, 0, yp); err != nil {
		return act{}, nil, err
	}
	y, err := fa.floats(o.g.Out * cols)
	if err != nil {
		return act{}, nil, err
	}
	hw := g.OH * g.OW
	if err := dev.ConvOut(yp, o.b.val, y, g.B, o.g.Out, hw); err != nil {
		return act{}, nil, err
	}
	return act{y, []int{g.B, o.g.Out, g.OH, g.OW}}, convSaved{col, g}, nil
}

func (o *convOp) backward(dev Device, ba *arena, saved any, dy act, wantDX bool) (act, error) {
	s := saved.(convSaved)
	g := s.g
	rows, cols, hw := g.ColRows(), g.ColCols(), g.OH*g.OW
	dyp, err := ba.floats(o.g.Out * cols)
	if err != nil {
		return act{}, err
	}
	if err := dev.ConvGradIn(dy.m, dyp, g.B, o.g.Out, hw); err != nil {
		return act{}, err
	}
	// dW += dy'·colᵀ ([Out, B·OH·OW]·[B·OH·OW, C·k·k]); db += row sums of dy'.
	if err := dev.Gemm(false, true, o.g.Out, rows, cols, 1, dyp, s.col, 1, o.w.grad); err != nil {
		return act{}, err
	}
	if err := dev.RowSum(dyp, o.b.grad, o.g.Out, cols, true); err != nil {
		return act{}, err
	}
	if !wantDX {
		return act{}, nil
	}
	dcol, err := ba.floats(rows * cols)
	if err != nil {
		return act{}, err
	}
	if err := dev.Gemm(true, false, rows, cols, o.g.Out, 1, o.w.val, dyp, 0, dcol); err != nil {
		return act{}, err
	}
	dx, err := ba.floats(g.B * g.C * g.H * g.W)
	if err != nil {
		return act{}, err
	}
	return act{dx, []int{g.B, g.C, g.H, g.W}}, dev.Col2im(dcol, dx, g)
}

// poolOp is max pooling; the forward keeps the index of each window's first
// maximum and the backward gathers through it.
type poolOp struct{ k, stride int }

type poolSaved struct {
	arg Mem
	g   ConvGeom
}

func (o *poolOp) forward(dev Device, fa *arena, x act, _ bool) (act, any, error) {
	g := ConvGeom{B: x.shape[0], C: x.shape[1], H: x.shape[2], W: x.shape[3], K: o.k, Stride: o.stride}
	g.OH, g.OW = (g.H-o.k)/o.stride+1, (g.W-o.k)/o.stride+1
	n := g.B * g.C * g.OH * g.OW
	y, err := fa.floats(n)
	if err != nil {
		return act{}, nil, err
	}
	arg, err := fa.bytesOf(4 * n)
	if err != nil {
		return act{}, nil, err
	}
	return act{y, []int{g.B, g.C, g.OH, g.OW}}, poolSaved{arg, g}, dev.MaxPoolFwd(x.m, y, arg, g)
}

func (o *poolOp) backward(dev Device, ba *arena, saved any, dy act, _ bool) (act, error) {
	s := saved.(poolSaved)
	g := s.g
	dx, err := ba.floats(g.B * g.C * g.H * g.W)
	if err != nil {
		return act{}, err
	}
	return act{dx, []int{g.B, g.C, g.H, g.W}}, dev.MaxPoolBwd(dy.m, s.arg, dx, g)
}
