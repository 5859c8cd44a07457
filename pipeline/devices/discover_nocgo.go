//go:build !cgo

package devices

import "context"

// Discover finds this machine's GPUs through the NVIDIA driver's NVML
// library (libnvidia-ml.so.1), loaded at run time through purego since this
// binary was built without cgo, and falls back to the CPU where it cannot;
// see the package doc. The library is searched for as gpu/cuda searches
// for libcuda ($RINGTRAIN_CUDA_LIBS, /usr/local/nvidia/lib64, ..., then
// the dynamic loader's path). NVML is initialised and shut down within the
// call; if ctx ends first, Discover returns the CPU fallback with ErrNVML
// at once. DiscoverWith, which takes a go-nvml nvml.Interface, exists only
// in cgo builds, since go-nvml needs cgo to compile at all.
func Discover(ctx context.Context, opts Options) (*Inventory, error) {
	return discoverPurego(ctx, opts, openNVML)
}
