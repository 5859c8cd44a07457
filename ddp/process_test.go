package ddp

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ringtrain/ringtrain/models"
)

// bins holds gorun and the crashresume test program, built once by TestMain.
var bins struct {
	dir, gorun, prog string
	err              error
}

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "ddp-test-bin-")
	bins.dir, bins.err = dir, err
	bins.gorun = filepath.Join(dir, "gorun")
	bins.prog = filepath.Join(dir, "crashresume")
	code := m.Run()
	if err == nil {
		os.RemoveAll(dir)
	}
	os.Exit(code)
}

// buildBins builds gorun and the test program on first use (only the process tests pay).
func buildBins(t *testing.T) {
	t.Helper()
	if bins.err != nil {
		t.Fatal(bins.err)
	}
	for _, b := range []struct{ out, pkg string }{
		{bins.gorun, "github.com/ringtrain/ringtrain/cmd/gorun"},
		{bins.prog, "./testdata/crashresume"},
	} {
		if _, err := os.Stat(b.out); err == nil {
			continue
		}
		cmd := exec.Command("go", "build", "-o", b.out, b.pkg)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("go build %s: %v\n%s", b.pkg, err, out)
		}
	}
}

// gorun runs the test program through the real launcher and returns its output.
func gorun(t *testing.T, env []string, gorunArgs []string, progArgs ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	args := append([]string{"--standalone", "--grace", "2s"}, gorunArgs...)
	args = append(append(args, bins.prog), progArgs...)
	cmd := exec.CommandContext(ctx, bins.gorun, args...)
	cmd.Env = append(cleanEnv(), env...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	if err != nil {
		t.Fatalf("gorun %v: %v\n%s", args, err, out.String())
	}
	if testing.Verbose() {
		t.Logf("gorun %v:\n%s", args, out.String())
	}
	return out.String()
}

// cleanEnv is this process's environment without any job variables a surrounding
// launcher may have set.
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		switch k {
		case "RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT", "GORUN_TOKEN",
			"GORUN_RESTART_COUNT", "NODE_RANK", "NNODES", "PET_NPROC_PER_NODE", "PET_NNODES", "PET_NODE_RANK",
			"PET_MASTER_ADDR", "PET_MASTER_PORT", "PET_MAX_RESTARTS", "GORUN_RUN_ID", "GORUN_TRANSPORT":
			continue
		}
		env = append(env, kv)
	}
	return env
}

func readParams(t *testing.T, path string) models.Snapshot {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var s models.Snapshot
	if err := s.UnmarshalBinary(b); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return s
}

// TestKillAndResumeThroughGorun runs a 2-rank job through the real launcher twice: once
// straight through, once with rank 1 killing itself (SIGKILL) after a checkpoint, so that
// gorun --max-restarts 1 restarts both ranks, which resume from the checkpoint. The final
// parameters must be bit-identical.
func TestKillAndResumeThroughGorun(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs processes")
	}
	buildBins(t)
	for _, c := range []struct {
		name    string
		crashAt int
		args    []string
	}{
		{"fp32-crash-between-checkpoints", 12, nil},
		{"fp16-ef-crash-right-after-checkpoint", 10, []string{"--fp16"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			tmp := t.TempDir()
			common := append([]string{"--steps", "20", "--every", "5"}, c.args...)
			straight := filepath.Join(tmp, "straight.bin")
			gorun(t, nil, []string{"--nproc", "2"}, append(common, "--dir", filepath.Join(tmp, "a"), "--out", straight)...)

			resumed := filepath.Join(tmp, "resumed.bin")
			out := gorun(t, []string{"RINGTRAIN_TEST_CRASH_AT_STEP=" + fmt.Sprint(c.crashAt), "RINGTRAIN_TEST_CRASH_RANK=1"},
				[]string{"--nproc", "2", "--max-restarts", "1"}, append(common, "--dir", filepath.Join(tmp, "b"), "--out", resumed)...)
			if !strings.Contains(out, "killing itself after step") || !strings.Contains(out, "resumed from") ||
				!strings.Contains(out, "at step 10 ") {
				t.Fatalf("the job did not crash and resume from step 10:\n%s", out)
			}
			a, b := readParams(t, straight), readParams(t, resumed)
			if a.Step != 20 || b.Step != 20 {
				t.Fatalf("final steps %d and %d, want 20", a.Step, b.Step)
			}
			for i := range a.Slices {
				if err := sameBits([][]float32{a.Slices[i].Data}, [][]float32{b.Slices[i].Data}); err != nil {
					t.Fatalf("%s differs between the uninterrupted and the resumed run: %v", a.Slices[i].Name, err)
				}
			}
		})
	}
}
