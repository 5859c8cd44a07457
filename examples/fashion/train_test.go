package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ringtrain/ringtrain/models"
)

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
	// Another global batch would change the sample order: refused, saying why.
	var out bytes.Buffer
	err := run(context.Background(), mustParse(t, append(common, "--steps", "14", "--checkpoint", dir, "--batch", "8")...), &out, &out)
	if err == nil || !strings.Contains(err.Error(), "global batch 16") || !strings.Contains(err.Error(), "--batch 8") {
		t.Fatalf("resume with another batch: %v", err)
	}
}

func TestFlagErrors(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--compress", "int8"}, "--compress"},
		{[]string{"--error-feedback"}, "--error-feedback needs --compress fp16"},
		{[]string{"--optimizer", "lbfgs"}, "--optimizer"},
		{[]string{"--batch", "0"}, "--batch"},
		{[]string{"--epochs", "0"}, "--epochs"},
		{[]string{"--synthetic", "--data", "/x"}, "exclude"},
		{[]string{"stray"}, `unexpected argument "stray"`},
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
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "--standalone", "--nproc", "2", "train.go",
		"--synthetic", "--synthetic-size", "256", "--batch", "16", "--steps", "5", "--json", "--compress", "fp16")
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
	if r["world_size"] != 2.0 || r["steps"] != 5.0 || r["epoch"] != 1.0 || r["compress"] != "fp16" || !(r["samples_per_s"].(float64) > 0) || !(r["comm_ms"].(float64) > 0) {
		t.Fatalf("unexpected report %v", r)
	}
}
