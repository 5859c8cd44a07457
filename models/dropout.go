package models

import (
	"fmt"
	"math/rand/v2"
	"sync"

	G "gorgonia.org/gorgonia"
)

// Dropout zeroes each element with probability P during training and scales
// the survivors by 1/(1−P) (inverted dropout), so inference is the identity.
//
// The mask is drawn in Go from a seeded PCG stream, one stream per call
// (seed, call number), and multiplied in a gorgonia graph (y = x ⊙ mask,
// dx = dy ⊙ mask). gorgonia's own Dropout op draws from an unseeded global
// generator, which would make runs irreproducible and ranks disagree.
type Dropout struct {
	name   string
	p      float64
	mu     sync.Mutex
	seed   uint64
	calls  uint64
	graphs *graphCache
}

var _ Layer = (*Dropout)(nil)

// NewDropout returns a dropout layer with drop probability p in [0, 1).
// seed fixes the masks; Sequential.Init reseeds it from the model seed.
func NewDropout(name string, p float64, seed int64) (*Dropout, error) {
	if !(p >= 0 && p < 1) {
		return nil, fmt.Errorf("dropout %q: probability must be in [0, 1), got %g", name, p)
	}
	d := &Dropout{name: name, p: p, seed: uint64(seed)}
	d.graphs = newGraphCache(graphDef{
		layer:       name,
		extraShapes: func(x []int) [][]int { return [][]int{x} },
		build: func(g *G.ExprGraph, x *G.Node, _, extras []*G.Node) (*G.Node, error) {
			return G.HadamardProd(x, extras[0])
		},
	})
	return d, nil
}

// Name implements Layer.
func (d *Dropout) Name() string { return d.name }

// Params implements Layer (none).
func (d *Dropout) Params() []*Param { return nil }

// P is the drop probability.
func (d *Dropout) P() float64 { return d.p }

// OutShape implements Layer: same as the input.
func (d *Dropout) OutShape(in []int) ([]int, error) {
	if len(in) == 0 {
		return nil, &ShapeError{Layer: d.name, What: "input", Got: in, Want: "at least one per-sample dimension"}
	}
	return append([]int(nil), in...), nil
}

// Cost implements Layer.
func (d *Dropout) Cost(in []int) LayerCost {
	n := int64(numElems(in))
	return LayerCost{FLOPs: n, Out: n}
}

// InitParams implements Initializer: draws the mask seed and restarts the
// stream, so a model's seed fixes its dropout masks too.
func (d *Dropout) InitParams(rng *rand.Rand) { d.SetState(rng.Uint64(), 0) }

// State returns the mask stream position (seed, training calls so far), to
// checkpoint alongside the parameters.
func (d *Dropout) State() (seed, calls uint64) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.seed, d.calls
}

// SetState restores a mask stream position.
func (d *Dropout) SetState(seed, calls uint64) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.seed, d.calls = seed, calls
}

type dropoutSaved struct {
	owner *Dropout
	x     Tensor
	mask  []float32 // nil: identity (inference or p = 0)
}

func (s *dropoutSaved) Bytes() int64 { return int64(len(s.x.Data)+len(s.mask)) * 4 }

// NextMask draws the next training mask of n elements from the layer's seeded
// stream, as Forward does in training: it advances the call counter (State),
// and element i is 1/(1−P) (kept) or 0 (dropped). It returns nil, and draws
// nothing, when P is 0. A device backend applies the mask itself; the masks
// are the same as the CPU path's for the same seed and call.
func (d *Dropout) NextMask(n int) []float32 {
	if d.p == 0 {
		return nil
	}
	d.mu.Lock()
	rng := rand.New(rand.NewPCG(d.seed, d.calls))
	d.calls++
	d.mu.Unlock()
	mask := make([]float32, n)
	keep := float32(1 / (1 - d.p))
	for i := range mask {
		if rng.Float64() >= d.p {
			mask[i] = keep
		}
	}
	return mask
}

// Forward implements Layer. With train false (or P = 0) it returns x itself.
func (d *Dropout) Forward(x Tensor, train bool) (Tensor, Saved, error) {
	if err := checkInput(d, x); err != nil {
		return Tensor{}, nil, err
	}
	if !train || d.p == 0 {
		return x, &dropoutSaved{owner: d, x: x}, nil
	}
	mask := d.NextMask(len(x.Data))
	y, err := d.graphs.forward(x, [][]float32{mask})
	if err != nil {
		return Tensor{}, nil, err
	}
	return y, &dropoutSaved{owner: d, x: x, mask: mask}, nil
}

// Backward implements Layer.
func (d *Dropout) Backward(saved Saved, dy Tensor) (Tensor, error) {
	s, ok := saved.(*dropoutSaved)
	if !ok || s == nil || s.owner != d {
		return Tensor{}, fmt.Errorf("layer %q: %w", d.name, ErrSaved)
	}
	if s.mask == nil {
		if err := checkGrad(d, dy, s.x.Shape); err != nil {
			return Tensor{}, err
		}
		return dy, nil
	}
	return d.graphs.backward(s.x, [][]float32{s.mask}, dy, true)
}
