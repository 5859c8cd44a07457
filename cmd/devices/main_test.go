package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"
	"time"
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
		GPUs   []map[string]any `json:"gpus"`
		Reason string           `json:"fallback_reason"`
	}
	if err := json.Unmarshal(out, &v); err != nil {
		t.Fatalf("%v in %s", err, out)
	}
	if (len(v.GPUs) == 0) == (v.Reason == "") {
		t.Fatalf("want GPUs or a fallback reason, not both or neither: %s", out)
	}
	t.Logf("%s", out)
}
