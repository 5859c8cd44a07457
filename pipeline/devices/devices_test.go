package devices

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

// env returns a LookupEnv over a fixed map, so tests never depend on (or
// change) the process environment.
func env(kv map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) {
		v, ok := kv[k]
		return v, ok
	}
}

var fourUUIDs = []string{
	"GPU-8d5f0a1e-1111-2222-3333-444455556666",
	"GPU-8d5f9b2c-aaaa-bbbb-cccc-ddddeeeeffff",
	"GPU-0c3e7f00-0000-0000-0000-000000000001",
	"GPU-fe21d4a9-9999-8888-7777-666655554444",
}

func TestResolveVisible(t *testing.T) {
	cases := []struct {
		value   string
		want    []int
		badPos  int // -1: no error
		problem string
	}{
		{"0,1,2,3", []int{0, 1, 2, 3}, -1, ""},
		{"2,0", []int{2, 0}, -1, ""},
		{" 3 , 1 ", []int{3, 1}, -1, ""},
		{"", []int{}, -1, ""},
		{"  ", []int{}, -1, ""},
		{"-1", []int{}, -1, ""},
		{"none", []int{}, -1, ""},
		{"NONE", []int{}, -1, ""},
		{"1,-1,2", []int{1}, -1, ""},
		{"1,7,2", []int{1}, 1, "is not a GPU index (this machine has 4 GPUs: 0..3)"},
		{"4", []int{}, 0, "is not a GPU index"},
		{"0,0", []int{0}, 1, "names GPU 0 a second time"},
		{"0,,1", []int{0}, 1, "is empty"},
		{"1,", []int{1}, 1, "is empty"},
		{"x", []int{}, 0, "matches no GPU's UUID"},
		{"+1", []int{}, 0, "matches no GPU's UUID"},
		{"GPU-fe21d4a9-9999-8888-7777-666655554444,0", []int{3, 0}, -1, ""},
		{"gpu-0C3E", []int{2}, -1, ""},
		{"0c3e7f00", []int{2}, -1, ""},
		{"GPU-8d5f9", []int{1}, -1, ""},
		{"1,GPU-8d5f9", []int{1}, 1, "names GPU 1 a second time"},
		{"GPU-8d5f", []int{}, 0, "is ambiguous: it starts the UUIDs of GPUs 0, 1"},
		{"3,GPU-", []int{3}, 1, "is ambiguous"},
		{"MIG-4b1e9f5a-0000", []int{}, 0, "MIG instance"},
		{"99999999999999999999999", []int{}, 0, "is not a GPU index"},
	}
	for _, c := range cases {
		got, err := ResolveVisible(c.value, fourUUIDs)
		if fmt.Sprint(got) != fmt.Sprint(c.want) || got == nil {
			t.Errorf("%q: visible %v, want %v", c.value, got, c.want)
		}
		if c.badPos < 0 {
			if err != nil {
				t.Errorf("%q: unexpected error %v", c.value, err)
			}
			continue
		}
		var ve *VisibleDevicesError
		if !errors.As(err, &ve) || ve.Pos != c.badPos || !strings.Contains(ve.Problem, c.problem) || ve.Value != c.value {
			t.Errorf("%q: error %#v, want entry %d: %q", c.value, err, c.badPos, c.problem)
			continue
		}
		if msg := err.Error(); !strings.Contains(msg, fmt.Sprintf("entry %d %q", c.badPos, ve.Entry)) || !strings.Contains(msg, "ignored") {
			t.Errorf("%q: message %q does not name the entry", c.value, msg)
		}
	}
	// A GPU whose UUID is unknown can still be chosen by index, never by UUID.
	partial := []string{"", "GPU-abc"}
	if got, err := ResolveVisible("0,GPU-abc", partial); err != nil || fmt.Sprint(got) != "[0 1]" {
		t.Errorf("partial UUIDs: %v %v", got, err)
	}
	if _, err := ResolveVisible("0", nil); err == nil || !strings.Contains(err.Error(), "this machine has no GPU") {
		t.Errorf("no GPUs: %v", err)
	}
}

func gpus(n int) []Device {
	out := make([]Device, n)
	for i := range out {
		out[i] = Device{Kind: GPU, Index: i, NVMLIndex: 3 - i, Name: "G"}
	}
	return out
}

func TestForLocalRank(t *testing.T) {
	devs := gpus(3)
	for r := 0; r < 8; r++ {
		d, err := ForLocalRank(devs, r)
		if err != nil || d.Kind != GPU || d.Index != r%3 || d.String() != fmt.Sprintf("cuda:%d", r%3) {
			t.Fatalf("rank %d: %v %v", r, d, err)
		}
	}
	// GPUs are picked among GPUs only, even when the CPU is listed too.
	mixed := append([]Device{{Kind: CPU, NVMLIndex: -1, Name: "host"}}, gpus(2)...)
	if d, _ := ForLocalRank(mixed, 3); d.Kind != GPU || d.Index != 1 {
		t.Fatalf("mixed: %v", d)
	}
	cpu := Device{Kind: CPU, NVMLIndex: -1, Name: "host"}
	for r := 0; r < 4; r++ {
		if d, err := ForLocalRank([]Device{cpu}, r); err != nil || d != cpu {
			t.Fatalf("cpu rank %d: %v %v", r, d, err)
		}
	}
	if d, err := ForLocalRank(nil, 2); err != nil || d.Kind != CPU || d.String() != "cpu" {
		t.Fatalf("no devices: %v %v", d, err)
	}
	if _, err := ForLocalRank(devs, -1); !errors.Is(err, ErrLocalRank) {
		t.Fatalf("negative: %v", err)
	}
	inv := &Inventory{GPUs: gpus(2), CPU: cpu}
	if d, _ := inv.ForLocalRank(5); d.Index != 1 {
		t.Fatalf("Inventory.ForLocalRank: %v", d)
	}
	inv.GPUs = nil
	if d, _ := inv.ForLocalRank(5); d != cpu {
		t.Fatalf("Inventory.ForLocalRank on CPU: %v", d)
	}
}

func TestLocalRankFromEnv(t *testing.T) {
	if r, err := LocalRankFromEnv(env(nil)); r != 0 || err != nil {
		t.Fatalf("unset: %d %v", r, err)
	}
	if r, err := LocalRankFromEnv(env(map[string]string{"LOCAL_RANK": " 3"})); r != 3 || err != nil {
		t.Fatalf("3: %d %v", r, err)
	}
	for _, bad := range []string{"", "x", "-1", "1.5"} {
		_, err := LocalRankFromEnv(env(map[string]string{"LOCAL_RANK": bad}))
		if !errors.Is(err, ErrLocalRank) || !strings.Contains(err.Error(), "LOCAL_RANK") {
			t.Fatalf("%q: %v", bad, err)
		}
	}
}

func TestCPUDevice(t *testing.T) {
	d := cpuDevice()
	if d.Kind != CPU || d.NVMLIndex != -1 || !strings.Contains(d.Name, "cores)") || d.String() != "cpu" {
		t.Fatalf("cpu device %+v", d)
	}
	if d.MemoryTotal > 0 && d.MemoryFree > d.MemoryTotal {
		t.Fatalf("cpu memory free %d > total %d", d.MemoryFree, d.MemoryTotal)
	}
}

// Hiding every GPU makes Discover fall back in every build and on every
// machine: without cgo, without a driver, or with GPUs hidden. The log
// line comes once per process however often Discover runs.
func TestDiscoverFallbackSaysSoOnce(t *testing.T) {
	said.Store(false)
	defer said.Store(false)
	var lines []string
	logf := func(format string, args ...any) { lines = append(lines, fmt.Sprintf(format, args...)) }
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	opts := Options{LookupEnv: env(map[string]string{"CUDA_VISIBLE_DEVICES": ""}), Logf: logf}
	for i := 0; i < 3; i++ {
		inv, err := Discover(ctx, opts)
		if err != nil {
			t.Fatal(err)
		}
		if len(inv.GPUs) != 0 || inv.Reason == "" || inv.Err == nil || inv.Reason != inv.Err.Error() {
			t.Fatalf("want a CPU fallback with a reason, got %+v", inv)
		}
		if !errors.Is(inv.Err, ErrNoCgo) && !errors.Is(inv.Err, ErrNoDriver) && !errors.Is(inv.Err, ErrHidden) {
			t.Fatalf("reason %v is none of no cgo / no driver / hidden", inv.Err)
		}
		if d := inv.Devices(); len(d) != 1 || d[0].Kind != CPU {
			t.Fatalf("Devices() = %v", d)
		}
		if inv.VisibleDevices == nil || *inv.VisibleDevices != "" {
			t.Fatalf("CUDA_VISIBLE_DEVICES not recorded: %v", inv.VisibleDevices)
		}
	}
	n := 0
	for _, l := range lines {
		if strings.Contains(l, "no GPUs, using the CPU") {
			n++
		}
	}
	if n != 1 {
		t.Fatalf("fallback logged %d times, want once: %q", n, lines)
	}

	// RequireGPU turns the fallback into an error, inventory still given.
	inv, err := Discover(ctx, Options{LookupEnv: opts.LookupEnv, RequireGPU: true})
	if err == nil || inv == nil || !errors.Is(err, inv.Err) || !strings.Contains(err.Error(), "a GPU is required") {
		t.Fatalf("RequireGPU: %v, %v", inv, err)
	}
}

func TestWriteTableAndJSON(t *testing.T) {
	cvd := "1,0"
	inv := &Inventory{
		GPUs: []Device{
			{Kind: GPU, Index: 0, NVMLIndex: 1, Name: "NVIDIA H100 80GB HBM3", UUID: "GPU-b", MemoryTotal: 80 << 30, MemoryFree: 79 << 30, PCIBusID: "00000000:3B:00.0"},
			{Kind: GPU, Index: 1, NVMLIndex: 0, Name: "NVIDIA H100 80GB HBM3", UUID: "GPU-a"},
		},
		CPU:               cpuDevice(),
		PhysicalGPUs:      2,
		DriverVersion:     "550.54.15",
		CUDADriverVersion: "12.4",
		VisibleDevices:    &cvd,
		Warnings:          []string{"GPU 0: memory unknown: ERROR_NOT_SUPPORTED"},
	}
	var b strings.Builder
	if err := inv.WriteTable(&b); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, s := range []string{
		"2 GPU(s) (driver 550.54.15, CUDA 12.4)", `CUDA_VISIBLE_DEVICES="1,0" (2 GPU(s) on this machine)`,
		"device  nvml  name", "cuda:0  1     NVIDIA H100 80GB HBM3  GPU-b  79.0 / 80.0 GiB    00000000:3B:00.0",
		"cuda:1  0", "warning: GPU 0: memory unknown",
	} {
		if !strings.Contains(out, s) {
			t.Errorf("table lacks %q:\n%s", s, out)
		}
	}
	if strings.Contains(out, "cpu ") {
		t.Errorf("table lists the CPU although GPUs exist:\n%s", out)
	}

	js, err := json.Marshal(inv)
	if err != nil {
		t.Fatal(err)
	}
	var back struct {
		GPUs []struct {
			Device    string `json:"device"`
			Kind      string `json:"kind"`
			NVMLIndex int    `json:"nvml_index"`
			Memory    uint64 `json:"memory_total_bytes"`
			PCI       string `json:"pci_bus_id"`
		} `json:"gpus"`
		CPU struct {
			Device string `json:"device"`
		} `json:"cpu"`
		Visible *string `json:"cuda_visible_devices"`
		Reason  string  `json:"fallback_reason"`
	}
	if err := json.Unmarshal(js, &back); err != nil {
		t.Fatal(err)
	}
	if len(back.GPUs) != 2 || back.GPUs[0].Device != "cuda:0" || back.GPUs[0].Kind != "gpu" || back.GPUs[0].NVMLIndex != 1 ||
		back.GPUs[0].Memory != 80<<30 || back.GPUs[0].PCI != "00000000:3B:00.0" || back.CPU.Device != "cpu" ||
		back.Visible == nil || *back.Visible != "1,0" || back.Reason != "" {
		t.Fatalf("JSON round trip: %s", js)
	}

	fb := &Inventory{CPU: cpuDevice()}
	fb.fallBack(ErrNoDriver, nil, "libnvidia-ml.so.1 could not be loaded")
	b.Reset()
	fb.WriteTable(&b)
	if out := b.String(); !strings.HasPrefix(out, "no GPUs: NVIDIA driver not found: libnvidia-ml.so.1 could not be loaded; using the CPU\n") ||
		!strings.Contains(out, "\ncpu ") {
		t.Errorf("fallback table:\n%s", out)
	}
}

func TestFallbackErrorUnwrap(t *testing.T) {
	cause := errors.New("boom")
	e := &FallbackError{Reason: ErrNVML, Detail: "init", Cause: cause}
	if !errors.Is(e, ErrNVML) || !errors.Is(e, cause) || e.Error() != "NVML failed: init" {
		t.Fatalf("%v", e)
	}
	if (&FallbackError{Reason: ErrNoGPU}).Error() != "no NVIDIA GPU found" {
		t.Fatal("no detail")
	}
	if Kind(5).String() != "Kind(5)" || (Device{Kind: GPU, Index: 2, Name: "X"}).Label() != "cuda:2 (X)" || (Device{}).Label() != "cpu" {
		t.Fatal("names")
	}
}
