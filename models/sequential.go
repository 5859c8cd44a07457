package models

import (
	"errors"
	"fmt"
)

// Sequential is a model made of layers applied one after the other. Layers
// are shared, not copied, by Slice, so a pipeline stage built from a slice
// trains the very parameters of the full model.
type Sequential struct {
	layers []Layer
	params []*Param
}

// NewSequential checks that layer names (and so parameter names) are unique
// and non-empty, and returns the model.
func NewSequential(layers ...Layer) (*Sequential, error) {
	seen := make(map[string]bool)
	s := &Sequential{}
	for i, l := range layers {
		if l == nil {
			return nil, fmt.Errorf("sequential: layer %d is nil", i)
		}
		if l.Name() == "" {
			return nil, fmt.Errorf("sequential: layer %d has an empty name", i)
		}
		if seen[l.Name()] {
			return nil, fmt.Errorf("sequential: duplicate layer name %q (layer %d)", l.Name(), i)
		}
		seen[l.Name()] = true
		s.layers = append(s.layers, l)
		s.params = append(s.params, l.Params()...)
	}
	return s, nil
}

// Layers returns the layers in order (the slice is a copy; the layers are not).
func (s *Sequential) Layers() []Layer { return append([]Layer(nil), s.layers...) }

// Len is the number of layers.
func (s *Sequential) Len() int { return len(s.layers) }

// Params returns every parameter, in layer order and within a layer in the
// layer's order.
func (s *Sequential) Params() []*Param { return append([]*Param(nil), s.params...) }

// NumParams is the total number of scalar parameters.
func (s *Sequential) NumParams() int { return CountParams(s.params) }

// ZeroGrad clears every parameter's gradient.
func (s *Sequential) ZeroGrad() {
	for _, p := range s.params {
		p.ZeroGrad()
	}
}

// Init draws every layer's parameters; layer i uses its own generator derived
// from (seed, i), so the same seed gives bit-identical parameters.
func (s *Sequential) Init(seed int64) {
	for i, l := range s.layers {
		if in, ok := l.(Initializer); ok {
			in.InitParams(layerRNG(seed, i))
		}
	}
}

// Slice returns the model made of layers [from, to), sharing the layers (and
// so the parameters) with s. Pipeline stages are slices.
func (s *Sequential) Slice(from, to int) (*Sequential, error) {
	if from < 0 || to > len(s.layers) || from >= to {
		return nil, fmt.Errorf("sequential: slice [%d, %d) out of range for %d layers", from, to, len(s.layers))
	}
	return NewSequential(s.layers[from:to]...)
}

// OutShape maps a per-sample input shape through every layer.
func (s *Sequential) OutShape(in []int) ([]int, error) {
	cur := in
	for _, l := range s.layers {
		out, err := l.OutShape(cur)
		if err != nil {
			return nil, err
		}
		cur = out
	}
	return cur, nil
}

// Costs returns each layer's cost for a per-sample input shape.
func (s *Sequential) Costs(in []int) ([]LayerCost, error) {
	costs := make([]LayerCost, len(s.layers))
	cur := in
	for i, l := range s.layers {
		out, err := l.OutShape(cur)
		if err != nil {
			return nil, err
		}
		costs[i] = l.Cost(cur)
		cur = out
	}
	return costs, nil
}

// seqSaved holds each layer's Saved for one Forward call.
type seqSaved struct {
	owner *Sequential
	saved []Saved
}

func (s *seqSaved) Bytes() int64 {
	var n int64
	for _, sv := range s.saved {
		n += sv.Bytes()
	}
	return n
}

// Forward runs every layer. The returned Saved is for Backward or
// BackwardParams of this call; Sequential keeps no per-call state, so several
// calls may be in flight (pipelining).
func (s *Sequential) Forward(x Tensor, train bool) (Tensor, Saved, error) {
	if len(s.layers) == 0 {
		return Tensor{}, nil, errors.New("sequential: no layers")
	}
	sv := &seqSaved{owner: s, saved: make([]Saved, len(s.layers))}
	cur := x
	for i, l := range s.layers {
		y, saved, err := l.Forward(cur, train)
		if err != nil {
			return Tensor{}, nil, fmt.Errorf("forward layer %d: %w", i, err)
		}
		sv.saved[i] = saved
		cur = y
	}
	return cur, sv, nil
}

// Backward runs the layers' backward in reverse order from dL/dy and returns
// dL/dx. onLayerDone (may be nil) is called with the layer index right after
// layer i's parameter gradients are complete, in reverse order
// (Len()-1 … 0): data parallelism starts reducing those gradients while the
// earlier layers are still computing.
func (s *Sequential) Backward(saved Saved, dy Tensor, onLayerDone func(i int)) (Tensor, error) {
	return s.backward(saved, dy, onLayerDone, true)
}

// BackwardParams is Backward without dL/dx: layers in front of the first
// layer with parameters are not run backward at all, and that layer computes
// only its parameter gradients when it can (ParamGradLayer). The hook is
// still called for every layer, in reverse order. Use it when nothing
// upstream needs the input gradient (data parallelism, the first pipeline
// stage).
func (s *Sequential) BackwardParams(saved Saved, dy Tensor, onLayerDone func(i int)) error {
	_, err := s.backward(saved, dy, onLayerDone, false)
	return err
}

func (s *Sequential) backward(saved Saved, dy Tensor, onLayerDone func(int), wantDX bool) (Tensor, error) {
	sv, ok := saved.(*seqSaved)
	if !ok || sv == nil || sv.owner != s || len(sv.saved) != len(s.layers) {
		return Tensor{}, fmt.Errorf("sequential: %w", ErrSaved)
	}
	// Without dL/dx, nothing below the first layer with parameters needs
	// computing (e.g. the Flatten in front of an MLP), and that layer needs
	// only its parameter gradients.
	stop := 0
	if !wantDX {
		stop = len(s.layers)
		for i, l := range s.layers {
			if len(l.Params()) > 0 {
				stop = i
				break
			}
		}
	}
	cur := dy
	for i := len(s.layers) - 1; i >= stop; i-- {
		l := s.layers[i]
		if i == stop && !wantDX {
			if pl, ok := l.(ParamGradLayer); ok {
				if err := pl.BackwardParams(sv.saved[i], cur); err != nil {
					return Tensor{}, fmt.Errorf("backward layer %d: %w", i, err)
				}
				if onLayerDone != nil {
					onLayerDone(i)
				}
				continue
			}
		}
		dx, err := l.Backward(sv.saved[i], cur)
		if err != nil {
			return Tensor{}, fmt.Errorf("backward layer %d: %w", i, err)
		}
		if onLayerDone != nil {
			onLayerDone(i)
		}
		cur = dx
	}
	if !wantDX {
		// Parameterless layers below stop: their (empty) gradients are done.
		for i := stop - 1; i >= 0; i-- {
			if onLayerDone != nil {
				onLayerDone(i)
			}
		}
		return Tensor{}, nil
	}
	return cur, nil
}
