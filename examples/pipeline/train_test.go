package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/ringtrain/ringtrain/collective"
	"github.com/ringtrain/ringtrain/collective/transport/memtransport"
	"github.com/ringtrain/ringtrain/gpu"
	"github.com/ringtrain/ringtrain/gpu/cuda"
	"github.com/ringtrain/ringtrain/models"
	"github.com/ringtrain/ringtrain/pipeline"
)

// With RINGTRAIN_PIPELINE_MAIN set, the test binary is the program itself,
// so tests can run it as a real process without building it.
func TestMain(m *testing.M) {
	if os.Getenv("RINGTRAIN_PIPELINE_MAIN") == "1" {
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// TestGorunEndToEnd builds gorun and this example and trains 2 stages × 2
// replicas on 4 real processes for 3 steps, checking that the output has
// the plan, the progress and the measured bubble with its theory.
func TestGorunEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs 4 processes")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 150*time.Second)
	defer cancel()
	dir := t.TempDir()
	gorun, train := filepath.Join(dir, "gorun"), filepath.Join(dir, "train")
	for _, b := range [][2]string{{gorun, "github.com/ringtrain/ringtrain/cmd/gorun"}, {train, "."}} {
		out, err := exec.CommandContext(ctx, "go", "build", "-o", b[0], b[1]).CombinedOutput()
		if err != nil {
			t.Fatalf("go build %s: %v\n%s", b[1], err, out)
		}
	}
	cmd := exec.CommandContext(ctx, gorun, "--standalone", "--nproc", "4", "--grace", "2s", train,
		"--stages", "2", "--dp", "2", "--steps", "3", "--micro-batches", "4", "--batch", "32", "--log-every", "1")
	cmd.Env = withoutJobEnv(os.Environ())
	out, err := cmd.CombinedOutput()
	text := string(out)
	if err != nil {
		t.Fatalf("gorun: %v\n%s", err, text)
	}
	// --device auto (the default): on the CPU here, rank 0 (and only rank 0)
	// says so and why; where the CUDA backend loads, every stage is on a GPU.
	where, device := `cuda:\d+`, regexp.MustCompile(`(?m)^\[0\] device: cuda:\d+ `)
	if _, err := cuda.Load(); err != nil {
		where = `cpu(` + unusedGPU + `)?`
		device = regexp.MustCompile(`(?m)^\[0\] device: cpu \(--device auto: .*libcuda.*\)$`)
	}
	if n := len(regexp.MustCompile(`(?m)^\[\d+\] device: `).FindAllString(text, -1)); n != 1 {
		t.Errorf("%d device lines, want 1 (rank 0's):\n%s", n, text)
	}
	for _, want := range []*regexp.Regexp{
		device,
		regexp.MustCompile(`(?m)^\[0\] .*4 rank\(s\) = 2 stage\(s\) × 2 replica\(s\); schedule 1f1b`),
		regexp.MustCompile(`(?m)^\[0\] stage +layers +params +cost share +device`),
		regexp.MustCompile(`(?m)^\[0\] 0 +0-\d+ flatten\.\.\S+ .* rank 0 ` + where + `, rank 2 ` + where + `$`),
		regexp.MustCompile(`(?m)^\[0\] 1 +\d+-5 \S+\.\.fc3 .* rank 1 ` + where + `, rank 3 ` + where + `$`),
		regexp.MustCompile(`(?m)^\[1\] step 3/3 epoch 0: loss \d+\.\d+`),
		regexp.MustCompile(`(?m)^\[0\] bubble: measured \d\.\d+ .*theory \(K-1\)/\(M\+K-1\) = 0\.200 .*K=2 stages, M=4 micro-batches, 2 replica`),
		regexp.MustCompile(`(?m)^\[0\] stage 0 \(ranks \[0 2\]\): .*peak stored activations 2 micro-batch`),
		regexp.MustCompile(`(?m)^\[0\] stage 1 \(ranks \[1 3\]\): .*peak stored activations 1 micro-batch`),
	} {
		if !want.MatchString(text) {
			t.Errorf("output lacks %q:\n%s", want, text)
		}
	}
}

// unusedGPU is how the plan names a GPU that NVML found but the stage (on the
// CPU) does not use.
const unusedGPU = ` \(GPU \d+ found, not used\)`

// withoutJobEnv drops a surrounding job's variables (a test run under gorun).
func withoutJobEnv(env []string) []string {
	var out []string
	for _, kv := range env {
		name, _, _ := strings.Cut(kv, "=")
		switch name {
		case "RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT", "GORUN_TOKEN", "NODE_RANK":
			continue
		}
		out = append(out, kv)
	}
	return out
}

// TestAloneJSON runs in this process without a job (one stage) and checks
// the JSON lines.
func TestAloneJSON(t *testing.T) {
	if raceOn {
		t.Skip("single goroutine: nothing for -race to find, ten times slower")
	}
	t.Setenv("WORLD_SIZE", "")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var out bytes.Buffer
	if err := run(ctx, []string{"--json", "--steps", "3", "--batch", "16", "--micro-batches", "4", "--log-every", "3"}, &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	events := map[string]map[string]any{}
	for _, line := range strings.Split(strings.TrimSpace(out.String()), "\n") {
		var ev map[string]any
		if err := json.Unmarshal([]byte(line), &ev); err != nil {
			t.Fatalf("not JSON: %q: %v", line, err)
		}
		events[ev["event"].(string)] = ev
	}
	if p := events["plan"]; p == nil || p["stages"] != 1.0 || p["world"] != 1.0 {
		t.Errorf("plan event %v", p)
	}
	if s := events["step"]; s == nil || s["step"] != 3.0 {
		t.Errorf("step event %v", s)
	}
	s := events["summary"]
	if s == nil || s["bubble_theory"] != 0.0 || s["measured_steps"] != 2.0 {
		t.Fatalf("summary event %v", s)
	}
	if b, ok := s["bubble_measured"].(float64); !ok || b < 0 || b > 0.05 {
		t.Errorf("one stage idles %v of its time, want about 0", s["bubble_measured"])
	}
	st := s["per_stage"].([]any)[0].(map[string]any)
	if st["peak_stored_activations"] != 1.0 {
		t.Errorf("one stage 1F1B stores %v micro-batches, want 1", st["peak_stored_activations"])
	}
}

// TestBadFlags checks that bad flags are refused with the flag's name.
func TestBadFlags(t *testing.T) {
	t.Setenv("WORLD_SIZE", "")
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--schedule", "zigzag"}, "--schedule"},
		{[]string{"--split", "2,x"}, "--split"},
		{[]string{"--steps", "0"}, "--steps"},
		{[]string{"--dp", "0"}, "--dp"},
		{[]string{"--model", "resnet"}, "--model"},
		{[]string{"--balance", "vibes"}, "--balance"},
		{[]string{"--warmup", "5", "--steps", "5"}, "--warmup"},
		{[]string{"--stages", "2"}, "2 stages × 1 replicas = 2 ranks, but the world has 1"},
		{[]string{"--batch", "4", "--micro-batches", "8"}, "8 micro-batches for a per-replica batch of 4"},
		{[]string{"extra"}, "unexpected argument"},
		{[]string{"--device", "tpu"}, `--device "tpu": want auto|cpu|cuda|cuda:N|emu`},
	} {
		err := run(context.Background(), c.args, io.Discard, io.Discard)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: got %v, want an error mentioning %q", c.args, err, c.want)
		}
	}
}

// TestDeviceCUDAWithoutGPU runs the program with --device cuda where the CUDA
// backend does not load: a non-zero exit and one line saying what is missing.
func TestDeviceCUDAWithoutGPU(t *testing.T) {
	if _, err := cuda.Load(); err == nil {
		t.Skip("the CUDA backend loads here: --device cuda would train")
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "--device", "cuda", "--steps", "2")
	cmd.Env = append(withoutJobEnv(os.Environ()), "RINGTRAIN_PIPELINE_MAIN=1")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() <= 0 {
		t.Fatalf("--device cuda without a GPU: %v, want a non-zero exit status\n%s\n%s", err, stdout.String(), stderr.String())
	}
	msg := strings.TrimSpace(stderr.String())
	if !strings.HasPrefix(msg, "pipeline: --device cuda: ") || !strings.Contains(msg, "libcuda") || strings.Contains(msg, "\n") ||
		strings.Contains(msg, "panic") || strings.Contains(msg, "goroutine ") || stdout.Len() != 0 {
		t.Fatalf("want one line naming --device cuda and libcuda, got:\n%s\nstdout:\n%s", msg, stdout.String())
	}
}

// TestDeviceEmuMatchesCPU trains one stage alone, in this process, on the
// emulator (the GPU backend's kernels as Go) and on the CPU: same losses, and
// the plan names where the stage computed.
func TestDeviceEmuMatchesCPU(t *testing.T) {
	if raceOn {
		t.Skip("single goroutine: nothing for -race to find, ten times slower")
	}
	t.Setenv("WORLD_SIZE", "")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	loss := map[string]float64{}
	for _, dev := range []string{"cpu", "emu"} {
		var out bytes.Buffer
		if err := run(ctx, []string{"--device", dev, "--json", "--steps", "3", "--batch", "16", "--micro-batches", "4", "--log-every", "3"}, &out, io.Discard); err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(strings.TrimSpace(out.String()), "\n") {
			var ev map[string]any
			if err := json.Unmarshal([]byte(line), &ev); err != nil {
				t.Fatalf("not JSON: %q: %v", line, err)
			}
			switch ev["event"] {
			case "plan":
				if ev["placement"] != dev || !strings.HasPrefix(ev["device"].(string), dev) || !strings.Contains(ev["plan"].(string), "rank 0 "+dev) {
					t.Errorf("--device %s: plan %v", dev, ev)
				}
			case "summary":
				loss[dev] = ev["loss"].(float64)
			}
		}
	}
	if math.Abs(loss["cpu"]-loss["emu"]) > 1e-4 || loss["cpu"] == 0 {
		t.Fatalf("loss: cpu %v, emu %v", loss["cpu"], loss["emu"])
	}
}

// mystery is a layer the GPU backend has no kernels for.
type mystery struct{ *models.ReLU }

// TestAutoFallsBackPerStage: with --device auto and a device, a stage with a
// layer the backend does not support stays on the CPU, the device is given
// back, and the rank's device line says why; an explicit device refuses.
func TestAutoFallsBackPerStage(t *testing.T) {
	build := func() *models.Sequential {
		fc, err := models.NewLinear("fc", 784, 10, models.InitHe)
		if err != nil {
			t.Fatal(err)
		}
		seq, err := models.NewSequential(models.NewFlatten("flatten"), fc, mystery{models.NewReLU("mystery")})
		if err != nil {
			t.Fatal(err)
		}
		return seq
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ts := memtransport.New(1)
	defer ts[0].Close()
	g, err := collective.New(ctx, ts[0], collective.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	cfg := pipeline.Config{Stages: 1, MicroBatches: 2, Batch: 4, InputShape: models.ImageShape()}

	comp := &stageCompiler{spec: "auto", dev: gpu.NewEmulator()}
	cfg.Compile = comp.compile
	e, err := pipeline.New(ctx, build(), g, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	comp.close()
	note := deviceNote(e.Device(), "emu (--device auto)", comp)
	if e.Device() != "cpu" || comp.dev != nil || comp.model != nil ||
		!strings.HasPrefix(note, "cpu (--device auto: ") || !strings.Contains(note, `"mystery"`) {
		t.Fatalf("auto: stage on %s, note %q", e.Device(), note)
	}

	comp = &stageCompiler{spec: "emu", dev: gpu.NewEmulator()}
	cfg.Compile = comp.compile
	if _, err := pipeline.New(ctx, build(), g, cfg); !errors.Is(err, gpu.ErrUnsupportedLayer) || !strings.Contains(err.Error(), `"mystery"`) {
		t.Fatalf("emu: %v, want ErrUnsupportedLayer naming the layer", err)
	}
}
