package models

import (
	"fmt"

	"github.com/ringtrain/ringtrain/internal/vecmath"
)

// ReLU is max(x, 0) elementwise on any shape. Its gradient at exactly 0 is
// taken as 1 (as gorgonia's Rectify, x·[x ≥ 0], which it replaced: a plain
// loop costs a fraction of a gorgonia program run and its copies). Both
// directions are internal/vecmath's loops (AVX-512 where the CPU has it):
// NaN and −0 give +0 forward; the gradient passes where x ≥ 0.
type ReLU struct {
	name string
}

var _ Layer = (*ReLU)(nil)

// NewReLU returns a ReLU layer.
func NewReLU(name string) *ReLU {
	return &ReLU{name: name}
}

// Name implements Layer.
func (r *ReLU) Name() string { return r.name }

// Params implements Layer (none).
func (r *ReLU) Params() []*Param { return nil }

// OutShape implements Layer: same as the input.
func (r *ReLU) OutShape(in []int) ([]int, error) {
	if len(in) == 0 {
		return nil, &ShapeError{Layer: r.name, What: "input", Got: in, Want: "at least one per-sample dimension"}
	}
	return append([]int(nil), in...), nil
}

// Cost implements Layer.
func (r *ReLU) Cost(in []int) LayerCost {
	n := int64(numElems(in))
	return LayerCost{FLOPs: n, Out: n}
}

// Forward implements Layer.
func (r *ReLU) Forward(x Tensor, _ bool) (Tensor, Saved, error) {
	if err := checkInput(r, x); err != nil {
		return Tensor{}, nil, err
	}
	y := Tensor{Shape: append([]int(nil), x.Shape...), Data: make([]float32, len(x.Data))}
	vecmath.Relu(y.Data, x.Data)
	return y, &tensorSaved{owner: r, x: x}, nil
}

// Backward implements Layer.
func (r *ReLU) Backward(saved Saved, dy Tensor) (Tensor, error) {
	x, err := savedTensor(r, saved)
	if err != nil {
		return Tensor{}, err
	}
	if err := checkGrad(r, dy, x.Shape); err != nil {
		return Tensor{}, err
	}
	dx := Tensor{Shape: append([]int(nil), x.Shape...), Data: make([]float32, len(x.Data))}
	vecmath.ReluGrad(dx.Data, dy.Data, x.Data)
	return dx, nil
}

// Flatten reshapes each sample to a vector: [c, h, w] -> [c·h·w]. It moves no
// data: the output shares Data with the input (and dx with dy), which is why
// it needs no gorgonia graph.
type Flatten struct{ name string }

var _ Layer = (*Flatten)(nil)

// NewFlatten returns a Flatten layer.
func NewFlatten(name string) *Flatten { return &Flatten{name: name} }

// Name implements Layer.
func (f *Flatten) Name() string { return f.name }

// Params implements Layer (none).
func (f *Flatten) Params() []*Param { return nil }

// OutShape implements Layer.
func (f *Flatten) OutShape(in []int) ([]int, error) {
	if len(in) == 0 {
		return nil, &ShapeError{Layer: f.name, What: "input", Got: in, Want: "at least one per-sample dimension"}
	}
	return []int{numElems(in)}, nil
}

// Cost implements Layer.
func (f *Flatten) Cost(in []int) LayerCost { return LayerCost{Out: int64(numElems(in))} }

type flattenSaved struct {
	owner  *Flatten
	xShape []int
}

func (s *flattenSaved) Bytes() int64 { return 0 }

// Forward implements Layer.
func (f *Flatten) Forward(x Tensor, _ bool) (Tensor, Saved, error) {
	if err := checkInput(f, x); err != nil {
		return Tensor{}, nil, err
	}
	return Tensor{Shape: []int{x.Shape[0], numElems(x.Shape[1:])}, Data: x.Data},
		&flattenSaved{owner: f, xShape: append([]int(nil), x.Shape...)}, nil
}

// Backward implements Layer.
func (f *Flatten) Backward(saved Saved, dy Tensor) (Tensor, error) {
	s, ok := saved.(*flattenSaved)
	if !ok || s == nil || s.owner != f {
		return Tensor{}, fmt.Errorf("layer %q: %w", f.name, ErrSaved)
	}
	if err := checkGrad(f, dy, []int{s.xShape[0], numElems(s.xShape[1:])}); err != nil {
		return Tensor{}, err
	}
	return Tensor{Shape: append([]int(nil), s.xShape...), Data: dy.Data}, nil
}
