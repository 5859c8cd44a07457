//go:build unix

package launcher

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// The end-to-end tests run the real gorun binary on the real rank program
// (testdata/rankprog), both built once here. Under -race, gorun itself is built with the race
// detector too, so that its goroutines are checked while they supervise real processes.
var (
	gorunBin string
	rankBin  string
	rankDir  string // the rank program's package directory, a TARGET that gorun builds
)

func TestMain(m *testing.M) {
	os.Exit(testMain(m))
}

func testMain(m *testing.M) int {
	dir, err := os.MkdirTemp("", "gorun-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	gorunBin = filepath.Join(dir, "gorun")
	rankBin = filepath.Join(dir, "rankprog")
	rankDir, _ = filepath.Abs(filepath.Join("testdata", "rankprog"))
	args := []string{"build", "-o", gorunBin}
	if raceEnabled {
		args = append(args, "-race")
	}
	for _, b := range [][]string{append(args, "../cmd/gorun"), {"build", "-o", rankBin, "./testdata/rankprog"}} {
		cmd := exec.Command("go", b...)
		if out, err := cmd.CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "go %s: %v\n%s", strings.Join(b, " "), err, out)
			return 1
		}
	}
	return m.Run()
}

// syncBuffer is a bytes.Buffer safe for a writer process and a reading test.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// job is one running gorun process.
type job struct {
	t      *testing.T
	cmd    *exec.Cmd
	stdout *syncBuffer
	stderr *syncBuffer
	done   chan struct{}
	start  time.Time
	code   int
}

// cleanEnv is the test's environment without anything gorun would read as a setting, plus
// extra entries.
func cleanEnv(extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		switch {
		case strings.HasPrefix(k, "PET_"), strings.HasPrefix(k, "SLURM_"), strings.HasPrefix(k, "GORUN_"):
			continue
		case k == "GOMAXPROCS" || k == "RANK" || k == "WORLD_SIZE" || k == "NNODES" || k == "NODE_RANK" ||
			k == "MASTER_ADDR" || k == "MASTER_PORT" || k == "LOCAL_RANK":
			continue
		}
		env = append(env, kv)
	}
	return append(env, extra...)
}

// newMarker returns a value unique to one test, put in the environment of gorun (and so of
// every rank and everything they start) to find the job's processes in /proc.
func newMarker(t *testing.T) string {
	b := make([]byte, 8)
	rand.Read(b)
	return "GORUN_TEST_MARKER=" + strings.NewReplacer("/", "_", " ", "_").Replace(t.Name()) + "-" + hex.EncodeToString(b)
}

// startGorun starts gorun with args and env (cleanEnv() if nil), marked with marker.
func startGorun(t *testing.T, marker string, env []string, args ...string) *job {
	t.Helper()
	if env == nil {
		env = cleanEnv()
	}
	j := &job{t: t, stdout: &syncBuffer{}, stderr: &syncBuffer{}, done: make(chan struct{})}
	j.cmd = exec.Command(gorunBin, args...)
	j.cmd.Env = append(env, marker)
	j.cmd.Stdout, j.cmd.Stderr = j.stdout, j.stderr
	j.start = time.Now()
	if err := j.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		j.cmd.Wait()
		j.code = j.cmd.ProcessState.ExitCode()
		if ws, ok := j.cmd.ProcessState.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			j.code = 128 + int(ws.Signal())
		}
		close(j.done)
	}()
	t.Cleanup(func() {
		select {
		case <-j.done:
		default:
			j.cmd.Process.Kill()
			<-j.done
		}
		killMarked(marker)
	})
	return j
}

// wait waits for gorun's exit (failing the test after timeout) and returns its exit code and
// how long it ran.
func (j *job) wait(timeout time.Duration) (int, time.Duration) {
	j.t.Helper()
	select {
	case <-j.done:
		return j.code, time.Since(j.start)
	case <-time.After(timeout):
		j.cmd.Process.Signal(syscall.SIGQUIT) // a goroutine dump in stderr, to see where it hung
		time.Sleep(500 * time.Millisecond)
		j.t.Fatalf("gorun did not exit within %v\nstdout:\n%s\nstderr:\n%s", timeout, j.stdout, j.stderr)
		return 0, 0
	}
}

// waitFor waits until gorun's stdout holds all of lines.
func (j *job) waitFor(timeout time.Duration, lines ...string) {
	j.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		out := j.stdout.String()
		missing := ""
		for _, l := range lines {
			if !strings.Contains(out, l) {
				missing = l
				break
			}
		}
		if missing == "" {
			return
		}
		if time.Now().After(deadline) {
			j.t.Fatalf("no %q in gorun's output within %v\nstdout:\n%s\nstderr:\n%s", missing, timeout, out, j.stderr)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// runGorun runs gorun to completion.
func runGorun(t *testing.T, env []string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	marker := newMarker(t)
	j := startGorun(t, marker, env, args...)
	code, _ = j.wait(60 * time.Second)
	assertNoProcesses(t, marker)
	return code, j.stdout.String(), j.stderr.String()
}

// markedPids lists the processes whose environment holds marker.
func markedPids(marker string) []int {
	if runtime.GOOS != "linux" {
		return nil
	}
	var pids []int
	entries, _ := os.ReadDir("/proc")
	needle := []byte(marker + "\x00")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		env, err := os.ReadFile(filepath.Join("/proc", e.Name(), "environ"))
		if err != nil {
			continue // gone, or a zombie
		}
		if bytes.Contains(env, needle) {
			pids = append(pids, pid)
		}
	}
	return pids
}

func killMarked(marker string) {
	for _, pid := range markedPids(marker) {
		syscall.Kill(pid, syscall.SIGKILL)
	}
}

// assertNoProcesses checks that no process of the job is left (allowing a moment for the
// kernel to finish killing them).
func assertNoProcesses(t *testing.T, marker string) {
	t.Helper()
	if runtime.GOOS != "linux" {
		return
	}
	deadline := time.Now().Add(3 * time.Second)
	for {
		pids := markedPids(marker)
		if len(pids) == 0 {
			return
		}
		if time.Now().After(deadline) {
			var desc []string
			for _, pid := range pids {
				cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
				desc = append(desc, fmt.Sprintf("%d %q", pid, bytes.ReplaceAll(cmdline, []byte{0}, []byte{' '})))
			}
			killMarked(marker)
			t.Fatalf("processes of the job survived gorun: %s", strings.Join(desc, "; "))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// rankEnvs parses the "env" mode's output into one map per rank, checking the prefix.
func rankEnvs(t *testing.T, stdout string) map[int]map[string]string {
	t.Helper()
	out := map[int]map[string]string{}
	sc := bufio.NewScanner(strings.NewReader(stdout))
	for sc.Scan() {
		line := sc.Text()
		var rank int
		var rest string
		if !strings.HasPrefix(line, "[") {
			t.Fatalf("line without a rank prefix: %q", line)
		}
		end := strings.Index(line, "] ")
		if end < 0 {
			t.Fatalf("line without a rank prefix: %q", line)
		}
		rank, err := strconv.Atoi(line[1:end])
		if err != nil {
			t.Fatalf("bad prefix in %q", line)
		}
		rest = line[end+2:]
		k, v, ok := strings.Cut(rest, "=")
		if !ok {
			continue
		}
		if out[rank] == nil {
			out[rank] = map[string]string{}
		}
		out[rank][k] = v
		if k == "RANK" && v != strconv.Itoa(rank) {
			t.Errorf("line %q: prefix says rank %d, RANK=%s", line, rank, v)
		}
	}
	return out
}

// freeTestPort returns a port free for TCP and UDP on 127.0.0.1.
func freeTestPort(t *testing.T) int {
	t.Helper()
	p, err := freePort()
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func writeToken(t *testing.T, tok string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(p, []byte(tok+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// rankGOMAXPROCSReference is the GOMAXPROCS a Go program gets on this machine when the
// variable is unset: asked of a fresh child process, not of this test's runtime (which -cpu
// or GOMAXPROCS may have changed).
func rankGOMAXPROCSReference(t *testing.T) int {
	t.Helper()
	cmd := exec.Command(rankBin, "procs")
	cmd.Env = cleanEnv()
	out, err := cmd.Output()
	if err != nil {
		t.Fatal(err)
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(out)))
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// contextT is a context that ends with the test's deadline (or in a minute).
func contextT(t *testing.T) context.Context {
	d, ok := t.Deadline()
	if !ok {
		d = time.Now().Add(time.Minute)
	}
	ctx, cancel := context.WithDeadline(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}
