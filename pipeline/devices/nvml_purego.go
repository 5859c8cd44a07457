package devices

// NVML loaded through purego, without cgo: what Discover uses in
// CGO_ENABLED=0 builds. (Cgo builds use go-nvml, see discover_cgo.go; this
// file compiles in both so that its tests run in both.)

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/ebitengine/purego"

	"github.com/ringtrain/ringtrain/gpu/cuda"
)

// nvmlReturn is an nvmlReturn_t. It prints as go-nvml's Return does when
// no library is loaded ("ERROR_LIBRARY_NOT_FOUND"), so the two builds
// word their reasons alike.
type nvmlReturn int32

// nvmlReturn_t values (nvml.h) used here.
const (
	nvmlSuccess               nvmlReturn = 0
	nvmlErrorDriverNotLoaded  nvmlReturn = 9
	nvmlErrorLibraryNotFound  nvmlReturn = 12
	nvmlErrorFunctionNotFound nvmlReturn = 13
)

var nvmlReturnNames = [...]string{
	"SUCCESS", "ERROR_UNINITIALIZED", "ERROR_INVALID_ARGUMENT", "ERROR_NOT_SUPPORTED",
	"ERROR_NO_PERMISSION", "ERROR_ALREADY_INITIALIZED", "ERROR_NOT_FOUND", "ERROR_INSUFFICIENT_SIZE",
	"ERROR_INSUFFICIENT_POWER", "ERROR_DRIVER_NOT_LOADED", "ERROR_TIMEOUT", "ERROR_IRQ_ISSUE",
	"ERROR_LIBRARY_NOT_FOUND", "ERROR_FUNCTION_NOT_FOUND", "ERROR_CORRUPTED_INFOROM", "ERROR_GPU_IS_LOST",
	"ERROR_RESET_REQUIRED", "ERROR_OPERATING_SYSTEM", "ERROR_LIB_RM_VERSION_MISMATCH", "ERROR_IN_USE",
	"ERROR_MEMORY", "ERROR_NO_DATA", "ERROR_VGPU_ECC_NOT_SUPPORTED", "ERROR_INSUFFICIENT_RESOURCES",
	"ERROR_FREQ_NOT_SUPPORTED", "ERROR_ARGUMENT_VERSION_MISMATCH", "ERROR_DEPRECATED", "ERROR_NOT_READY",
	"ERROR_GPU_NOT_FOUND", "ERROR_INVALID_STATE",
}

func (r nvmlReturn) Error() string {
	if r >= 0 && int(r) < len(nvmlReturnNames) {
		return nvmlReturnNames[r]
	}
	if r == 999 {
		return "ERROR_UNKNOWN"
	}
	return fmt.Sprintf("unknown return value: %d", int32(r))
}

// nvmlMemory is nvmlMemory_t.
type nvmlMemory struct{ Total, Free, Used uint64 }

// nvmlPciInfo is nvmlPciInfo_t as nvmlDeviceGetPciInfo_v3 fills it (68
// bytes, natural alignment).
type nvmlPciInfo struct {
	BusIDLegacy    [16]byte
	Domain         uint32
	Bus            uint32
	Device         uint32
	PciDeviceID    uint32
	PciSubSystemID uint32
	BusID          [32]byte
}

// nvmlAPI is the part of NVML discovery needs, over handles as uintptr;
// tests stand a fake machine in for it.
type nvmlAPI interface {
	Init() nvmlReturn
	Shutdown() nvmlReturn
	DriverVersion() (string, nvmlReturn)
	NVMLVersion() (string, nvmlReturn)
	CUDADriverVersion() (int, nvmlReturn)
	DeviceCount() (int, nvmlReturn)
	DeviceHandle(i int) (uintptr, nvmlReturn)
	DeviceUUID(h uintptr) (string, nvmlReturn)
	DeviceName(h uintptr) (string, nvmlReturn)
	DeviceMemory(h uintptr) (nvmlMemory, nvmlReturn)
	DevicePCI(h uintptr) (nvmlPciInfo, nvmlReturn)
}

// nvmlLib is libnvidia-ml.so.1 bound through purego.
type nvmlLib struct {
	path                   string
	init, shutdown         func() nvmlReturn
	driverVersion          func(buf *byte, n uint32) nvmlReturn // optional
	nvmlVersion            func(buf *byte, n uint32) nvmlReturn // optional
	cudaDriverVersion      func(v *int32) nvmlReturn            // optional
	deviceCount            func(n *uint32) nvmlReturn
	deviceHandle           func(i uint32, h *uintptr) nvmlReturn
	deviceName, deviceUUID func(h uintptr, buf *byte, n uint32) nvmlReturn
	deviceMemory           func(h uintptr, m *nvmlMemory) nvmlReturn
	devicePCI              func(h uintptr, p *nvmlPciInfo) nvmlReturn
}

// nvmlSoname is the driver's NVML library.
const nvmlSoname = "libnvidia-ml.so.1"

var (
	nvmlOnce sync.Once
	nvmlLoad *nvmlLib
	nvmlErr  error
)

// openNVML loads and binds NVML once per process (a library is never
// unloaded; nvmlInit/nvmlShutdown are per Discover). It searches where
// gpu/cuda searches for libcuda: $RINGTRAIN_CUDA_LIBS, the NVIDIA folders,
// then the dynamic loader's path. The error is a *cuda.LoadError.
func openNVML() (nvmlAPI, error) {
	nvmlOnce.Do(func() {
		h, path, err := cuda.OpenLibrary(nvmlSoname)
		if err != nil {
			nvmlErr = err
			return
		}
		l := &nvmlLib{path: path}
		nvmlErr = l.bind(h)
		if nvmlErr == nil {
			nvmlLoad = l
		}
	})
	if nvmlErr != nil {
		return nil, nvmlErr
	}
	return nvmlLoad, nil
}

// bind looks each symbol up before registering it (purego panics on a
// missing one): a missing required symbol is an error naming it, a
// missing optional one leaves its field nil.
func (l *nvmlLib) bind(h uintptr) error {
	for _, s := range []struct {
		fptr     any
		name     string
		required bool
	}{
		{&l.init, "nvmlInit_v2", true},
		{&l.shutdown, "nvmlShutdown", true},
		{&l.driverVersion, "nvmlSystemGetDriverVersion", false},
		{&l.nvmlVersion, "nvmlSystemGetNVMLVersion", false},
		{&l.cudaDriverVersion, "nvmlSystemGetCudaDriverVersion", false},
		{&l.deviceCount, "nvmlDeviceGetCount_v2", true},
		{&l.deviceHandle, "nvmlDeviceGetHandleByIndex_v2", true},
		{&l.deviceName, "nvmlDeviceGetName", true},
		{&l.deviceUUID, "nvmlDeviceGetUUID", true},
		{&l.deviceMemory, "nvmlDeviceGetMemoryInfo", true},
		{&l.devicePCI, "nvmlDeviceGetPciInfo_v3", true},
	} {
		addr, err := purego.Dlsym(h, s.name)
		if err != nil || addr == 0 {
			if s.required {
				return &cuda.LoadError{Library: nvmlSoname, Path: l.path, Symbol: s.name,
					Hint: "NVIDIA driver too old for this program?"}
			}
			continue
		}
		purego.RegisterFunc(s.fptr, addr)
	}
	return nil
}

// NVML buffer sizes (nvml.h *_BUFFER_SIZE, the larger _V2 ones).
const (
	nvmlVersionBuf = 80
	nvmlNameBuf    = 96
	nvmlUUIDBuf    = 96
)

// cstr calls f with a buffer of n bytes and returns what it wrote, up to
// the NUL.
func cstr(n int, f func(buf *byte, n uint32) nvmlReturn) (string, nvmlReturn) {
	if f == nil {
		return "", nvmlErrorFunctionNotFound
	}
	buf := make([]byte, n)
	ret := f(&buf[0], uint32(n))
	if i := bytes.IndexByte(buf, 0); i >= 0 {
		buf = buf[:i]
	}
	return string(buf), ret
}

func (l *nvmlLib) Init() nvmlReturn     { return l.init() }
func (l *nvmlLib) Shutdown() nvmlReturn { return l.shutdown() }
func (l *nvmlLib) DriverVersion() (string, nvmlReturn) {
	return cstr(nvmlVersionBuf, l.driverVersion)
}
func (l *nvmlLib) NVMLVersion() (string, nvmlReturn) { return cstr(nvmlVersionBuf, l.nvmlVersion) }
func (l *nvmlLib) CUDADriverVersion() (int, nvmlReturn) {
	if l.cudaDriverVersion == nil {
		return 0, nvmlErrorFunctionNotFound
	}
	var v int32
	ret := l.cudaDriverVersion(&v)
	return int(v), ret
}
func (l *nvmlLib) DeviceCount() (int, nvmlReturn) {
	var n uint32
	ret := l.deviceCount(&n)
	return int(n), ret
}
func (l *nvmlLib) DeviceHandle(i int) (uintptr, nvmlReturn) {
	var h uintptr
	ret := l.deviceHandle(uint32(i), &h)
	return h, ret
}
func (l *nvmlLib) DeviceUUID(h uintptr) (string, nvmlReturn) {
	return cstr(nvmlUUIDBuf, func(b *byte, n uint32) nvmlReturn { return l.deviceUUID(h, b, n) })
}
func (l *nvmlLib) DeviceName(h uintptr) (string, nvmlReturn) {
	return cstr(nvmlNameBuf, func(b *byte, n uint32) nvmlReturn { return l.deviceName(h, b, n) })
}
func (l *nvmlLib) DeviceMemory(h uintptr) (nvmlMemory, nvmlReturn) {
	var m nvmlMemory
	ret := l.deviceMemory(h, &m)
	return m, ret
}
func (l *nvmlLib) DevicePCI(h uintptr) (nvmlPciInfo, nvmlReturn) {
	var p nvmlPciInfo
	ret := l.devicePCI(h, &p)
	return p, ret
}

// discoverPurego is Discover over NVML opened by open, with the same
// semantics as the cgo build's DiscoverWith: NVML initialised and shut
// down within the call, the CPU fallback with ErrNVML at once if ctx ends
// first (the abandoned probe still shuts NVML down when it returns).
func discoverPurego(ctx context.Context, opts Options, open func() (nvmlAPI, error)) (*Inventory, error) {
	inv := newInventory(opts)
	done := make(chan *Inventory, 1)
	// The probe works on its own copy so that a probe abandoned by ctx
	// never writes to the inventory the caller got.
	p := *inv
	go func() {
		probePurego(open, &p)
		done <- &p
	}()
	select {
	case p := <-done:
		return p.finish(opts)
	case <-ctx.Done():
		inv.fallBack(ErrNVML, ctx.Err(), "NVML did not answer before %v", ctx.Err())
		return inv.finish(opts)
	}
}

// probePurego fills inv from NVML; it mirrors the cgo build's probe.
func probePurego(open func() (nvmlAPI, error), inv *Inventory) {
	defer func() {
		// A broken binding panics; report it as an NVML failure rather
		// than taking the trainer down.
		if r := recover(); r != nil {
			inv.fallBack(ErrNVML, nil, "NVML call panicked: %v", r)
		}
	}()
	lib, err := open()
	if err != nil {
		var le *cuda.LoadError
		if errors.As(err, &le) && le.NotFound() {
			// Worded as the cgo build's ERROR_LIBRARY_NOT_FOUND case.
			ret := nvmlErrorLibraryNotFound
			inv.fallBack(ErrNoDriver, ret, "%s could not be loaded (%v)", nvmlSoname, ret)
			return
		}
		inv.fallBack(ErrNVML, err, "%v", err)
		return
	}
	if ret := lib.Init(); ret != nvmlSuccess {
		switch ret {
		case nvmlErrorLibraryNotFound:
			inv.fallBack(ErrNoDriver, ret, "%s could not be loaded (%v)", nvmlSoname, ret)
		case nvmlErrorDriverNotLoaded:
			inv.fallBack(ErrNoDriver, ret, "NVML is installed but the kernel driver is not loaded (%v)", ret)
		default:
			inv.fallBack(ErrNVML, ret, "nvmlInit: %v", ret)
		}
		return
	}
	defer func() {
		if ret := lib.Shutdown(); ret != nvmlSuccess {
			inv.Warnings = append(inv.Warnings, fmt.Sprintf("nvmlShutdown: %v", ret))
		}
	}()

	if v, ret := lib.DriverVersion(); ret == nvmlSuccess {
		inv.DriverVersion = v
	}
	if v, ret := lib.NVMLVersion(); ret == nvmlSuccess {
		inv.NVMLVersion = v
	}
	if v, ret := lib.CUDADriverVersion(); ret == nvmlSuccess && v > 0 {
		inv.CUDADriverVersion = fmt.Sprintf("%d.%d", v/1000, v%1000/10)
	}

	count, ret := lib.DeviceCount()
	if ret != nvmlSuccess {
		inv.fallBack(ErrNVML, ret, "nvmlDeviceGetCount: %v", ret)
		return
	}
	inv.PhysicalGPUs = count
	if count == 0 {
		inv.fallBack(ErrNoGPU, nil, "NVML reports 0 devices")
		return
	}

	// Open every GPU and read its UUID (CUDA_VISIBLE_DEVICES may name any of
	// them by UUID); describe only the visible ones.
	handles := make([]uintptr, count)
	uuids := make([]string, count)
	for i := range handles {
		h, ret := lib.DeviceHandle(i)
		if ret != nvmlSuccess || h == 0 {
			inv.Warnings = append(inv.Warnings, fmt.Sprintf("GPU %d: cannot open it: %v", i, ret))
			continue
		}
		handles[i] = h
		if u, ret := lib.DeviceUUID(h); ret == nvmlSuccess {
			uuids[i] = u
		} else {
			inv.Warnings = append(inv.Warnings, fmt.Sprintf("GPU %d: UUID unknown: %v", i, ret))
		}
	}

	sel := make([]int, count)
	for i := range sel {
		sel[i] = i
	}
	if inv.VisibleDevices != nil {
		var err error
		sel, err = ResolveVisible(*inv.VisibleDevices, uuids)
		if err != nil {
			inv.Warnings = append(inv.Warnings, err.Error())
		}
		if len(sel) == 0 {
			var cause error
			var ve *VisibleDevicesError
			if errors.As(err, &ve) {
				cause = ve
			}
			inv.fallBack(ErrHidden, cause, "CUDA_VISIBLE_DEVICES=%q, %s", *inv.VisibleDevices, countGPUs(count))
			return
		}
	}

	var bad []string
	for _, i := range sel {
		h := handles[i]
		if h == 0 {
			bad = append(bad, fmt.Sprint(i))
			continue // already warned: cannot open it
		}
		dev := Device{Kind: GPU, Index: len(inv.GPUs), NVMLIndex: i, UUID: uuids[i]}
		warn := func(what string, ret nvmlReturn) {
			inv.Warnings = append(inv.Warnings, fmt.Sprintf("GPU %d: %s unknown: %v", i, what, ret))
		}
		if name, ret := lib.DeviceName(h); ret == nvmlSuccess {
			dev.Name = name
		} else {
			dev.Name = "unknown"
			warn("name", ret)
		}
		if m, ret := lib.DeviceMemory(h); ret == nvmlSuccess {
			dev.MemoryTotal, dev.MemoryFree = m.Total, m.Free
		} else {
			warn("memory", ret)
		}
		if p, ret := lib.DevicePCI(h); ret == nvmlSuccess {
			dev.PCIBusID = nvmlBusID(p)
		} else {
			warn("PCI bus id", ret)
		}
		inv.GPUs = append(inv.GPUs, dev)
	}
	if len(inv.GPUs) == 0 {
		inv.fallBack(ErrNoGPU, nil, "NVML could not open GPU(s) %s", strings.Join(bad, ", "))
	}
}

// nvmlBusID returns the bus id NVML wrote, or builds it from the
// domain/bus/device numbers when that is empty (as the cgo build does).
func nvmlBusID(p nvmlPciInfo) string {
	b := p.BusID[:]
	if n := bytes.IndexByte(b, 0); n >= 0 {
		b = b[:n]
	}
	if len(b) > 0 {
		return string(b)
	}
	if p.Domain == 0 && p.Bus == 0 && p.Device == 0 {
		return ""
	}
	return fmt.Sprintf("%08X:%02X:%02X.0", p.Domain, p.Bus, p.Device)
}
