//go:build unix

package launcher

import (
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ringtrain/ringtrain/preempt"
)

// TestEnvAndBuildOnce runs a package directory TARGET: every rank gets the torchrun
// environment, all ranks run the same binary (built once, in a temporary directory that is
// gone afterwards), and the arguments after TARGET reach the program untouched.
func TestEnvAndBuildOnce(t *testing.T) {
	t.Parallel()
	code, stdout, stderr := runGorun(t, nil, "--standalone", "--nproc", "3", "--run-id", "job42", rankDir, "env", "--lr", "0.1", "x y")
	if code != 0 {
		t.Fatalf("exit code %d\n%s", code, stderr)
	}
	envs := rankEnvs(t, stdout)
	if len(envs) != 3 {
		t.Fatalf("want 3 ranks, got %d:\n%s", len(envs), stdout)
	}
	token, exe := envs[0]["GORUN_TOKEN"], envs[0]["EXE"]
	if b, err := hex.DecodeString(token); err != nil || len(b) != 32 {
		t.Errorf("GORUN_TOKEN %q is not 32 random bytes in hex", token)
	}
	port, _ := strconv.Atoi(envs[0]["MASTER_PORT"])
	if port <= 0 || port == DefaultMasterPort {
		t.Errorf("--standalone gave MASTER_PORT %q; want a free port", envs[0]["MASTER_PORT"])
	}
	for r := 0; r < 3; r++ {
		want := map[string]string{
			"RANK": strconv.Itoa(r), "LOCAL_RANK": strconv.Itoa(r), "WORLD_SIZE": "3", "LOCAL_WORLD_SIZE": "3",
			"NODE_RANK": "0", "NNODES": "1", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": envs[0]["MASTER_PORT"],
			"GORUN_TOKEN": token, "GORUN_RUN_ID": "job42", "GORUN_RESTART_COUNT": "0", "GORUN_TRANSPORT": "tls", "GORUN_SHM": "on",
			"EXE": exe, "ARGS": "--lr|0.1|x y",
		}
		for k, v := range want {
			if got := envs[r][k]; got != v {
				t.Errorf("rank %d: %s=%q, want %q", r, k, got, v)
			}
		}
		if envs[r]["GOMAXPROCS"] != envs[r]["RUNTIME_GOMAXPROCS"] {
			t.Errorf("rank %d: GOMAXPROCS=%s but its runtime uses %s", r, envs[r]["GOMAXPROCS"], envs[r]["RUNTIME_GOMAXPROCS"])
		}
	}
	if !strings.Contains(exe, "gorun-build-") {
		t.Errorf("ranks ran %s, want a binary built by gorun", exe)
	}
	if _, err := os.Stat(exe); !os.IsNotExist(err) {
		t.Errorf("built binary %s still exists after gorun ended (err %v)", exe, err)
	}
	if n := strings.Count(stderr, "gorun: building "); n != 1 {
		t.Errorf("built %d times, want once:\n%s", n, stderr)
	}
}

// TestGOMAXPROCSRules checks the order: --threads-per-rank, an inherited GOMAXPROCS, the
// node's cores shared among its ranks (at least 1).
func TestGOMAXPROCSRules(t *testing.T) {
	t.Parallel()
	cores := rankGOMAXPROCSReference(t)
	cases := []struct {
		name  string
		env   []string
		flags []string
		nproc int
		want  int
	}{
		{"cores for one rank", nil, nil, 1, cores},
		{"cores shared by 4", nil, nil, 4, max(1, cores/4)},
		{"cores shared by 2", nil, nil, 2, max(1, cores/2)},
		{"inherited", []string{"GOMAXPROCS=5"}, nil, 2, 5},
		{"flag", nil, []string{"--threads-per-rank", "3"}, 2, 3},
		{"flag beats inherited", []string{"GOMAXPROCS=5"}, []string{"--threads-per-rank", "7"}, 1, 7},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			args := append([]string{"--standalone", "--nproc", strconv.Itoa(tc.nproc)}, tc.flags...)
			code, stdout, stderr := runGorun(t, cleanEnv(tc.env...), append(args, rankBin, "env")...)
			if code != 0 {
				t.Fatalf("exit %d: %s", code, stderr)
			}
			envs := rankEnvs(t, stdout)
			for r := 0; r < tc.nproc; r++ {
				if got := envs[r]["GOMAXPROCS"]; got != strconv.Itoa(tc.want) {
					t.Errorf("rank %d GOMAXPROCS=%s, want %d", r, got, tc.want)
				}
				if got := envs[r]["RUNTIME_GOMAXPROCS"]; got != strconv.Itoa(tc.want) {
					t.Errorf("rank %d runtime GOMAXPROCS=%s, want %d", r, got, tc.want)
				}
			}
		})
	}
}

// TestTokenSources: --token, --token-file and GORUN_TOKEN reach the ranks; without any, each
// job gets its own fresh secret.
func TestTokenSources(t *testing.T) {
	t.Parallel()
	tokenOf := func(t *testing.T, env []string, flags ...string) string {
		code, stdout, stderr := runGorun(t, env, append(append([]string{"--standalone"}, flags...), rankBin, "env")...)
		if code != 0 {
			t.Fatalf("exit %d: %s", code, stderr)
		}
		return rankEnvs(t, stdout)[0]["GORUN_TOKEN"]
	}
	cases := []struct {
		name  string
		env   []string
		flags []string
		want  string
	}{
		{"flag", nil, []string{"--token", "flag-secret-0123456789"}, "flag-secret-0123456789"},
		{"file", nil, []string{"--token-file", writeToken(t, "file-secret-0123456789")}, "file-secret-0123456789"},
		{"env", cleanEnv("GORUN_TOKEN=env-secret-0123456789"), nil, "env-secret-0123456789"},
		{"flag beats env", cleanEnv("GORUN_TOKEN=env-secret-0123456789"), []string{"--token", "flag-secret-0123456789"}, "flag-secret-0123456789"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if got := tokenOf(t, tc.env, tc.flags...); got != tc.want {
				t.Errorf("token %q, want %q", got, tc.want)
			}
		})
	}
	t.Run("fresh", func(t *testing.T) {
		t.Parallel()
		a, b := tokenOf(t, nil), tokenOf(t, nil)
		if a == b || len(a) != 64 {
			t.Errorf("generated tokens %q and %q: want two different 64-digit secrets", a, b)
		}
	})
}

// TestOutputWholeLines has 4 ranks write long lines concurrently to stdout and stderr in
// small pieces; every line must come out whole, with its rank's prefix, and --log-dir must
// hold the same lines unprefixed.
func TestOutputWholeLines(t *testing.T) {
	t.Parallel()
	const nLines, length = 12, 70000 // lines longer than a pipe's buffer
	logDir := filepath.Join(t.TempDir(), "logs")
	code, stdout, stderr := runGorun(t, nil, "--standalone", "--nproc", "4", "--log-dir", logDir,
		rankBin, "lines", strconv.Itoa(nLines), strconv.Itoa(length))
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	check := func(name, text string, prefixed bool, ranks []int) {
		t.Helper()
		seen := map[string]int{}
		for _, line := range strings.Split(strings.TrimSuffix(text, "\n"), "\n") {
			if strings.HasPrefix(line, "gorun: ") {
				continue
			}
			rank := ranks[0]
			if prefixed {
				m := regexp.MustCompile(`^\[(\d+)\] `).FindStringSubmatch(line)
				if m == nil {
					t.Fatalf("%s: line without prefix: %.80q", name, line)
				}
				rank, _ = strconv.Atoi(m[1])
				line = line[len(m[0]):]
			}
			if strings.HasPrefix(line, "tail-without-newline") {
				if line != fmt.Sprintf("tail-without-newline r%d", rank) {
					t.Errorf("%s: bad last line %q", name, line)
				}
				seen[line]++
				continue
			}
			var r, i int
			if _, err := fmt.Sscanf(line, "r%d:%d:", &r, &i); err != nil || r != rank || line != Line(r, i, length) {
				t.Fatalf("%s: corrupted or interleaved line under prefix %d: %.100q... (%d bytes)", name, rank, line, len(line))
			}
			seen[line]++
		}
		for _, r := range ranks {
			for i := 0; i < nLines; i++ {
				want := 1
				if name == "log" {
					want = 2 // stdout and stderr copies
				}
				if got := seen[Line(r, i, length)]; got != want {
					t.Fatalf("%s: line %d of rank %d seen %d times, want %d", name, i, r, got, want)
				}
			}
		}
	}
	check("stdout", stdout, true, []int{0, 1, 2, 3})
	check("stderr", stderr, true, []int{0, 1, 2, 3})
	for r := 0; r < 4; r++ {
		b, err := os.ReadFile(filepath.Join(logDir, fmt.Sprintf("rank-%d.log", r)))
		if err != nil {
			t.Fatal(err)
		}
		check("log", string(b), false, []int{r})
		// stdout and stderr are copied independently: the last stdout line need not be last.
		if !strings.Contains(string(b), fmt.Sprintf("\ntail-without-newline r%d\n", r)) {
			t.Errorf("rank %d log lacks its last line, completed with a newline", r)
		}
	}
}

// TestExitCodes: 0 when all ranks succeed, 1 when any fails.
func TestExitCodes(t *testing.T) {
	t.Parallel()
	if code, _, stderr := runGorun(t, nil, "--standalone", "--nproc", "3", rankBin, "exit", "0"); code != 0 {
		t.Errorf("all ranks exit 0: gorun exit %d\n%s", code, stderr)
	}
	code, _, stderr := runGorun(t, nil, "--standalone", "--nproc", "2", rankBin, "exit", "9")
	if code != 1 || !strings.Contains(stderr, "exit code 9") {
		t.Errorf("ranks exit 9: gorun exit %d, want 1 with the rank's code in the summary\n%s", code, stderr)
	}
}

// TestFailingRankStopsOthers: rank 2 fails; the others (waiting forever) are stopped, gorun
// exits 1 promptly and prints which rank failed, how, and its last 10 stderr lines.
func TestFailingRankStopsOthers(t *testing.T) {
	t.Parallel()
	marker := newMarker(t)
	j := startGorun(t, marker, nil, "--standalone", "--nproc", "4", "--grace", "2s", rankBin, "fail", "2", "3")
	code, took := j.wait(30 * time.Second)
	stderr := j.stderr.String()
	if code != 1 {
		t.Fatalf("exit %d, want 1\n%s", code, stderr)
	}
	if took > 2*time.Second+5*time.Second {
		t.Errorf("gorun took %v to stop after a failure (grace 2s)", took)
	}
	for _, want := range []string{
		"first failure: rank 2 (local rank 2",
		"exit code 3",
		"[2] stderr line 14 of failing rank 2",
		"[2] stderr line 5 of failing rank 2",
		"killed by SIGTERM (sent by gorun)",
	} {
		if !strings.Contains(stderr, want) {
			t.Errorf("summary lacks %q:\n%s", want, stderr)
		}
	}
	summary := stderr[strings.Index(stderr, "====="):]
	if strings.Contains(summary, "stderr line 4 of") {
		t.Errorf("summary holds more than the last 10 stderr lines:\n%s", summary)
	}
	assertNoProcesses(t, marker)
}

// TestIgnoreTermKilledAfterGrace: ranks that ignore SIGTERM get SIGKILL after --grace. Rank 0
// is killed by the test once every rank ignores SIGTERM: a failure by signal.
func TestIgnoreTermKilledAfterGrace(t *testing.T) {
	t.Parallel()
	marker := newMarker(t)
	j := startGorun(t, marker, nil, "--standalone", "--nproc", "3", "--grace", "1s", rankBin, "ignoreterm")
	j.waitFor(30*time.Second, "[0] ignoring SIGTERM", "[1] ignoring SIGTERM", "[2] ignoring SIGTERM")
	out := j.stdout.String()
	var pid0 int
	fmt.Sscanf(out[strings.Index(out, "[0] ignoring SIGTERM pid="):], "[0] ignoring SIGTERM pid=%d", &pid0)
	killed := time.Now()
	syscall.Kill(pid0, syscall.SIGKILL)
	code, _ := j.wait(30 * time.Second)
	took := time.Since(killed)
	stderr := j.stderr.String()
	if code != 1 {
		t.Fatalf("exit %d, want 1\n%s", code, stderr)
	}
	if took < time.Second {
		t.Errorf("gorun ended %v after the failure, before the 1s grace period was over", took)
	}
	if took > time.Second+5*time.Second {
		t.Errorf("gorun took %v after the failure (grace 1s)", took)
	}
	if !strings.Contains(stderr, "first failure: rank 0 (local rank 0, pid "+strconv.Itoa(pid0)+"): killed by SIGKILL after") {
		t.Errorf("summary does not name rank 0 killed by SIGKILL:\n%s", stderr)
	}
	if n := strings.Count(stderr, "killed by SIGKILL (sent by gorun)"); n != 2 {
		t.Errorf("want ranks 1 and 2 killed by SIGKILL from gorun, found %d in:\n%s", n, stderr)
	}
	if !strings.Contains(stderr, "still running 1s after SIGTERM; sending SIGKILL") {
		t.Errorf("no word of the escalation to SIGKILL:\n%s", stderr)
	}
	assertNoProcesses(t, marker)
}

// TestSignalForwarding: SIGINT and SIGTERM to gorun reach every rank (which trap them), and
// gorun exits 128+N.
func TestSignalForwarding(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		sig  syscall.Signal
		name string
	}{{syscall.SIGINT, "interrupt"}, {syscall.SIGTERM, "terminated"}} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			marker := newMarker(t)
			j := startGorun(t, marker, nil, "--standalone", "--nproc", "3", rankBin, "trap")
			j.waitFor(30*time.Second, "[0] ready", "[1] ready", "[2] ready")
			j.cmd.Process.Signal(tc.sig)
			code, _ := j.wait(30 * time.Second)
			if code != 128+int(tc.sig) {
				t.Errorf("exit %d, want %d\n%s", code, 128+int(tc.sig), j.stderr)
			}
			for r := 0; r < 3; r++ {
				if want := fmt.Sprintf("[%d] got %s", r, tc.name); !strings.Contains(j.stdout.String(), want) {
					t.Errorf("no %q in output:\n%s", want, j.stdout)
				}
			}
			assertNoProcesses(t, marker)
		})
	}
}

// TestNoOrphans: what ranks start (grandchildren) dies with them, whether gorun is stopped by
// a signal or a rank fails; and if gorun itself is SIGKILLed, its ranks die too (Pdeathsig).
func TestNoOrphans(t *testing.T) {
	t.Parallel()
	t.Run("signal", func(t *testing.T) {
		t.Parallel()
		marker := newMarker(t)
		j := startGorun(t, marker, nil, "--standalone", "--nproc", "2", "--grace", "1s", rankBin, "spawn")
		j.waitFor(30*time.Second, "[0] pids", "[1] pids")
		if n := len(markedPids(marker)); n != 5 && runtimeLinux() {
			t.Errorf("want 5 processes (gorun, 2 ranks, 2 grandchildren), found %d", n)
		}
		j.cmd.Process.Signal(syscall.SIGTERM)
		j.wait(30 * time.Second)
		assertNoProcesses(t, marker)
	})
	t.Run("rank-exits", func(t *testing.T) {
		t.Parallel()
		// Rank 1 starts a grandchild and lives on; rank 0 fails: both ranks' groups go.
		marker := newMarker(t)
		j := startGorun(t, marker, nil, "--standalone", "--nproc", "2", rankBin, "spawn")
		j.waitFor(30*time.Second, "[0] pids", "[1] pids")
		pids := strings.Fields(j.stdout.String()[strings.Index(j.stdout.String(), "[0] pids")+9:])
		rank0, _ := strconv.Atoi(pids[0])
		syscall.Kill(rank0, syscall.SIGKILL) // rank 0 alone dies; its grandchild is left behind
		code, _ := j.wait(30 * time.Second)
		if code != 1 || !strings.Contains(j.stderr.String(), "killed by SIGKILL") {
			t.Errorf("exit %d, want 1 with rank 0 killed by SIGKILL in the summary\n%s", code, j.stderr)
		}
		assertNoProcesses(t, marker)
	})
	t.Run("gorun-killed", func(t *testing.T) {
		if !runtimeLinux() {
			t.Skip("Pdeathsig is Linux only")
		}
		t.Parallel()
		marker := newMarker(t)
		j := startGorun(t, marker, nil, "--standalone", "--nproc", "3", rankBin, "trap")
		j.waitFor(30*time.Second, "[0] ready", "[1] ready", "[2] ready")
		j.cmd.Process.Kill()
		j.wait(10 * time.Second)
		assertNoProcesses(t, marker)
	})
}

// TestMaxRestartsGivesUp: rank 1 always fails; the group is restarted twice with
// GORUN_RESTART_COUNT 1 and 2, then gorun gives up.
func TestMaxRestartsGivesUp(t *testing.T) {
	t.Parallel()
	code, stdout, stderr := runGorun(t, nil, "--standalone", "--nproc", "2", "--grace", "1s", "--max-restarts", "2",
		rankBin, "restart", "1", "99", "5")
	if code != 1 {
		t.Fatalf("exit %d, want 1\n%s", code, stderr)
	}
	for c := 0; c <= 2; c++ {
		for r := 0; r < 2; r++ {
			if want := fmt.Sprintf("[%d] start rank=%d restart=%d\n", r, r, c); strings.Count(stdout, want) != 1 {
				t.Errorf("want exactly one %q in:\n%s", want, stdout)
			}
		}
	}
	if strings.Contains(stdout, "restart=3") {
		t.Errorf("restarted more than --max-restarts 2:\n%s", stdout)
	}
	if !strings.Contains(stderr, "no restarts are left (--max-restarts 2)") {
		t.Errorf("summary does not say it gave up:\n%s", stderr)
	}
}

// TestMaxRestartsRecovers: rank 1 fails only in the first attempt; the restarted group
// succeeds and gorun exits 0.
func TestMaxRestartsRecovers(t *testing.T) {
	t.Parallel()
	code, stdout, stderr := runGorun(t, nil, "--standalone", "--nproc", "2", "--grace", "1s", "--max-restarts", "3",
		rankBin, "restart", "1", "1", "5")
	if code != 0 {
		t.Fatalf("exit %d, want 0\n%s", code, stderr)
	}
	for _, want := range []string{"[0] done rank=0 restart=1", "[1] done rank=1 restart=1", "[1] start rank=1 restart=0"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("no %q in:\n%s", want, stdout)
		}
	}
	if strings.Contains(stdout, "restart=2") {
		t.Errorf("restarted after success:\n%s", stdout)
	}
}

// TestBuildError: a .go TARGET that does not compile: the compiler's message verbatim, exit
// 1, no rank started.
func TestBuildError(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	src := filepath.Join(dir, "broken.go")
	os.WriteFile(src, []byte("package main\n\nfunc main() {\n\tprintln(\"started\")\n\tnosuchthing()\n}\n"), 0o644)
	code, stdout, stderr := runGorun(t, nil, "--standalone", "--nproc", "2", src)
	if code != 1 {
		t.Errorf("exit %d, want 1", code)
	}
	if !regexp.MustCompile(`broken\.go:5:\d+: undefined: nosuchthing`).MatchString(stderr) {
		t.Errorf("compiler error not shown:\n%s", stderr)
	}
	if strings.Contains(stdout+stderr, "[0]") || strings.Contains(stdout+stderr, "[1]") {
		t.Errorf("a rank ran despite the build error:\n%s\n%s", stdout, stderr)
	}
}

// TestGoFileTarget: a single .go file outside any module builds and runs.
func TestGoFileTarget(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	src := filepath.Join(dir, "hello.go")
	os.WriteFile(src, []byte(`package main

import (
	"fmt"
	"os"
)

func main() { fmt.Println("hello from", os.Getenv("RANK"), os.Args[1:]) }
`), 0o644)
	code, stdout, stderr := runGorun(t, nil, "--standalone", "--nproc", "2", src, "--flag", "v")
	if code != 0 {
		t.Fatalf("exit %d\n%s", code, stderr)
	}
	for r := 0; r < 2; r++ {
		if want := fmt.Sprintf("[%d] hello from %d [--flag v]", r, r); !strings.Contains(stdout, want) {
			t.Errorf("no %q in:\n%s", want, stdout)
		}
	}
}

// TestUsageErrors: bad flags, a missing or unusable TARGET and contradictory settings exit 2
// with a message naming the problem.
func TestUsageErrors(t *testing.T) {
	t.Parallel()
	notExec := filepath.Join(t.TempDir(), "data.txt")
	os.WriteFile(notExec, []byte("x"), 0o644)
	cases := []struct {
		args []string
		env  []string
		want string
	}{
		{nil, nil, "missing TARGET"},
		{[]string{"--nproc", "2"}, nil, "missing TARGET"},
		{[]string{"--nproc", "two", rankBin}, nil, `invalid value "two" for flag --nproc`},
		{[]string{"--nproc", "0", rankBin}, nil, "--nproc must be at least 1"},
		{[]string{"--bogus", rankBin}, nil, "unknown flag --bogus"},
		{[]string{"--grace", "5", rankBin}, nil, "--grace: not a duration"},
		{[]string{"--master-port", "70000", rankBin}, nil, "--master-port must be in [1, 65535]"},
		{[]string{"--nnodes", "2", "--node-rank", "2", "--master-addr", "h", "--token", "t", rankBin}, nil, "--node-rank must be in [0, 2)"},
		{[]string{"--nnodes", "2", "--master-addr", "h", rankBin}, nil, "needs a token shared by all nodes"},
		{[]string{"--nnodes", "2", "--token", "t", rankBin}, nil, "needs --master-addr"},
		{[]string{"--standalone", "--master-port", "1234", rankBin}, nil, "drop --master-port"},
		{[]string{"--token-file", "/nonexistent/tok", rankBin}, nil, "--token-file: open /nonexistent/tok"},
		{[]string{"--transport", "carrier-pigeon", rankBin}, nil, "--transport must be one of"},
		{[]string{"nonexistent.go"}, nil, "TARGET nonexistent.go: no such file or directory"},
		{[]string{"./no/such/dir"}, nil, "TARGET ./no/such/dir: no such file or directory"},
		{[]string{"no-such-command-xyz"}, nil, "TARGET no-such-command-xyz: no such file, directory or command in PATH"},
		{[]string{notExec}, nil, "is neither a .go file, a package directory nor an executable"},
		{[]string{rankBin}, []string{"SLURM_JOB_NODELIST=node[3-1]", "SLURM_NNODES=1"}, "SLURM_JOB_NODELIST"},
		{[]string{rankBin}, []string{"PET_NNODES=1:4"}, "needs --master-addr"}, // elastic: a range is a job of 1 to 4 nodes
	}
	for _, tc := range cases {
		t.Run(tc.want, func(t *testing.T) {
			t.Parallel()
			code, stdout, stderr := runGorun(t, cleanEnv(tc.env...), tc.args...)
			if code != 2 || !strings.Contains(stderr, tc.want) || stdout != "" {
				t.Errorf("gorun %q: exit %d, stderr %q; want exit 2 and %q", tc.args, code, stderr, tc.want)
			}
		})
	}
	code, stdout, _ := runGorun(t, nil, "--help")
	if code != 0 || !strings.Contains(stdout, "--nproc N, --nproc-per-node N") {
		t.Errorf("--help: exit %d, output %q", code, stdout)
	}
}

func runtimeLinux() bool { return runtime.GOOS == "linux" }

// TestPreemptExitCode: SIGTERM to gorun, every rank exits preempt.ExitCode (it saved a
// checkpoint): gorun exits with that code and says so. If one rank dies of the signal
// instead, the job is only interrupted (143). With two nodes, SIGTERM to node 0 stops the
// ranks of both; all save, and both gorun exit preempt.ExitCode.
func TestPreemptExitCode(t *testing.T) {
	t.Parallel()
	t.Run("all-saved", func(t *testing.T) {
		t.Parallel()
		marker := newMarker(t)
		j := startGorun(t, marker, nil, "--standalone", "--nproc", "2", rankBin, "preempt")
		j.waitFor(30*time.Second, "[0] ready", "[1] ready")
		j.cmd.Process.Signal(syscall.SIGTERM)
		if code, _ := j.wait(30 * time.Second); code != preempt.ExitCode || !strings.Contains(j.stderr.String(), "gorun: preempted") {
			t.Errorf("exit %d, want %d with a preemption message\n%s", code, preempt.ExitCode, j.stderr)
		}
		assertNoProcesses(t, marker)
	})
	t.Run("one-killed", func(t *testing.T) {
		t.Parallel()
		marker := newMarker(t)
		j := startGorun(t, marker, nil, "--standalone", "--nproc", "2", rankBin, "preempt", "1")
		j.waitFor(30*time.Second, "[0] ready", "[1] ready")
		j.cmd.Process.Signal(syscall.SIGTERM)
		if code, _ := j.wait(30 * time.Second); code != 143 {
			t.Errorf("exit %d, want 143 (rank 1 saved nothing)\n%s", code, j.stderr)
		}
		assertNoProcesses(t, marker)
	})
	t.Run("two-nodes", func(t *testing.T) {
		t.Parallel()
		marker := newMarker(t)
		jobs := startNodes(t, marker, 2, []string{"--nproc", "1", "--grace", "5s"}, nil, rankBin, "preempt")
		jobs[0].waitFor(30*time.Second, "[0] ready")
		jobs[1].waitFor(30*time.Second, "[1] ready")
		jobs[0].cmd.Process.Signal(syscall.SIGTERM)
		codes := waitAll(t, jobs, 30*time.Second)
		if codes[0] != preempt.ExitCode || codes[1] != preempt.ExitCode {
			t.Errorf("exit codes %v, want %d on both nodes\n%s", codes, preempt.ExitCode, dump(jobs))
		}
		if !strings.Contains(jobs[1].stdout.String(), "[1] saving") {
			t.Errorf("node 1's rank did not get SIGTERM:\n%s", dump(jobs))
		}
		assertNoProcesses(t, marker)
	})
}
