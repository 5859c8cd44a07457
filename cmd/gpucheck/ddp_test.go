package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// records runs a subcommand with a Reporter writing into a buffer and
// returns its error and the records it reported.
func records(t *testing.T, cmd string, args ...string) ([]map[string]any, error) {
	t.Helper()
	var buf bytes.Buffer
	rep := &Reporter{w: []io.Writer{&buf}}
	err := commands[cmd](context.Background(), args, rep)
	var recs []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
		if line == "" {
			continue
		}
		var r map[string]any
		if jerr := json.Unmarshal([]byte(line), &r); jerr != nil {
			t.Fatalf("%s: not JSON: %q", cmd, line)
		}
		recs = append(recs, r)
	}
	return recs, err
}

// alone makes the test run outside gorun: no group to join.
func alone(t *testing.T) {
	t.Setenv("WORLD_SIZE", "")
	os.Unsetenv("WORLD_SIZE")
}

func TestReorder(t *testing.T) {
	for _, tc := range []struct{ in, want []string }{
		{[]string{"a", "b", "--tol", "1e-5"}, []string{"--tol", "1e-5", "a", "b"}},
		{[]string{"--tol=1", "a", "b"}, []string{"--tol=1", "a", "b"}},
		{[]string{"a", "--check", "x", "b"}, []string{"--check", "x", "a", "b"}},
		{[]string{"a", "--", "--b"}, []string{"a", "--b"}},
	} {
		if got := reorder(tc.in); !slices.Equal(got, tc.want) {
			t.Errorf("reorder(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

// The ranks' rows of a global batch, concatenated, are the global batch, and
// a batch depends on (seed, step) alone.
func TestGlobalBatchSplit(t *testing.T) {
	x, l := globalBatch(7, 3, 64)
	x2, l2 := globalBatch(7, 3, 64)
	if !slices.Equal(x.Data, x2.Data) || !slices.Equal(l, l2) {
		t.Fatal("globalBatch is not deterministic")
	}
	if y, _ := globalBatch(7, 4, 64); slices.Equal(x.Data, y.Data) {
		t.Fatal("steps 3 and 4 drew the same batch")
	}
	var data []float32
	var labels []int
	for r := range 4 {
		xr, lr := rows(x, l, r*64/4, (r+1)*64/4)
		if xr.Shape[0] != 16 || len(lr) != 16 {
			t.Fatalf("rank %d: %v samples, %d labels", r, xr.Shape, len(lr))
		}
		data, labels = append(data, xr.Data...), append(labels, lr...)
	}
	if !slices.Equal(data, x.Data) || !slices.Equal(labels, l) {
		t.Fatal("the ranks' rows do not make up the global batch")
	}
}

// ddp-worker alone on the emulator and on the CPU ends with the same
// parameters; compare-params says so, and tells a different seed apart.
func TestDDPWorkerAloneAndCompare(t *testing.T) {
	alone(t)
	dir := t.TempDir()
	path := func(n string) string { return filepath.Join(dir, n) }
	for _, run := range [][]string{
		{"--device", "emu", "--steps", "2", "--params-out", path("emu.bin")},
		{"--device", "cpu", "--steps", "2", "--params-out", path("cpu.bin")},
		{"--device", "cpu", "--steps", "2", "--seed", "2", "--params-out", path("seed2.bin")},
	} {
		recs, err := records(t, "ddp-worker", run...)
		if err != nil {
			t.Fatalf("ddp-worker %q: %v", run, err)
		}
		if len(recs) != 2 || recs[1]["check"] != "ddp-step" || recs[1]["ok"] != true || recs[1]["world"] != 1.0 {
			t.Fatalf("ddp-worker %q reported %v", run, recs)
		}
	}
	recs, err := records(t, "compare-params", path("emu.bin"), path("cpu.bin"), "--tol", "1e-5")
	if err != nil || len(recs) != 1 || recs[0]["check"] != "ddp-equivalence" || recs[0]["ok"] != true {
		t.Fatalf("emu against cpu: %v, %v", recs, err)
	}
	recs, _ = records(t, "compare-params", path("cpu.bin"), path("seed2.bin"))
	if recs[0]["ok"] != false || recs[0]["max_abs_diff"].(float64) <= 1e-5 {
		t.Fatalf("different seeds compared equal: %v", recs)
	}
	recs, _ = records(t, "compare-params", path("cpu.bin"), path("missing.bin"))
	if recs[0]["ok"] != false || recs[0]["error"] == nil {
		t.Fatalf("a missing file: %v", recs)
	}
}

func TestCompareLosses(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, lf lossFile) string {
		b, err := json.Marshal(lf)
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	base := lossFile{Model: "mlp", Stages: 2, GlobalBatch: 64, Seed: 1, Losses: []float64{2.5, 2.25, 2.0}}
	a := write("a", base)
	near := base
	near.Losses = []float64{2.5, 2.2504, 2.0}
	far := base
	far.Losses = []float64{2.5, 2.26, 2.0}
	short := base
	short.Losses = base.Losses[:2]
	other := base
	other.Seed = 2
	for _, tc := range []struct {
		name string
		lf   lossFile
		ok   bool
	}{{"near", near, true}, {"far", far, false}, {"short", short, false}, {"other", other, false}} {
		recs, err := records(t, "compare-losses", a, write(tc.name, tc.lf), "--tol", "1e-3")
		if err != nil || len(recs) != 1 || recs[0]["check"] != "pipeline-gpu-vs-cpu" || recs[0]["ok"] != tc.ok {
			t.Errorf("%s: %v, %v (want ok=%v)", tc.name, recs, err, tc.ok)
		}
	}
}

func TestPipeWorkerNeedsGorun(t *testing.T) {
	alone(t)
	if _, err := records(t, "pipe-worker", "--device", "cpu"); err == nil || !strings.Contains(err.Error(), "gorun") {
		t.Fatalf("pipe-worker alone: %v", err)
	}
}
