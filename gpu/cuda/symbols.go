package cuda

import (
	"unsafe"

	"github.com/ebitengine/purego"
)

// driverAPI holds the libcuda entry points used, typed after cuda.h.
// CUresult is int32; CUdevice is int32; CUcontext, CUmodule, CUfunction,
// CUevent and CUstream are opaque pointers held as uintptr; CUdeviceptr is
// uint64; size_t is uintptr.
type driverAPI struct {
	cuInit                    func(flags uint32) int32
	cuDriverGetVersion        func(v *int32) int32
	cuDeviceGetCount          func(n *int32) int32
	cuDeviceGet               func(dev *int32, ordinal int32) int32
	cuDeviceGetName           func(name *byte, n int32, dev int32) int32
	cuDeviceGetAttribute      func(v *int32, attr int32, dev int32) int32
	cuDeviceTotalMem          func(bytes *uintptr, dev int32) int32
	cuDeviceGetPCIBusId       func(id *byte, n int32, dev int32) int32
	cuDevicePrimaryCtxRetain  func(ctx *uintptr, dev int32) int32
	cuDevicePrimaryCtxRelease func(dev int32) int32
	cuCtxSetCurrent           func(ctx uintptr) int32
	cuCtxSynchronize          func() int32
	cuMemAlloc                func(p *DevicePtr, bytes uintptr) int32
	cuMemFree                 func(p DevicePtr) int32
	cuMemAllocHost            func(p *unsafe.Pointer, bytes uintptr) int32
	cuMemFreeHost             func(p unsafe.Pointer) int32
	cuMemcpyHtoD              func(dst DevicePtr, src unsafe.Pointer, bytes uintptr) int32
	cuMemcpyDtoH              func(dst unsafe.Pointer, src DevicePtr, bytes uintptr) int32
	cuMemcpyDtoD              func(dst, src DevicePtr, bytes uintptr) int32
	cuMemsetD32               func(dst DevicePtr, v uint32, n uintptr) int32
	cuMemGetInfo              func(free, total *uintptr) int32
	cuModuleLoadDataEx        func(mod *uintptr, image unsafe.Pointer, nopts uint32, opts *int32, vals *uintptr) int32
	cuModuleUnload            func(mod uintptr) int32 // optional
	cuModuleGetFunction       func(fn *uintptr, mod uintptr, name string) int32
	cuLaunchKernel            func(f uintptr, gx, gy, gz, bx, by, bz, shared uint32, stream uintptr, params *unsafe.Pointer, extra *unsafe.Pointer) int32
	cuEventCreate             func(ev *uintptr, flags uint32) int32
	cuEventRecord             func(ev uintptr, stream uintptr) int32
	cuEventSynchronize        func(ev uintptr) int32
	cuEventElapsedTime        func(ms *float32, start, end uintptr) int32
	cuEventDestroy            func(ev uintptr) int32
	cuGetErrorName            func(code int32, name **byte) int32 // optional
	elapsedName, releaseName  string                              // the variants found, for error messages
	eventDestroyName          string
}

// cublasAPI holds the libcublas entry points used (cublas_api.h);
// cublasHandle_t is an opaque pointer held as uintptr, cublasOperation_t
// and cublasMath_t are int32.
type cublasAPI struct {
	cublasCreate              func(h *uintptr) int32
	cublasDestroy             func(h uintptr) int32
	cublasGetVersion          func(h uintptr, v *int32) int32
	cublasGetProperty         func(prop int32, v *int32) int32 // optional
	cublasSetMathMode         func(h uintptr, mode int32) int32
	cublasSgemm               func(h uintptr, ta, tb int32, m, n, k int32, alpha *float32, a DevicePtr, lda int32, b DevicePtr, ldb int32, beta *float32, c DevicePtr, ldc int32) int32
	cublasSgemmStridedBatched func(h uintptr, ta, tb int32, m, n, k int32, alpha *float32, a DevicePtr, lda int32, sa int64, b DevicePtr, ldb int32, sb int64, beta *float32, c DevicePtr, ldc int32, sc int64, batch int32) int32
}

// symbol is one entry point to bind: the first of names found wins.
type symbol struct {
	fptr     any      // pointer to a func field
	names    []string // preferred name first
	required bool
	found    *string // where to note the name bound, or nil
}

// dlsym is purego.Dlsym, replaceable in tests.
var dlsym = purego.Dlsym

// bind looks every symbol up in handle before registering it (RegisterFunc
// panics on a nil address) and returns a *LoadError naming the first
// required symbol missing from path.
func bind(handle uintptr, path string, syms []symbol) error {
	for _, s := range syms {
		var addr uintptr
		for _, n := range s.names {
			if a, err := dlsym(handle, n); err == nil && a != 0 {
				addr = a
				if s.found != nil {
					*s.found = n
				}
				break
			}
		}
		if addr == 0 {
			if s.required {
				return &LoadError{Library: path, Path: path, Symbol: s.names[0],
					Hint: "driver or library too old for this program?"}
			}
			continue
		}
		purego.RegisterFunc(s.fptr, addr)
	}
	return nil
}

func req(fptr any, names ...string) symbol { return symbol{fptr: fptr, names: names, required: true} }
func opt(fptr any, names ...string) symbol { return symbol{fptr: fptr, names: names} }

// symbols lists libcuda's entry points. The _v2 names are the 64-bit
// size_t variants cuda.h maps the plain names to.
func (a *driverAPI) symbols() []symbol {
	release := req(&a.cuDevicePrimaryCtxRelease, "cuDevicePrimaryCtxRelease_v2", "cuDevicePrimaryCtxRelease")
	release.found = &a.releaseName
	elapsed := req(&a.cuEventElapsedTime, "cuEventElapsedTime_v2", "cuEventElapsedTime")
	elapsed.found = &a.elapsedName
	destroy := req(&a.cuEventDestroy, "cuEventDestroy_v2", "cuEventDestroy")
	destroy.found = &a.eventDestroyName
	return []symbol{
		req(&a.cuInit, "cuInit"),
		req(&a.cuDriverGetVersion, "cuDriverGetVersion"),
		req(&a.cuDeviceGetCount, "cuDeviceGetCount"),
		req(&a.cuDeviceGet, "cuDeviceGet"),
		req(&a.cuDeviceGetName, "cuDeviceGetName"),
		req(&a.cuDeviceGetAttribute, "cuDeviceGetAttribute"),
		req(&a.cuDeviceTotalMem, "cuDeviceTotalMem_v2"),
		req(&a.cuDeviceGetPCIBusId, "cuDeviceGetPCIBusId"),
		req(&a.cuDevicePrimaryCtxRetain, "cuDevicePrimaryCtxRetain"),
		release,
		req(&a.cuCtxSetCurrent, "cuCtxSetCurrent"),
		req(&a.cuCtxSynchronize, "cuCtxSynchronize"),
		req(&a.cuMemAlloc, "cuMemAlloc_v2"),
		req(&a.cuMemFree, "cuMemFree_v2"),
		req(&a.cuMemAllocHost, "cuMemAllocHost_v2"),
		req(&a.cuMemFreeHost, "cuMemFreeHost"),
		req(&a.cuMemcpyHtoD, "cuMemcpyHtoD_v2"),
		req(&a.cuMemcpyDtoH, "cuMemcpyDtoH_v2"),
		req(&a.cuMemcpyDtoD, "cuMemcpyDtoD_v2"),
		req(&a.cuMemsetD32, "cuMemsetD32_v2"),
		req(&a.cuMemGetInfo, "cuMemGetInfo_v2"),
		req(&a.cuModuleLoadDataEx, "cuModuleLoadDataEx"),
		opt(&a.cuModuleUnload, "cuModuleUnload"),
		req(&a.cuModuleGetFunction, "cuModuleGetFunction"),
		req(&a.cuLaunchKernel, "cuLaunchKernel"),
		req(&a.cuEventCreate, "cuEventCreate"),
		req(&a.cuEventRecord, "cuEventRecord"),
		req(&a.cuEventSynchronize, "cuEventSynchronize"),
		elapsed,
		destroy,
		opt(&a.cuGetErrorName, "cuGetErrorName"),
	}
}

func (a *cublasAPI) symbols() []symbol {
	return []symbol{
		req(&a.cublasCreate, "cublasCreate_v2"),
		req(&a.cublasDestroy, "cublasDestroy_v2"),
		req(&a.cublasGetVersion, "cublasGetVersion_v2"),
		opt(&a.cublasGetProperty, "cublasGetProperty"),
		req(&a.cublasSetMathMode, "cublasSetMathMode"),
		req(&a.cublasSgemm, "cublasSgemm_v2"),
		req(&a.cublasSgemmStridedBatched, "cublasSgemmStridedBatched"),
	}
}
