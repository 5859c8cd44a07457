package models

import (
	"fmt"
	"math/rand/v2"

	G "gorgonia.org/gorgonia"
)

// Linear is a fully connected layer y = x·W + b on per-sample vectors:
// input [in], output [out]. W ("<name>.weight") is stored [in, out] row-major
// so the forward is a plain matmul; b is "<name>.bias" [out].
type Linear struct {
	name    string
	in, out int
	init    Init
	weight  *Param
	bias    *Param
	graphs  *graphCache
}

var _ ParamGradLayer = (*Linear)(nil)

// NewLinear returns a Linear layer with zero parameters; call InitParams (or
// Sequential.Init) to draw them.
func NewLinear(name string, in, out int, init Init) (*Linear, error) {
	if in <= 0 || out <= 0 {
		return nil, fmt.Errorf("linear %q: sizes must be positive, got in=%d out=%d", name, in, out)
	}
	l := &Linear{name: name, in: in, out: out, init: init,
		weight: newParam(name+".weight", in, out),
		bias:   newParam(name+".bias", out)}
	l.graphs = newGraphCache(graphDef{
		layer:  name,
		params: []*Param{l.weight, l.bias},
		build: func(g *G.ExprGraph, x *G.Node, p, _ []*G.Node) (*G.Node, error) {
			xw, err := G.Mul(x, p[0])
			if err != nil {
				return nil, err
			}
			return G.BroadcastAdd(xw, p[1], nil, []byte{0})
		},
	})
	return l, nil
}

// Name implements Layer.
func (l *Linear) Name() string { return l.name }

// Params implements Layer: weight then bias.
func (l *Linear) Params() []*Param { return []*Param{l.weight, l.bias} }

// In is the input feature size.
func (l *Linear) In() int { return l.in }

// Out is the output feature size.
func (l *Linear) Out() int { return l.out }

// OutShape implements Layer.
func (l *Linear) OutShape(in []int) ([]int, error) {
	if len(in) != 1 || in[0] != l.in {
		return nil, &ShapeError{Layer: l.name, What: "input", Got: in, Want: fmt.Sprintf("[%d] (add a Flatten before it?)", l.in)}
	}
	return []int{l.out}, nil
}

// Cost implements Layer.
func (l *Linear) Cost([]int) LayerCost {
	return LayerCost{Params: int64(l.in*l.out + l.out), FLOPs: int64(2*l.in*l.out + l.out), Out: int64(l.out)}
}

// InitParams implements Initializer.
func (l *Linear) InitParams(rng *rand.Rand) {
	uniformInit(l.weight.Value, l.init, l.in, l.out, rng)
	clear(l.bias.Value)
}

// Forward implements Layer.
func (l *Linear) Forward(x Tensor, _ bool) (Tensor, Saved, error) {
	if err := checkInput(l, x); err != nil {
		return Tensor{}, nil, err
	}
	y, err := l.graphs.forward(x, nil)
	if err != nil {
		return Tensor{}, nil, err
	}
	return y, &tensorSaved{owner: l, x: x}, nil
}

// Backward implements Layer.
func (l *Linear) Backward(saved Saved, dy Tensor) (Tensor, error) {
	x, err := savedTensor(l, saved)
	if err != nil {
		return Tensor{}, err
	}
	return l.graphs.backward(x, nil, dy, true)
}

// BackwardParams implements ParamGradLayer.
func (l *Linear) BackwardParams(saved Saved, dy Tensor) error {
	x, err := savedTensor(l, saved)
	if err != nil {
		return err
	}
	_, err = l.graphs.backward(x, nil, dy, false)
	return err
}
