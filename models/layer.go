package models

import (
	"errors"
	"fmt"
)

// Layer is one step of a Sequential model.
//
// Forward returns the output and a Saved value holding what Backward needs for
// this very call; the layer itself keeps no per-call state, so any number of
// micro-batches may be between their Forward and their Backward at once.
// Forward keeps a reference to x inside Saved: callers must not modify x's
// Data until Backward with that Saved has returned.
//
// Backward takes the Saved of one Forward call and dL/dy for its output, and
// returns dL/dx. It ADDS dL/dparam into Param.Grad (never overwrites), so the
// gradients of several micro-batches accumulate until ZeroGrad.
type Layer interface {
	// Name is unique within a model; parameters are named "<layer>.<param>".
	Name() string
	// Params returns the layer's parameters (nil for parameterless layers),
	// always the same *Param values in the same order.
	Params() []*Param
	// OutShape maps a per-sample input shape (no batch dimension) to the
	// per-sample output shape, or returns a *ShapeError.
	OutShape(in []int) ([]int, error)
	// Cost estimates the parameters and forward FLOPs per sample for a
	// per-sample input shape; pipeline partitioning balances on it.
	Cost(in []int) LayerCost
	// Forward computes the layer. train selects training behaviour (Dropout).
	Forward(x Tensor, train bool) (y Tensor, saved Saved, err error)
	// Backward returns dL/dx and adds dL/dparam into Param.Grad.
	Backward(saved Saved, dy Tensor) (dx Tensor, err error)
}

// ParamGradLayer is implemented by layers that can compute only their
// parameter gradients, skipping dL/dx. Sequential.BackwardParams uses it for
// the first layer, whose input gradient nobody needs (a third of the
// first Linear layer's backward FLOPs).
type ParamGradLayer interface {
	Layer
	BackwardParams(saved Saved, dy Tensor) error
}

// Saved is what a layer's Forward hands to its Backward. It is opaque except
// for its size, which lets a pipeline measure stored activations.
type Saved interface {
	// Bytes is the memory held for backward, in bytes (shared input data
	// counted by every holder).
	Bytes() int64
}

// LayerCost is a layer's size and work, for pipeline partitioning.
type LayerCost struct {
	Params int64 // scalar parameters
	FLOPs  int64 // estimated forward floating-point operations per sample (backward ≈ 2×)
	Out    int64 // output elements per sample (activation size to send to the next stage)
}

// ErrShape is matched (errors.Is) by every *ShapeError.
var ErrShape = errors.New("shape mismatch")

// ShapeError reports an input whose shape a layer cannot take.
type ShapeError struct {
	Layer string // layer name
	What  string // which input: "input", "upstream gradient", "labels"...
	Got   []int
	Want  string // human description of what was expected
}

func (e *ShapeError) Error() string {
	return fmt.Sprintf("layer %q: %s shape %v, want %s", e.Layer, e.What, e.Got, e.Want)
}

// Is makes errors.Is(err, ErrShape) true.
func (e *ShapeError) Is(target error) bool { return target == ErrShape }

// ErrSaved is returned when Backward gets a Saved value that did not come from
// the same layer's Forward.
var ErrSaved = errors.New("saved value does not belong to this layer")

// tensorSaved is the Saved of layers that only need their input.
type tensorSaved struct {
	owner Layer
	x     Tensor
}

func (s *tensorSaved) Bytes() int64 { return int64(len(s.x.Data)) * 4 }

func savedTensor(l Layer, saved Saved) (Tensor, error) {
	s, ok := saved.(*tensorSaved)
	if !ok || s == nil || s.owner != l {
		return Tensor{}, fmt.Errorf("layer %q: %w", l.Name(), ErrSaved)
	}
	return s.x, nil
}

// checkInput validates x against a layer's expected per-sample shape.
func checkInput(l Layer, x Tensor) error {
	if err := x.Validate(); err != nil {
		return fmt.Errorf("layer %q: input: %w", l.Name(), err)
	}
	if _, err := l.OutShape(x.SampleShape()); err != nil {
		return err
	}
	return nil
}

// checkGrad validates an upstream gradient against the forward output shape.
func checkGrad(l Layer, dy Tensor, want []int) error {
	if err := dy.Validate(); err != nil {
		return fmt.Errorf("layer %q: upstream gradient: %w", l.Name(), err)
	}
	if !sameShape(dy.Shape, want) {
		return &ShapeError{Layer: l.Name(), What: "upstream gradient", Got: dy.Shape, Want: fmt.Sprint(want)}
	}
	return nil
}
