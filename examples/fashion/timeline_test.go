package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ringtrain/ringtrain/timeline"
)

// TestTimelineThroughGorun runs the example as users do, 2 ranks with gorun --timeline, and
// checks the merged trace: it passes the trace-event format check (required fields per
// phase, B/E pairs nested), has one process row per rank with every phase of every step,
// and shows a bucket's AllReduce running while backward still computes a layer.
func TestTimelineThroughGorun(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs processes")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "gorun")
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/ringtrain/ringtrain/cmd/gorun").CombinedOutput(); err != nil {
		t.Fatalf("building gorun: %v\n%s", err, out)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	const steps = 4
	file := filepath.Join(dir, "trace.json")
	// The mlp's gradients go in two buckets: fc3+fc2, launched while fc1's backward runs, and fc1.
	cmd := exec.CommandContext(ctx, bin, "--standalone", "--nproc", "2", "--timeline", file, "train.go",
		"--synthetic", "--synthetic-size", "256", "--batch", "16", "--steps", "4", "--eval=false", "--progress", "0")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("gorun: %v\n%s\n%s", err, stdout.String(), stderr.String())
	}
	if !strings.Contains(stderr.String(), "timeline of 2 rank(s) written to "+file) {
		t.Errorf("gorun did not say where the timeline is:\n%s", stderr.String())
	}
	for _, p := range []string{file, timeline.RankPath(file, 0), timeline.RankPath(file, 1)} {
		if _, err := os.Stat(p); err != nil {
			t.Fatal(err)
		}
	}
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tr, err := timeline.Parse(f)
	if err != nil {
		t.Fatal(err)
	}
	if err := timeline.Check(tr); err != nil {
		t.Fatalf("the merged trace is not valid: %v", err)
	}
	procs := map[int]string{}
	var begins, ends int
	for _, e := range tr.TraceEvents {
		var name string
		if e.Ph == "M" && e.Name == "process_name" && e.Arg("name", &name) {
			procs[*e.Pid] = name
		}
		switch e.Ph {
		case "B":
			begins++
		case "E":
			ends++
		}
	}
	if len(procs) != 2 || procs[0] != "rank 0" || procs[1] != "rank 1" {
		t.Errorf("process rows %v, want rank 0 and rank 1", procs)
	}
	if begins != 2*steps || ends != begins {
		t.Errorf("%d B and %d E events, want a step slice per step and rank (%d)", begins, ends, 2*steps)
	}
	count := map[[2]any]int{}
	var layers, reduces []timeline.Event
	for _, e := range tr.Slices() {
		name := e.Name
		switch {
		case strings.HasPrefix(name, "backward ") && name != "backward (no sync)":
			layers = append(layers, e)
			name = "backward <layer>"
		case strings.HasPrefix(name, "launch bucket"):
			name = "launch bucket"
		case name == "AllReduce" && e.Cat == "collective":
			var alg, dtype, links string
			var seq, n int64
			if !e.Arg("algorithm", &alg) || !e.Arg("dtype", &dtype) || !e.Arg("links", &links) || !e.Arg("seq", &seq) || !e.Arg("bytes", &n) || n <= 0 {
				t.Errorf("AllReduce without its args: %s", e.Args)
			}
			reduces = append(reduces, e)
		}
		count[[2]any{*e.Pid, name}]++
	}
	for r := range 2 {
		for _, name := range []string{"step", "forward", "loss", "backward", "wait", "optimizer"} {
			if c := count[[2]any{r, name}]; c != steps {
				t.Errorf("rank %d: %d %q slices, want %d", r, c, name, steps)
			}
		}
		if count[[2]any{r, "launch bucket"}] < 2*steps || count[[2]any{r, "backward <layer>"}] < 2*steps {
			t.Errorf("rank %d: %d bucket launches and %d layer backwards for %d steps", r, count[[2]any{r, "launch bucket"}], count[[2]any{r, "backward <layer>"}], steps)
		}
	}
	overlap := 0
	for _, a := range reduces {
		for _, b := range layers {
			if *a.Pid == *b.Pid && a.Start() < b.End() && b.Start() < a.End() {
				overlap++
				break
			}
		}
	}
	t.Logf("%d of %d AllReduces overlap a layer's backward", overlap, len(reduces))
	if overlap == 0 {
		t.Errorf("no AllReduce overlaps a layer's backward on any rank")
	}
}
