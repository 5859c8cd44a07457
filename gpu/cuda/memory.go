package cuda

import (
	"math"
	"unsafe"
)

// checkBytes rejects a negative byte count, naming the call and argument.
func checkBytes(call, arg string, n int) error {
	if n < 0 {
		return argError(call, "%s = %d is negative", arg, n)
	}
	return nil
}

// Alloc allocates bytes (> 0) of device memory (cuMemAlloc_v2). The memory
// is not cleared.
func (c *Context) Alloc(bytes int) (DevicePtr, error) {
	if bytes <= 0 {
		return 0, argError("Alloc", "bytes = %d, want > 0", bytes)
	}
	var p DevicePtr
	err := c.do(func(api *driverAPI) error {
		return c.drv.check("cuMemAlloc_v2", api.cuMemAlloc(&p, uintptr(bytes)))
	})
	return p, err
}

// Free releases memory from Alloc (cuMemFree_v2).
func (c *Context) Free(p DevicePtr) error {
	if p == 0 {
		return argError("Free", "nil device pointer")
	}
	return c.do(func(api *driverAPI) error {
		return c.drv.check("cuMemFree_v2", api.cuMemFree(p))
	})
}

// AllocHost allocates bytes (> 0) of page-locked host memory
// (cuMemAllocHost_v2) and returns a slice over it: copies from and to it
// run at full PCIe speed. Release it with FreeHost, never let it be used
// after that.
func (c *Context) AllocHost(bytes int) ([]byte, error) {
	if bytes <= 0 {
		return nil, argError("AllocHost", "bytes = %d, want > 0", bytes)
	}
	var b []byte
	err := c.do(func(api *driverAPI) error {
		var p unsafe.Pointer
		if err := c.drv.check("cuMemAllocHost_v2", api.cuMemAllocHost(&p, uintptr(bytes))); err != nil {
			return err
		}
		c.hosts[ptrOf(p)] = bytes
		b = unsafe.Slice((*byte)(p), bytes)
		return nil
	})
	return b, err
}

// FreeHost releases memory from AllocHost (cuMemFreeHost). b must be the
// slice AllocHost returned (any length, same start); other memory is
// refused rather than handed to the driver.
func (c *Context) FreeHost(b []byte) error {
	if cap(b) == 0 {
		return argError("FreeHost", "empty slice")
	}
	p := unsafe.Pointer(unsafe.SliceData(b[:1]))
	return c.do(func(api *driverAPI) error {
		if _, ok := c.hosts[ptrOf(p)]; !ok {
			return argError("FreeHost", "%p was not allocated by this context's AllocHost", p)
		}
		if err := c.drv.check("cuMemFreeHost", api.cuMemFreeHost(p)); err != nil {
			return err
		}
		delete(c.hosts, ptrOf(p))
		return nil
	})
}

// HtoD copies bytes from host memory at src to the device (synchronous,
// cuMemcpyHtoD_v2). A zero count does nothing.
func (c *Context) HtoD(dst DevicePtr, src unsafe.Pointer, bytes int) error {
	if err := checkBytes("HtoD", "bytes", bytes); err != nil || bytes == 0 {
		return err
	}
	if dst == 0 {
		return argError("HtoD", "nil dst")
	}
	if src == nil {
		return argError("HtoD", "nil src")
	}
	return c.do(func(api *driverAPI) error {
		return c.drv.check("cuMemcpyHtoD_v2", api.cuMemcpyHtoD(dst, src, uintptr(bytes)))
	})
}

// DtoH copies bytes from the device to host memory at dst (synchronous
// with respect to the host, and ordered after all earlier work on the
// default stream, cuMemcpyDtoH_v2). A zero count does nothing.
func (c *Context) DtoH(dst unsafe.Pointer, src DevicePtr, bytes int) error {
	if err := checkBytes("DtoH", "bytes", bytes); err != nil || bytes == 0 {
		return err
	}
	if dst == nil {
		return argError("DtoH", "nil dst")
	}
	if src == 0 {
		return argError("DtoH", "nil src")
	}
	return c.do(func(api *driverAPI) error {
		return c.drv.check("cuMemcpyDtoH_v2", api.cuMemcpyDtoH(dst, src, uintptr(bytes)))
	})
}

// DtoD copies bytes between device buffers (cuMemcpyDtoD_v2). A zero
// count does nothing.
func (c *Context) DtoD(dst, src DevicePtr, bytes int) error {
	if err := checkBytes("DtoD", "bytes", bytes); err != nil || bytes == 0 {
		return err
	}
	if dst == 0 {
		return argError("DtoD", "nil dst")
	}
	if src == 0 {
		return argError("DtoD", "nil src")
	}
	return c.do(func(api *driverAPI) error {
		return c.drv.check("cuMemcpyDtoD_v2", api.cuMemcpyDtoD(dst, src, uintptr(bytes)))
	})
}

// Memset32 sets n 32-bit words at dst to value (cuMemsetD32_v2); dst must
// be 4-byte aligned. float32 zero is value 0; other floats via
// math.Float32bits. A zero count does nothing.
func (c *Context) Memset32(dst DevicePtr, value uint32, n int) error {
	if err := checkBytes("Memset32", "n", n); err != nil || n == 0 {
		return err
	}
	if dst == 0 {
		return argError("Memset32", "nil dst")
	}
	if dst%4 != 0 {
		return argError("Memset32", "dst %#x is not 4-byte aligned", uint64(dst))
	}
	if uint64(n) > math.MaxInt64/4 {
		return argError("Memset32", "n = %d too large", n)
	}
	return c.do(func(api *driverAPI) error {
		return c.drv.check("cuMemsetD32_v2", api.cuMemsetD32(dst, value, uintptr(n)))
	})
}
