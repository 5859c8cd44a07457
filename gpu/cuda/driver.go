package cuda

import (
	"fmt"
	"strconv"
	"sync"
	"unsafe"
)

// DevicePtr is a device address (CUdeviceptr).
type DevicePtr uint64

// DeviceInfo describes one CUDA device.
type DeviceInfo struct {
	Ordinal      int
	Name         string
	TotalMem     uint64
	PCIBusID     string // as cuDeviceGetPCIBusId writes it: "0000:19:00.0"
	Major, Minor int    // compute capability
	SMs          int    // multiprocessors
}

// Driver is libcuda and libcublas, loaded and initialised (cuInit).
type Driver struct {
	api           driverAPI
	blas          cublasAPI
	version       int
	cublasVersion int
	libs          []string
	mu            sync.Mutex // guards cublasVersion when read from a handle
}

var (
	loadOnce   sync.Once
	loadResult *Driver
	loadErr    error
)

// cuBLAS sonames, newest first: CUDA 13 machines have only .13.
var cublasSonames = []string{"libcublas.so.13", "libcublas.so.12", "libcublas.so.11"}

// Load finds, opens and initialises the CUDA driver and cuBLAS, once per
// process; later calls return the first call's result (libraries cannot be
// unloaded safely, and a second search would find the same). Where there is
// no driver it returns a *LoadError listing every path tried; it never
// panics or exits.
func Load() (*Driver, error) {
	loadOnce.Do(func() {
		loadResult, loadErr = load(SearchDirs(), systemDlopen, fileExists)
	})
	return loadResult, loadErr
}

// load is Load over a given search path and dlopen.
func load(dirs []string, dl dlopenFunc, exists func(string) bool) (d *Driver, err error) {
	defer func() {
		// A binding bug must not take the program down: callers fall back
		// to the CPU on any error.
		if r := recover(); r != nil {
			d, err = nil, &LoadError{Library: "libcuda.so.1", Path: "libcuda.so.1", Err: fmt.Errorf("panic while loading: %v", r)}
		}
	}()
	d = &Driver{}
	h, path, tried := search(dirs, []string{"libcuda.so.1"}, plainOpener(dl, exists))
	if path == "" {
		return nil, &LoadError{Library: "libcuda.so.1", Tried: tried,
			Hint: "no NVIDIA driver on this machine? set " + EnvLibs + " to the folder holding it"}
	}
	if err := bind(h, path, d.api.symbols()); err != nil {
		return nil, err
	}
	d.libs = append(d.libs, path)
	if err := d.check("cuInit", d.api.cuInit(0)); err != nil {
		return nil, &LoadError{Library: "libcuda.so.1", Tried: tried, Path: path, Err: err,
			Hint: "is a GPU visible to this process (CUDA_VISIBLE_DEVICES, container runtime)?"}
	}
	var v int32
	if err := d.check("cuDriverGetVersion", d.api.cuDriverGetVersion(&v)); err != nil {
		return nil, &LoadError{Library: "libcuda.so.1", Tried: tried, Path: path, Err: err}
	}
	d.version = int(v)

	// libcuda is loaded first: cuBLAS's own dlopen("libcuda.so.1") then
	// finds it by soname even where the loader would not.
	h, path, tried = search(dirs, cublasSonames, cublasOpener(dl, exists))
	if path == "" {
		return nil, &LoadError{Library: "libcublas.so.13/.12/.11", Tried: tried,
			Hint: "cuBLAS is not installed where searched; set " + EnvLibs + " to the folder holding it"}
	}
	if err := bind(h, path, d.blas.symbols()); err != nil {
		return nil, err
	}
	d.libs = append(d.libs, path)
	if f := d.blas.cublasGetProperty; f != nil {
		// libraryPropertyType: MAJOR_VERSION 0, MINOR_VERSION 1, PATCH_LEVEL 2;
		// combined as CUBLAS_VERSION is.
		var major, minor, patch int32
		if f(0, &major) == 0 && f(1, &minor) == 0 && f(2, &patch) == 0 {
			d.cublasVersion = int(major)*10000 + int(minor)*100 + int(patch)
		}
	}
	return d, nil
}

// Version is the CUDA version the driver supports (cuDriverGetVersion),
// e.g. 13000 for 13.0.
func (d *Driver) Version() int { return d.version }

// CublasVersion is cuBLAS's version as CUBLAS_VERSION encodes it
// (major*10000 + minor*100 + patch), or 0 if it could not be read before a
// Context was opened.
func (d *Driver) CublasVersion() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.cublasVersion
}

// Libraries lists the paths of the libraries loaded, driver first.
func (d *Driver) Libraries() []string { return append([]string(nil), d.libs...) }

// check turns a CUresult into an *Error named after call, nil on success.
func (d *Driver) check(call string, code int32) error {
	if code == 0 {
		return nil
	}
	return &Error{Call: call, Code: int(code), Name: d.errorName(code)}
}

// errorName asks the driver for code's name (cuGetErrorName).
func (d *Driver) errorName(code int32) string {
	if f := d.api.cuGetErrorName; f != nil {
		var p *byte
		if f(code, &p) == 0 && p != nil {
			return cString(p, 128)
		}
	}
	return "CUDA_ERROR_" + strconv.Itoa(int(code))
}

// cString copies a NUL-terminated C string of at most max bytes.
func cString(p *byte, max int) string {
	n := 0
	for n < max && *(*byte)(unsafe.Add(unsafe.Pointer(p), n)) != 0 {
		n++
	}
	return string(unsafe.Slice(p, n))
}

// goString returns b up to its first NUL.
func goString(b []byte) string {
	for i, c := range b {
		if c == 0 {
			return string(b[:i])
		}
	}
	return string(b)
}

// Device attributes (CUdevice_attribute).
const (
	attrMultiprocessorCount = 16
	attrComputeCapMajor     = 75
	attrComputeCapMinor     = 76
)

// Devices describes every device the driver sees (after
// CUDA_VISIBLE_DEVICES), in ordinal order.
func (d *Driver) Devices() ([]DeviceInfo, error) {
	var n int32
	if err := d.check("cuDeviceGetCount", d.api.cuDeviceGetCount(&n)); err != nil {
		return nil, err
	}
	out := make([]DeviceInfo, 0, n)
	for i := range int(n) {
		info, err := d.device(i)
		if err != nil {
			return nil, err
		}
		out = append(out, info)
	}
	return out, nil
}

// device describes device ordinal i.
func (d *Driver) device(i int) (DeviceInfo, error) {
	info := DeviceInfo{Ordinal: i}
	var dev int32
	if err := d.check("cuDeviceGet", d.api.cuDeviceGet(&dev, int32(i))); err != nil {
		return info, fmt.Errorf("cuda: device %d: %w", i, err)
	}
	var name [256]byte
	if err := d.check("cuDeviceGetName", d.api.cuDeviceGetName(&name[0], int32(len(name)), dev)); err != nil {
		return info, fmt.Errorf("cuda: device %d: %w", i, err)
	}
	info.Name = goString(name[:])
	var mem uintptr
	if err := d.check("cuDeviceTotalMem_v2", d.api.cuDeviceTotalMem(&mem, dev)); err != nil {
		return info, fmt.Errorf("cuda: device %d: %w", i, err)
	}
	info.TotalMem = uint64(mem)
	var bus [64]byte
	if err := d.check("cuDeviceGetPCIBusId", d.api.cuDeviceGetPCIBusId(&bus[0], int32(len(bus)), dev)); err != nil {
		return info, fmt.Errorf("cuda: device %d: %w", i, err)
	}
	info.PCIBusID = goString(bus[:])
	for _, a := range []struct {
		attr int32
		dst  *int
	}{{attrComputeCapMajor, &info.Major}, {attrComputeCapMinor, &info.Minor}, {attrMultiprocessorCount, &info.SMs}} {
		var v int32
		if err := d.check("cuDeviceGetAttribute", d.api.cuDeviceGetAttribute(&v, a.attr, dev)); err != nil {
			return info, fmt.Errorf("cuda: device %d: attribute %d: %w", i, a.attr, err)
		}
		*a.dst = int(v)
	}
	return info, nil
}
