package main

import (
	"bytes"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/ringtrain/ringtrain/benchmarks/scaling/internal/ranklines"
)

func TestParseArgs(t *testing.T) {
	c, err := parseArgs([]string{"--nproc", "2,4", "--model", "mlp", "--batch", "10"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	// One rank is the baseline: added when not asked; the global batch defaults to the
	// per-rank batch rounded up to a multiple of every rank count.
	if len(c.nproc) != 3 || c.nproc[0] != 1 || c.globalBatch.of("mlp") != 12 {
		t.Fatalf("nproc %v, global batch %v", c.nproc, c.globalBatch)
	}
	q, err := parseArgs([]string{"--quick", "--reps", "2"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if !q.quick || q.reps.of("cnn") != 2 || q.steps.of("cnn") != 4 || q.sweepMax != 1<<20 {
		t.Fatalf("--quick defaults not applied around the given --reps: %+v", q)
	}
	// Per-model values: the default applies to the models not named.
	p, err := parseArgs([]string{"--batch", "32,mlp-wide=8", "--global-batch", "64,cnn=16", "--nproc", "1,2,4"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if p.batch.of("mlp") != 32 || p.batch.of("mlp-wide") != 8 || p.globalBatch.of("mlp") != 64 || p.globalBatch.of("cnn") != 16 {
		t.Fatalf("batch %v, global %v", p.batch.String(), p.globalBatch.String())
	}
	for _, bad := range [][]string{
		{"--nproc", "1,x"}, {"--nproc", "0"}, {"--nproc", "2,2"}, {"--modes", "diagonal"},
		{"--compress", "int8"}, {"--reps", "0"}, {"--sweep-min", "1M", "--sweep-max", "1K"},
		{"--sweep-max", "lots"}, {"--global-batch", "10", "--nproc", "1,3"}, {"extra"},
		{"--threads-per-rank", "0"}, {"--batch", "32,mlp=x"}, {"--batch", "32,16"}, {"--batch", "mlp=1,mlp=2"},
		{"--batch", "=4"}, {"--steps", "0"}, {"--batch", ""},
	} {
		if _, err := parseArgs(bad, io.Discard); err == nil {
			t.Errorf("parseArgs(%q) accepted", bad)
		}
	}
}

func TestParseBytes(t *testing.T) {
	for in, want := range map[string]int64{"4096": 4096, "4K": 4096, "16M": 16 << 20, "1G": 1 << 30, "64KiB": 64 << 10, "2mb": 2 << 20} {
		got, err := parseBytes("--x", in)
		if err != nil || got != want {
			t.Errorf("parseBytes(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "K", "-1", "1.5M", "1T"} {
		if _, err := parseBytes("--x", bad); err == nil {
			t.Errorf("parseBytes(%q) accepted", bad)
		}
	}
}

func TestPlan(t *testing.T) {
	c, err := parseArgs([]string{"--nproc", "1,2,4", "--model", "mlp,cnn", "--reps", "2", "--batch", "32", "--steps", "5,cnn=3"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	jobs, err := plan(c)
	if err != nil {
		t.Fatal(err)
	}
	sweeps, trains := 0, 0
	seen := map[string]bool{}
	for _, j := range jobs {
		if j.kind == jobSweep {
			sweeps++
			if trains > 0 {
				t.Fatal("a sweep after training runs")
			}
			continue
		}
		trains++
		key := j.costKey() + "/" + string(rune('0'+j.rep))
		if seen[key] {
			t.Fatalf("job %s planned twice", j.label(2))
		}
		seen[key] = true
		if j.ranks == 1 && (j.compress != "none" || len(j.modes) != 2 || j.batch != 32) {
			t.Fatalf("single-rank baseline %+v should serve both modes once", j)
		}
	}
	// Sweeps: 2 and 4 ranks × fp32, fp16. Training per model and repetition: 1 baseline,
	// and for 2 and 4 ranks × 2 compressions × (weak batch 32, strong batch 16 or 8).
	if sweeps != 4 || trains != 2*2*(1+2*2*2) {
		t.Fatalf("%d sweeps, %d training runs", sweeps, trains)
	}
	// Repetitions interleave: every configuration of rep 0 comes before any of rep 1.
	lastRep := 0
	for _, j := range jobs {
		if j.kind == jobTrain {
			if j.rep < lastRep {
				t.Fatal("repetitions not in order")
			}
			lastRep = j.rep
		}
	}
	// The gorun command line runs the prebuilt executables with fixed threads per rank.
	args := strings.Join(gorunArgs(c, binaries{gorun: "/g", trainer: "/t", allreduce: "/a"}, jobs[len(jobs)-1]), " ")
	// The last job: cnn on 4 ranks, strong scaling (global batch 32: 8 per rank), fp16;
	// two epochs of 3 steps each.
	for _, want := range []string{"--nproc 4", "--threads-per-rank 1", "--standalone", " /t ", "--model cnn", "--synthetic",
		"--json", "--compress fp16", "--batch 8", "--synthetic-size 96", "--epochs 2"} {
		if !strings.Contains(args, want) {
			t.Errorf("gorun args %q lack %q", args, want)
		}
	}
	args = strings.Join(gorunArgs(c, binaries{gorun: "/g", trainer: "/t", allreduce: "/a"}, jobs[0]), " ")
	if !strings.Contains(args, " /a --min 4096 --max 16777216 --factor 4 --dtype fp32") || !strings.Contains(args, "--baseline") {
		t.Errorf("sweep args %q", args)
	}
}

func TestProgressETA(t *testing.T) {
	now := time.Unix(0, 0)
	var buf bytes.Buffer
	p := newProgress(&buf, 4, func() time.Time { return now })
	jobs := []job{
		{kind: jobTrain, model: "a", ranks: 1, batch: 8},
		{kind: jobTrain, model: "b", ranks: 1, batch: 8},
		{kind: jobTrain, model: "a", ranks: 1, batch: 8},
		{kind: jobTrain, model: "b", ranks: 1, batch: 8},
	}
	p.begin(0, "first", jobs)
	now = now.Add(10 * time.Second)
	p.end(jobs[0].costKey(), 10*time.Second, "ok")
	p.begin(1, "second", jobs[1:])
	now = now.Add(30 * time.Second)
	p.end(jobs[1].costKey(), 30*time.Second, "ok")
	p.begin(2, "third", jobs[2:])
	out := buf.String()
	// After a (10 s) and b (30 s): a + b left = 40 s; before b was seen, 3 × mean 10 s.
	for _, want := range []string{"[1/4] first  (elapsed 0s)", "[2/4] second  (elapsed 10s, ETA 30s)", "[3/4] third  (elapsed 40s, ETA 40s)"} {
		if !strings.Contains(out, want) {
			t.Errorf("progress output lacks %q:\n%s", want, out)
		}
	}
}

func lines(t *testing.T, text string) []ranklines.Line {
	t.Helper()
	ls, err := ranklines.ReadAll(strings.NewReader(text), nil)
	if err != nil {
		t.Fatal(err)
	}
	return ls
}

func TestTrainRun(t *testing.T) {
	j := job{kind: jobTrain, model: "mlp", modes: []string{"weak"}, compress: "fp16", ranks: 2, batch: 16}
	out := `gorun: starting 2 ranks
[0] {"epoch":1,"train_loss":2.1,"samples_per_s":100,"compute_ms":50,"comm_ms":30,"exposed_comm_ms":20,"step_ms":400}
[1] {"epoch":1,"train_loss":2.1,"samples_per_s":100,"compute_ms":55,"comm_ms":30,"exposed_comm_ms":25}
[0] epoch 2 done
[0] {"epoch":2,"train_loss":1.9,"samples_per_s":320,"compute_ms":60,"comm_ms":40,"exposed_comm_ms":30,"step_ms":100}
[1] {"epoch":2,"train_loss":1.9,"samples_per_s":330,"compute_ms":62,"comm_ms":38,"exposed_comm_ms":35,"step_ms":99}
`
	r, err := trainRun(j, lines(t, out), 2)
	if err != nil {
		t.Fatal(err)
	}
	// The last epoch; rank 0's throughput; the slowest rank's times.
	if r.SamplesPerS != 320 || r.ComputeMS != 62 || r.CommMS != 40 || r.ExposedCommMS != 35 || r.StepMS != 100 || r.GlobalBatch != 32 {
		t.Fatalf("%+v", r)
	}
	// Without step_ms the step is the global batch over the rate.
	r, err = trainRun(j, lines(t, `[0] {"epoch":1,"samples_per_s":320}`), 1)
	if err != nil || r.StepMS != 100 {
		t.Fatalf("%+v, %v", r, err)
	}
	// The warm-up epoch alone is not a measurement.
	if _, err := trainRun(j, lines(t, `[0] {"epoch":1,"samples_per_s":320}`), 2); err == nil || !strings.Contains(err.Error(), "epoch 2") {
		t.Fatalf("missing measured epoch: %v", err)
	}
	for _, bad := range []string{"[0] no json here", `[0] {"epoch":1}`, `[0] {"epoch":1,"samples_per_s":0}`} {
		if _, err := trainRun(j, lines(t, bad), 1); err == nil {
			t.Errorf("trainRun accepted %q", bad)
		}
	}
}

func TestSweepRows(t *testing.T) {
	j := job{kind: jobSweep, ranks: 2, dtype: "fp32"}
	out := `[0] {"op":"allreduce","ranks":2,"bytes":4096,"dtype":"fp32","time_us":120.5,"algbw_gbs":0.034,"busbw_gbs":0.034,"max_rel_err":0}
[1] {"op":"allreduce","ranks":2,"bytes":4096,"dtype":"fp32","time_us":121,"algbw_gbs":0.034,"busbw_gbs":0.034,"max_rel_err":0}
[0] {"op":"ring-exchange","ranks":2,"bytes":16777216,"dtype":"fp32","time_us":50000,"link_gbs":0.33}
[0] some log line
`
	rows, err := sweepRows(j, lines(t, out))
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 2 || rows[0].TimeUS != 120.5 || rows[1].Op != "ring-exchange" || rows[1].LinkGBs != 0.33 {
		t.Fatalf("%+v", rows)
	}
	if _, err := sweepRows(j, lines(t, `[0] {"op":"allreduce","bytes":4096}`)); err == nil {
		t.Fatal("row without a time accepted")
	}
	if _, err := sweepRows(j, lines(t, "[0] nothing")); err == nil {
		t.Fatal("no rows accepted")
	}
}

func TestPerModel(t *testing.T) {
	var p perModel
	if err := p.Set("16, mlp-wide=4 ,cnn=8"); err != nil {
		t.Fatal(err)
	}
	if p.of("mlp") != 16 || p.of("mlp-wide") != 4 || p.of("cnn") != 8 || p.String() != "16,cnn=8,mlp-wide=4" {
		t.Fatalf("%v", p.String())
	}
	if o := p.overrides([]string{"mlp", "cnn"}); len(o) != 1 || o["cnn"] != 8 {
		t.Fatalf("overrides %v", o)
	}
	// Only named models: the default stays what it was.
	q := perModel{def: 3}
	if err := q.Set("mlp=1"); err != nil || q.of("cnn") != 3 || q.of("mlp") != 1 {
		t.Fatalf("%v %v", q.String(), err)
	}
}
