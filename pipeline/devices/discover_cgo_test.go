//go:build cgo

package devices

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock/dgxa100"
)

// fakeGPU describes one GPU of a mocked machine; the *Err fields make the
// matching NVML call fail.
type fakeGPU struct {
	name, uuid, bus                     string
	total, free                         uint64
	handleErr, uuidErr, nameErr, memErr nvml.Return
	pciErr                              nvml.Return
}

func (g fakeGPU) orOK(r nvml.Return) nvml.Return {
	if r == 0 {
		return nvml.SUCCESS
	}
	return r
}

// machine is a mock NVML over fake GPUs.
type machine struct {
	*mock.Interface
	mu        sync.Mutex
	shutdowns int
}

func newMachine(initRet nvml.Return, gpus ...fakeGPU) *machine {
	m := &machine{}
	m.Interface = &mock.Interface{
		InitFunc: func() nvml.Return { return initRet },
		ShutdownFunc: func() nvml.Return {
			m.mu.Lock()
			m.shutdowns++
			m.mu.Unlock()
			return nvml.SUCCESS
		},
		SystemGetDriverVersionFunc:     func() (string, nvml.Return) { return "550.54.15", nvml.SUCCESS },
		SystemGetNVMLVersionFunc:       func() (string, nvml.Return) { return "12.550.54.15", nvml.SUCCESS },
		SystemGetCudaDriverVersionFunc: func() (int, nvml.Return) { return 12040, nvml.SUCCESS },
		DeviceGetCountFunc:             func() (int, nvml.Return) { return len(gpus), nvml.SUCCESS },
		DeviceGetHandleByIndexFunc: func(i int) (nvml.Device, nvml.Return) {
			if i < 0 || i >= len(gpus) {
				return nil, nvml.ERROR_INVALID_ARGUMENT
			}
			g := gpus[i]
			if g.handleErr != 0 {
				return nil, g.handleErr
			}
			return &mock.Device{
				GetNameFunc: func() (string, nvml.Return) { return g.name, g.orOK(g.nameErr) },
				GetUUIDFunc: func() (string, nvml.Return) { return g.uuid, g.orOK(g.uuidErr) },
				GetMemoryInfoFunc: func() (nvml.Memory, nvml.Return) {
					return nvml.Memory{Total: g.total, Free: g.free, Used: g.total - g.free}, g.orOK(g.memErr)
				},
				GetPciInfoFunc: func() (nvml.PciInfo, nvml.Return) {
					var p nvml.PciInfo
					copy(p.BusId[:], g.bus)
					return p, g.orOK(g.pciErr)
				},
			}, nvml.SUCCESS
		},
	}
	return m
}

func (m *machine) shutdownCount() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.shutdowns
}

func h100s(n int) []fakeGPU {
	out := make([]fakeGPU, n)
	for i := range out {
		out[i] = fakeGPU{
			name:  "NVIDIA H100 80GB HBM3",
			uuid:  fmt.Sprintf("GPU-%08x-1234-5678-9abc-def0%08x", 0xa0+i, i),
			bus:   fmt.Sprintf("00000000:%02X:00.0", 0x18+i*0x10),
			total: 80 << 30, free: uint64(79-i) << 30,
		}
	}
	return out
}

func discover(t *testing.T, lib nvml.Interface, kv map[string]string) *Inventory {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	inv, err := DiscoverWith(ctx, lib, Options{LookupEnv: env(kv)})
	if err != nil {
		t.Fatalf("DiscoverWith: %v", err)
	}
	return inv
}

// nvmlOrder returns the NVML indices of the inventory's GPUs.
func nvmlOrder(inv *Inventory) []int {
	out := []int{}
	for _, d := range inv.GPUs {
		out = append(out, d.NVMLIndex)
	}
	return out
}

func TestDiscoverSeveralGPUs(t *testing.T) {
	fake := h100s(4)
	m := newMachine(nvml.SUCCESS, fake...)
	inv := discover(t, m, nil)
	if inv.Err != nil || inv.Reason != "" || len(inv.Warnings) != 0 {
		t.Fatalf("unexpected fallback or warnings: %+v", inv)
	}
	if len(inv.GPUs) != 4 || inv.PhysicalGPUs != 4 {
		t.Fatalf("%d GPUs, %d physical", len(inv.GPUs), inv.PhysicalGPUs)
	}
	for i, d := range inv.GPUs {
		g := fake[i]
		want := Device{Kind: GPU, Index: i, NVMLIndex: i, Name: g.name, UUID: g.uuid, MemoryTotal: g.total, MemoryFree: g.free, PCIBusID: g.bus}
		if d != want {
			t.Errorf("GPU %d: %+v\nwant %+v", i, d, want)
		}
	}
	if inv.DriverVersion != "550.54.15" || inv.NVMLVersion != "12.550.54.15" || inv.CUDADriverVersion != "12.4" {
		t.Errorf("versions: %q %q %q", inv.DriverVersion, inv.NVMLVersion, inv.CUDADriverVersion)
	}
	if len(m.InitCalls()) != 1 || m.shutdownCount() != 1 {
		t.Errorf("Init called %d times, Shutdown %d: want 1 and 1", len(m.InitCalls()), m.shutdownCount())
	}
	if d := inv.Devices(); len(d) != 4 || d[3].String() != "cuda:3" {
		t.Errorf("Devices: %v", d)
	}
	for r, want := range []int{0, 1, 2, 3, 0, 1} {
		if d, _ := inv.ForLocalRank(r); d.NVMLIndex != want {
			t.Errorf("local rank %d got NVML GPU %d, want %d", r, d.NVMLIndex, want)
		}
	}
}

func TestDiscoverVisibleDevices(t *testing.T) {
	fake := h100s(4)
	cases := []struct {
		cvd     string
		want    []int
		warning string // substring of the one warning expected; "" for none
	}{
		{"2,0", []int{2, 0}, ""},
		{"3", []int{3}, ""},
		{fake[1].uuid + "," + fake[3].uuid, []int{1, 3}, ""},
		{"GPU-000000a2", []int{2}, ""},
		{"000000a3,0", []int{3, 0}, ""},
		{"1,7,2", []int{1}, `entry 1 "7" is not a GPU index (this machine has 4 GPUs: 0..3)`},
		{"0,GPU-ffff", []int{0}, `entry 1 "GPU-ffff" matches no GPU's UUID`},
		{"GPU-000000a", nil, "is ambiguous: it starts the UUIDs of GPUs 0, 1, 2, 3"},
		{"2,2", []int{2}, "names GPU 2 a second time"},
		{"1,-1,2", []int{1}, ""},
	}
	for _, c := range cases {
		m := newMachine(nvml.SUCCESS, fake...)
		inv := discover(t, m, map[string]string{"CUDA_VISIBLE_DEVICES": c.cvd})
		if c.want == nil {
			if len(inv.GPUs) != 0 || !errors.Is(inv.Err, ErrHidden) {
				t.Errorf("%q: want the hidden fallback, got %+v", c.cvd, inv)
			}
		} else if fmt.Sprint(nvmlOrder(inv)) != fmt.Sprint(c.want) || inv.Err != nil {
			t.Errorf("%q: NVML GPUs %v (err %v), want %v", c.cvd, nvmlOrder(inv), inv.Err, c.want)
		}
		for i, d := range inv.GPUs {
			if d.Index != i || d.UUID != fake[d.NVMLIndex].uuid || d.PCIBusID != fake[d.NVMLIndex].bus {
				t.Errorf("%q: device %d is %+v", c.cvd, i, d)
			}
		}
		switch {
		case c.warning == "" && len(inv.Warnings) != 0:
			t.Errorf("%q: unexpected warnings %q", c.cvd, inv.Warnings)
		case c.warning != "" && (len(inv.Warnings) != 1 || !strings.Contains(inv.Warnings[0], c.warning)):
			t.Errorf("%q: warnings %q, want one containing %q", c.cvd, inv.Warnings, c.warning)
		}
		if inv.PhysicalGPUs != 4 || m.shutdownCount() != 1 {
			t.Errorf("%q: physical %d, shutdowns %d", c.cvd, inv.PhysicalGPUs, m.shutdownCount())
		}
	}
}

func TestDiscoverAllHidden(t *testing.T) {
	for _, cvd := range []string{"", "-1", "none", "9"} {
		m := newMachine(nvml.SUCCESS, h100s(2)...)
		inv := discover(t, m, map[string]string{"CUDA_VISIBLE_DEVICES": cvd})
		if len(inv.GPUs) != 0 || !errors.Is(inv.Err, ErrHidden) || inv.PhysicalGPUs != 2 ||
			!strings.Contains(inv.Reason, fmt.Sprintf("CUDA_VISIBLE_DEVICES=%q, this machine has 2 GPUs", cvd)) {
			t.Errorf("%q: %+v", cvd, inv)
		}
		var ve *VisibleDevicesError
		if got := errors.As(inv.Err, &ve); got != (cvd == "9") {
			t.Errorf("%q: VisibleDevicesError in the reason: %v", cvd, got)
		}
		if d, _ := inv.ForLocalRank(1); d.Kind != CPU {
			t.Errorf("%q: rank got %v, want the CPU", cvd, d)
		}
		if m.shutdownCount() != 1 {
			t.Errorf("%q: Shutdown called %d times", cvd, m.shutdownCount())
		}
	}
}

func TestDiscoverInitErrors(t *testing.T) {
	cases := []struct {
		ret    nvml.Return
		reason error
		says   string
	}{
		{nvml.ERROR_LIBRARY_NOT_FOUND, ErrNoDriver, "libnvidia-ml.so.1 could not be loaded"},
		{nvml.ERROR_DRIVER_NOT_LOADED, ErrNoDriver, "kernel driver is not loaded"},
		{nvml.ERROR_NO_PERMISSION, ErrNVML, "nvmlInit: ERROR_NO_PERMISSION"},
		{nvml.ERROR_LIB_RM_VERSION_MISMATCH, ErrNVML, "nvmlInit"},
	}
	for _, c := range cases {
		m := newMachine(c.ret, h100s(2)...)
		inv := discover(t, m, nil)
		if len(inv.GPUs) != 0 || !errors.Is(inv.Err, c.reason) || !errors.Is(inv.Err, c.ret) || !strings.Contains(inv.Reason, c.says) {
			t.Errorf("%v: %+v", c.ret, inv)
		}
		// Shutdown after a failed Init would call into a library that is
		// not there.
		if m.shutdownCount() != 0 || len(m.DeviceGetCountCalls()) != 0 {
			t.Errorf("%v: Shutdown %d, DeviceGetCount %d calls after failed Init", c.ret, m.shutdownCount(), len(m.DeviceGetCountCalls()))
		}
		if d := inv.Devices(); len(d) != 1 || d[0].Kind != CPU {
			t.Errorf("%v: devices %v", c.ret, d)
		}
	}
}

func TestDiscoverCountErrors(t *testing.T) {
	m := newMachine(nvml.SUCCESS)
	m.DeviceGetCountFunc = func() (int, nvml.Return) { return 0, nvml.ERROR_UNKNOWN }
	inv := discover(t, m, nil)
	if !errors.Is(inv.Err, ErrNVML) || !errors.Is(inv.Err, nvml.ERROR_UNKNOWN) || m.shutdownCount() != 1 {
		t.Errorf("count error: %+v, shutdowns %d", inv, m.shutdownCount())
	}
	m = newMachine(nvml.SUCCESS)
	inv = discover(t, m, nil)
	if !errors.Is(inv.Err, ErrNoGPU) || !strings.Contains(inv.Reason, "0 devices") || m.shutdownCount() != 1 {
		t.Errorf("no GPUs: %+v", inv)
	}
}

func TestDiscoverPerDeviceErrors(t *testing.T) {
	fake := h100s(4)
	fake[1].handleErr = nvml.ERROR_GPU_IS_LOST
	fake[2].nameErr = nvml.ERROR_UNKNOWN
	fake[2].memErr = nvml.ERROR_NOT_SUPPORTED
	fake[3].pciErr = nvml.ERROR_NO_PERMISSION
	fake[0].uuidErr = nvml.ERROR_UNKNOWN
	m := newMachine(nvml.SUCCESS, fake...)
	inv := discover(t, m, nil)
	if inv.Err != nil || fmt.Sprint(nvmlOrder(inv)) != "[0 2 3]" {
		t.Fatalf("want GPUs 0, 2, 3 (1 is lost): %v, %v", nvmlOrder(inv), inv.Err)
	}
	g0, g2, g3 := inv.GPUs[0], inv.GPUs[1], inv.GPUs[2]
	if g0.UUID != "" || g0.Name != fake[0].name || g2.Name != "unknown" || g2.MemoryTotal != 0 || g2.Index != 1 ||
		g3.PCIBusID != "" || g3.MemoryTotal != fake[3].total {
		t.Errorf("devices: %+v", inv.GPUs)
	}
	want := []string{
		"GPU 0: UUID unknown: ERROR_UNKNOWN", "GPU 1: cannot open it: ERROR_GPU_IS_LOST",
		"GPU 2: name unknown", "GPU 2: memory unknown: ERROR_NOT_SUPPORTED", "GPU 3: PCI bus id unknown",
	}
	if len(inv.Warnings) != len(want) {
		t.Errorf("warnings %q", inv.Warnings)
	}
	for _, w := range want {
		if !strings.Contains(strings.Join(inv.Warnings, "\n"), w) {
			t.Errorf("no warning %q in %q", w, inv.Warnings)
		}
	}
	// GPU 0's UUID is unknown: it can be picked by index, not by UUID.
	m = newMachine(nvml.SUCCESS, fake...)
	inv = discover(t, m, map[string]string{"CUDA_VISIBLE_DEVICES": fake[3].uuid + ",0," + fake[0].uuid})
	if fmt.Sprint(nvmlOrder(inv)) != "[3 0]" {
		t.Errorf("unknown UUID: %v", nvmlOrder(inv))
	}
	// Every GPU lost: fall back.
	for i := range fake {
		fake[i].handleErr = nvml.ERROR_GPU_IS_LOST
	}
	m = newMachine(nvml.SUCCESS, fake...)
	inv = discover(t, m, nil)
	if !errors.Is(inv.Err, ErrNoGPU) || !strings.Contains(inv.Reason, "could not open GPU(s) 0, 1, 2, 3") || m.shutdownCount() != 1 {
		t.Errorf("all lost: %+v", inv)
	}
}

// A wedged nvmlInit must not hang the trainer: the context ends discovery,
// and the late probe still shuts NVML down.
func TestDiscoverHonoursContext(t *testing.T) {
	release := make(chan struct{})
	m := newMachine(nvml.SUCCESS, h100s(1)...)
	m.InitFunc = func() nvml.Return { <-release; return nvml.SUCCESS }
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	inv, err := DiscoverWith(ctx, m, Options{LookupEnv: env(nil)})
	if err != nil || !errors.Is(inv.Err, ErrNVML) || !errors.Is(inv.Err, context.DeadlineExceeded) || len(inv.GPUs) != 0 {
		t.Fatalf("got %+v, %v", inv, err)
	}
	close(release)
	deadline := time.Now().Add(10 * time.Second)
	for m.shutdownCount() != 1 {
		if time.Now().After(deadline) {
			t.Fatal("abandoned probe never shut NVML down")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if len(inv.GPUs) != 0 || inv.Err == nil {
		t.Fatal("late probe changed the returned inventory")
	}
}

// An incomplete NVML binding (here a mock without DeviceGetCount) panics;
// Discover reports it as an NVML failure and still shuts NVML down.
func TestDiscoverRecoversPanics(t *testing.T) {
	m := newMachine(nvml.SUCCESS, h100s(1)...)
	m.DeviceGetCountFunc = nil
	inv := discover(t, m, nil)
	if !errors.Is(inv.Err, ErrNVML) || !strings.Contains(inv.Reason, "panicked") || m.shutdownCount() != 1 {
		t.Fatalf("got %+v, shutdowns %d", inv, m.shutdownCount())
	}
}

func TestDiscoverRequireGPU(t *testing.T) {
	ctx := context.Background()
	inv, err := DiscoverWith(ctx, newMachine(nvml.ERROR_LIBRARY_NOT_FOUND), Options{LookupEnv: env(nil), RequireGPU: true})
	if !errors.Is(err, ErrNoDriver) || !errors.Is(err, nvml.ERROR_LIBRARY_NOT_FOUND) || inv == nil {
		t.Fatalf("want an error: %v", err)
	}
	inv, err = DiscoverWith(ctx, newMachine(nvml.SUCCESS, h100s(2)...), Options{LookupEnv: env(nil), RequireGPU: true})
	if err != nil || len(inv.GPUs) != 2 {
		t.Fatalf("with GPUs: %v, %v", inv, err)
	}
}

// go-nvml's own model of a DGX A100: eight GPUs with random UUIDs.
func TestDiscoverDGXA100(t *testing.T) {
	srv := dgxa100.New()
	uuid := func(i int) string { return srv.Devices[i].(*dgxa100.Device).UUID }
	cvd := uuid(6) + ",1," + uuid(4)[:12]
	inv := discover(t, srv, map[string]string{"CUDA_VISIBLE_DEVICES": cvd})
	if fmt.Sprint(nvmlOrder(inv)) != "[6 1 4]" || inv.PhysicalGPUs != 8 || inv.Err != nil {
		t.Fatalf("got %v (%d physical, %v), warnings %q", nvmlOrder(inv), inv.PhysicalGPUs, inv.Err, inv.Warnings)
	}
	for _, d := range inv.GPUs {
		if d.UUID != uuid(d.NVMLIndex) || d.Name != "Mock NVIDIA A100-SXM4-40GB" || d.MemoryTotal != 42949672960 {
			t.Errorf("%+v", d)
		}
	}
	if inv.CUDADriverVersion != "12.4" || inv.DriverVersion != "550.54.15" {
		t.Errorf("versions %q %q", inv.CUDADriverVersion, inv.DriverVersion)
	}
}

func TestPCIBusID(t *testing.T) {
	var p nvml.PciInfo
	copy(p.BusId[:], "00000000:3B:00.0")
	if got := pciBusID(p); got != "00000000:3B:00.0" {
		t.Errorf("from BusId: %q", got)
	}
	if got := pciBusID(nvml.PciInfo{Domain: 1, Bus: 0x3b, Device: 2}); got != "00000001:3B:02.0" {
		t.Errorf("from fields: %q", got)
	}
	if got := pciBusID(nvml.PciInfo{}); got != "" {
		t.Errorf("empty: %q", got)
	}
}

// The real NVML binding on whatever machine runs the test. A library path
// that does not exist is the no-driver case on every machine; the default
// library gives GPUs where a driver is installed, the fallback otherwise.
func TestDiscoverRealNVML(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	inv, err := DiscoverWith(ctx, nvml.New(nvml.WithLibraryPath("/nonexistent/libnvidia-ml.so.1")), Options{LookupEnv: env(nil)})
	if err != nil || len(inv.GPUs) != 0 || !errors.Is(inv.Err, ErrNoDriver) || !errors.Is(inv.Err, nvml.ERROR_LIBRARY_NOT_FOUND) {
		t.Fatalf("missing library: %+v, %v", inv, err)
	}

	inv, err = Discover(ctx, Options{LookupEnv: env(nil)})
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	inv.WriteTable(&b)
	t.Logf("this machine:\n%s", b.String())
	if len(inv.GPUs) == 0 {
		if !errors.Is(inv.Err, ErrNoDriver) && !errors.Is(inv.Err, ErrNoGPU) {
			t.Fatalf("no GPU but the reason is %v", inv.Err)
		}
		if !strings.HasPrefix(b.String(), "no GPUs: ") {
			t.Fatalf("table does not say no GPUs:\n%s", b.String())
		}
		return
	}
	for _, d := range inv.GPUs {
		if !strings.HasPrefix(d.UUID, "GPU-") || d.MemoryTotal == 0 || d.PCIBusID == "" || d.Name == "" {
			t.Errorf("implausible GPU %+v", d)
		}
	}
}
