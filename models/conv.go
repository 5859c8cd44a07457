package models

import (
	"fmt"
	"math/rand/v2"

	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"
)

// Conv2D is a 2-D convolution over per-sample [C, H, W] inputs (NCHW
// batches) with square kernels, equal stride and zero padding on both axes:
// output [Out, (H+2·pad−k)/stride+1, (W+2·pad−k)/stride+1]. Weight
// ("<name>.weight") is [Out, C, k, k], bias ("<name>.bias") is [Out].
// The forward is gorgonia's Conv2d (im2col then one matmul) plus a broadcast
// bias; the backward is gorgonia's symbolic derivative of that expression.
type Conv2D struct {
	name                    string
	in, out, k, stride, pad int
	init                    Init
	weight, bias            *Param
	graphs                  *graphCache
}

var _ ParamGradLayer = (*Conv2D)(nil)

// NewConv2D returns a Conv2D layer with zero parameters (call InitParams or
// Sequential.Init).
func NewConv2D(name string, inChannels, outChannels, kernel, stride, pad int, init Init) (*Conv2D, error) {
	if inChannels <= 0 || outChannels <= 0 || kernel <= 0 || stride <= 0 || pad < 0 {
		return nil, fmt.Errorf("conv2d %q: need positive channels, kernel and stride and non-negative padding, got in=%d out=%d k=%d stride=%d pad=%d",
			name, inChannels, outChannels, kernel, stride, pad)
	}
	c := &Conv2D{name: name, in: inChannels, out: outChannels, k: kernel, stride: stride, pad: pad, init: init,
		weight: newParam(name+".weight", outChannels, inChannels, kernel, kernel),
		bias:   newParam(name+".bias", outChannels)}
	c.graphs = newGraphCache(graphDef{
		layer:  name,
		params: []*Param{c.weight, c.bias},
		build: func(g *G.ExprGraph, x *G.Node, p, _ []*G.Node) (*G.Node, error) {
			y, err := G.Conv2d(x, p[0], tensor.Shape{kernel, kernel}, []int{pad, pad}, []int{stride, stride}, []int{1, 1})
			if err != nil {
				return nil, err
			}
			b4, err := G.Reshape(p[1], tensor.Shape{1, outChannels, 1, 1})
			if err != nil {
				return nil, err
			}
			return G.BroadcastAdd(y, b4, nil, []byte{0, 2, 3})
		},
	})
	return c, nil
}

// Name implements Layer.
func (c *Conv2D) Name() string { return c.name }

// Params implements Layer: weight then bias.
func (c *Conv2D) Params() []*Param { return []*Param{c.weight, c.bias} }

// ConvGeometry is a Conv2D's channels, square kernel size, stride and zero
// padding (equal on both spatial axes).
type ConvGeometry struct{ In, Out, Kernel, Stride, Pad int }

// Geometry returns the convolution's channels, kernel, stride and padding.
func (c *Conv2D) Geometry() ConvGeometry {
	return ConvGeometry{In: c.in, Out: c.out, Kernel: c.k, Stride: c.stride, Pad: c.pad}
}

// OutShape implements Layer.
func (c *Conv2D) OutShape(in []int) ([]int, error) {
	if len(in) != 3 || in[0] != c.in {
		return nil, &ShapeError{Layer: c.name, What: "input", Got: in, Want: fmt.Sprintf("[%d H W]", c.in)}
	}
	h := (in[1]+2*c.pad-c.k)/c.stride + 1
	w := (in[2]+2*c.pad-c.k)/c.stride + 1
	if in[1]+2*c.pad < c.k || in[2]+2*c.pad < c.k || h <= 0 || w <= 0 {
		return nil, &ShapeError{Layer: c.name, What: "input", Got: in, Want: fmt.Sprintf("spatial size ≥ %d with padding %d", c.k, c.pad)}
	}
	return []int{c.out, h, w}, nil
}

// Cost implements Layer.
func (c *Conv2D) Cost(in []int) LayerCost {
	out, err := c.OutShape(in)
	params := int64(c.out*c.in*c.k*c.k + c.out)
	if err != nil {
		return LayerCost{Params: params}
	}
	pos := int64(out[1] * out[2])
	return LayerCost{Params: params, FLOPs: pos * int64(c.out) * int64(2*c.in*c.k*c.k+1), Out: pos * int64(c.out)}
}

// InitParams implements Initializer (fan-in C·k·k, fan-out Out·k·k).
func (c *Conv2D) InitParams(rng *rand.Rand) {
	uniformInit(c.weight.Value, c.init, c.in*c.k*c.k, c.out*c.k*c.k, rng)
	clear(c.bias.Value)
}

// Forward implements Layer.
func (c *Conv2D) Forward(x Tensor, _ bool) (Tensor, Saved, error) {
	if err := checkInput(c, x); err != nil {
		return Tensor{}, nil, err
	}
	y, err := c.graphs.forward(x, nil)
	if err != nil {
		return Tensor{}, nil, err
	}
	return y, &tensorSaved{owner: c, x: x}, nil
}

// Backward implements Layer.
func (c *Conv2D) Backward(saved Saved, dy Tensor) (Tensor, error) {
	x, err := savedTensor(c, saved)
	if err != nil {
		return Tensor{}, err
	}
	return c.graphs.backward(x, nil, dy, true)
}

// BackwardParams implements ParamGradLayer.
func (c *Conv2D) BackwardParams(saved Saved, dy Tensor) error {
	x, err := savedTensor(c, saved)
	if err != nil {
		return err
	}
	_, err = c.graphs.backward(x, nil, dy, false)
	return err
}

// MaxPool2D takes the maximum over k×k windows moved by stride, per channel,
// without padding: [C, H, W] -> [C, (H−k)/stride+1, (W−k)/stride+1]. The
// gradient flows to the first maximum of each window (gorgonia's MaxPool2D).
type MaxPool2D struct {
	name      string
	k, stride int
	graphs    *graphCache
}

var _ Layer = (*MaxPool2D)(nil)

// NewMaxPool2D returns a max-pooling layer.
func NewMaxPool2D(name string, kernel, stride int) (*MaxPool2D, error) {
	if kernel <= 0 || stride <= 0 {
		return nil, fmt.Errorf("maxpool2d %q: kernel and stride must be positive, got %d, %d", name, kernel, stride)
	}
	return &MaxPool2D{name: name, k: kernel, stride: stride, graphs: newGraphCache(graphDef{
		layer: name,
		build: func(g *G.ExprGraph, x *G.Node, _, _ []*G.Node) (*G.Node, error) {
			return G.MaxPool2D(x, tensor.Shape{kernel, kernel}, []int{0, 0}, []int{stride, stride})
		},
	})}, nil
}

// Name implements Layer.
func (m *MaxPool2D) Name() string { return m.name }

// Params implements Layer (none).
func (m *MaxPool2D) Params() []*Param { return nil }

// Window returns the pooling window's size and its stride (square, no padding).
func (m *MaxPool2D) Window() (kernel, stride int) { return m.k, m.stride }

// OutShape implements Layer.
func (m *MaxPool2D) OutShape(in []int) ([]int, error) {
	if len(in) != 3 || in[1] < m.k || in[2] < m.k {
		return nil, &ShapeError{Layer: m.name, What: "input", Got: in, Want: fmt.Sprintf("[C H W] with H, W ≥ %d", m.k)}
	}
	return []int{in[0], (in[1]-m.k)/m.stride + 1, (in[2]-m.k)/m.stride + 1}, nil
}

// Cost implements Layer.
func (m *MaxPool2D) Cost(in []int) LayerCost {
	out, err := m.OutShape(in)
	if err != nil {
		return LayerCost{}
	}
	n := int64(numElems(out))
	return LayerCost{FLOPs: n * int64(m.k*m.k), Out: n}
}

// Forward implements Layer.
func (m *MaxPool2D) Forward(x Tensor, _ bool) (Tensor, Saved, error) {
	if err := checkInput(m, x); err != nil {
		return Tensor{}, nil, err
	}
	y, err := m.graphs.forward(x, nil)
	if err != nil {
		return Tensor{}, nil, err
	}
	return y, &tensorSaved{owner: m, x: x}, nil
}

// Backward implements Layer. The backward program recomputes the pooling
// from the saved input (gorgonia's MaxPool2D derivative needs the argmax
// mask of that very input); that is cheap next to the convolutions.
func (m *MaxPool2D) Backward(saved Saved, dy Tensor) (Tensor, error) {
	x, err := savedTensor(m, saved)
	if err != nil {
		return Tensor{}, err
	}
	return m.graphs.backward(x, nil, dy, true)
}
