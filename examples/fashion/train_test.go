package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ringtrain/ringtrain/ddp"
	"github.com/ringtrain/ringtrain/gpu/cuda"
	"github.com/ringtrain/ringtrain/models"
	"github.com/ringtrain/ringtrain/preempt"
)

// With RINGTRAIN_FASHION_MAIN set, the test binary is the program itself, so
// tests can run it as a real process (exit status, stderr) without building it.
func TestMain(m *testing.M) {
	if os.Getenv("RINGTRAIN_FASHION_MAIN") == "1" {
		main()
		os.Exit(0)
	}
	code := m.Run()
	if buildDir != "" {
		os.RemoveAll(buildDir)
	}
	os.Exit(code)
}

func mustParse(t *testing.T, args ...string) config {
	t.Helper()
	cfg, err := parseFlags(args)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func inProcess(t *testing.T) {
	t.Helper()
	if _, ok := os.LookupEnv("WORLD_SIZE"); ok {
		t.Skip("WORLD_SIZE is set: these tests train in-process, alone")
	}
}

func runCfg(t *testing.T, cfg config) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var out bytes.Buffer
	if err := run(ctx, cfg, &out, &out); err != nil {
		t.Fatalf("run: %v\n%s", err, out.String())
	}
	return out.String()
}

func readParams(t *testing.T, path string) models.Snapshot {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var s models.Snapshot
	if err := s.UnmarshalBinary(b); err != nil {
		t.Fatal(err)
	}
	return s
}

// TestStopAndResume: 12 steps straight, or 6 steps then a new run with the same
// --checkpoint directory to step 12 (across an epoch boundary), give bit-identical
// parameters.
func TestStopAndResume(t *testing.T) {
	inProcess(t)
	tmp := t.TempDir()
	common := []string{"--synthetic", "--synthetic-size", "128", "--batch", "16", "--epochs", "3", "--progress", "0",
		"--checkpoint-every", "4", "--optimizer", "adam"}
	straight := filepath.Join(tmp, "straight.bin")
	runCfg(t, mustParse(t, append(common, "--steps", "12", "--save-params", straight)...))

	dir := filepath.Join(tmp, "ck")
	first := runCfg(t, mustParse(t, append(common, "--steps", "6", "--checkpoint", dir)...))
	if !strings.Contains(first, "partial epoch 1/3 (6 steps") {
		t.Fatalf("first part:\n%s", first)
	}
	resumed := filepath.Join(tmp, "resumed.bin")
	second := runCfg(t, mustParse(t, append(common, "--steps", "12", "--checkpoint", dir, "--save-params", resumed)...))
	if !strings.Contains(second, "resumed from") || !strings.Contains(second, "step 6, epoch 1, batch 6/8") {
		t.Fatalf("second part did not resume at step 6:\n%s", second)
	}
	a, b := readParams(t, straight), readParams(t, resumed)
	if a.Step != 12 || b.Step != 12 {
		t.Fatalf("steps %d and %d", a.Step, b.Step)
	}
	for i := range a.Slices {
		for j, v := range a.Slices[i].Data {
			if math.Float32bits(v) != math.Float32bits(b.Slices[i].Data[j]) {
				t.Fatalf("%s[%d]: %v straight, %v resumed", a.Slices[i].Name, j, v, b.Slices[i].Data[j])
			}
		}
	}
	// Another seed would change the sample order: refused, saying why. (Another batch is
	// resharded: TestReshard*.)
	var out bytes.Buffer
	err := run(context.Background(), mustParse(t, append(common, "--steps", "14", "--checkpoint", dir, "--seed", "2")...), &out, &out)
	if err == nil || !strings.Contains(err.Error(), "--seed 1") || !strings.Contains(err.Error(), "--seed 2") {
		t.Fatalf("resume with another seed: %v", err)
	}
}

func TestFlagErrors(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--compress", "int8"}, "--compress"},
		{[]string{"--error-feedback"}, "--error-feedback needs --compress fp16 or bf16"},
		{[]string{"--compress", "powersgd", "--error-feedback"}, "--error-feedback needs"},
		{[]string{"--compress", "powersgd", "--powersgd-rank", "0"}, "--powersgd-rank"},
		{[]string{"--optimizer", "lbfgs"}, "--optimizer"},
		{[]string{"--batch", "0"}, "--batch"},
		{[]string{"--epochs", "0"}, "--epochs"},
		{[]string{"--synthetic", "--data", "/x"}, "exclude"},
		{[]string{"stray"}, `unexpected argument "stray"`},
		{[]string{"--device", "tpu"}, `--device "tpu": want auto|cpu|cuda|cuda:N|emu`},
		{[]string{"--device", "cuda:x"}, `--device "cuda:x"`},
		{[]string{"--batch", "8", "--global-batch", "16"}, "exclude each other"},
		{[]string{"--global-batch", "-1"}, "--global-batch"},
	} {
		if _, err := parseFlags(c.args); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: got %v, want an error about %s", c.args, err, c.want)
		}
	}
	inProcess(t)
	var out bytes.Buffer
	err := run(context.Background(), mustParse(t, "--model", "resnet"), &out, &out)
	if err == nil || !strings.Contains(err.Error(), `unknown model "resnet"`) {
		t.Fatalf("unknown model: %v", err)
	}
	err = run(context.Background(), mustParse(t, "--data", t.TempDir()), &out, &out)
	if err == nil || !strings.Contains(err.Error(), "train-images-idx3-ubyte") {
		t.Fatalf("empty --data dir: %v", err)
	}
}

// TestTwoRanksThroughGorun runs the example as users do, with 2 ranks, and checks the
// JSON epoch line that benchmarks parse.
func TestTwoRanksThroughGorun(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs processes")
	}
	bin := filepath.Join(t.TempDir(), "gorun")
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/ringtrain/ringtrain/cmd/gorun").CombinedOutput(); err != nil {
		t.Fatalf("building gorun: %v\n%s", err, out)
	}
	// fp16 (a built-in hook) and powersgd (a user-level hook, compressing from step 2 on).
	for _, compress := range []string{"fp16", "powersgd"} {
		t.Run(compress, func(t *testing.T) { twoRanks(t, bin, compress) })
	}
}

func twoRanks(t *testing.T, bin, compress string) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "--standalone", "--nproc", "2", "train.go",
		"--synthetic", "--synthetic-size", "256", "--batch", "16", "--steps", "5", "--json", "--compress", compress, "--powersgd-start", "2")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("gorun: %v\n%s\n%s", err, stdout.String(), stderr.String())
	}
	var reps []map[string]any
	sc := bufio.NewScanner(&stdout)
	for sc.Scan() {
		line, ok := strings.CutPrefix(sc.Text(), "[0] ")
		if !ok {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("rank 0 printed a non-JSON line on stdout with --json: %q", line)
		}
		reps = append(reps, m)
	}
	if len(reps) != 1 {
		t.Fatalf("want one JSON epoch line, got %d:\n%s\n%s", len(reps), stdout.String(), stderr.String())
	}
	r := reps[0]
	for _, k := range []string{"epoch", "train_loss", "test_acc", "samples_per_s", "compute_ms", "comm_ms", "exposed_comm_ms", "step_ms"} {
		if _, ok := r[k].(float64); !ok {
			t.Errorf("field %q missing or not a number in %v", k, r)
		}
	}
	// --device auto (the default): rank 0, and only rank 0, says where the ranks
	// compute and, on the CPU, why; the report names the same place.
	all := stdout.String() + stderr.String()
	if _, err := cuda.Load(); err != nil {
		want := "[0] device: cpu (--device auto: "
		i := strings.Index(all, want)
		if i < 0 || !strings.Contains(all[i:], "libcuda") || r["device"] != "cpu" {
			t.Errorf("want %q with the reason (libcuda ...) and device cpu in the report %v:\n%s\n%s", want, r, stdout.String(), stderr.String())
		}
	} else if !strings.Contains(all, "[0] device: cuda:") || !strings.HasPrefix(r["device"].(string), "cuda:") {
		t.Errorf("a GPU is present: want rank 0 on cuda:N:\n%s\n%s", stdout.String(), stderr.String())
	}
	if strings.Contains(all, "[1] device:") {
		t.Errorf("rank 1 printed the device line too:\n%s", all)
	}
	if r["world_size"] != 2.0 || r["steps"] != 5.0 || r["epoch"] != 1.0 || r["compress"] != compress || !(r["samples_per_s"].(float64) > 0) || !(r["comm_ms"].(float64) > 0) {
		t.Fatalf("unexpected report %v", r)
	}
}

// TestDeviceCUDAWithoutGPU runs the program with --device cuda where the CUDA
// backend does not load: it must exit non-zero with one line saying what is
// missing, not panic and not fall back.
func TestDeviceCUDAWithoutGPU(t *testing.T) {
	if _, err := cuda.Load(); err == nil {
		t.Skip("the CUDA backend loads here: --device cuda would train")
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "--device", "cuda", "--synthetic", "--synthetic-size", "64", "--steps", "1", "--progress", "0")
	for _, kv := range os.Environ() {
		switch name, _, _ := strings.Cut(kv, "="); name {
		case "RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT", "GORUN_TOKEN":
			continue
		}
		cmd.Env = append(cmd.Env, kv)
	}
	cmd.Env = append(cmd.Env, "RINGTRAIN_FASHION_MAIN=1")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() <= 0 {
		t.Fatalf("--device cuda without a GPU: %v, want a non-zero exit status\n%s\n%s", err, stdout.String(), stderr.String())
	}
	msg := strings.TrimSpace(stderr.String())
	if !strings.HasPrefix(msg, "train: --device cuda: ") || !strings.Contains(msg, "libcuda") || strings.Contains(msg, "\n") ||
		strings.Contains(msg, "panic") || strings.Contains(msg, "goroutine ") {
		t.Fatalf("want one line naming --device cuda and libcuda, got:\n%s", msg)
	}
	if strings.Contains(stdout.String(), "epoch") {
		t.Fatalf("trained anyway:\n%s", stdout.String())
	}
}

// TestDeviceEmuMatchesCPU trains a few steps of the small model on the
// emulator (the GPU backend's kernels, as Go, on the CPU) and on the CPU from
// the same seed: the losses, the test evaluation (a Forward on the device) and
// the saved parameters (pulled from the device) agree.
func TestDeviceEmuMatchesCPU(t *testing.T) {
	inProcess(t)
	tmp := t.TempDir()
	for _, c := range []struct {
		name string
		args []string
	}{
		{"sgd", nil},
		{"adam", []string{"--optimizer", "adam", "--eval=false"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			reps := map[string]map[string]any{}
			params := map[string]models.Snapshot{}
			for _, dev := range []string{"cpu", "emu"} {
				file := filepath.Join(tmp, c.name+"-"+dev+".bin")
				args := append([]string{"--device", dev, "--synthetic", "--synthetic-size", "64", "--batch", "16", "--steps", "3",
					"--progress", "0", "--json", "--save-params", file}, c.args...)
				out := runCfg(t, mustParse(t, args...))
				if want := "device: " + dev; !strings.Contains(out, want) {
					t.Fatalf("--device %s: output lacks %q:\n%s", dev, want, out)
				}
				for _, line := range strings.Split(out, "\n") {
					if strings.HasPrefix(line, "{") {
						var m map[string]any
						if err := json.Unmarshal([]byte(line), &m); err != nil {
							t.Fatal(err)
						}
						reps[dev] = m
					}
				}
				if reps[dev] == nil || reps[dev]["device"] != dev || reps[dev]["steps"] != 3.0 {
					t.Fatalf("--device %s: report %v\n%s", dev, reps[dev], out)
				}
				params[dev] = readParams(t, file)
			}
			keys := []string{"train_loss", "test_loss", "train_acc", "test_acc"}
			if slices.Contains(c.args, "--eval=false") {
				// Not measured, so not reported (no 0.0000 that reads as a result).
				for _, k := range []string{"test_loss", "test_acc"} {
					if _, ok := reps["cpu"][k]; ok {
						t.Errorf("--eval=false report has %s: %v", k, reps["cpu"])
					}
				}
				keys = []string{"train_loss", "train_acc"}
			}
			for _, k := range keys {
				a, b := reps["cpu"][k].(float64), reps["emu"][k].(float64)
				if math.Abs(a-b) > 1e-4 {
					t.Errorf("%s: cpu %v, emu %v", k, a, b)
				}
			}
			a, b := params["cpu"], params["emu"]
			if a.Step != 3 || b.Step != 3 || len(a.Slices) != len(b.Slices) {
				t.Fatalf("snapshots: steps %d and %d, %d and %d slices", a.Step, b.Step, len(a.Slices), len(b.Slices))
			}
			var n, off int
			var worst float64
			for i := range a.Slices {
				for j, v := range a.Slices[i].Data {
					d := math.Abs(float64(v - b.Slices[i].Data[j]))
					n++
					worst = max(worst, d)
					if d > 1e-4 {
						off++
					}
				}
			}
			t.Logf("%d of %d parameters differ by more than 1e-4, at most %g", off, n, worst)
			// SGD: every parameter agrees. Adam divides each gradient by its running
			// RMS, which turns float rounding in a near-zero gradient into a step of
			// up to lr: allow a few such parameters, each within the 3 steps' reach.
			if c.name == "sgd" && off > 0 || off > n/100000 || worst > 3*2*0.001 {
				t.Errorf("the emulator's parameters differ from the CPU's: %d of %d by more than 1e-4, at most %g", off, n, worst)
			}
		})
	}
}

// TestRecipeResumesExactly: the training recipe (cosine schedule with warm-up
// on samples seen, weight decay, gradient clipping, accumulation over 2
// micro-batches) gives bit-identical parameters whether the run goes straight
// to step 8 or stops at step 3 and resumes from its checkpoint; and the
// schedule really moves the learning rate (the report's lr is the cosine's
// value at the last step, not the base).
func TestRecipeResumesExactly(t *testing.T) {
	inProcess(t)
	tmp := t.TempDir()
	recipe := []string{"--synthetic", "--synthetic-size", "96", "--batch", "8", "--epochs", "2", "--progress", "0", "--eval=false",
		"--lr-schedule", "cosine", "--warmup-samples", "16", "--lr-min", "0.001", "--weight-decay", "1e-4", "--clip-norm", "0.5", "--accum-steps", "2", "--json"}
	straight := filepath.Join(tmp, "straight.bin")
	out := runCfg(t, mustParse(t, append(recipe, "--steps", "8", "--save-params", straight)...))
	ckpt := filepath.Join(tmp, "ckpt")
	runCfg(t, mustParse(t, append(recipe, "--steps", "3", "--checkpoint", ckpt, "--checkpoint-every", "1")...))
	resumed := filepath.Join(tmp, "resumed.bin")
	out2 := runCfg(t, mustParse(t, append(recipe, "--steps", "8", "--checkpoint", ckpt, "--save-params", resumed)...))
	if !strings.Contains(out2, "resumed from") {
		t.Fatalf("second run did not resume:\n%s", out2)
	}
	a, b := readParams(t, straight), readParams(t, resumed)
	if a.Step != 8 || b.Step != 8 {
		t.Fatalf("steps %d and %d, want 8", a.Step, b.Step)
	}
	for i := range a.Slices {
		for j, v := range a.Slices[i].Data {
			if v != b.Slices[i].Data[j] {
				t.Fatalf("%s[%d]: straight %v, resumed %v", a.Slices[i].Name, j, v, b.Slices[i].Data[j])
			}
		}
	}
	var last map[string]any
	for _, line := range strings.Split(out, "\n") {
		if strings.HasPrefix(line, "{") {
			if err := json.Unmarshal([]byte(line), &last); err != nil {
				t.Fatal(err)
			}
		}
	}
	// 96 samples, batch 8 → 12 batches an epoch, 2 epochs → 192 samples in the cosine; step 8
	// (the last) starts after 7 steps × 2 micro-batches × 8 = 112 samples.
	want, _ := models.NewSchedule(models.ScheduleConfig{Kind: "cosine", Base: 0.05, WarmupSamples: 16, TotalSamples: 192, Min: 0.001})
	if lr, _ := last["lr"].(float64); math.Abs(lr-float64(want.LR(112))) > 1e-7 || lr == 0.05 {
		t.Fatalf("report lr %v, want the schedule's %v at 112 samples", last["lr"], want.LR(112))
	}
}

// The process tests share one build of gorun and of this program (a TARGET gorun runs as it
// is, so that no run spends its time building).
var (
	buildOnce          sync.Once
	gorunBin, trainBin string
	buildErr           error
	buildDir           string
)

// buildGorun builds gorun and this program once; it returns gorun's path and sets trainBin.
func buildGorun(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		if buildDir, buildErr = os.MkdirTemp("", "fashion-test-"); buildErr != nil {
			return
		}
		gorunBin, trainBin = filepath.Join(buildDir, "gorun"), filepath.Join(buildDir, "train")
		for _, b := range [][]string{{"-o", gorunBin, "github.com/ringtrain/ringtrain/cmd/gorun"}, {"-o", trainBin, "."}} {
			if out, err := exec.Command("go", append([]string{"build"}, b...)...).CombinedOutput(); err != nil {
				buildErr = fmt.Errorf("go build %v: %v\n%s", b, err, out)
				return
			}
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return gorunBin
}

// gorunCmd is gorun with args, its output collected.
type gorunCmd struct {
	cmd            *exec.Cmd
	stdout, stderr *lockedBuffer
}

// startGorunCmd starts gorun with args; env nil inherits the test's environment.
func startGorunCmd(t *testing.T, ctx context.Context, bin string, env []string, args ...string) *gorunCmd {
	t.Helper()
	g := &gorunCmd{cmd: exec.CommandContext(ctx, bin, args...), stdout: &lockedBuffer{}, stderr: &lockedBuffer{}}
	g.cmd.Stdout, g.cmd.Stderr, g.cmd.Env = g.stdout, g.stderr, env
	if err := g.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	return g
}

// exitCode waits for gorun and returns its exit status.
func (g *gorunCmd) exitCode(t *testing.T) int {
	t.Helper()
	err := g.cmd.Wait()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ee):
		return ee.ExitCode()
	}
	t.Fatalf("gorun: %v", err)
	return -1
}

// lockedBuffer is a bytes.Buffer a process writes while the test reads.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func sameParams(t *testing.T, what string, a, b models.Snapshot) {
	t.Helper()
	if a.Step != b.Step || len(a.Slices) != len(b.Slices) {
		t.Fatalf("%s: steps %d and %d, %d and %d tensors", what, a.Step, b.Step, len(a.Slices), len(b.Slices))
	}
	for i := range a.Slices {
		for j, v := range a.Slices[i].Data {
			if math.Float32bits(v) != math.Float32bits(b.Slices[i].Data[j]) {
				t.Fatalf("%s: %s[%d]: %v and %v", what, a.Slices[i].Name, j, v, b.Slices[i].Data[j])
			}
		}
	}
}

// TestPreemptionThroughGorun: SIGTERM to gorun in the middle of a 2-rank run. Both ranks
// finish their step, agree to stop, save a checkpoint and exit preempt.ExitCode; gorun exits
// with it too. Started again with the same --checkpoint, the job resumes from the saved step,
// and its final parameters are bit-identical to those of a run that was never interrupted.
func TestPreemptionThroughGorun(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs processes")
	}
	bin := buildGorun(t)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	tmp := t.TempDir()
	ckpt := filepath.Join(tmp, "ckpt")
	common := []string{"--standalone", "--nproc", "2", "--grace", "60s", trainBin, "--synthetic", "--synthetic-size", "4096",
		"--batch", "8", "--eval=false", "--optimizer", "adam", "--checkpoint-every", "0"}

	// 1000 steps would take minutes: the signal comes long before the end.
	run1 := startGorunCmd(t, ctx, bin, nil, append(common, "--steps", "1000", "--checkpoint", ckpt, "--progress", "1ns")...)
	for !strings.Contains(run1.stdout.String(), "[0] epoch 1/1  step 3/") {
		if ctx.Err() != nil || run1.cmd.ProcessState != nil {
			t.Fatalf("no progress line\n%s\n%s", run1.stdout, run1.stderr)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := run1.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code := run1.exitCode(t); code != preempt.ExitCode {
		t.Fatalf("gorun exited %d after SIGTERM, want %d\n%s\n%s", code, preempt.ExitCode, run1.stdout, run1.stderr)
	}
	m := regexp.MustCompile(`\[0\] preempted \(terminated\) after step (\d+) `).FindStringSubmatch(run1.stdout.String())
	if m == nil || !strings.Contains(run1.stderr.String(), "gorun: preempted") {
		t.Fatalf("no preemption message from rank 0 and gorun\n%s\n%s", run1.stdout, run1.stderr)
	}
	saved, _ := strconv.Atoi(m[1])
	if saved < 3 || saved >= 1000 {
		t.Fatalf("saved at step %d", saved)
	}
	if p, err := ddp.Latest(ckpt); err != nil || p != ddp.CheckpointPath(ckpt, int64(saved)) {
		t.Fatalf("newest checkpoint %q (%v), want step %d", p, err, saved)
	}

	// Resume to saved+5, and compare with a straight run to the same step.
	total := strconv.Itoa(saved + 5)
	resumedP, straightP := filepath.Join(tmp, "resumed.bin"), filepath.Join(tmp, "straight.bin")
	run2 := startGorunCmd(t, ctx, bin, nil, append(common, "--steps", total, "--checkpoint", ckpt, "--save-params", resumedP, "--progress", "0")...)
	if code := run2.exitCode(t); code != 0 || !strings.Contains(run2.stdout.String(), fmt.Sprintf("resumed from %s", ckpt)) {
		t.Fatalf("resumed run: exit %d\n%s\n%s", code, run2.stdout, run2.stderr)
	}
	run3 := startGorunCmd(t, ctx, bin, nil, append(common, "--steps", total, "--save-params", straightP, "--progress", "0")...)
	if code := run3.exitCode(t); code != 0 {
		t.Fatalf("straight run: exit %d\n%s\n%s", code, run3.stdout, run3.stderr)
	}
	sameParams(t, "resumed after preemption vs straight", readParams(t, resumedP), readParams(t, straightP))
}

// TestErrorFileThroughGorun: a rank's failure (here: no data where --data points) is recorded
// in its TORCHELASTIC_ERROR_FILE; gorun quotes it and writes it, with the exit status, to its
// own TORCHELASTIC_ERROR_FILE in torchrun's layout.
func TestErrorFileThroughGorun(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs processes")
	}
	bin := buildGorun(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	own := filepath.Join(t.TempDir(), "gorun-error.json")
	g := startGorunCmd(t, ctx, bin, append(os.Environ(), "TORCHELASTIC_ERROR_FILE="+own),
		"--standalone", "--nproc", "2", trainBin, "--data", t.TempDir(), "--progress", "0")
	if code := g.exitCode(t); code != 1 || !strings.Contains(g.stderr.String(), "recorded (TORCHELASTIC_ERROR_FILE") {
		t.Fatalf("exit %d, want 1 quoting the rank's error file\n%s\n%s", code, g.stdout, g.stderr)
	}
	b, err := os.ReadFile(own)
	if err != nil {
		t.Fatal(err)
	}
	var v struct {
		Message struct {
			Message   string `json:"message"`
			ErrorCode int    `json:"errorCode"`
			ExtraInfo struct {
				Timestamp string `json:"timestamp"`
			} `json:"extraInfo"`
		} `json:"message"`
	}
	if err := json.Unmarshal(b, &v); err != nil || !strings.Contains(v.Message.Message, "train-images-idx3-ubyte") ||
		v.Message.ErrorCode != 1 || v.Message.ExtraInfo.Timestamp == "" {
		t.Fatalf("gorun's error file %s: %v", b, err)
	}
}

// trace is a --trace-samples record: the samples of every (epoch, step), over all ranks.
type trace map[[2]int][]int

// readTraces reads every file of a --trace-samples prefix into one trace.
func readTraces(t *testing.T, prefix string) trace {
	t.Helper()
	files, _ := filepath.Glob(prefix + ".w*.r*")
	if len(files) == 0 {
		t.Fatalf("no trace files %s.w*.r*", prefix)
	}
	tr := trace{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
			var e, st int
			var list string
			if _, err := fmt.Sscanf(line, "%d %d %s", &e, &st, &list); err != nil {
				t.Fatalf("%s: %q: %v", f, line, err)
			}
			for _, x := range strings.Split(list, ",") {
				i, err := strconv.Atoi(x)
				if err != nil {
					t.Fatal(err)
				}
				tr[[2]int{e, st}] = append(tr[[2]int{e, st}], i)
			}
		}
	}
	for k := range tr {
		slices.Sort(tr[k])
	}
	return tr
}

// merge adds other's steps to tr (runs before and after a resume).
func (tr trace) merge(other trace) trace {
	for k, v := range other {
		tr[k] = append(tr[k], v...)
		slices.Sort(tr[k])
	}
	return tr
}

// maxDiff is the largest |a−b| / (1+|b|) over all parameters.
func maxDiff(t *testing.T, a, b models.Snapshot) float64 {
	t.Helper()
	if a.Step != b.Step || len(a.Slices) != len(b.Slices) {
		t.Fatalf("steps %d and %d, %d and %d tensors", a.Step, b.Step, len(a.Slices), len(b.Slices))
	}
	worst := 0.0
	for i := range a.Slices {
		for j, v := range a.Slices[i].Data {
			w := float64(b.Slices[i].Data[j])
			worst = max(worst, math.Abs(float64(v)-w)/(1+math.Abs(w)))
		}
	}
	return worst
}

// checkSameSequence: got trained, step for step, the very samples of want; and in epoch 0
// (steps 1..perEpoch) every one of the n samples exactly once.
func checkSameSequence(t *testing.T, got, want trace, n, perEpoch int) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%d steps traced, reference %d", len(got), len(want))
	}
	for k, w := range want {
		if !slices.Equal(got[k], w) {
			t.Fatalf("epoch %d step %d: trained %v, reference %v", k[0], k[1], got[k], w)
		}
	}
	count := make([]int, n)
	for s := 1; s <= perEpoch; s++ {
		for _, i := range got[[2]int{0, s}] {
			count[i]++
		}
	}
	for i, c := range count {
		if c != 1 {
			t.Fatalf("sample %d trained %d times in epoch 1", i, c)
		}
	}
}

// TestReshardGlobalBatch: 3 steps on 4 ranks with --global-batch 16 (4 per rank), a
// checkpoint, then the job resumed on 2 ranks (8 per rank) to step 12. Definition of "the
// same sample sequence": step s trains the same 16 samples (as a set over the ranks) as a
// single process with --global-batch 16 would at step s; the traces prove it, and that epoch
// 1 trains each of its 128 samples once. The parameters then equal that single process's up
// to float32 rounding: the gradient is the same mean over the same 16 samples, only summed
// in another order (per rank, then the AllReduce), so the test allows a relative 1e-5.
func TestReshardGlobalBatch(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs processes")
	}
	inProcess(t)
	bin := buildGorun(t)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	tmp := t.TempDir()
	ckpt := filepath.Join(tmp, "ckpt")
	data := []string{"--synthetic", "--synthetic-size", "128", "--global-batch", "16", "--eval=false", "--progress", "0", "--epochs", "2"}
	for _, part := range []struct {
		nproc, steps string
		extra        []string
	}{{"4", "3", nil}, {"2", "12", []string{"--save-params", filepath.Join(tmp, "resumed.bin")}}} {
		args := append([]string{"--standalone", "--nproc", part.nproc, trainBin}, data...)
		args = append(args, "--steps", part.steps, "--checkpoint", ckpt, "--trace-samples", filepath.Join(tmp, "run"+part.nproc))
		g := startGorunCmd(t, ctx, bin, nil, append(args, part.extra...)...)
		if code := g.exitCode(t); code != 0 {
			t.Fatalf("%s ranks: exit %d\n%s\n%s", part.nproc, code, g.stdout, g.stderr)
		}
		if part.nproc == "2" && !strings.Contains(g.stdout.String(), "resumed from") {
			t.Fatalf("2 ranks did not resume:\n%s", g.stdout)
		}
	}
	// 3 ranks cannot share 16 samples evenly: refused, naming both numbers.
	g := startGorunCmd(t, ctx, bin, nil, append([]string{"--standalone", "--nproc", "3", trainBin}, append(data, "--steps", "13", "--checkpoint", ckpt)...)...)
	if code := g.exitCode(t); code != 1 || !strings.Contains(g.stderr.String(), "--global-batch 16 is not divisible by the 3 ranks") {
		t.Fatalf("3 ranks: exit %d\n%s", code, g.stderr)
	}
	runCfg(t, mustParse(t, append(data, "--steps", "12", "--trace-samples", filepath.Join(tmp, "ref"), "--save-params", filepath.Join(tmp, "ref.bin"))...))

	got := readTraces(t, filepath.Join(tmp, "run4")).merge(readTraces(t, filepath.Join(tmp, "run2")))
	checkSameSequence(t, got, readTraces(t, filepath.Join(tmp, "ref")), 128, 8)
	d := maxDiff(t, readParams(t, filepath.Join(tmp, "resumed.bin")), readParams(t, filepath.Join(tmp, "ref.bin")))
	t.Logf("largest relative parameter difference to the single process: %.3g (step %d)", d, readParams(t, filepath.Join(tmp, "ref.bin")).Step)
	if d > 1e-5 {
		t.Fatalf("parameters differ by %.3g from the single process that trained the same samples", d)
	}
}

// TestReshardPerRankBatch: the default mode keeps --batch 4 per rank, so the global batch
// follows the world: 16 on 4 ranks for 3 steps (48 samples), then 8 on 2 ranks from sample
// 48 on. The reference is one process that trains the same sequence: --batch 16 for 3 steps,
// then resumed with --batch 8. Same definition and tolerance as TestReshardGlobalBatch.
func TestReshardPerRankBatch(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs processes")
	}
	inProcess(t)
	bin := buildGorun(t)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	tmp := t.TempDir()
	ckpt, refCkpt := filepath.Join(tmp, "ckpt"), filepath.Join(tmp, "refckpt")
	data := []string{"--synthetic", "--synthetic-size", "128", "--eval=false", "--progress", "0", "--epochs", "2"}
	for _, part := range []struct {
		nproc, steps string
		extra        []string
	}{{"4", "3", nil}, {"2", "15", []string{"--save-params", filepath.Join(tmp, "resumed.bin")}}} {
		args := append([]string{"--standalone", "--nproc", part.nproc, trainBin}, data...)
		args = append(args, "--batch", "4", "--steps", part.steps, "--checkpoint", ckpt, "--trace-samples", filepath.Join(tmp, "run"+part.nproc))
		// The ring, pinned: this compares parameters with a single process up to float32
		// rounding, and which rounding depends on the algorithm. With recursive doubling
		// at 4 ranks the checkpoint differs from the ring's by 1.5e-8 at most, yet 10 steps
		// later fc1's weights and biases (and only they) differ by 3.6e-3, most likely a
		// hidden unit's ReLU at its kink flipping: sensitivity of this tiny model, not a
		// resharding error, which checkSameSequence below catches exactly.
		env := append(os.Environ(), "GORUN_ALGO=ring")
		g := startGorunCmd(t, ctx, bin, env, append(args, part.extra...)...)
		if code := g.exitCode(t); code != 0 {
			t.Fatalf("%s ranks: exit %d\n%s\n%s", part.nproc, code, g.stdout, g.stderr)
		}
		if part.nproc == "2" && !strings.Contains(g.stdout.String(), "resharding: checkpoint written with global batch 16, this run has 8 (2 rank(s) × batch 4); continuing at sample 48/128 of epoch 1") {
			t.Fatalf("2 ranks did not reshard:\n%s", g.stdout)
		}
	}
	runCfg(t, mustParse(t, append(data, "--batch", "16", "--steps", "3", "--checkpoint", refCkpt, "--trace-samples", filepath.Join(tmp, "ref"))...))
	runCfg(t, mustParse(t, append(data, "--batch", "8", "--steps", "15", "--checkpoint", refCkpt, "--trace-samples", filepath.Join(tmp, "ref"),
		"--save-params", filepath.Join(tmp, "ref.bin"))...))

	got := readTraces(t, filepath.Join(tmp, "run4")).merge(readTraces(t, filepath.Join(tmp, "run2")))
	checkSameSequence(t, got, readTraces(t, filepath.Join(tmp, "ref")), 128, 13) // 3 steps of 16 + 10 of 8
	d := maxDiff(t, readParams(t, filepath.Join(tmp, "resumed.bin")), readParams(t, filepath.Join(tmp, "ref.bin")))
	t.Logf("largest relative parameter difference to the single process: %.3g (step %d)", d, readParams(t, filepath.Join(tmp, "ref.bin")).Step)
	if d > 1e-5 {
		t.Fatalf("parameters differ by %.3g from the single process that trained the same samples", d)
	}
}

// freePort is a port free on 127.0.0.1 for TCP (the agents) and UDP (rank 0's rendezvous).
func freePort(t *testing.T) int {
	t.Helper()
	for i := 0; i < 20; i++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		u, err := net.ListenPacket("udp", fmt.Sprintf("127.0.0.1:%d", port))
		l.Close()
		if err == nil {
			u.Close()
			return port
		}
	}
	t.Fatal("no free port")
	return 0
}

// TestElasticPreemptedNode: an elastic job (--nnodes 1:2) of two gorun on this machine, one
// rank each, --global-batch 16. SIGTERM to node 1's gorun (its spot instance is reclaimed):
// the signal reaches its rank, the step-boundary agreement spreads it to rank 0, both save a
// checkpoint and exit 75; node 1's gorun exits 75; node 0's agent sees node 1 leave (a
// membership change, no restart used) and restarts alone at world size 1 from that
// checkpoint, which finishes the job. Every step trains the samples a single process with
// batch 16 trains (traces), and the final parameters are that process's up to rounding.
func TestElasticPreemptedNode(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs processes")
	}
	inProcess(t)
	bin := buildGorun(t)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	tmp := t.TempDir()
	port := strconv.Itoa(freePort(t))
	tok := filepath.Join(tmp, "token")
	if err := os.WriteFile(tok, []byte("elastic-preempt-test-token-"+port), 0o600); err != nil {
		t.Fatal(err)
	}
	train := []string{"--synthetic", "--synthetic-size", "1024", "--global-batch", "16", "--eval=false", "--epochs", "10", "--steps", "600"}
	env := append(os.Environ(), "GORUN_PEER_TIMEOUT=2s")
	var nodes []*gorunCmd
	for node := 0; node < 2; node++ {
		args := []string{"--nnodes", "1:2", "--node-rank", strconv.Itoa(node), "--master-addr", "127.0.0.1", "--master-port", port,
			"--token-file", tok, "--settle", "1s", "--join-timeout", "60s", "--grace", "60s", trainBin}
		args = append(append(args, train...), "--checkpoint", filepath.Join(tmp, "ckpt"), "--progress", "1ns",
			"--trace-samples", filepath.Join(tmp, "run"), "--save-params", filepath.Join(tmp, "elastic.bin"))
		nodes = append(nodes, startGorunCmd(t, ctx, bin, env, args...))
	}
	for !strings.Contains(nodes[0].stdout.String(), "[0] epoch 1/10  step 3/") {
		if ctx.Err() != nil {
			t.Fatalf("no progress\n%s\n%s\n%s\n%s", nodes[0].stdout, nodes[0].stderr, nodes[1].stdout, nodes[1].stderr)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := nodes[1].cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code := nodes[1].exitCode(t); code != preempt.ExitCode {
		t.Fatalf("node 1 exited %d, want %d\n%s\n%s", code, preempt.ExitCode, nodes[1].stdout, nodes[1].stderr)
	}
	if code := nodes[0].exitCode(t); code != 0 {
		t.Fatalf("node 0 exited %d\n%s\n%s", code, nodes[0].stdout, nodes[0].stderr)
	}
	out0 := nodes[0].stdout.String() + nodes[0].stderr.String()
	for _, want := range []string{"[0] preempted (another rank was asked to stop) after step", "membership change: lost", "resumed from", "world version 1, 1 node(s)"} {
		if !strings.Contains(out0, want) {
			t.Errorf("node 0's output lacks %q", want)
		}
	}
	if strings.Contains(out0, "restart 1 of") {
		t.Errorf("the preemption used up a restart:\n%s", out0)
	}
	runCfg(t, mustParse(t, append(train, "--progress", "0", "--trace-samples", filepath.Join(tmp, "ref"), "--save-params", filepath.Join(tmp, "ref.bin"))...))
	checkSameSequence(t, readTraces(t, filepath.Join(tmp, "run")), readTraces(t, filepath.Join(tmp, "ref")), 1024, 64)
	d := maxDiff(t, readParams(t, filepath.Join(tmp, "elastic.bin")), readParams(t, filepath.Join(tmp, "ref.bin")))
	t.Logf("largest relative parameter difference to the single process: %.3g (step %d)", d, readParams(t, filepath.Join(tmp, "ref.bin")).Step)
	if d > 1e-5 {
		t.Fatalf("parameters differ by %.3g from the single process that trained the same samples", d)
	}
}
