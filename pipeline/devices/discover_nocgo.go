//go:build !cgo

package devices

import "context"

// Discover reports the CPU only, with ErrNoCgo as the reason: this binary
// was built without cgo (CGO_ENABLED=0) and so cannot load NVML, a C
// library. Rebuild with cgo to see the GPUs. DiscoverWith, which takes an
// nvml.Interface, exists only in cgo builds, since go-nvml needs cgo to
// compile at all.
func Discover(ctx context.Context, opts Options) (*Inventory, error) {
	inv := newInventory(opts)
	inv.fallBack(ErrNoCgo, nil, "NVML is a C library; rebuild with CGO_ENABLED=1 to use GPUs")
	return inv.finish(opts)
}
