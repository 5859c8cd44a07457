package multihost

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ringtrain/ringtrain/ddp"
	"github.com/ringtrain/ringtrain/internal/netcluster"
	"github.com/ringtrain/ringtrain/models"
)

// bins are gorun and the test programs, built once by TestMain.
var bins struct {
	dir                                      string
	gorun, train, relay, stranger, collcheck string
	err                                      error
}

func TestMain(m *testing.M) {
	code := func() int {
		if netcluster.Available() != "" {
			return m.Run() // every test skips with the reason; nothing to build
		}
		dir, err := os.MkdirTemp("", "multihost-bin-")
		if err != nil {
			bins.err = err
			return m.Run()
		}
		defer os.RemoveAll(dir)
		bins.dir = dir
		bins.gorun = filepath.Join(dir, "gorun")
		bins.train = filepath.Join(dir, "mhtrain")
		bins.relay = filepath.Join(dir, "relay")
		bins.stranger = filepath.Join(dir, "stranger")
		bins.collcheck = filepath.Join(dir, "collcheck")
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, "go", "build", "-o", dir+string(filepath.Separator),
			"github.com/ringtrain/ringtrain/cmd/gorun", "./testdata/mhtrain", "./testdata/relay", "./testdata/stranger", "./testdata/collcheck")
		if out, err := cmd.CombinedOutput(); err != nil {
			bins.err = fmt.Errorf("building gorun and the test programs: %v\n%s", err, out)
		}
		return m.Run()
	}()
	os.Exit(code)
}

// cluster starts a cluster of hosts (skipping the test where namespaces cannot be made) and
// fails the test if the binaries did not build.
func cluster(t *testing.T, hosts int, rate string) *netcluster.Cluster {
	t.Helper()
	c := netcluster.Start(t, hosts, rate)
	if bins.err != nil {
		t.Fatal(bins.err)
	}
	return c
}

// masterPort is the job's master port; every cluster has its own network namespaces, so
// concurrent tests cannot collide on it.
const masterPort = 29500

// line is one line of a process's output with its arrival time.
type line struct {
	at     time.Time
	stderr bool
	text   string
}

// proc is a process on a cluster host whose output is collected line by line as it comes,
// so that tests can wait for a marker and react while the job runs.
type proc struct {
	name    string
	cmd     *exec.Cmd
	started time.Time

	mu      sync.Mutex
	lines   []line
	partial [2][]byte
	changed chan struct{} // closed and replaced when a line arrives or the process ends

	done  chan struct{} // closed once the process has been waited for
	err   error
	code  int
	ended time.Time
}

type procWriter struct {
	p      *proc
	stderr bool
}

func (w procWriter) Write(b []byte) (int, error) {
	p := w.p
	i := 0
	if w.stderr {
		i = 1
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.partial[i] = append(p.partial[i], b...)
	now := time.Now()
	for {
		j := bytes.IndexByte(p.partial[i], '\n')
		if j < 0 {
			break
		}
		p.lines = append(p.lines, line{at: now, stderr: w.stderr, text: string(p.partial[i][:j])})
		p.partial[i] = p.partial[i][j+1:]
	}
	close(p.changed)
	p.changed = make(chan struct{})
	return len(b), nil
}

// start runs name args... on host i of c with env added to a clean environment. The process
// is killed when ctx ends.
func start(t *testing.T, ctx context.Context, c *netcluster.Cluster, host int, label string, env []string, name string, args ...string) *proc {
	t.Helper()
	p := &proc{name: label, changed: make(chan struct{}), done: make(chan struct{})}
	p.cmd = c.Command(ctx, host, name, args...)
	p.cmd.Env = append(cleanEnv(), env...)
	p.cmd.Stdout = procWriter{p, false}
	p.cmd.Stderr = procWriter{p, true}
	p.cmd.WaitDelay = 5 * time.Second
	p.started = time.Now()
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("starting %s on host %d: %v", label, host, err)
	}
	go func() {
		err := p.cmd.Wait()
		p.mu.Lock()
		p.err, p.ended = err, time.Now()
		p.code = p.cmd.ProcessState.ExitCode()
		close(p.changed)
		p.changed = make(chan struct{})
		p.mu.Unlock()
		close(p.done)
	}()
	t.Cleanup(func() {
		p.cmd.Process.Kill()
		<-p.done
		if t.Failed() || testing.Verbose() {
			t.Logf("--- output of %s:\n%s", p.name, p.output())
		}
	})
	return p
}

// cleanEnv is this process's environment without job variables a surrounding launcher may
// have set.
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		switch {
		case k == "RANK", k == "WORLD_SIZE", k == "LOCAL_RANK", k == "LOCAL_WORLD_SIZE", k == "MASTER_ADDR",
			k == "MASTER_PORT", k == "NODE_RANK", k == "NNODES", k == "GOMAXPROCS",
			strings.HasPrefix(k, "GORUN_"), strings.HasPrefix(k, "PET_"), strings.HasPrefix(k, "SLURM_"),
			strings.HasPrefix(k, "MULTIHOST_"):
			continue
		}
		env = append(env, kv)
	}
	return env
}

// output is everything the process wrote so far, each line with its arrival time since the
// start and O or E for stdout or stderr.
func (p *proc) output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	var b strings.Builder
	for _, l := range p.lines {
		stream := 'O'
		if l.stderr {
			stream = 'E'
		}
		fmt.Fprintf(&b, "%7.3fs %c %s", l.at.Sub(p.started).Seconds(), stream, l.text)
		b.WriteByte('\n')
	}
	return b.String()
}

// snapshot returns the lines so far, whether the process has ended, and a channel closed
// on the next change.
func (p *proc) snapshot() ([]line, bool, <-chan struct{}) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]line(nil), p.lines...), !p.ended.IsZero(), p.changed
}

// waitLine waits until the process has printed a line matching re and returns it.
func (p *proc) waitLine(t *testing.T, re *regexp.Regexp, timeout time.Duration) line {
	t.Helper()
	deadline := time.After(timeout)
	seen := 0
	for {
		lines, ended, changed := p.snapshot()
		for _, l := range lines[seen:] {
			if re.MatchString(l.text) {
				return l
			}
		}
		seen = len(lines)
		if ended {
			t.Fatalf("%s ended (%v) without printing a line matching %q", p.name, p.err, re)
		}
		select {
		case <-changed:
		case <-deadline:
			t.Fatalf("%s printed no line matching %q within %v", p.name, re, timeout)
		}
	}
}

// find returns the first line matching re, if any.
func (p *proc) find(re *regexp.Regexp) (line, bool) {
	lines, _, _ := p.snapshot()
	for _, l := range lines {
		if re.MatchString(l.text) {
			return l, true
		}
	}
	return line{}, false
}

// count is the number of lines matching re so far.
func (p *proc) count(re *regexp.Regexp) int {
	lines, _, _ := p.snapshot()
	n := 0
	for _, l := range lines {
		if re.MatchString(l.text) {
			n++
		}
	}
	return n
}

// wait waits for the process to end and returns its exit code (-1 after a signal).
func (p *proc) wait(t *testing.T, timeout time.Duration) int {
	t.Helper()
	select {
	case <-p.done:
		return p.code
	case <-time.After(timeout):
		t.Fatalf("%s still running after %v", p.name, timeout)
		return 0
	}
}

// jobSpec describes a multi-node gorun job: one gorun per host 0..nodes-1.
type jobSpec struct {
	nodes, nproc int
	gorunArgs    []string // extra gorun flags, before the program
	env          []string // extra environment for every node
	nodeEnv      func(node int) []string
	program      string   // what gorun runs (empty: the training program, mhtrain)
	args         []string // the program's flags
}

// startJob writes a token file and starts one gorun per node, each on its own host, with
// node 0's address as the master address. It returns the gorun processes by node.
func startJob(t *testing.T, ctx context.Context, c *netcluster.Cluster, s jobSpec) []*proc {
	t.Helper()
	tok := filepath.Join(t.TempDir(), "job.token")
	if err := os.WriteFile(tok, []byte(fmt.Sprintf("multihost-%s-%d\n", c.Name, time.Now().UnixNano())), 0o600); err != nil {
		t.Fatal(err)
	}
	nodes := make([]*proc, s.nodes)
	for i := range nodes {
		args := []string{"--nnodes", strconv.Itoa(s.nodes), "--node-rank", strconv.Itoa(i),
			"--master-addr", c.IP(0), "--master-port", strconv.Itoa(masterPort), "--token-file", tok,
			"--nproc", strconv.Itoa(s.nproc), "--join-timeout", "60s"}
		if tr := os.Getenv("MULTIHOST_TRANSPORT"); tr != "" && !slices.Contains(s.gorunArgs, "--transport") {
			// Run the suite over another link between hosts: MULTIHOST_TRANSPORT=tcp go test ./multihost
			args = append(args, "--transport", tr)
		}
		prog := s.program
		if prog == "" {
			prog = bins.train
		}
		args = append(append(args, s.gorunArgs...), prog)
		args = append(args, s.args...)
		env := append([]string(nil), s.env...)
		if s.nodeEnv != nil {
			env = append(env, s.nodeEnv(i)...)
		}
		nodes[i] = start(t, ctx, c, i, fmt.Sprintf("gorun node %d (host %s)", i, c.IP(i)), env, bins.gorun, args...)
	}
	return nodes
}

// rankLine is a pattern for mhtrain's line "mhtrain: rank R <rest>" as gorun prefixes it.
func rankLine(rank int, rest string) *regexp.Regexp {
	return regexp.MustCompile(fmt.Sprintf(`^\[%d\] mhtrain: rank %d %s`, rank, rank, rest))
}

// nodeOf is the node (host) of a global rank.
func nodeOf(rank, nproc int) int { return rank / nproc }

// readParams reads a parameter snapshot written by mhtrain.
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

// relDiff is the largest, over tensors, of max|a−b| / max|b|: how far a is from the
// reference b relative to b's scale. Shapes must match.
func relDiff(a, b models.Snapshot) (float64, error) {
	if len(a.Slices) != len(b.Slices) {
		return 0, fmt.Errorf("%d tensors against %d", len(a.Slices), len(b.Slices))
	}
	worst := 0.0
	for i := range a.Slices {
		x, y := a.Slices[i], b.Slices[i]
		if x.Name != y.Name || len(x.Data) != len(y.Data) {
			return 0, fmt.Errorf("tensor %d is %s[%d], reference %s[%d]", i, x.Name, len(x.Data), y.Name, len(y.Data))
		}
		var diff, scale float64
		for j := range x.Data {
			if math.IsNaN(float64(x.Data[j])) {
				return 0, fmt.Errorf("%s[%d] is NaN", x.Name, j)
			}
			diff = max(diff, math.Abs(float64(x.Data[j])-float64(y.Data[j])))
			scale = max(scale, math.Abs(float64(y.Data[j])))
		}
		if scale == 0 {
			scale = 1
		}
		worst = max(worst, diff/scale)
	}
	return worst, nil
}

// identical reports the first element where a and b differ in their bits.
func identical(a, b models.Snapshot) error {
	if len(a.Slices) != len(b.Slices) {
		return fmt.Errorf("%d tensors against %d", len(a.Slices), len(b.Slices))
	}
	for i := range a.Slices {
		x, y := a.Slices[i], b.Slices[i]
		if len(x.Data) != len(y.Data) {
			return fmt.Errorf("%s has %d elements against %d", x.Name, len(x.Data), len(y.Data))
		}
		for j := range x.Data {
			if math.Float32bits(x.Data[j]) != math.Float32bits(y.Data[j]) {
				return fmt.Errorf("%s[%d] = %g against %g", x.Name, j, x.Data[j], y.Data[j])
			}
		}
	}
	return nil
}

var refCache sync.Map // string -> models.Snapshot

// reference trains the same model alone in one process (no gorun, no network) with the
// job's global batch: the parameters every rank of the job must end with.
func reference(t *testing.T, globalBatch int, args ...string) models.Snapshot {
	t.Helper()
	key := fmt.Sprint(globalBatch, args)
	if s, ok := refCache.Load(key); ok {
		return s.(models.Snapshot)
	}
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bins.train, append(append([]string{}, args...), "--batch", strconv.Itoa(globalBatch), "--out", dir)...)
	cmd.Env = cleanEnv()
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("reference run: %v\n%s", err, out)
	}
	s := readParams(t, filepath.Join(dir, "params-rank0.bin"))
	refCache.Store(key, s)
	return s
}

// checkParams checks that every rank wrote the same parameters, after the expected number
// of steps, and that they match the single-process reference within 1e-5.
func checkParams(t *testing.T, outDir string, world int, steps int64, ref models.Snapshot) {
	t.Helper()
	if ref.Step != steps {
		t.Fatalf("reference stopped at step %d, want %d", ref.Step, steps)
	}
	first := readParams(t, filepath.Join(outDir, "params-rank0.bin"))
	for r := 0; r < world; r++ {
		s := readParams(t, filepath.Join(outDir, fmt.Sprintf("params-rank%d.bin", r)))
		if s.Step != steps {
			t.Errorf("rank %d stopped at step %d, want %d", r, s.Step, steps)
		}
		if err := identical(s, first); err != nil {
			t.Errorf("rank %d's parameters differ from rank 0's: %v", r, err)
		}
	}
	d, err := relDiff(first, ref)
	if err != nil {
		t.Fatalf("against the single-process reference: %v", err)
	}
	if d >= 1e-5 {
		t.Fatalf("parameters differ from the single-process reference by %.3g (relative), want < 1e-5", d)
	}
	t.Logf("%d ranks agree bit for bit; relative difference to the single-process run %.3g", world, d)
}

// checkCheckpoint checks that the newest checkpoint in dir is complete and loadable: found
// by ddp.Latest, verified (checksum) by ddp.ReadCheckpoint, its parameters loaded into a
// fresh model of the same shape, at a step the job saved (a multiple of every). It returns
// the checkpoint's step.
func checkCheckpoint(t *testing.T, dir string, hidden, every int) int64 {
	t.Helper()
	path, err := ddp.Latest(dir)
	if err != nil {
		t.Fatalf("no usable checkpoint after the fault: %v", err)
	}
	ck, err := ddp.ReadCheckpoint(path)
	if err != nil {
		t.Fatalf("the last checkpoint does not load: %v", err)
	}
	fc1, err1 := models.NewLinear("fc1", 784, hidden, models.InitHe)
	fc2, err2 := models.NewLinear("fc2", hidden, 10, models.InitGlorot)
	if err := errors.Join(err1, err2); err != nil {
		t.Fatal(err)
	}
	m, err := models.NewSequential(models.NewFlatten("flat"), fc1, models.NewReLU("relu"), fc2)
	if err != nil {
		t.Fatal(err)
	}
	if err := ck.Params.LoadParams(m.Params()); err != nil {
		t.Fatalf("%s: parameters do not fit the model: %v", path, err)
	}
	if ck.State.Step <= 0 || ck.State.Step%int64(every) != 0 || ck.Optimizer.Kind == "" {
		t.Fatalf("%s: step %d, optimizer state %q: not a checkpoint the job wrote", path, ck.State.Step, ck.Optimizer.Kind)
	}
	if ck.Params.Step != ck.State.Step {
		t.Fatalf("%s: parameters of step %d in a checkpoint of step %d", path, ck.Params.Step, ck.State.Step)
	}
	t.Logf("last checkpoint %s (step %d) is complete and loads", filepath.Base(path), ck.State.Step)
	return ck.State.Step
}

// noProcessesLeft checks, for a few seconds, that the hosts run no process any more.
func noProcessesLeft(t *testing.T, c *netcluster.Cluster, hosts int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		var left []string
		for i := 0; i < hosts; i++ {
			pids, err := c.Pids(i)
			if err != nil {
				t.Fatal(err)
			}
			for _, p := range pids {
				left = append(left, fmt.Sprintf("host %d: pid %s (%s)", i, p, cmdline(p)))
			}
		}
		if len(left) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("processes of the job left after every gorun ended:\n%s", strings.Join(left, "\n"))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func cmdline(pid string) string {
	b, err := os.ReadFile("/proc/" + pid + "/cmdline")
	if err != nil {
		return "gone"
	}
	return strings.TrimSpace(strings.ReplaceAll(string(b), "\x00", " "))
}
