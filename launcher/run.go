package launcher

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"github.com/ringtrain/ringtrain/collective/shmtransport"
	"io"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/ringtrain/ringtrain/errorfile"
	"github.com/ringtrain/ringtrain/jobenv"
	"github.com/ringtrain/ringtrain/preempt"
)

// runner holds what one Run needs across attempts.
type runner struct {
	cfg    Config // defaulted and validated
	stderr *lineSink
	group  *localGroup
	exe    string
	tgt    *target
	tmpDir string
	// rootCause is the local rank whose failure ended the job, when it was one of ours.
	rootCause *rankExit
}

// writeErrorFile records the job's end in gorun's own error file, as torchrun's agent does:
// the root-cause rank's own record with errorCode set to its exit status when that rank ran
// here and recorded one, else gorun's message with gorun's exit status. A job that
// succeeded, or was preempted with its checkpoint saved, writes nothing.
func (r *runner) writeErrorFile(path string, err error) {
	if err == nil || errors.Is(err, ErrPreempted) {
		return
	}
	code := 1
	var je *JobError
	if errors.As(err, &je) && je.Code != 0 {
		code = je.Code
	}
	var ue *UsageError
	if errors.As(err, &ue) {
		code = 2
	}
	rep := errorfile.Report{Message: err.Error(), Time: time.Now(), ErrorCode: &code}
	if ex := r.rootCause; ex != nil && ex.report != nil {
		rc := ex.code
		rep = *ex.report
		rep.Message = fmt.Sprintf("rank %d (local rank %d, node %d): %s", ex.rank, ex.local, r.group.world.nodeRank, ex.report.Message)
		rep.ErrorCode = &rc
	}
	if werr := errorfile.Write(path, rep); werr != nil {
		r.say("warning: writing %s=%s: %v", jobenv.ErrorFile, path, werr)
	}
}

// say prints one of the launcher's own messages on stderr, as a whole line.
func (r *runner) say(format string, args ...any) {
	r.stderr.write([]byte("gorun: " + fmt.Sprintf(format, args...) + "\n"))
}

// Run runs one job on this node: it builds TARGET if it is Go code, starts the ranks and
// supervises them until they all succeed, the job fails (after any restarts), or ctx ends.
// With NNodes > 1 it first joins the other nodes' launchers (node 0 serves, the others dial)
// and every start, stop and restart follows node 0's decision.
//
// It returns nil when every rank of every node exited 0; a *UsageError for a configuration
// that cannot work; or a *JobError whose Code is the exit status to use (it wraps
// ErrInterrupted when ctx ended first, or ErrPreempted, with Code preempt.ExitCode, when ctx
// ended and every rank here saved a checkpoint and exited preempt.ExitCode). When the
// environment has TORCHELASTIC_ERROR_FILE, a failure is also written there (package errorfile).
func Run(ctx context.Context, cfg *Config) (err error) {
	c := cfg.withDefaults()
	if err := c.validate(); err != nil {
		return err
	}
	if c.Standalone {
		port, err := freePort()
		if err != nil {
			return jobErrorf("--standalone: finding a free port: %v", err)
		}
		c.MasterAddr, c.MasterPort = "127.0.0.1", port
	}
	if c.MasterAddr == "" {
		c.MasterAddr = "127.0.0.1"
	}
	if c.Token == "" {
		c.Token = randomHex(32)
	}
	if c.Env == nil {
		c.Env = os.Environ()
	}
	if !c.heartbeatTimeoutSet {
		// Lost-node detection follows the ranks' peer timeout when one is set.
		if v := strings.TrimSpace(envValue(c.Env, jobenv.PeerTimeout)); v != "" {
			if d, err := time.ParseDuration(v); err == nil && d > 0 {
				c.HeartbeatTimeout = d
				c.HeartbeatInterval = min(c.HeartbeatInterval, max(d/4, 50*time.Millisecond))
			}
		}
	}
	r := &runner{cfg: c, stderr: newLineSink(c.Stderr)}
	// gorun's own TORCHELASTIC_ERROR_FILE, if a scheduler gave one: the job's root cause.
	if path := strings.TrimSpace(envValue(c.Env, jobenv.ErrorFile)); path != "" {
		defer func() { r.writeErrorFile(path, err) }()
	}
	if len(c.Token) < 16 {
		r.say("warning: the job token is only %d characters; use at least 16 random ones", len(c.Token))
	}
	switch c.Transport {
	case "auto":
		r.say("note: --transport auto is deprecated: it now means --transport tls --shm on (the default)")
	case "shm":
		r.say("note: --transport shm is deprecated: it now means --shm require")
	case "tcp":
		r.say("warning: --transport tcp: data between ranks is NOT encrypted (plain TCP after an authenticated handshake); use it only on a trusted network")
	}

	tgt, err := resolveTarget(c.Target)
	if err != nil {
		return err
	}
	r.tgt = tgt
	r.tmpDir, err = os.MkdirTemp("", "gorun-build-")
	if err != nil {
		return jobErrorf("creating a build directory: %v", err)
	}
	defer os.RemoveAll(r.tmpDir)

	logs := make([]*lineSink, c.NProc)
	if c.LogDir != "" {
		if err := os.MkdirAll(c.LogDir, 0o755); err != nil {
			return jobErrorf("--log-dir: %v", err)
		}
		for l := range logs {
			name := filepath.Join(c.LogDir, "rank-"+strconv.Itoa(c.NodeRank*c.NProc+l)+".log")
			f, err := os.OpenFile(name, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
			if err != nil {
				return jobErrorf("--log-dir: %v", err)
			}
			defer f.Close()
			logs[l] = newLineSink(f)
		}
	}

	// Once every rank of this node is gone (the deferred calls run in reverse), remove
	// the shared-memory files whose creators are dead: a rank killed between creating a
	// segment and its peer opening it (which unlinks it) leaves the file behind.
	defer cleanSharedMemory(c.Env, r.say)
	sp := newSpawner()
	defer sp.close()
	r.group = &localGroup{
		cfg:        &r.cfg,
		gomaxprocs: rankGOMAXPROCS(&c),
		baseEnv:    c.Env,
		stdout:     newLineSink(c.Stdout),
		stderr:     r.stderr,
		logs:       logs,
		spawn:      sp,
		say:        r.say,
		world:      world{nodeRank: c.NodeRank, nnodes: c.NNodes, masterAddr: c.MasterAddr},
		errDir:     filepath.Join(r.tmpDir, "errors"),
	}

	if c.Timeline != "" {
		if err := r.prepareTimeline(); err != nil {
			return err
		}
		defer r.mergeTimeline()
	}
	switch {
	case r.cfg.elastic():
		return r.runElastic(ctx)
	case c.NNodes == 1:
		return r.runSingle(ctx)
	case c.NodeRank == 0:
		return r.runCoordinator(ctx)
	default:
		return r.runWorker(ctx)
	}
}

// build compiles the target (once per node) and remembers the executable.
func (r *runner) build(ctx context.Context) error {
	if r.tgt.kind != targetProgram {
		r.say("building %s", r.tgt.path)
	}
	exe, err := r.tgt.build(ctx, r.tmpDir, r.cfg.Stderr)
	if err != nil {
		if errors.Is(err, ErrInterrupted) {
			return r.interrupted(ctx)
		}
		return err
	}
	r.exe = exe
	r.group.exe = exe
	return nil
}

// runSingle is the attempt loop of a single-node job.
func (r *runner) runSingle(ctx context.Context) error {
	if err := r.build(ctx); err != nil {
		return err
	}
	r.group.runID = r.cfg.RunID
	if r.group.runID == "" {
		r.group.runID = randomHex(6)
	}
	for attempt := 0; ; attempt++ {
		if ctx.Err() != nil {
			return r.interrupted(ctx)
		}
		res := r.group.run(ctx, attempt, nil, nil)
		if res.ok() {
			return nil
		}
		if res.stopped {
			if res.preempted() {
				return r.preempted(ctx)
			}
			r.stderr.write([]byte(formatSummary(res, "job interrupted")))
			return r.interrupted(ctx)
		}
		if attempt < r.cfg.MaxRestarts {
			r.stderr.write([]byte(formatSummary(res, fmt.Sprintf("attempt %d failed; restarting the group (restart %d of %d)",
				attempt, attempt+1, r.cfg.MaxRestarts))))
			continue
		}
		r.stderr.write([]byte(formatSummary(res, r.failHeader(attempt))))
		ex := &res.exits[res.first]
		r.rootCause = ex
		if m := ex.reported(); m != "" {
			return jobErrorf("job failed: rank %d: %s: %s", ex.rank, ex.how(), m)
		}
		return jobErrorf("job failed: rank %d: %s", ex.rank, ex.how())
	}
}

func (r *runner) failHeader(attempt int) string {
	if r.cfg.MaxRestarts == 0 {
		return "job failed"
	}
	return fmt.Sprintf("job failed: attempt %d failed and no restarts are left (--max-restarts %d)", attempt, r.cfg.MaxRestarts)
}

// interrupted is the error for a job stopped because ctx ended.
func (r *runner) interrupted(ctx context.Context) error {
	sig := signalOf(ctx)
	return &JobError{Code: 128 + signalNumber(sig), Msg: "stopped: gorun received " + signalName(sig), Err: ErrInterrupted}
}

// preempted is the error for a job whose ranks, stopped by a signal to gorun, all saved a
// checkpoint and exited with preempt.ExitCode; gorun exits with that code too.
func (r *runner) preempted(ctx context.Context) error {
	r.say("preempted: gorun received %s and every rank here saved its checkpoint and exited %d; start the job again to resume",
		signalName(signalOf(ctx)), preempt.ExitCode)
	return &JobError{Code: preempt.ExitCode, Msg: fmt.Sprintf("preempted (gorun received %s): the ranks saved a checkpoint; exit %d",
		signalName(signalOf(ctx)), preempt.ExitCode), Err: ErrPreempted}
}

// rankGOMAXPROCS applies the GOMAXPROCS rule: --threads-per-rank, else an inherited
// GOMAXPROCS, else the node's usable cores shared among its ranks, at least 1.
func rankGOMAXPROCS(c *Config) string {
	if c.ThreadsPerRank > 0 {
		return strconv.Itoa(c.ThreadsPerRank)
	}
	if v := envValue(c.Env, jobenv.GoMaxProcs); strings.TrimSpace(v) != "" {
		return strings.TrimSpace(v)
	}
	// runtime.GOMAXPROCS(0) defaults to the usable cores (CPU affinity and, since Go 1.25, the
	// cgroup CPU limit), unless our own GOMAXPROCS variable overrode it.
	cores := runtime.GOMAXPROCS(0)
	if os.Getenv(jobenv.GoMaxProcs) != "" {
		cores = runtime.NumCPU()
	}
	return strconv.Itoa(max(1, cores/c.NProc))
}

// envValue finds key in a KEY=value list; the last entry wins, as in exec.Cmd.
func envValue(env []string, key string) string {
	v := ""
	for _, kv := range env {
		if k, val, ok := strings.Cut(kv, "="); ok && k == key {
			v = val
		}
	}
	return v
}

func randomHex(nbytes int) string {
	b := make([]byte, nbytes)
	if _, err := rand.Read(b); err != nil {
		panic("crypto/rand failed: " + err.Error()) // cannot happen on supported systems
	}
	return hex.EncodeToString(b)
}

// freePort finds a port free on 127.0.0.1 for both UDP (rank 0's rendezvous) and TCP.
func freePort() (int, error) {
	var lastErr error
	for i := 0; i < 20; i++ {
		u, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			return 0, err
		}
		port := u.LocalAddr().(*net.UDPAddr).Port
		t, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port))
		u.Close()
		if err != nil {
			lastErr = err
			continue
		}
		t.Close()
		return port, nil
	}
	return 0, lastErr
}

// Main is gorun's whole command: it parses args (without the program name) with the process
// environment, runs the job with SIGINT, SIGTERM and SIGHUP forwarded to every rank (a second
// signal KILLs them at once), and returns the exit status: 0 success, 1 job failure, 2 usage
// error, 128+N after signal N.
func Main(args []string, stdout, stderr io.Writer) int {
	cfg, err := ParseArgs(args, os.LookupEnv)
	if err != nil {
		if errors.Is(err, errHelp) {
			Usage(stdout)
			return 0
		}
		fmt.Fprintf(stderr, "gorun: %v\nRun 'gorun --help' for usage.\n", err)
		return 2
	}
	cfg.Stdout, cfg.Stderr = stdout, stderr

	ctx, cancel := context.WithCancelCause(context.Background())
	defer cancel(nil)
	force := make(chan struct{})
	cfg.ForceKill = force
	stopSignals := notifySignals(cancel, force)
	defer stopSignals()

	return exitCode(Run(ctx, cfg), stderr)
}

// exitCode maps Run's error to an exit status, printing it.
func exitCode(err error, stderr io.Writer) int {
	if err == nil {
		return 0
	}
	fmt.Fprintf(stderr, "gorun: %v\n", err)
	var ue *UsageError
	if errors.As(err, &ue) {
		fmt.Fprintln(stderr, "Run 'gorun --help' for usage.")
		return 2
	}
	var je *JobError
	if errors.As(err, &je) && je.Code != 0 {
		return je.Code
	}
	return 1
}

// cleanSharedMemory removes this host's shared-memory files left by dead processes
// (shmtransport.CleanStaleIn: files of live creators, other jobs' included, stay).
func cleanSharedMemory(env []string, say func(string, ...any)) {
	dir := strings.TrimSpace(envValue(env, jobenv.ShmDir))
	if dir == "" {
		dir = shmtransport.DefaultDir
	}
	removed, err := shmtransport.CleanStaleIn(dir)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		say("warning: cleaning %s: %v", dir, err)
	}
	if len(removed) > 0 {
		say("removed %d shared-memory file(s) left by killed ranks in %s", len(removed), dir)
	}
}
