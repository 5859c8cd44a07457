package models

import (
	"fmt"
	"math"
)

// GradNorm is the global L2 norm of the parameters' gradients (Param.Grad),
// accumulated in float64.
func GradNorm(params []*Param) float64 {
	var sum float64
	for _, p := range params {
		for _, g := range p.Grad {
			sum += float64(g) * float64(g)
		}
	}
	return math.Sqrt(sum)
}

// ClipGradNorm scales every gradient by maxNorm/norm when the global norm
// exceeds maxNorm (PyTorch's clip_grad_norm_) and returns the norm before
// clipping. Run it after the gradients are all-reduced: every rank then holds
// the same gradients and clips them the same way.
func ClipGradNorm(params []*Param, maxNorm float64) float64 {
	norm := GradNorm(params)
	if norm > maxNorm && norm > 0 {
		scale := float32(maxNorm / norm)
		for _, p := range params {
			for i := range p.Grad {
				p.Grad[i] *= scale
			}
		}
	}
	return norm
}

// ClippingOptimizer clips the global gradient norm before each step of the
// optimizer it wraps. ddp's TrainStep calls Step after the AllReduce, so
// every rank clips identical gradients. For a model whose gradients live on
// a device (DeviceResident) they are downloaded, clipped and uploaded.
type ClippingOptimizer struct {
	Optimizer
	model    Model
	maxNorm  float64
	lastNorm float64
}

// NewClippingOptimizer wraps opt so that each Step first clips the gradients
// of model's parameters to a global L2 norm of at most maxNorm.
func NewClippingOptimizer(opt Optimizer, model Model, maxNorm float64) (*ClippingOptimizer, error) {
	if opt == nil || model == nil {
		return nil, fmt.Errorf("gradient clipping: nil optimizer or model")
	}
	if !(maxNorm > 0) || math.IsInf(maxNorm, 0) {
		return nil, fmt.Errorf("gradient clipping: max norm must be positive and finite, got %g", maxNorm)
	}
	return &ClippingOptimizer{Optimizer: opt, model: model, maxNorm: maxNorm}, nil
}

// Step clips, then steps the wrapped optimizer.
func (c *ClippingOptimizer) Step() error {
	dr, onDevice := c.model.(DeviceResident)
	if onDevice {
		if err := dr.PullGrads(); err != nil {
			return fmt.Errorf("gradient clipping: %w", err)
		}
	}
	c.lastNorm = ClipGradNorm(c.model.Params(), c.maxNorm)
	if onDevice && c.lastNorm > c.maxNorm {
		if err := dr.PushGrads(); err != nil {
			return fmt.Errorf("gradient clipping: %w", err)
		}
	}
	return c.Optimizer.Step()
}

// LastNorm is the gradient norm before clipping at the last Step.
func (c *ClippingOptimizer) LastNorm() float64 { return c.lastNorm }

// Device reports where the wrapped optimizer updates parameters (models.Placed).
func (c *ClippingOptimizer) Device() string { return DevicePlacement(c.Optimizer) }
