package models

// Model is what ddp and pipeline train: a *Sequential, or a Sequential compiled
// onto a device (package gpu) that shares its *Params.
//
// Forward, Backward and BackwardParams have Sequential's semantics: a Saved
// belongs to one Forward call and several may be in flight; backward ADDS
// parameter gradients to what accumulated since ZeroGrad.
//
// The onLayerDone hook of Backward and BackwardParams is called with each layer
// index in reverse order (Len()-1 … 0). When it is non-nil, Param.Grad of
// layer i's parameters is complete ON THE HOST when hook(i) runs: it holds
// everything accumulated since ZeroGrad, including by earlier calls made with
// a nil hook (a device model downloads it then). With a nil hook a model that
// computes on a device may keep the gradients there, with no host round trip
// (see DeviceResident).
type Model interface {
	// Layers returns the layers in order (the layers themselves are shared).
	Layers() []Layer
	// Len is the number of layers.
	Len() int
	// Params returns every parameter, in layer order.
	Params() []*Param
	// ZeroGrad clears every parameter's gradient.
	ZeroGrad()
	// Forward runs every layer; the Saved is for one Backward or BackwardParams.
	Forward(x Tensor, train bool) (Tensor, Saved, error)
	// Backward runs backward from dL/dy and returns dL/dx.
	Backward(saved Saved, dy Tensor, onLayerDone func(i int)) (Tensor, error)
	// BackwardParams is Backward without dL/dx (see Sequential.BackwardParams).
	BackwardParams(saved Saved, dy Tensor, onLayerDone func(i int)) error
}

var _ Model = (*Sequential)(nil)

// Placed is implemented by models and optimizers that compute somewhere other
// than the host CPU.
type Placed interface {
	// Device names where the computation runs, e.g. "cuda:0" or "emu".
	Device() string
}

// DevicePlacement returns x's device if it implements Placed, else "cpu".
// ddp and pipeline refuse to step an optimizer placed elsewhere than the model.
func DevicePlacement(x any) string {
	if p, ok := x.(Placed); ok {
		return p.Device()
	}
	return "cpu"
}

// DeviceResident is implemented by models whose authoritative parameters and
// gradients live on a device. The host copies (Param.Value, Param.Grad) are
// synchronised only through these calls, which ddp and pipeline make at the
// points that read or write the host copies.
type DeviceResident interface {
	Placed
	// PullParams copies the device values into Param.Value (before a
	// checkpoint, a host evaluation, anything that reads Value).
	PullParams() error
	// PushParams copies Param.Value to the device (after a broadcast, a
	// checkpoint load, any host write of Value).
	PushParams() error
	// PullGrads overwrites Param.Grad with the device gradients.
	PullGrads() error
	// PushGrads copies Param.Grad to the device (after an AllReduce wrote the
	// host copy).
	PushGrads() error
}

// Loss computes a loss and its gradient for a batch of model outputs (logits)
// and integer labels, scaled by scale: loss is scale times the summed
// per-sample loss and dlogits its gradient with respect to logits.
// SoftmaxCrossEntropy is one (and the default wherever a Loss may be nil).
type Loss func(logits Tensor, labels []int, scale float32) (loss float64, dlogits Tensor, err error)

var _ Loss = SoftmaxCrossEntropy
