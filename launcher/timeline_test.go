package launcher

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ringtrain/ringtrain/jobenv"
	"github.com/ringtrain/ringtrain/timeline"
)

// TestTimelineFlag: --timeline, else GORUN_TIMELINE, names the job's trace, and every rank
// gets it in its environment.
func TestTimelineFlag(t *testing.T) {
	c, err := ParseArgs([]string{"--timeline", "t.json", "prog"}, envMap("GORUN_TIMELINE=env.json"))
	if err != nil || c.Timeline != "t.json" {
		t.Fatalf("--timeline t.json: %v, %q", err, c.Timeline)
	}
	c, err = ParseArgs([]string{"prog"}, envMap("GORUN_TIMELINE=env.json"))
	if err != nil || c.Timeline != "env.json" {
		t.Fatalf("GORUN_TIMELINE=env.json: %v, %q", err, c.Timeline)
	}
	cfg := Config{NProc: 2, Timeline: "/x/t.json"}
	g := &localGroup{cfg: &cfg, world: world{nnodes: 1}}
	if v := envValue(g.rankEnv(1, 0), jobenv.Timeline); v != "/x/t.json" {
		t.Fatalf("rank environment has %s=%q", jobenv.Timeline, v)
	}
	cfg.Timeline = ""
	for _, kv := range g.rankEnv(1, 0) {
		if strings.HasPrefix(kv, jobenv.Timeline+"=") {
			t.Fatalf("without --timeline the ranks get %s", kv)
		}
	}
}

// TestTimelineBadDirectory: a --timeline in a directory that does not exist is refused
// before anything starts, naming the flag.
func TestTimelineBadDirectory(t *testing.T) {
	prog := filepath.Join(t.TempDir(), "prog.sh")
	if err := os.WriteFile(prog, []byte("#!/bin/sh\nexit 0\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	err := Run(context.Background(), &Config{Target: prog, Timeline: "/nonexistent/dir/t.json"})
	var ue *UsageError
	if !errors.As(err, &ue) || !strings.Contains(err.Error(), "--timeline") {
		t.Fatalf("Run with --timeline in a missing directory: %v", err)
	}
}

// TestTimelineNoRankWrote: a program that records nothing leaves no merged file, and gorun
// says why; stale rank files of an earlier job are removed first.
func TestTimelineNoRankWrote(t *testing.T) {
	dir := t.TempDir()
	prog := filepath.Join(dir, "prog.sh")
	if err := os.WriteFile(prog, []byte("#!/bin/sh\nexit 0\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, "t.json")
	stale := filepath.Join(dir, "t.rank1.json")
	if err := os.WriteFile(stale, []byte("{}"), 0o644); err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	if err := Run(context.Background(), &Config{Target: prog, NProc: 2, Timeline: file, Stderr: &stderr}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(stale); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the stale %s is still there: %v", stale, err)
	}
	if _, err := os.Stat(file); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a merged file was written from nothing: %v", err)
	}
	if !strings.Contains(stderr.String(), "no rank wrote a timeline") {
		t.Errorf("gorun did not say that no rank wrote a timeline:\n%s", stderr.String())
	}
}

// TestTimelineMergeOnOtherNode: node 1 merges its own ranks (2 and 3 with --nproc 2) into
// the file with its node number inserted, leaving FILE to node 0.
func TestTimelineMergeOnOtherNode(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "trace.json")
	for _, rank := range []int{2, 3} {
		r := timeline.New(timeline.Config{Path: timeline.RankPath(file, rank), Rank: rank})
		r.Complete(r.Thread("collective world"), "AllReduce", "collective", 0, 1000)
		if err := r.Close(); err != nil {
			t.Fatal(err)
		}
	}
	var stderr strings.Builder
	r := &runner{cfg: Config{Timeline: file, NProc: 2, NodeRank: 1}, stderr: newLineSink(&stderr),
		group: &localGroup{world: world{nodeRank: 1, nnodes: 2}}}
	r.mergeTimeline()
	out := filepath.Join(dir, "trace.node1.json")
	f, err := os.Open(out)
	if err != nil {
		t.Fatalf("%v\n%s", err, stderr.String())
	}
	defer f.Close()
	tr, err := timeline.Parse(f)
	if err != nil {
		t.Fatal(err)
	}
	pids := map[int]bool{}
	for _, e := range tr.TraceEvents {
		pids[*e.Pid] = true
	}
	if len(pids) != 2 || !pids[2] || !pids[3] {
		t.Fatalf("merged ranks %v, want 2 and 3", pids)
	}
	if _, err := os.Stat(file); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("node 1 wrote node 0's %s", file)
	}
	if !strings.Contains(stderr.String(), "timeline of 2 rank(s) written to "+out) {
		t.Errorf("gorun said:\n%s", stderr.String())
	}
}
