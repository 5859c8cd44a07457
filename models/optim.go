package models

import (
	"fmt"
	"math"
)

// Optimizer updates parameters in place from their accumulated gradients.
// Step does not clear gradients (call Sequential.ZeroGrad). The update is
// plain Go over the flat slices rather than gorgonia's solvers: it must write
// Param.Value in place and its state must be exportable for checkpoints,
// which gorgonia's solvers (private per-node state) do not allow.
type Optimizer interface {
	// Step applies one update and increments Steps.
	Step() error
	// Steps is the number of updates applied (restored by LoadState).
	Steps() int64
	// LR and SetLR read and change the learning rate (for schedules).
	LR() float32
	SetLR(lr float32)
	// State exports the step counter and per-parameter buffers (copies).
	State() Snapshot
	// LoadState restores State's output; kinds, names and shapes must match.
	LoadState(Snapshot) error
}

// SGDConfig configures SGD.
type SGDConfig struct {
	LR          float32 // learning rate; must be > 0
	Momentum    float32 // heavy-ball momentum μ in [0, 1); 0 (default) is plain SGD
	WeightDecay float32 // L2 penalty added to the gradient (λ·w); 0 (default) is none
	Nesterov    bool    // Nesterov momentum; needs Momentum > 0; false by default
}

// SGD is stochastic gradient descent with optional momentum, as PyTorch's
// torch.optim.SGD without dampening:
//
//	g = grad + λ·w;  v = μ·v + g;  w −= lr · (Nesterov ? g + μ·v : v)
type SGD struct {
	cfg    SGDConfig
	params []*Param
	vel    [][]float32 // nil without momentum
	steps  int64
}

// NewSGD returns an SGD optimizer over params.
func NewSGD(params []*Param, cfg SGDConfig) (*SGD, error) {
	switch {
	case !(cfg.LR > 0) || math.IsInf(float64(cfg.LR), 0):
		return nil, fmt.Errorf("sgd: learning rate must be positive and finite, got %g", cfg.LR)
	case cfg.Momentum < 0 || cfg.Momentum >= 1:
		return nil, fmt.Errorf("sgd: momentum must be in [0, 1), got %g", cfg.Momentum)
	case cfg.WeightDecay < 0:
		return nil, fmt.Errorf("sgd: weight decay must be ≥ 0, got %g", cfg.WeightDecay)
	case cfg.Nesterov && cfg.Momentum == 0:
		return nil, fmt.Errorf("sgd: Nesterov needs momentum > 0")
	}
	o := &SGD{cfg: cfg, params: params}
	if cfg.Momentum > 0 {
		for _, p := range params {
			o.vel = append(o.vel, make([]float32, len(p.Value)))
		}
	}
	return o, nil
}

// Step implements Optimizer.
func (o *SGD) Step() error {
	lr, mu, wd := o.cfg.LR, o.cfg.Momentum, o.cfg.WeightDecay
	for i, p := range o.params {
		if len(p.Grad) != len(p.Value) {
			return fmt.Errorf("sgd: %s has %d gradients for %d values", p.Name, len(p.Grad), len(p.Value))
		}
		w, g := p.Value, p.Grad
		if o.vel == nil {
			for j := range w {
				w[j] -= lr * (g[j] + wd*w[j])
			}
			continue
		}
		v := o.vel[i]
		for j := range w {
			gj := g[j] + wd*w[j]
			v[j] = mu*v[j] + gj
			if o.cfg.Nesterov {
				w[j] -= lr * (gj + mu*v[j])
			} else {
				w[j] -= lr * v[j]
			}
		}
	}
	o.steps++
	return nil
}

// Steps implements Optimizer.
func (o *SGD) Steps() int64 { return o.steps }

// LR implements Optimizer.
func (o *SGD) LR() float32 { return o.cfg.LR }

// SetLR implements Optimizer.
func (o *SGD) SetLR(lr float32) { o.cfg.LR = lr }

// State implements Optimizer: kind "sgd", one "<param>.momentum" slice per
// parameter when momentum is on.
func (o *SGD) State() Snapshot {
	s := Snapshot{Kind: "sgd", Step: o.steps}
	for i, v := range o.vel {
		p := o.params[i]
		s.Slices = append(s.Slices, NamedSlice{Name: p.Name + ".momentum", Shape: append([]int(nil), p.Shape...), Data: append([]float32(nil), v...)})
	}
	return s
}

// LoadState implements Optimizer.
func (o *SGD) LoadState(s Snapshot) error {
	if err := checkState(s, "sgd", o.params, o.slotNames()); err != nil {
		return err
	}
	for i, v := range o.vel {
		copy(v, s.Slices[i].Data)
	}
	o.steps = s.Step
	return nil
}

func (o *SGD) slotNames() []string {
	if o.vel == nil {
		return nil
	}
	return []string{"momentum"}
}

// AdamConfig configures Adam. Zero values take the usual defaults.
type AdamConfig struct {
	LR          float32 // learning rate; 0 means 1e-3
	Beta1       float32 // first-moment decay; 0 means 0.9
	Beta2       float32 // second-moment decay; 0 means 0.999
	Eps         float32 // denominator term; 0 means 1e-8
	WeightDecay float32 // L2 penalty added to the gradient (as torch.optim.Adam); 0 is none
}

// Adam is the Adam optimizer (Kingma & Ba 2015) with bias correction:
//
//	g = grad + λ·w;  m = β1·m + (1−β1)·g;  v = β2·v + (1−β2)·g²
//	w −= lr · (m / (1−β1^t)) / (√(v / (1−β2^t)) + ε)
type Adam struct {
	cfg    AdamConfig
	params []*Param
	m, v   [][]float32
	steps  int64
}

// NewAdam returns an Adam optimizer over params.
func NewAdam(params []*Param, cfg AdamConfig) (*Adam, error) {
	if cfg.LR == 0 {
		cfg.LR = 1e-3
	}
	if cfg.Beta1 == 0 {
		cfg.Beta1 = 0.9
	}
	if cfg.Beta2 == 0 {
		cfg.Beta2 = 0.999
	}
	if cfg.Eps == 0 {
		cfg.Eps = 1e-8
	}
	switch {
	case !(cfg.LR > 0) || math.IsInf(float64(cfg.LR), 0):
		return nil, fmt.Errorf("adam: learning rate must be positive and finite, got %g", cfg.LR)
	case cfg.Beta1 < 0 || cfg.Beta1 >= 1 || cfg.Beta2 < 0 || cfg.Beta2 >= 1:
		return nil, fmt.Errorf("adam: betas must be in [0, 1), got %g, %g", cfg.Beta1, cfg.Beta2)
	case !(cfg.Eps > 0):
		return nil, fmt.Errorf("adam: eps must be positive, got %g", cfg.Eps)
	case cfg.WeightDecay < 0:
		return nil, fmt.Errorf("adam: weight decay must be ≥ 0, got %g", cfg.WeightDecay)
	}
	o := &Adam{cfg: cfg, params: params}
	for _, p := range params {
		o.m = append(o.m, make([]float32, len(p.Value)))
		o.v = append(o.v, make([]float32, len(p.Value)))
	}
	return o, nil
}

// Step implements Optimizer.
func (o *Adam) Step() error {
	t := float64(o.steps + 1)
	b1, b2, eps, wd := o.cfg.Beta1, o.cfg.Beta2, o.cfg.Eps, o.cfg.WeightDecay
	c1 := float32(1 - math.Pow(float64(b1), t))
	c2 := float32(1 - math.Pow(float64(b2), t))
	lr := o.cfg.LR
	for i, p := range o.params {
		if len(p.Grad) != len(p.Value) {
			return fmt.Errorf("adam: %s has %d gradients for %d values", p.Name, len(p.Grad), len(p.Value))
		}
		w, g, m, v := p.Value, p.Grad, o.m[i], o.v[i]
		for j := range w {
			gj := g[j] + wd*w[j]
			m[j] = b1*m[j] + (1-b1)*gj
			v[j] = b2*v[j] + (1-b2)*gj*gj
			w[j] -= lr * (m[j] / c1) / (float32(math.Sqrt(float64(v[j]/c2))) + eps)
		}
	}
	o.steps++
	return nil
}

// Steps implements Optimizer.
func (o *Adam) Steps() int64 { return o.steps }

// LR implements Optimizer.
func (o *Adam) LR() float32 { return o.cfg.LR }

// SetLR implements Optimizer.
func (o *Adam) SetLR(lr float32) { o.cfg.LR = lr }

// State implements Optimizer: kind "adam", "<param>.m" and "<param>.v" for
// every parameter, in that order.
func (o *Adam) State() Snapshot {
	s := Snapshot{Kind: "adam", Step: o.steps}
	for i, p := range o.params {
		s.Slices = append(s.Slices,
			NamedSlice{Name: p.Name + ".m", Shape: append([]int(nil), p.Shape...), Data: append([]float32(nil), o.m[i]...)},
			NamedSlice{Name: p.Name + ".v", Shape: append([]int(nil), p.Shape...), Data: append([]float32(nil), o.v[i]...)})
	}
	return s
}

// LoadState implements Optimizer.
func (o *Adam) LoadState(s Snapshot) error {
	if err := checkState(s, "adam", o.params, []string{"m", "v"}); err != nil {
		return err
	}
	for i := range o.params {
		copy(o.m[i], s.Slices[2*i].Data)
		copy(o.v[i], s.Slices[2*i+1].Data)
	}
	o.steps = s.Step
	return nil
}

// checkState verifies a snapshot holds, for every parameter in order, one
// slice per slot named "<param>.<slot>" with the parameter's shape.
func checkState(s Snapshot, kind string, params []*Param, slots []string) error {
	if s.Kind != kind {
		return snapErr("optimizer state of kind %q, want %q", s.Kind, kind)
	}
	if s.Step < 0 {
		return snapErr("negative step %d", s.Step)
	}
	if want := len(params) * len(slots); len(s.Slices) != want {
		return snapErr("%s state has %d buffers, want %d (%d parameters × %v)", kind, len(s.Slices), want, len(params), slots)
	}
	for i, p := range params {
		for k, slot := range slots {
			ns := s.Slices[i*len(slots)+k]
			if ns.Name != p.Name+"."+slot || !sameShape(ns.Shape, p.Shape) || len(ns.Data) != len(p.Value) {
				return snapErr("%s state entry %d is %s %v, want %s.%s %v", kind, i*len(slots)+k, ns.Name, ns.Shape, p.Name, slot, p.Shape)
			}
		}
	}
	return nil
}
