package cuda

import (
	"fmt"
	"math"
	"runtime"
	"unsafe"
)

// packArgs lays kernel arguments out one per 8-byte slot, each value in
// the slot's low bytes (little-endian), as cuLaunchKernel reads them
// through kernelParams[i] (a pointer to each argument's value). The sizes
// are those of the PTX parameter types: DevicePtr, int64, float64 8 bytes;
// int32, uint32, float32 4. An int travels as int32 (PTX .s32), so a value
// out of int32 range is an error rather than silently truncated.
func packArgs(args []any) ([]uint64, error) {
	slots := make([]uint64, len(args))
	for i, a := range args {
		switch v := a.(type) {
		case DevicePtr:
			slots[i] = uint64(v)
		case int32:
			slots[i] = uint64(uint32(v))
		case int:
			if v < math.MinInt32 || v > math.MaxInt32 {
				return nil, fmt.Errorf("cuda: Launch: argument %d: int %d does not fit int32", i, v)
			}
			slots[i] = uint64(uint32(int32(v)))
		case uint32:
			slots[i] = uint64(v)
		case float32:
			slots[i] = uint64(math.Float32bits(v))
		case float64:
			slots[i] = math.Float64bits(v)
		case int64:
			slots[i] = uint64(v)
		default:
			return nil, fmt.Errorf("cuda: Launch: argument %d: unsupported type %T (want DevicePtr, int, int32, uint32, int64, float32 or float64)", i, a)
		}
	}
	return slots, nil
}

// checkDims rejects a zero grid or block dimension, which the driver would
// refuse with a bare CUDA_ERROR_INVALID_VALUE.
func checkDims(grid, block [3]uint32) error {
	for i, axis := range "xyz" {
		if grid[i] == 0 {
			return argError("Launch", "grid.%c = 0", axis)
		}
		if block[i] == 0 {
			return argError("Launch", "block.%c = 0", axis)
		}
	}
	return nil
}

// Launch runs kernel f on the default stream (cuLaunchKernel) with the
// given grid and block sizes, dynamic shared memory and arguments (see
// packArgs for the accepted types). It returns once the launch is queued;
// Sync or a DtoH reports errors the kernel hits while running.
func (c *Context) Launch(f Function, grid, block [3]uint32, shared uint32, args ...any) error {
	if f.h == 0 {
		return argError("Launch", "zero Function (not from Module.Function)")
	}
	if f.ctx != c {
		return argError("Launch", "kernel %q belongs to another Context", f.name)
	}
	if err := checkDims(grid, block); err != nil {
		return err
	}
	slots, err := packArgs(args)
	if err != nil {
		return err
	}
	// kernelParams is a void** into Go memory: pin the values and the
	// pointer array, as the cgo rules ask of Go memory holding Go
	// pointers that C reads.
	var pin runtime.Pinner
	defer pin.Unpin()
	var params *unsafe.Pointer
	if len(slots) > 0 {
		ptrs := make([]unsafe.Pointer, len(slots))
		pin.Pin(&slots[0])
		for i := range slots {
			ptrs[i] = unsafe.Pointer(&slots[i])
		}
		pin.Pin(&ptrs[0])
		params = &ptrs[0]
	}
	return c.do(func(api *driverAPI) error {
		code := api.cuLaunchKernel(f.h, grid[0], grid[1], grid[2], block[0], block[1], block[2], shared, 0, params, nil)
		if err := c.drv.check("cuLaunchKernel", code); err != nil {
			return fmt.Errorf("kernel %q: %w", f.name, err)
		}
		return nil
	})
}
