package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"github.com/ringtrain/ringtrain/pipeline/devices"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/ringtrain/ringtrain/gpu/cuda"
)

// With RINGTRAIN_DEVICES_MAIN set, the test binary is the command itself,
// so tests can run it as a real process without building it separately.
func TestMain(m *testing.M) {
	if os.Getenv("RINGTRAIN_DEVICES_MAIN") == "1" {
		main()
		return
	}
	os.Exit(m.Run())
}

func env(kv map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := kv[k]; return v, ok }
}

func runCmd(t *testing.T, kv map[string]string, args ...string) (string, string, int) {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(args, &out, &errb, env(kv))
	return out.String(), errb.String(), code
}

// This machine has no NVIDIA driver (or GPUs hidden, or no cgo): hiding the
// GPUs gives the CPU table on every machine.
func TestTableFallback(t *testing.T) {
	out, errs, code := runCmd(t, map[string]string{"CUDA_VISIBLE_DEVICES": "-1"}, "--local-ranks", "3")
	if code != 0 || errs != "" {
		t.Fatalf("exit %d, stderr %q", code, errs)
	}
	for _, s := range []string{"no GPUs: ", "; using the CPU", "device  nvml  name", "\ncpu ", "local rank  device", "\n2           cpu ("} {
		if !strings.Contains(out, s) {
			t.Errorf("output lacks %q:\n%s", s, out)
		}
	}
}

func TestJSON(t *testing.T) {
	out, _, code := runCmd(t, map[string]string{"CUDA_VISIBLE_DEVICES": ""}, "--json", "--local-ranks=2")
	if code != 0 {
		t.Fatalf("exit %d", code)
	}
	var v struct {
		GPUs   []json.RawMessage `json:"gpus"`
		Reason string            `json:"fallback_reason"`
		CPU    struct {
			Device string `json:"device"`
			Kind   string `json:"kind"`
			Name   string `json:"name"`
		} `json:"cpu"`
		Visible    *string `json:"cuda_visible_devices"`
		LocalRanks []struct {
			LocalRank int `json:"local_rank"`
			Device    struct {
				Device string `json:"device"`
			} `json:"device"`
		} `json:"local_ranks"`
	}
	if err := json.Unmarshal([]byte(out), &v); err != nil {
		t.Fatalf("%v in %s", err, out)
	}
	if len(v.GPUs) != 0 || v.Reason == "" || v.CPU.Device != "cpu" || v.CPU.Kind != "cpu" || v.CPU.Name == "" ||
		v.Visible == nil || *v.Visible != "" || len(v.LocalRanks) != 2 || v.LocalRanks[1].LocalRank != 1 ||
		v.LocalRanks[1].Device.Device != "cpu" {
		t.Fatalf("JSON: %s", out)
	}
}

func TestRequireGPUAndBadFlags(t *testing.T) {
	_, errs, code := runCmd(t, map[string]string{"CUDA_VISIBLE_DEVICES": "none"}, "--require-gpu")
	if code != 1 || !strings.Contains(errs, "a GPU is required") {
		t.Fatalf("--require-gpu: exit %d, stderr %q", code, errs)
	}
	for _, args := range [][]string{{"--local-ranks", "-1"}, {"--timeout", "0s"}, {"--nope"}, {"extra"}} {
		_, errs, code := runCmd(t, nil, args...)
		if code != 2 || errs == "" {
			t.Errorf("%v: exit %d, stderr %q", args, code, errs)
		}
	}
}

// The command as a real process with the real environment of this machine
// (CUDA_VISIBLE_DEVICES removed): GPUs where a driver is installed, the CPU
// and the reason elsewhere.
func TestRealProcess(t *testing.T) {
	if runtime.GOOS == "js" || runtime.GOOS == "wasip1" {
		t.Skip("no processes")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "--json")
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "CUDA_VISIBLE_DEVICES=") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, "RINGTRAIN_DEVICES_MAIN=1")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("devices --json: %v", err)
	}
	var v struct {
		GPUs    []map[string]any `json:"gpus"`
		Reason  string           `json:"fallback_reason"`
		Backend *cudaBackend     `json:"cuda_backend"`
	}
	if err := json.Unmarshal(out, &v); err != nil {
		t.Fatalf("%v in %s", err, out)
	}
	if (len(v.GPUs) == 0) == (v.Reason == "") {
		t.Fatalf("want GPUs or a fallback reason, not both or neither: %s", out)
	}
	if b := v.Backend; b == nil || !b.Loaded && b.Error == "" || b.Loaded != (len(b.Libraries) > 0) {
		t.Fatalf("cuda_backend: want loaded with its libraries or the reason it is not: %s", out)
	}
	t.Logf("%s", out)
}

// fakeLoad makes cuda.Load fail as it does on a machine without a driver.
func fakeLoad(t *testing.T) {
	t.Helper()
	old := loadCUDA
	t.Cleanup(func() { loadCUDA = old })
	loadCUDA = func() (*cuda.Driver, error) {
		return nil, &cuda.LoadError{Library: "libcuda.so.1", Tried: []cuda.Attempt{
			{Path: "/nowhere/libcuda.so.1", Err: errors.New("no such file")},
			{Path: "libcuda.so.1", Err: errors.New("libcuda.so.1: cannot open shared object file")},
		}, Hint: "set RINGTRAIN_CUDA_LIBS"}
	}
}

// Where the CUDA backend does not load, the table and --json say so, with
// the loader's error (every path tried).
func TestCUDABackendNotAvailable(t *testing.T) {
	fakeLoad(t)
	out, errs, code := runCmd(t, map[string]string{"CUDA_VISIBLE_DEVICES": "-1"})
	want := "\nCUDA backend: not available: cuda: libcuda.so.1 not found (tried: /nowhere/libcuda.so.1: no such file; " +
		"libcuda.so.1: cannot open shared object file) — set RINGTRAIN_CUDA_LIBS\n"
	if code != 0 || errs != "" || !strings.Contains(out, want) {
		t.Fatalf("exit %d, stderr %q, output lacks %q:\n%s", code, errs, want, out)
	}
	out, _, code = runCmd(t, map[string]string{"CUDA_VISIBLE_DEVICES": "-1"}, "--json")
	var v struct {
		Backend map[string]any `json:"cuda_backend"`
	}
	if err := json.Unmarshal([]byte(out), &v); code != 0 || err != nil {
		t.Fatalf("exit %d, %v in %s", code, err, out)
	}
	if b := v.Backend; b["loaded"] != false || b["devices"] != 0.0 || !strings.Contains(b["error"].(string), "libcuda.so.1 not found (tried: /nowhere/") ||
		b["libraries"] != nil || b["driver_api"] != nil {
		t.Fatalf("cuda_backend %v", b)
	}
}

func TestCUDABackendLine(t *testing.T) {
	b := cudaBackend{Loaded: true, DriverAPI: 13000, Cublas: 130100, Libraries: []string{"/a/libcuda.so.1", "/b/libcublas.so.13"}, Devices: 2}
	if got, want := b.String(), "CUDA backend: loaded (driver API 13000, cuBLAS 130100, libraries: /a/libcuda.so.1, /b/libcublas.so.13), 2 device(s)"; got != want {
		t.Errorf("got  %q\nwant %q", got, want)
	}
	// This machine as it is: the line agrees with cuda.Load.
	_, err := cuda.Load()
	got := describeCUDA()
	if (err == nil) != got.Loaded || err != nil && got.Error != err.Error() {
		t.Fatalf("cuda.Load: %v; described as %+v", err, got)
	}
}

func TestMatchNVMLByBusID(t *testing.T) {
	b := cudaBackend{Ordinals: []cudaOrdinal{
		{Ordinal: 0, PCIBusID: "0000:3B:00.0"}, {Ordinal: 1, PCIBusID: "0000:19:00.0"}, {Ordinal: 2, PCIBusID: "0000:AA:00.0"},
	}}
	// NVML numbers by bus order; CUDA (fastest first) may not.
	b.matchNVML([]devices.Device{
		{Kind: devices.GPU, NVMLIndex: 0, PCIBusID: "00000000:19:00.0"},
		{Kind: devices.GPU, NVMLIndex: 1, PCIBusID: "00000000:3b:00.0"},
	})
	for i, want := range []int{1, 0, -1} {
		if got := b.Ordinals[i].NVMLIndex; got != want {
			t.Errorf("cuda:%d matched NVML %d, want %d", i, got, want)
		}
	}
}
