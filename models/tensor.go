package models

import (
	"fmt"
)

// Tensor is a dense, row-major float32 batch. Shape[0] is the batch size and
// the rest is the per-sample shape, e.g. [64 1 28 28] for 64 grey 28×28 images.
//
// Tensors returned by layers own freshly allocated Data, except where a layer
// is an identity on the data: Flatten (a reshaped view) and Dropout in
// inference return their input's Data, and their Backward returns dy's Data.
// Layers never modify the Data of the tensors they are given.
type Tensor struct {
	Shape []int
	Data  []float32
}

// NewTensor returns a zero tensor of the given shape.
func NewTensor(shape ...int) Tensor {
	return Tensor{Shape: append([]int(nil), shape...), Data: make([]float32, numElems(shape))}
}

// Batch is the leading dimension (0 for a tensor without dimensions).
func (t Tensor) Batch() int {
	if len(t.Shape) == 0 {
		return 0
	}
	return t.Shape[0]
}

// SampleShape is the shape of one sample: Shape[1:].
func (t Tensor) SampleShape() []int {
	if len(t.Shape) == 0 {
		return nil
	}
	return t.Shape[1:]
}

// Validate checks that Shape has a batch dimension, no negative or zero
// dimensions, and that len(Data) matches the shape.
func (t Tensor) Validate() error {
	if len(t.Shape) < 1 {
		return fmt.Errorf("tensor has no batch dimension (shape %v)", t.Shape)
	}
	for _, d := range t.Shape {
		if d <= 0 {
			return fmt.Errorf("tensor shape %v has a non-positive dimension", t.Shape)
		}
	}
	if n := numElems(t.Shape); n != len(t.Data) {
		return fmt.Errorf("tensor shape %v needs %d values, has %d", t.Shape, n, len(t.Data))
	}
	return nil
}

// Clone returns a deep copy.
func (t Tensor) Clone() Tensor {
	return Tensor{Shape: append([]int(nil), t.Shape...), Data: append([]float32(nil), t.Data...)}
}

// Param is one trainable parameter tensor of a layer. Value and Grad are flat
// row-major views of Shape. Value is the very storage the layer's gorgonia
// graph reads, so optimizers update it in place and a broadcast into it (ddp)
// changes the model. Grad is where Backward ADDS the gradient; ZeroGrad clears
// it. Neither slice is ever reallocated by this package.
type Param struct {
	Name  string // unique in a model, e.g. "fc1.weight"
	Shape []int
	Value []float32
	Grad  []float32
}

// newParam allocates a zero parameter.
func newParam(name string, shape ...int) *Param {
	n := numElems(shape)
	return &Param{Name: name, Shape: append([]int(nil), shape...), Value: make([]float32, n), Grad: make([]float32, n)}
}

// Size is the number of elements.
func (p *Param) Size() int { return len(p.Value) }

// ZeroGrad sets every gradient element to zero.
func (p *Param) ZeroGrad() { clear(p.Grad) }

func numElems(shape []int) int {
	n := 1
	for _, d := range shape {
		n *= d
	}
	return n
}

func sameShape(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// CountParams is the total number of scalar parameters.
func CountParams(ps []*Param) int {
	n := 0
	for _, p := range ps {
		n += len(p.Value)
	}
	return n
}
