package gpu

import (
	"errors"
	"fmt"

	"github.com/ringtrain/ringtrain/models"
)

// Model is a models.Sequential compiled onto a Device. It shares the
// Sequential's layers and *models.Param values, and implements
// models.Model, so ddp and pipeline drive it exactly as they drive the
// Sequential.
//
// Who owns what. While it trains, the DEVICE copies of the parameters and
// their gradients are authoritative: Forward reads the device values,
// Backward accumulates into the device gradients, and the device
// optimizers (NewSGD, NewAdam) update the device values. The host
// Param.Value and Param.Grad are synced only at explicit points
// (models.DeviceResident): PullParams/PushParams, PullGrads/PushGrads, and
// the layer-done hook of Backward, which downloads each layer's gradients
// into Param.Grad before it runs (data parallelism reads them there). With
// no hook and a device optimizer, a step makes no host round trip besides
// the inputs and the logits.
//
// Activations stay on the device from the first layer to the last: Forward
// uploads x and downloads the output; Backward uploads dy and, when asked,
// downloads dx. A Model is used by one goroutine at a time.
type Model struct {
	seq    *models.Sequential
	dev    Device
	ops    []op
	params []*devParam   // in seq.Params() order
	layerP [][]*devParam // layer i → its parameters
	pool   *pool
	live   map[*saved]struct{} // training forwards whose backward has not run
}

var (
	_ models.Model          = (*Model)(nil)
	_ models.DeviceResident = (*Model)(nil)
)

// Compile lowers every layer of seq onto dev and uploads the parameters. A
// layer type without device kernels fails with ErrUnsupportedLayer naming it.
func Compile(seq *models.Sequential, dev Device) (*Model, error) {
	if seq == nil || seq.Len() == 0 {
		return nil, errors.New("gpu: Compile: empty model")
	}
	if dev == nil {
		return nil, errors.New("gpu: Compile: nil device")
	}
	m := &Model{seq: seq, dev: dev, pool: newPool(dev), live: make(map[*saved]struct{})}
	byParam := make(map[*models.Param]*devParam)
	fail := func(err error) (*Model, error) {
		m.Close()
		return nil, err
	}
	for _, p := range seq.Params() {
		dp := &devParam{p: p}
		var err error
		if dp.val, err = dev.Alloc(4 * len(p.Value)); err != nil {
			return fail(fmt.Errorf("gpu: allocating %s on %s: %w", p.Name, dev.Name(), err))
		}
		if dp.grad, err = dev.Alloc(4 * len(p.Value)); err != nil {
			dev.Free(dp.val)
			return fail(fmt.Errorf("gpu: allocating the gradient of %s on %s: %w", p.Name, dev.Name(), err))
		}
		m.params = append(m.params, dp)
		byParam[p] = dp
	}
	for _, l := range seq.Layers() {
		o, err := lower(l, byParam)
		if err != nil {
			return fail(fmt.Errorf("gpu: compiling for %s: %w", dev.Name(), err))
		}
		m.ops = append(m.ops, o)
		var lp []*devParam
		for _, p := range l.Params() {
			lp = append(lp, byParam[p])
		}
		m.layerP = append(m.layerP, lp)
	}
	if err := m.PushParams(); err != nil {
		return fail(err)
	}
	if err := m.zeroDeviceGrads(); err != nil {
		return fail(err)
	}
	return m, nil
}

// Close frees the model's device memory. The Model must not be used after.
func (m *Model) Close() {
	for s := range m.live {
		s.release()
	}
	for _, dp := range m.params {
		m.dev.Free(dp.val)
		m.dev.Free(dp.grad)
	}
	m.params = nil
	m.pool.trim()
}

// Sequential is the model this one was compiled from (same layers, same Params).
func (m *Model) Sequential() *models.Sequential { return m.seq }

// DeviceOf is the device the model computes on.
func (m *Model) DeviceOf() Device { return m.dev }

// Device implements models.Placed.
func (m *Model) Device() string { return m.dev.Name() }

// Layers implements models.Model.
func (m *Model) Layers() []models.Layer { return m.seq.Layers() }

// Len implements models.Model.
func (m *Model) Len() int { return m.seq.Len() }

// Params implements models.Model. Their Value and Grad are host copies:
// see PullParams and PullGrads.
func (m *Model) Params() []*models.Param { return m.seq.Params() }

// MemoryStats reports the caching allocator's bytes: in use by live
// activations, cached for reuse, and the peak in use.
func (m *Model) MemoryStats() (inUse, cached, peak int64) {
	return m.pool.inUse, m.pool.cached, m.pool.peak
}

// ZeroGrad implements models.Model: clears the device gradients and drops
// the activations of training forwards that never got their backward (a
// failed step). The host copies in Param.Grad are left alone: they are
// only ever overwritten as a whole from the device (the layer-done hook,
// PullGrads), never accumulated into, so clearing them would be wasted
// work (for mlp-wide, 80 MB of host memory written per step: measured 8 ms
// of a 15 ms step on the H200 machine).
func (m *Model) ZeroGrad() {
	for s := range m.live {
		s.release()
	}
	// A device error here resurfaces at the next synchronising call.
	_ = m.zeroDeviceGrads()
}

func (m *Model) zeroDeviceGrads() error {
	for _, dp := range m.params {
		if err := m.dev.Zero(dp.grad, dp.n()); err != nil {
			return fmt.Errorf("gpu: clearing the gradient of %s: %w", dp.p.Name, err)
		}
	}
	return nil
}

// PushParams implements models.DeviceResident: uploads every Param.Value.
func (m *Model) PushParams() error {
	for _, dp := range m.params {
		if err := UploadFloats(m.dev, dp.val, dp.p.Value); err != nil {
			return fmt.Errorf("gpu: uploading %s to %s: %w", dp.p.Name, m.dev.Name(), err)
		}
	}
	return nil
}

// PullParams implements models.DeviceResident: downloads every parameter
// into Param.Value.
func (m *Model) PullParams() error {
	for _, dp := range m.params {
		if err := DownloadFloats(m.dev, dp.p.Value, dp.val); err != nil {
			return fmt.Errorf("gpu: downloading %s from %s: %w", dp.p.Name, m.dev.Name(), err)
		}
	}
	return nil
}

// PullGrads implements models.DeviceResident: overwrites every Param.Grad
// with the device gradient.
func (m *Model) PullGrads() error {
	for _, dp := range m.params {
		if err := m.pullGrad(dp); err != nil {
			return err
		}
	}
	return nil
}

func (m *Model) pullGrad(dp *devParam) error {
	if err := DownloadFloats(m.dev, dp.p.Grad, dp.grad); err != nil {
		return fmt.Errorf("gpu: downloading the gradient of %s from %s: %w", dp.p.Name, m.dev.Name(), err)
	}
	return nil
}

// PushGrads implements models.DeviceResident: uploads every Param.Grad
// (e.g. after an AllReduce averaged the host copies).
func (m *Model) PushGrads() error {
	for _, dp := range m.params {
		if err := UploadFloats(m.dev, dp.grad, dp.p.Grad); err != nil {
			return fmt.Errorf("gpu: uploading the gradient of %s to %s: %w", dp.p.Name, m.dev.Name(), err)
		}
	}
	return nil
}

// saved is the Saved of one training Forward: each layer's saved values
// and the device memory they live in.
type saved struct {
	owner *Model
	per   []any
	mem   arena
	dead  bool
}

func (s *saved) Bytes() int64 { return s.mem.bytes }

func (s *saved) release() {
	s.mem.release()
	s.dead = true
	delete(s.owner.live, s)
}

// inferenceSaved is what Forward returns with train false: the activations
// are already released, so there is nothing to run backward through.
type inferenceSaved struct{}

func (inferenceSaved) Bytes() int64 { return 0 }

// ErrInference is returned by Backward for the Saved of an inference Forward.
var ErrInference = errors.New("gpu: backward of a forward run with train=false (inference frees its activations at once)")

// Forward implements models.Model: uploads x, runs every layer on the device
// and downloads the output. With train false the activations are released
// before it returns (evaluation keeps nothing on the device).
func (m *Model) Forward(x models.Tensor, train bool) (models.Tensor, models.Saved, error) {
	if err := x.Validate(); err != nil {
		return models.Tensor{}, nil, fmt.Errorf("gpu: forward: input: %w", err)
	}
	outShape, err := m.seq.OutShape(x.SampleShape())
	if err != nil {
		return models.Tensor{}, nil, fmt.Errorf("gpu: forward: %w", err)
	}
	s := &saved{owner: m, per: make([]any, len(m.ops)), mem: arena{p: m.pool}}
	in, err := s.mem.floats(len(x.Data))
	if err == nil {
		err = UploadFloats(m.dev, in, x.Data)
	}
	cur := act{in, append([]int(nil), x.Shape...)}
	for i := 0; err == nil && i < len(m.ops); i++ {
		var y act
		y, s.per[i], err = m.ops[i].forward(m.dev, &s.mem, cur, train)
		if err != nil {
			err = fmt.Errorf("gpu: forward layer %d (%s) on %s: %w", i, m.seq.Layers()[i].Name(), m.dev.Name(), err)
		}
		cur = y
	}
	var out models.Tensor
	if err == nil {
		out = models.Tensor{Shape: append([]int{x.Shape[0]}, outShape...), Data: make([]float32, x.Shape[0]*numElems(outShape))}
		err = DownloadFloats(m.dev, out.Data, cur.m)
	}
	if err != nil || !train {
		s.mem.release()
		if err != nil {
			return models.Tensor{}, nil, err
		}
		return out, inferenceSaved{}, nil
	}
	m.live[s] = struct{}{}
	return out, s, nil
}

// Backward implements models.Model.
func (m *Model) Backward(sv models.Saved, dy models.Tensor, onLayerDone func(i int)) (models.Tensor, error) {
	return m.backward(sv, dy, onLayerDone, true)
}

// BackwardParams implements models.Model.
func (m *Model) BackwardParams(sv models.Saved, dy models.Tensor, onLayerDone func(i int)) error {
	_, err := m.backward(sv, dy, onLayerDone, false)
	return err
}

// backward mirrors models.Sequential's: layers in reverse order; without
// dx, nothing below the first layer with parameters runs, and that layer
// computes only its parameter gradients. When onLayerDone is set, layer
// i's gradients are downloaded into Param.Grad before onLayerDone(i).
func (m *Model) backward(sv models.Saved, dyHost models.Tensor, onLayerDone func(int), wantDX bool) (models.Tensor, error) {
	if _, ok := sv.(inferenceSaved); ok {
		return models.Tensor{}, ErrInference
	}
	s, ok := sv.(*saved)
	if !ok || s == nil || s.owner != m || s.dead {
		return models.Tensor{}, fmt.Errorf("gpu: backward: %w", models.ErrSaved)
	}
	defer s.release()
	if err := dyHost.Validate(); err != nil {
		return models.Tensor{}, fmt.Errorf("gpu: backward: upstream gradient: %w", err)
	}
	ba := arena{p: m.pool}
	defer ba.release()
	dym, err := ba.floats(len(dyHost.Data))
	if err != nil {
		return models.Tensor{}, err
	}
	if err := UploadFloats(m.dev, dym, dyHost.Data); err != nil {
		return models.Tensor{}, err
	}
	stop := 0
	if !wantDX {
		stop = len(m.ops)
		for i, lp := range m.layerP {
			if len(lp) > 0 {
				stop = i
				break
			}
		}
	}
	cur := act{dym, append([]int(nil), dyHost.Shape...)}
	layers := m.seq.Layers()
	for i := len(m.ops) - 1; i >= stop; i-- {
		needDX := wantDX || i > stop
		dx, err := m.ops[i].backward(m.dev, &ba, s.per[i], cur, needDX)
		if err != nil {
			return models.Tensor{}, fmt.Errorf("gpu: backward layer %d (%s) on %s: %w", i, layers[i].Name(), m.dev.Name(), err)
		}
		if err := m.layerDone(i, onLayerDone); err != nil {
			return models.Tensor{}, err
		}
		cur = dx
	}
	if !wantDX {
		for i := stop - 1; i >= 0; i-- {
			if onLayerDone != nil {
				onLayerDone(i)
			}
		}
		return models.Tensor{}, nil
	}
	dx := models.Tensor{Shape: cur.shape, Data: make([]float32, cur.n())}
	if err := DownloadFloats(m.dev, dx.Data, cur.m); err != nil {
		return models.Tensor{}, err
	}
	return dx, nil
}

func (m *Model) layerDone(i int, hook func(int)) error {
	if hook == nil {
		return nil
	}
	for _, dp := range m.layerP[i] {
		if err := m.pullGrad(dp); err != nil {
			return err
		}
	}
	hook(i)
	return nil
}
