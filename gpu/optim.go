package gpu

import (
	"fmt"
	"math"

	"github.com/ringtrain/ringtrain/models"
)

// SGD is models.SGD run on the device over a compiled Model's device
// parameters and gradients: the same formulas in the same float32
// operations (the sgd_step kernel is built without fused multiply-add), the
// same checkpoint format. It implements models.Optimizer and models.Placed.
type SGD struct {
	m     *Model
	cfg   models.SGDConfig
	vel   []Mem // per parameter; zero Mems without momentum
	steps int64
}

// NewSGD returns an SGD optimizer over m's parameters (validated as models.NewSGD does).
func NewSGD(m *Model, cfg models.SGDConfig) (*SGD, error) {
	if _, err := models.NewSGD(nil, cfg); err != nil {
		return nil, err
	}
	o := &SGD{m: m, cfg: cfg}
	for _, dp := range m.params {
		var v Mem
		if cfg.Momentum > 0 {
			var err error
			if v, err = m.dev.Alloc(4 * dp.n()); err != nil {
				o.Close()
				return nil, fmt.Errorf("gpu: sgd: momentum of %s: %w", dp.p.Name, err)
			}
			if err := m.dev.Zero(v, dp.n()); err != nil {
				o.Close()
				return nil, err
			}
		}
		o.vel = append(o.vel, v)
	}
	return o, nil
}

// Close frees the optimizer's device state.
func (o *SGD) Close() {
	for _, v := range o.vel {
		if !v.IsZero() {
			o.m.dev.Free(v)
		}
	}
	o.vel = nil
}

// Device implements models.Placed.
func (o *SGD) Device() string { return o.m.Device() }

// Step implements models.Optimizer.
func (o *SGD) Step() error {
	for i, dp := range o.m.params {
		if err := o.m.dev.SGDStep(dp.val, dp.grad, o.vel[i], dp.n(), o.cfg.LR, o.cfg.Momentum, o.cfg.WeightDecay, o.cfg.Nesterov); err != nil {
			return fmt.Errorf("gpu: sgd step of %s: %w", dp.p.Name, err)
		}
	}
	o.steps++
	return nil
}

// Steps implements models.Optimizer.
func (o *SGD) Steps() int64 { return o.steps }

// LR implements models.Optimizer.
func (o *SGD) LR() float32 { return o.cfg.LR }

// SetLR implements models.Optimizer.
func (o *SGD) SetLR(lr float32) { o.cfg.LR = lr }

// State implements models.Optimizer: models.SGD's format, downloaded.
func (o *SGD) State() models.Snapshot {
	s := models.Snapshot{Kind: "sgd", Step: o.steps}
	if o.cfg.Momentum == 0 {
		return s
	}
	for i, dp := range o.m.params {
		data := make([]float32, dp.n())
		if err := DownloadFloats(o.m.dev, data, o.vel[i]); err != nil {
			return unreadable(err)
		}
		s.Slices = append(s.Slices, models.NamedSlice{Name: dp.p.Name + ".momentum", Shape: append([]int(nil), dp.p.Shape...), Data: data})
	}
	return s
}

// LoadState implements models.Optimizer (validated by models.SGD's own LoadState).
func (o *SGD) LoadState(s models.Snapshot) error {
	check, err := models.NewSGD(o.m.seq.Params(), o.cfg)
	if err != nil {
		return err
	}
	if err := check.LoadState(s); err != nil {
		return err
	}
	for i, v := range o.vel {
		if !v.IsZero() {
			if err := UploadFloats(o.m.dev, v, s.Slices[i].Data); err != nil {
				return fmt.Errorf("gpu: sgd: loading momentum: %w", err)
			}
		}
	}
	o.steps = s.Step
	return nil
}

// Adam is models.Adam run on the device (same formulas, defaults and
// checkpoint format). It implements models.Optimizer and models.Placed.
type Adam struct {
	m     *Model
	cfg   models.AdamConfig
	mo, v []Mem
	steps int64
}

// NewAdam returns an Adam optimizer over m's parameters.
func NewAdam(m *Model, cfg models.AdamConfig) (*Adam, error) {
	cfg = adamDefaults(cfg)
	if _, err := models.NewAdam(nil, cfg); err != nil {
		return nil, err
	}
	o := &Adam{m: m, cfg: cfg}
	for _, dp := range m.params {
		for _, dst := range []*[]Mem{&o.mo, &o.v} {
			b, err := m.dev.Alloc(4 * dp.n())
			if err == nil {
				err = m.dev.Zero(b, dp.n())
			}
			if err != nil {
				o.Close()
				return nil, fmt.Errorf("gpu: adam: moments of %s: %w", dp.p.Name, err)
			}
			*dst = append(*dst, b)
		}
	}
	return o, nil
}

// adamDefaults fills the zero fields as models.NewAdam does.
func adamDefaults(c models.AdamConfig) models.AdamConfig {
	if c.LR == 0 {
		c.LR = 1e-3
	}
	if c.Beta1 == 0 {
		c.Beta1 = 0.9
	}
	if c.Beta2 == 0 {
		c.Beta2 = 0.999
	}
	if c.Eps == 0 {
		c.Eps = 1e-8
	}
	return c
}

// Close frees the optimizer's device state.
func (o *Adam) Close() {
	for _, b := range append(o.mo, o.v...) {
		o.m.dev.Free(b)
	}
	o.mo, o.v = nil, nil
}

// Device implements models.Placed.
func (o *Adam) Device() string { return o.m.Device() }

// Step implements models.Optimizer.
func (o *Adam) Step() error {
	t := float64(o.steps + 1)
	c1 := float32(1 - math.Pow(float64(o.cfg.Beta1), t))
	c2 := float32(1 - math.Pow(float64(o.cfg.Beta2), t))
	for i, dp := range o.m.params {
		if err := o.m.dev.AdamStep(dp.val, dp.grad, o.mo[i], o.v[i], dp.n(), o.cfg.LR, o.cfg.Beta1, o.cfg.Beta2, o.cfg.Eps, o.cfg.WeightDecay, c1, c2); err != nil {
			return fmt.Errorf("gpu: adam step of %s: %w", dp.p.Name, err)
		}
	}
	o.steps++
	return nil
}

// Steps implements models.Optimizer.
func (o *Adam) Steps() int64 { return o.steps }

// LR implements models.Optimizer.
func (o *Adam) LR() float32 { return o.cfg.LR }

// SetLR implements models.Optimizer.
func (o *Adam) SetLR(lr float32) { o.cfg.LR = lr }

// State implements models.Optimizer: models.Adam's format, downloaded.
func (o *Adam) State() models.Snapshot {
	s := models.Snapshot{Kind: "adam", Step: o.steps}
	for i, dp := range o.m.params {
		for _, slot := range []struct {
			name string
			mem  Mem
		}{{".m", o.mo[i]}, {".v", o.v[i]}} {
			data := make([]float32, dp.n())
			if err := DownloadFloats(o.m.dev, data, slot.mem); err != nil {
				return unreadable(err)
			}
			s.Slices = append(s.Slices, models.NamedSlice{Name: dp.p.Name + slot.name, Shape: append([]int(nil), dp.p.Shape...), Data: data})
		}
	}
	return s
}

// LoadState implements models.Optimizer (validated by models.Adam's own LoadState).
func (o *Adam) LoadState(s models.Snapshot) error {
	check, err := models.NewAdam(o.m.seq.Params(), o.cfg)
	if err != nil {
		return err
	}
	if err := check.LoadState(s); err != nil {
		return err
	}
	for i := range o.m.params {
		if err := UploadFloats(o.m.dev, o.mo[i], s.Slices[2*i].Data); err != nil {
			return err
		}
		if err := UploadFloats(o.m.dev, o.v[i], s.Slices[2*i+1].Data); err != nil {
			return err
		}
	}
	o.steps = s.Step
	return nil
}

// NewSGDFor returns an SGD that updates m where m computes: on the device
// for a compiled *Model, models.NewSGD over m.Params() otherwise.
func NewSGDFor(m models.Model, cfg models.SGDConfig) (models.Optimizer, error) {
	if dm, ok := m.(*Model); ok {
		return NewSGD(dm, cfg)
	}
	return models.NewSGD(m.Params(), cfg)
}

// NewAdamFor is NewSGDFor for Adam.
func NewAdamFor(m models.Model, cfg models.AdamConfig) (models.Optimizer, error) {
	if dm, ok := m.(*Model); ok {
		return NewAdam(dm, cfg)
	}
	return models.NewAdam(m.Params(), cfg)
}

// unreadable is the State of an optimizer whose device state could not be
// downloaded: models.Optimizer.State has no error result, and a snapshot of
// zeros would be restored without complaint, so the error goes into the
// Kind, which every LoadState rejects with this message.
func unreadable(err error) models.Snapshot {
	return models.Snapshot{Kind: "unreadable device state: " + err.Error()}
}
