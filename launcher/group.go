package launcher

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/ringtrain/ringtrain/errorfile"
	"github.com/ringtrain/ringtrain/jobenv"
	"github.com/ringtrain/ringtrain/preempt"
)

// pumpDrainTimeout bounds how long the launcher waits, after a rank's whole process group is
// gone, for the rest of its output. Only a process that left the group (setsid) and kept the
// pipe open can make it wait that long; its remaining output is then dropped.
const pumpDrainTimeout = 2 * time.Second

// rankExit records how one rank of one attempt ended.
type rankExit struct {
	rank, local int
	pid         int
	code        int    // exit code; -1 if killed by a signal or never started
	signal      string // "SIGKILL" etc. when killed by a signal
	startErr    error  // the rank could not be started at all
	stoppedBy   string // the strongest signal the launcher sent it while it ran, if any
	dur         time.Duration
	tail        []string // its last stderr lines
	// report is what the rank recorded in its TORCHELASTIC_ERROR_FILE (package errorfile)
	// before it exited; nil when it recorded nothing.
	report *errorfile.Report
}

// reported is the rank's recorded error message in one line, "" when none.
func (e *rankExit) reported() string {
	if e.report == nil {
		return ""
	}
	return firstLine(strings.TrimSpace(e.report.Message))
}

func (e *rankExit) failed() bool { return e.startErr != nil || e.code != 0 }

// how says in words how the rank ended.
func (e *rankExit) how() string {
	switch {
	case e.startErr != nil:
		return "could not start: " + e.startErr.Error()
	case e.signal != "":
		s := "killed by " + e.signal
		if e.stoppedBy != "" {
			s += " (sent by gorun)"
		}
		return s
	default:
		s := "exit code " + strconv.Itoa(e.code)
		if e.code == preempt.ExitCode {
			s += " (preempted: saved a checkpoint)"
		}
		if e.stoppedBy != "" {
			s += " after gorun sent " + e.stoppedBy
		}
		return s
	}
}

// stopRequest asks a running group to stop: signal all ranks, KILL after the grace period.
type stopRequest struct {
	sig    os.Signal
	reason string
}

// attemptResult is the outcome of one run of the local group.
type attemptResult struct {
	exits []rankExit // by local rank
	first int        // local index of the first failed rank, -1 if none failed on its own
	// stopped is set when the group was stopped from outside (signal, other node) before any
	// of its ranks failed on its own.
	stopped   bool
	stopCause string
}

func (r *attemptResult) ok() bool { return r.first < 0 && !r.stopped }

// preempted reports an attempt stopped from outside in which every rank exited with
// preempt.ExitCode: each saved its share of a checkpoint at a step boundary (the contract of
// package preempt), so the job can resume from it.
func (r *attemptResult) preempted() bool {
	if r == nil || !r.stopped || r.first >= 0 || len(r.exits) == 0 {
		return false
	}
	for i := range r.exits {
		if e := &r.exits[i]; e.startErr != nil || e.signal != "" || e.code != preempt.ExitCode {
			return false
		}
	}
	return true
}

// localGroup starts and supervises this node's ranks, one attempt at a time.
type localGroup struct {
	cfg        *Config // defaulted
	exe        string
	runID      string
	gomaxprocs string
	baseEnv    []string
	stdout     *lineSink
	stderr     *lineSink
	logs       []*lineSink // by local rank; nil entries when there is no log dir
	spawn      *spawner
	say        func(format string, args ...any) // the launcher's own messages
	world      world                            // set before each run
	// errDir holds the ranks' error files: errDir/attempt_<k>/<local rank>/error.json.
	errDir string
}

// errorFile is local rank l's TORCHELASTIC_ERROR_FILE in the given attempt (torchrun's
// layout of paths), fresh for every attempt so that an old failure is never read again.
func (g *localGroup) errorFile(l, attempt int) string {
	return filepath.Join(g.errDir, "attempt_"+strconv.Itoa(attempt), strconv.Itoa(l), "error.json")
}

// world is this node's place in the job for one attempt: for a fixed-size job always
// --node-rank of --nnodes behind --master-addr; for an elastic job whatever the rendezvous
// assigned at the last membership change.
type world struct {
	nodeRank, nnodes int
	masterAddr       string // the rendezvous host: MASTER_ADDR of the ranks
	version          int    // GORUN_WORLD_VERSION
}

// globalRank is the RANK of local rank l.
func (g *localGroup) globalRank(l int) int { return g.world.nodeRank*g.cfg.NProc + l }

// rankEnv is the environment of local rank l in the given attempt: the contract of package
// jobenv.
func (g *localGroup) rankEnv(l, attempt int) []string {
	c, w := g.cfg, &g.world
	rank, size := strconv.Itoa(g.globalRank(l)), strconv.Itoa(w.nnodes*c.NProc)
	elastic := "0"
	if c.elastic() {
		elastic = "1"
	}
	set := map[string]string{
		jobenv.Rank:                     rank,
		jobenv.WorldSize:                size,
		jobenv.LocalRank:                strconv.Itoa(l),
		jobenv.LocalWorldSize:           strconv.Itoa(c.NProc),
		jobenv.NodeRank:                 strconv.Itoa(w.nodeRank),
		jobenv.GroupRank:                strconv.Itoa(w.nodeRank),
		jobenv.RoleRank:                 rank,
		jobenv.RoleWorldSize:            size,
		jobenv.NNodes:                   strconv.Itoa(w.nnodes),
		jobenv.MasterAddr:               w.masterAddr,
		jobenv.MasterPort:               strconv.Itoa(c.MasterPort),
		jobenv.Token:                    c.Token,
		jobenv.RunID:                    g.runID,
		jobenv.TorchElasticRunID:        g.runID,
		jobenv.RestartCount:             strconv.Itoa(attempt),
		jobenv.TorchElasticRestartCount: strconv.Itoa(attempt),
		jobenv.WorldVersion:             strconv.Itoa(w.version),
		jobenv.Elastic:                  elastic,
		jobenv.MinNodes:                 strconv.Itoa(c.MinNodes),
		jobenv.MaxNodes:                 strconv.Itoa(c.MaxNodes),
		jobenv.Transport:                rankTransport(c.Transport),
		jobenv.Shm:                      c.Shm,
		jobenv.GoMaxProcs:               g.gomaxprocs,
	}
	if c.Iface != "" {
		set[jobenv.SocketIfname] = c.Iface
	}
	set[jobenv.ErrorFile] = g.errorFile(l, attempt)
	if c.Timeline != "" {
		set[jobenv.Timeline] = c.Timeline
	}
	return mergeEnv(g.baseEnv, set)
}

// mergeEnv returns base without the keys of set, followed by set's entries in a stable order.
func mergeEnv(base []string, set map[string]string) []string {
	out := make([]string, 0, len(base)+len(set))
	for _, kv := range base {
		k, _, _ := strings.Cut(kv, "=")
		if _, ours := set[k]; !ours {
			out = append(out, kv)
		}
	}
	for _, k := range sortedKeys(set) {
		out = append(out, k+"="+set[k])
	}
	return out
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	for i := 1; i < len(keys); i++ { // insertion sort: a dozen keys
		for j := i; j > 0 && keys[j] < keys[j-1]; j-- {
			keys[j], keys[j-1] = keys[j-1], keys[j]
		}
	}
	return keys
}

// exitEvent is sent by a rank's waiter when the rank, its process group and its output are
// all finished.
type exitEvent struct {
	local int
	ps    *os.ProcessState
	err   error
}

// run starts every local rank for one attempt and supervises them until all have exited.
// The first rank to fail on its own (non-zero exit, signal, failure to start) makes the group
// stop: TERM to every other rank's process group, KILL after the grace period. A request on
// stop, or the end of ctx, does the same with the requested signal. onFail, if not nil, is
// called once, from this goroutine, with the first rank that failed on its own; it must not
// block.
func (g *localGroup) run(ctx context.Context, attempt int, stop <-chan stopRequest, onFail func(*rankExit)) *attemptResult {
	n := g.cfg.NProc
	res := &attemptResult{exits: make([]rankExit, n), first: -1}
	procs := make([]*rankProc, n)
	running := make([]bool, n)
	started := make([]time.Time, n)
	events := make(chan exitEvent, n)
	live := 0

	for l := 0; l < n; l++ {
		ex := &res.exits[l]
		ex.rank, ex.local, ex.code = g.globalRank(l), l, -1
		p, err := g.start(l, attempt, ex, events)
		if err != nil {
			ex.startErr = err
			events <- exitEvent{local: l, err: err}
			live++
			continue
		}
		procs[l], running[l], started[l] = p, true, time.Now()
		ex.pid = p.pid
		live++
	}

	var (
		stopping  bool
		grace     <-chan time.Time
		forceKill = g.cfg.ForceKill
		ctxDone   = ctx.Done()
	)
	signalAll := func(sig os.Signal) {
		for l := 0; l < n; l++ {
			if running[l] {
				procs[l].signal(sig)
				res.exits[l].stoppedBy = signalName(sig)
			}
		}
	}
	beginStop := func(sig os.Signal) {
		stopping = true
		if g.cfg.Grace <= 0 {
			signalAll(syscall.SIGKILL)
			return
		}
		signalAll(sig)
		grace = time.After(g.cfg.Grace)
	}

	for live > 0 {
		select {
		case ev := <-events:
			live--
			ex := &res.exits[ev.local]
			running[ev.local] = false
			if ev.ps != nil {
				ex.code, ex.signal = exitOf(ev.ps)
				ex.dur = time.Since(started[ev.local])
			} else if ev.err != nil && ex.startErr == nil {
				ex.startErr = ev.err // waiting failed: report it rather than an exit code
			}
			if ex.failed() {
				if rep, err := errorfile.Read(g.errorFile(ev.local, attempt)); err == nil {
					ex.report = &rep
				} else if !errors.Is(err, fs.ErrNotExist) {
					g.say("rank %d's error file: %v", ex.rank, err)
				}
			}
			if !ex.failed() || stopping {
				continue
			}
			res.first = ev.local
			if onFail != nil {
				onFail(ex)
			}
			if live > 0 {
				g.say("rank %d failed (%s); stopping the other ranks (SIGTERM, SIGKILL after %v)", ex.rank, ex.how(), g.cfg.Grace)
			} else {
				g.say("rank %d failed (%s)", ex.rank, ex.how())
			}
			beginStop(syscall.SIGTERM)
		case req := <-stop:
			if stopping {
				continue
			}
			res.stopped, res.stopCause = true, req.reason
			beginStop(req.sig)
		case <-ctxDone:
			ctxDone = nil
			if stopping {
				continue
			}
			sig := signalOf(ctx)
			res.stopped, res.stopCause = true, "gorun received "+signalName(sig)
			g.say("received %s; stopping the ranks (%s, SIGKILL after %v; interrupt again to KILL now)",
				signalName(sig), signalName(sig), g.cfg.Grace)
			beginStop(sig)
		case <-forceKill:
			forceKill = nil // a closed channel is always ready: react once
			if stopping {
				g.say("killing the remaining ranks now (SIGKILL)")
				signalAll(syscall.SIGKILL)
			} else {
				stopping = true
				res.stopped, res.stopCause = true, "forced kill"
				signalAll(syscall.SIGKILL)
			}
		case <-grace:
			grace = nil
			var left []string
			for l := 0; l < n; l++ {
				if running[l] {
					left = append(left, strconv.Itoa(g.globalRank(l)))
				}
			}
			g.say("rank(s) %s still running %v after SIGTERM; sending SIGKILL", strings.Join(left, ", "), g.cfg.Grace)
			signalAll(syscall.SIGKILL)
		}
	}
	return res
}

// rankProc is a started rank. Its mutex orders signals against reaping: once the rank is
// reaped its pid may belong to someone else, and must not be signalled any more.
type rankProc struct {
	pid    int
	mu     sync.Mutex
	reaped bool
}

// signal sends sig to the rank's process group unless the rank has been reaped.
func (p *rankProc) signal(sig os.Signal) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.reaped {
		_ = signalGroup(p.pid, sig)
	}
}

// start launches local rank l and a goroutine that reports its end on events.
func (g *localGroup) start(l, attempt int, ex *rankExit, events chan<- exitEvent) (*rankProc, error) {
	// A file left by an earlier job in the same place must not pass for this rank's.
	if err := os.Remove(g.errorFile(l, attempt)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("removing the old error file: %w", err)
	}
	cmd := exec.Command(g.exe, g.cfg.Args...)
	cmd.Env = g.rankEnv(l, attempt)
	cmd.Dir = g.cfg.Dir
	cmd.SysProcAttr = newSysProcAttr()

	outR, outW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		outR.Close()
		outW.Close()
		return nil, err
	}
	cmd.Stdout, cmd.Stderr = outW, errW
	g.spawn.do(func() { err = cmd.Start() })
	// The child has its own copies of the write ends; closing ours lets the readers see EOF
	// once the rank's whole process group is gone.
	outW.Close()
	errW.Close()
	if err != nil {
		outR.Close()
		errR.Close()
		return nil, err
	}

	tail := newLineRing(tailLines)
	prefix := rankPrefix(g.globalRank(l))
	pumpsDone := make(chan struct{}, 2)
	go func() {
		(&linePump{prefix: prefix, term: g.stdout, log: g.logs[l]}).run(outR)
		pumpsDone <- struct{}{}
	}()
	go func() {
		(&linePump{prefix: prefix, term: g.stderr, log: g.logs[l], tail: tail}).run(errR)
		pumpsDone <- struct{}{}
	}()

	p := &rankProc{pid: cmd.Process.Pid}
	pid := p.pid
	go func() {
		// Wait for the rank's exit without reaping it, so its pid (= its group id) stays
		// reserved; KILL what it left in its group; then reap. Where the no-reap wait is not
		// available, reap first.
		var werr error
		if waitExitedNoReap(pid) == nil {
			p.mu.Lock()
			_ = signalGroup(pid, syscall.SIGKILL)
			werr = cmd.Wait() // a zombie: returns at once
			p.reaped = true
			p.mu.Unlock()
		} else {
			werr = cmd.Wait()
			p.mu.Lock()
			_ = signalGroup(pid, syscall.SIGKILL) // a small pid-reuse race, unavoidable here
			p.reaped = true
			p.mu.Unlock()
		}
		timeout := time.NewTimer(pumpDrainTimeout)
		for i := 0; i < 2; i++ {
			select {
			case <-pumpsDone:
			case <-timeout.C:
				outR.Close() // unblocks the readers
				errR.Close()
				<-pumpsDone
			}
		}
		timeout.Stop()
		outR.Close()
		errR.Close()
		ex.tail = tail.last() // read by run only after the event below
		var exitErr *exec.ExitError
		if werr != nil && !errors.As(werr, &exitErr) {
			events <- exitEvent{local: l, ps: cmd.ProcessState, err: werr}
			return
		}
		events <- exitEvent{local: l, ps: cmd.ProcessState}
	}()
	return p, nil
}

// signalOf is the signal to forward when ctx ended: the one in a SignalError cause, else
// SIGTERM.
func signalOf(ctx context.Context) os.Signal {
	var se *SignalError
	if errors.As(context.Cause(ctx), &se) && se.Signal != nil {
		return se.Signal
	}
	return syscall.SIGTERM
}

// SignalError is the cancellation cause Main gives Run's context when gorun receives a
// signal. Run forwards that same signal to every rank, and Main exits with 128+N.
type SignalError struct {
	Signal os.Signal
}

func (e *SignalError) Error() string { return "received " + signalName(e.Signal) }

// formatSummary renders the end-of-job table for this node's ranks.
func formatSummary(res *attemptResult, header string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "gorun: ===== %s =====\n", header)
	if res.first >= 0 {
		ex := &res.exits[res.first]
		fmt.Fprintf(&b, "gorun: first failure: rank %d (local rank %d, pid %d): %s after %v\n",
			ex.rank, ex.local, ex.pid, ex.how(), ex.dur.Round(time.Millisecond))
		if ex.report != nil {
			fmt.Fprintf(&b, "gorun: rank %d recorded (TORCHELASTIC_ERROR_FILE, %s): %s\n", ex.rank,
				ex.report.Time.UTC().Format(time.RFC3339), strings.ReplaceAll(strings.TrimSpace(ex.report.Message), "\n", "\ngorun:   "))
		}
		if len(ex.tail) > 0 {
			fmt.Fprintf(&b, "gorun: last stderr lines of rank %d:\n", ex.rank)
			for _, line := range ex.tail {
				fmt.Fprintf(&b, "gorun:   [%d] %s\n", ex.rank, line)
			}
		} else {
			fmt.Fprintf(&b, "gorun: rank %d wrote nothing to stderr\n", ex.rank)
		}
	} else if res.stopped {
		fmt.Fprintf(&b, "gorun: stopped: %s\n", res.stopCause)
	}
	fmt.Fprintf(&b, "gorun: %6s  %s\n", "rank", "status")
	for i := range res.exits {
		ex := &res.exits[i]
		mark := ""
		if i == res.first {
			mark = "   <- first failure"
		}
		fmt.Fprintf(&b, "gorun: %6d  %s%s\n", ex.rank, ex.how(), mark)
	}
	return b.String()
}

// rankTransport is the GORUN_TRANSPORT ranks get: the old spellings auto and shm become tls
// (gorun printed their deprecation; shm's "require" travels in GORUN_SHM).
func rankTransport(t string) string {
	if t == "auto" || t == "shm" {
		return "tls"
	}
	return t
}
