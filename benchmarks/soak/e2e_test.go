//go:build unix

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// The end-to-end tests run real ranks: the gorun binary and this command, both built once,
// a 4-rank job per transport (the short variant of the long soak), a run whose checker must
// catch a corrupted result, and one chaos seed per transport.

var (
	buildOnce sync.Once
	buildErr  error
	gorunBin  string
	soakBin   string
)

func binaries(t *testing.T) (gorun, soak string) {
	t.Helper()
	if testing.Short() {
		t.Skip("starts real ranks through gorun; skipped with -short")
	}
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "soak-test-")
		if err != nil {
			buildErr = err
			return
		}
		gorunBin, soakBin = filepath.Join(dir, "gorun"), filepath.Join(dir, "soak")
		for _, b := range [][]string{{"build", "-o", gorunBin, "../../cmd/gorun"}, {"build", "-o", soakBin, "."}} {
			if out, err := exec.Command("go", b...).CombinedOutput(); err != nil {
				buildErr = fmt.Errorf("go %s: %v\n%s", strings.Join(b, " "), err, out)
				return
			}
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return gorunBin, soakBin
}

func TestMain(m *testing.M) {
	code := m.Run()
	if gorunBin != "" {
		os.RemoveAll(filepath.Dir(gorunBin))
	}
	os.Exit(code)
}

// gorunSoak runs a job and returns gorun's exit code and output.
func gorunSoak(t *testing.T, transport string, timeout time.Duration, soakArgs ...string) (int, string) {
	t.Helper()
	gorun, soak := binaries(t)
	args := append(append(append([]string{"--standalone", "--nproc", "4"}, gorunTransportFlags(transport)...), soak), soakArgs...)
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, gorun, args...)
	cmd.Env = chaosEnv()
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("gorun %s: no exit within %v\n%s", strings.Join(args, " "), timeout, out.String())
	}
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return code, out.String()
}

// rank0Summary finds rank 0's JSON line.
func rank0Summary(t *testing.T, out string) summary {
	t.Helper()
	for _, line := range strings.Split(out, "\n") {
		if rest, ok := strings.CutPrefix(line, "[0] {\"soak\""); ok {
			var s summary
			if err := json.Unmarshal([]byte("{\"soak\""+rest), &s); err != nil {
				t.Fatalf("bad summary %q: %v", line, err)
			}
			return s
		}
	}
	t.Fatalf("no summary line from rank 0:\n%s", out)
	return summary{}
}

// TestSoakOverGorun is CI's short soak: a few hundred random ops on 4 ranks over each
// transport, every result checked.
func TestSoakOverGorun(t *testing.T) {
	for _, tr := range []string{"shm", "tls", "tcp", "quic"} {
		t.Run(tr, func(t *testing.T) {
			if tr == "shm" && runtime.GOOS != "linux" {
				t.Skip("shared memory needs Linux")
			}
			const ops = 300
			start := time.Now()
			code, out := gorunSoak(t, tr, 90*time.Second, "--ops", strconv.Itoa(ops), "--seed", "11", "--max-bytes", "1MiB")
			s := rank0Summary(t, out)
			if code != 0 || s.Soak != "done" || s.Wrong != 0 || s.Errors != 0 || !s.DigestsAgree {
				t.Fatalf("exit %d, summary %+v\n%s", code, s, tail(out, 40))
			}
			if s.Ops != ops || s.Ranks != 4 || s.Transport != tr || len(s.OpsRun) != 4 || s.Bytes <= 0 {
				t.Fatalf("implausible summary %+v", s)
			}
			total := 0
			for _, v := range s.Kinds {
				total += v
			}
			if total != ops || len(s.Kinds) != int(numKinds)+2 || s.Async == 0 || s.SubgroupOps == 0 {
				t.Fatalf("kinds %v (async %d, subgroups %d): want every kind (fp32 and fp16 apart), async and subgroup ops", s.Kinds, s.Async, s.SubgroupOps)
			}
			t.Logf("%s: %d ops, %.1f MiB, 0 wrong, %.1fs (job %v)", tr, s.Ops, float64(s.Bytes)/(1<<20), s.WallS, time.Since(start).Round(time.Millisecond))
		})
	}
}

// TestSoakEveryAlgorithm: a short soak with each AllReduce algorithm forced, over shared
// memory and QUIC (4 ranks; hier and auto on 2 simulated hosts of 2). The long variant:
//
//	for a in ring rd rhd hier oneshot rdoneshot auto; do go run ./cmd/gorun --standalone --nproc 4 --transport shm \
//	    ./benchmarks/soak --ops 3000 --seed 1 --algo $a --sim-hosts 2; done
func TestSoakEveryAlgorithm(t *testing.T) {
	for _, tr := range []string{"shm", "quic"} {
		for _, algo := range []string{"ring", "rd", "rhd", "hier", "oneshot", "rdoneshot", "auto"} {
			t.Run(tr+"/"+algo, func(t *testing.T) {
				if tr == "shm" && runtime.GOOS != "linux" {
					t.Skip("shared memory needs Linux")
				}
				const ops = 120
				code, out := gorunSoak(t, tr, 90*time.Second, "--ops", strconv.Itoa(ops), "--seed", "21", "--max-bytes", "256KiB", "--algo", algo, "--sim-hosts", "2")
				s := rank0Summary(t, out)
				if code != 0 || s.Soak != "done" || s.Wrong != 0 || s.Errors != 0 || !s.DigestsAgree || s.Algo != algo || s.Ops != ops {
					t.Fatalf("exit %d, summary %+v\n%s", code, s, tail(out, 40))
				}
			})
		}
	}
}

// TestSoakFindsCorruption: the checker is not blind. One bit of a world AllReduce's result
// is flipped on every rank after the op; every rank must report it and the job must fail.
func TestSoakFindsCorruption(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("shared memory needs Linux")
	}
	_, ops := makePlan(settings{seed: 5, world: 4, ops: 60, maxBytes: 64 << 10, maxInflight: 4, tags: 3})
	target := -1
	for _, o := range ops {
		if o.kind == kAllReduce && o.group == 0 && o.count > 0 && !o.fp16 {
			target = o.index
			break
		}
	}
	if target < 0 {
		t.Fatal("no fp32 world AllReduce in the plan")
	}
	code, out := gorunSoak(t, "shm", 60*time.Second, "--ops", "60", "--seed", "5", "--max-bytes", "64KiB", "--corrupt-op", strconv.Itoa(target))
	if code == 0 {
		t.Fatalf("gorun exited 0 with a corrupted result\n%s", out)
	}
	wrong := strings.Count(out, fmt.Sprintf("] soak: rank %d: WRONG RESULT", 0)) // rank 0's own report
	if wrong == 0 || !strings.Contains(out, fmt.Sprintf("op #%d allreduce_fp32", target)) {
		t.Fatalf("no WRONG RESULT report for op #%d\n%s", target, out)
	}
}

// TestChaos is CI's short chaos run: one seed per transport, a rank killed with SIGKILL in
// the middle of the soak. Every survivor must fail within the peer timeout naming it, gorun
// must exit non-zero, nothing may be left behind (scripts/chaos.sh runs more seeds).
func TestChaos(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("needs /proc and shared memory")
	}
	gorun, soak := binaries(t)
	c, err := parseChaosFlags([]string{"--gorun", gorun, "--prog", soak, "--seeds", "1", "--transports", "shm,tls,tcp,quic",
		"--peer-timeout", "3s", "--kill-min", "500ms", "--kill-max", "1500ms"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	var out, log bytes.Buffer
	failed, results := runChaos(context.Background(), c, &out, &log)
	t.Logf("%s", out.String())
	if failed > 0 || len(results) != 4 {
		for _, r := range results {
			if !r.OK {
				t.Errorf("%s seed %d: %s", r.Transport, r.Seed, strings.Join(r.Problems, "; "))
			}
		}
		t.Fatalf("%d of %d chaos runs failed\n%s", failed, len(results), log.String())
	}
}
