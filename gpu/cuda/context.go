package cuda

import (
	"errors"
	"fmt"
	"runtime"
	"sync"
	"unsafe"
)

// Context is one device's primary context with a cuBLAS handle. Its methods
// may be called from several goroutines: each holds the mutex and runs on a
// locked OS thread with the context current (see do).
type Context struct {
	mu     sync.Mutex
	drv    *Driver
	dev    int32   // CUdevice
	ctx    uintptr // CUcontext (primary)
	blas   uintptr // cublasHandle_t
	info   DeviceInfo
	closed bool
	hosts  map[uintptr]int // pinned host allocations: address → bytes
}

// cublasMath_t CUBLAS_DEFAULT_MATH: plain FP32 (no TF32 tensor-core
// rounding), so device results track the CPU path's.
const cublasDefaultMath = 0

// Open retains device ordinal's primary context (shared with cuBLAS and
// any other library in the process) and creates a cuBLAS handle on it.
func (d *Driver) Open(ordinal int) (*Context, error) {
	var n int32
	if err := d.check("cuDeviceGetCount", d.api.cuDeviceGetCount(&n)); err != nil {
		return nil, fmt.Errorf("cuda: open device %d: %w", ordinal, err)
	}
	if ordinal < 0 || ordinal >= int(n) {
		return nil, fmt.Errorf("cuda: open device %d: no such device (%d device(s) visible)", ordinal, n)
	}
	info, err := d.device(ordinal)
	if err != nil {
		return nil, fmt.Errorf("cuda: open device %d of %d: %w", ordinal, n, err)
	}
	c := &Context{drv: d, info: info, hosts: map[uintptr]int{}}
	if err := d.check("cuDeviceGet", d.api.cuDeviceGet(&c.dev, int32(ordinal))); err != nil {
		return nil, fmt.Errorf("cuda: open device %d of %d: %w", ordinal, n, err)
	}

	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if err := d.check("cuDevicePrimaryCtxRetain", d.api.cuDevicePrimaryCtxRetain(&c.ctx, c.dev)); err != nil {
		return nil, fmt.Errorf("cuda: open device %d of %d: %w", ordinal, n, err)
	}
	fail := func(err error) (*Context, error) {
		d.api.cuDevicePrimaryCtxRelease(c.dev)
		return nil, fmt.Errorf("cuda: open device %d of %d: %w", ordinal, n, err)
	}
	if err := d.check("cuCtxSetCurrent", d.api.cuCtxSetCurrent(c.ctx)); err != nil {
		return fail(err)
	}
	if err := cublasError("cublasCreate_v2", d.blas.cublasCreate(&c.blas)); err != nil {
		return fail(err)
	}
	if err := cublasError("cublasSetMathMode", d.blas.cublasSetMathMode(c.blas, cublasDefaultMath)); err != nil {
		d.blas.cublasDestroy(c.blas)
		return fail(err)
	}
	d.mu.Lock()
	if d.cublasVersion == 0 {
		var v int32
		if d.blas.cublasGetVersion(c.blas, &v) == 0 {
			d.cublasVersion = int(v)
		}
	}
	d.mu.Unlock()
	return c, nil
}

// Info describes the context's device.
func (c *Context) Info() DeviceInfo { return c.info }

// do runs f under the mutex on a locked OS thread with the primary context
// current: the CUDA current context is per thread, and Go moves goroutines
// between threads.
func (c *Context) do(f func(api *driverAPI) error) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed || c.drv == nil {
		return errClosed
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if err := c.drv.check("cuCtxSetCurrent", c.drv.api.cuCtxSetCurrent(c.ctx)); err != nil {
		return err
	}
	return f(&c.drv.api)
}

// Close destroys the cuBLAS handle and releases the primary context; the
// device's memory, modules and events go with the context once every
// holder has released it. Later calls on c return an error.
func (c *Context) Close() error {
	var errs []error
	err := c.do(func(api *driverAPI) error {
		errs = append(errs, cublasError("cublasDestroy_v2", c.drv.blas.cublasDestroy(c.blas)))
		errs = append(errs, c.drv.check(api.releaseName, api.cuDevicePrimaryCtxRelease(c.dev)))
		c.closed = true
		return nil
	})
	if err != nil {
		return err
	}
	return errors.Join(errs...)
}

// Sync waits for all work issued so far (cuCtxSynchronize) and reports
// the first asynchronous error, such as a faulting kernel.
func (c *Context) Sync() error {
	return c.do(func(api *driverAPI) error {
		return c.drv.check("cuCtxSynchronize", api.cuCtxSynchronize())
	})
}

// MemInfo returns the device's free and total memory (cuMemGetInfo_v2).
func (c *Context) MemInfo() (free, total uint64, err error) {
	err = c.do(func(api *driverAPI) error {
		var f, t uintptr
		if err := c.drv.check("cuMemGetInfo_v2", api.cuMemGetInfo(&f, &t)); err != nil {
			return err
		}
		free, total = uint64(f), uint64(t)
		return nil
	})
	return free, total, err
}

// ptrOf is the address of p, for the pinned-allocation table.
func ptrOf(p unsafe.Pointer) uintptr { return uintptr(p) }
