package launcher

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ringtrain/ringtrain/jobenv"
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
