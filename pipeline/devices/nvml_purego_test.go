package devices

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"
	"unsafe"

	"github.com/ebitengine/purego"

	"github.com/ringtrain/ringtrain/gpu/cuda"
)

// pgGPU is one GPU of a fake NVML; the *Err fields make its calls fail.
type pgGPU struct {
	name, uuid, bus                  string
	total, free                      uint64
	handleErr, uuidErr, nameErr, pci nvmlReturn
}

// pgNVML is a fake nvmlAPI; handles are GPU index + 1.
type pgNVML struct {
	initRet   nvmlReturn
	initGate  chan struct{} // if set, Init waits for it
	gpus      []pgGPU
	mu        sync.Mutex
	shutdowns int
}

func (f *pgNVML) Init() nvmlReturn {
	if f.initGate != nil {
		<-f.initGate
	}
	return f.initRet
}
func (f *pgNVML) Shutdown() nvmlReturn {
	f.mu.Lock()
	f.shutdowns++
	f.mu.Unlock()
	return nvmlSuccess
}
func (f *pgNVML) DriverVersion() (string, nvmlReturn)  { return "580.65.06", nvmlSuccess }
func (f *pgNVML) NVMLVersion() (string, nvmlReturn)    { return "13.580.65.06", nvmlSuccess }
func (f *pgNVML) CUDADriverVersion() (int, nvmlReturn) { return 13000, nvmlSuccess }
func (f *pgNVML) DeviceCount() (int, nvmlReturn)       { return len(f.gpus), nvmlSuccess }
func (f *pgNVML) DeviceHandle(i int) (uintptr, nvmlReturn) {
	if e := f.gpus[i].handleErr; e != 0 {
		return 0, e
	}
	return uintptr(i + 1), nvmlSuccess
}
func (f *pgNVML) gpu(h uintptr) pgGPU { return f.gpus[h-1] }
func (f *pgNVML) DeviceUUID(h uintptr) (string, nvmlReturn) {
	return f.gpu(h).uuid, f.gpu(h).uuidErr
}
func (f *pgNVML) DeviceName(h uintptr) (string, nvmlReturn) {
	return f.gpu(h).name, f.gpu(h).nameErr
}
func (f *pgNVML) DeviceMemory(h uintptr) (nvmlMemory, nvmlReturn) {
	g := f.gpu(h)
	return nvmlMemory{Total: g.total, Free: g.free, Used: g.total - g.free}, nvmlSuccess
}
func (f *pgNVML) DevicePCI(h uintptr) (nvmlPciInfo, nvmlReturn) {
	var p nvmlPciInfo
	copy(p.BusID[:], f.gpu(h).bus)
	return p, f.gpu(h).pci
}

func opener(f *pgNVML) func() (nvmlAPI, error) { return func() (nvmlAPI, error) { return f, nil } }

func pgDiscover(t *testing.T, open func() (nvmlAPI, error), vars map[string]string) *Inventory {
	t.Helper()
	inv, err := discoverPurego(context.Background(), Options{LookupEnv: env(vars)}, open)
	if err != nil {
		t.Fatal(err)
	}
	return inv
}

func TestPuregoLayouts(t *testing.T) {
	if n := unsafe.Sizeof(nvmlPciInfo{}); n != 68 {
		t.Errorf("nvmlPciInfo is %d bytes, nvml.h's nvmlPciInfo_t 68", n)
	}
	if n := unsafe.Offsetof(nvmlPciInfo{}.BusID); n != 36 {
		t.Errorf("busId at offset %d, want 36", n)
	}
	if n := unsafe.Sizeof(nvmlMemory{}); n != 24 {
		t.Errorf("nvmlMemory is %d bytes, want 24", n)
	}
	for r, want := range map[nvmlReturn]string{0: "SUCCESS", 9: "ERROR_DRIVER_NOT_LOADED", 12: "ERROR_LIBRARY_NOT_FOUND",
		29: "ERROR_INVALID_STATE", 999: "ERROR_UNKNOWN", 500: "unknown return value: 500"} {
		if r.Error() != want {
			t.Errorf("nvmlReturn(%d) = %q, want %q", int32(r), r.Error(), want)
		}
	}
}

func TestPuregoLibraryMissing(t *testing.T) {
	open := func() (nvmlAPI, error) {
		return nil, &cuda.LoadError{Library: nvmlSoname, Tried: []cuda.Attempt{{Path: nvmlSoname, Err: errors.New("nope")}}}
	}
	inv := pgDiscover(t, open, nil)
	if !errors.Is(inv.Err, ErrNoDriver) || inv.Reason != "NVIDIA driver not found: libnvidia-ml.so.1 could not be loaded (ERROR_LIBRARY_NOT_FOUND)" {
		t.Fatalf("got %q (%v)", inv.Reason, inv.Err)
	}
	if !errors.Is(inv.Err, nvmlErrorLibraryNotFound) {
		t.Fatalf("cause is not ERROR_LIBRARY_NOT_FOUND: %#v", inv.Err)
	}
}

func TestPuregoLibraryUnusable(t *testing.T) {
	le := &cuda.LoadError{Library: nvmlSoname, Path: "/x/" + nvmlSoname, Symbol: "nvmlInit_v2"}
	inv := pgDiscover(t, func() (nvmlAPI, error) { return nil, le }, nil)
	if !errors.Is(inv.Err, ErrNVML) || !strings.Contains(inv.Reason, "lacks required symbol nvmlInit_v2") {
		t.Fatalf("got %q", inv.Reason)
	}
}

func TestPuregoInitFailures(t *testing.T) {
	for ret, want := range map[nvmlReturn]struct {
		reason error
		text   string
	}{
		nvmlErrorDriverNotLoaded: {ErrNoDriver, "kernel driver is not loaded (ERROR_DRIVER_NOT_LOADED)"},
		nvmlErrorLibraryNotFound: {ErrNoDriver, "could not be loaded (ERROR_LIBRARY_NOT_FOUND)"},
		4:                        {ErrNVML, "nvmlInit: ERROR_NO_PERMISSION"},
	} {
		f := &pgNVML{initRet: ret}
		inv := pgDiscover(t, opener(f), nil)
		if !errors.Is(inv.Err, want.reason) || !strings.Contains(inv.Reason, want.text) {
			t.Errorf("init %v: got %q", ret, inv.Reason)
		}
		if f.shutdowns != 0 {
			t.Errorf("init %v: Shutdown called after a failed Init", ret)
		}
	}
}

func TestPuregoGPUs(t *testing.T) {
	f := &pgNVML{gpus: []pgGPU{
		{name: "NVIDIA H200", uuid: "GPU-aaaa-1111", bus: "00000000:19:00.0", total: 144 << 30, free: 140 << 30},
		{name: "NVIDIA H200", uuid: "GPU-bbbb-2222", bus: "00000000:3B:00.0", total: 144 << 30, free: 100 << 30},
		{handleErr: 15}, // ERROR_GPU_IS_LOST
	}}
	inv := pgDiscover(t, opener(f), nil)
	if inv.Err != nil || len(inv.GPUs) != 2 || inv.PhysicalGPUs != 3 || f.shutdowns != 1 {
		t.Fatalf("got %+v (shutdowns %d)", inv, f.shutdowns)
	}
	if inv.DriverVersion != "580.65.06" || inv.NVMLVersion != "13.580.65.06" || inv.CUDADriverVersion != "13.0" {
		t.Errorf("versions %q %q %q", inv.DriverVersion, inv.NVMLVersion, inv.CUDADriverVersion)
	}
	g := inv.GPUs[1]
	if g.String() != "cuda:1" || g.NVMLIndex != 1 || g.UUID != "GPU-bbbb-2222" || g.PCIBusID != "00000000:3B:00.0" ||
		g.MemoryTotal != 144<<30 || g.MemoryFree != 100<<30 || g.Name != "NVIDIA H200" {
		t.Errorf("GPU 1: %+v", g)
	}
	if len(inv.Warnings) != 1 || !strings.Contains(inv.Warnings[0], "GPU 2: cannot open it: ERROR_GPU_IS_LOST") {
		t.Errorf("warnings %q", inv.Warnings)
	}

	// CUDA_VISIBLE_DEVICES by UUID prefix and index, in the order listed.
	inv = pgDiscover(t, opener(f), map[string]string{"CUDA_VISIBLE_DEVICES": "GPU-bbbb,0"})
	if len(inv.GPUs) != 2 || inv.GPUs[0].NVMLIndex != 1 || inv.GPUs[1].NVMLIndex != 0 || inv.GPUs[1].Index != 1 {
		t.Fatalf("visible order: %+v", inv.GPUs)
	}
	// Hiding all.
	inv = pgDiscover(t, opener(f), map[string]string{"CUDA_VISIBLE_DEVICES": "-1"})
	if !errors.Is(inv.Err, ErrHidden) || len(inv.GPUs) != 0 {
		t.Fatalf("hidden: %+v", inv)
	}
	// Only the lost GPU visible.
	inv = pgDiscover(t, opener(f), map[string]string{"CUDA_VISIBLE_DEVICES": "2"})
	if !errors.Is(inv.Err, ErrNoGPU) || !strings.Contains(inv.Reason, "could not open GPU(s) 2") {
		t.Fatalf("lost GPU: %q", inv.Reason)
	}
	if f.shutdowns != 4 {
		t.Fatalf("%d shutdowns for 4 successful Inits", f.shutdowns)
	}
}

func TestPuregoDescribeFailures(t *testing.T) {
	f := &pgNVML{gpus: []pgGPU{{uuidErr: 3, nameErr: 3, pci: 3}}}
	inv := pgDiscover(t, opener(f), nil)
	if len(inv.GPUs) != 1 || inv.GPUs[0].Name != "unknown" || inv.GPUs[0].PCIBusID != "" || len(inv.Warnings) != 3 {
		t.Fatalf("got %+v", inv)
	}
	if inv := pgDiscover(t, opener(&pgNVML{}), nil); !errors.Is(inv.Err, ErrNoGPU) || inv.Reason != "no NVIDIA GPU found: NVML reports 0 devices" {
		t.Fatalf("no GPUs: %q", inv.Reason)
	}
}

func TestPuregoPanicAndTimeout(t *testing.T) {
	inv := pgDiscover(t, func() (nvmlAPI, error) { panic("bad binding") }, nil)
	if !errors.Is(inv.Err, ErrNVML) || !strings.Contains(inv.Reason, "panicked: bad binding") {
		t.Fatalf("panic: %q", inv.Reason)
	}

	f := &pgNVML{initGate: make(chan struct{}), gpus: []pgGPU{{name: "x", uuid: "GPU-1"}}}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	inv, err := discoverPurego(ctx, Options{LookupEnv: env(nil)}, opener(f))
	if err != nil || !errors.Is(inv.Err, ErrNVML) || !errors.Is(inv.Err, context.DeadlineExceeded) {
		t.Fatalf("wedged NVML: %v %+v", err, inv)
	}
	close(f.initGate) // the abandoned probe finishes and shuts NVML down
	deadline := time.Now().Add(5 * time.Second)
	for {
		f.mu.Lock()
		n := f.shutdowns
		f.mu.Unlock()
		if n == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("abandoned probe never shut NVML down")
		}
		time.Sleep(time.Millisecond)
	}
}

func TestNVMLBusID(t *testing.T) {
	var p nvmlPciInfo
	if nvmlBusID(p) != "" {
		t.Fatal("empty info gave a bus id")
	}
	p.Domain, p.Bus, p.Device = 0, 0x3b, 0
	if got := nvmlBusID(p); got != "00000000:3B:00.0" {
		t.Fatalf("built %q", got)
	}
	copy(p.BusID[:], "00000000:19:00.0\x00garbage")
	if got := nvmlBusID(p); got != "00000000:19:00.0" {
		t.Fatalf("read %q", got)
	}
}

// TestNVMLBindMissingSymbol binds a real library that is not NVML.
func TestNVMLBindMissingSymbol(t *testing.T) {
	const libm = "/lib/x86_64-linux-gnu/libm.so.6"
	h, err := purego.Dlopen(libm, purego.RTLD_NOW)
	if err != nil {
		t.Skipf("no %s: %v", libm, err)
	}
	l := &nvmlLib{path: libm}
	err = l.bind(h)
	var le *cuda.LoadError
	if !errors.As(err, &le) || le.Symbol != "nvmlInit_v2" {
		t.Fatalf("err %v, want a LoadError naming nvmlInit_v2", err)
	}
}

// TestOpenNVMLHere: on a machine without the driver, openNVML reports a
// not-found *cuda.LoadError (and never panics).
func TestOpenNVMLHere(t *testing.T) {
	lib, err := openNVML()
	if err == nil {
		t.Skipf("NVML present here (%T)", lib)
	}
	var le *cuda.LoadError
	if !errors.As(err, &le) || !le.NotFound() || !strings.Contains(err.Error(), nvmlSoname) {
		t.Fatalf("err %v", err)
	}
}
