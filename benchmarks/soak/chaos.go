package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// The chaos driver: `soak chaos --gorun PATH [flags]` runs this very binary as the rank
// program of a gorun job per (transport, seed), with --chaos-kill-after drawn from the seed,
// and checks what the issue asks of a rank dying with SIGKILL mid-soak:
//
//   - every survivor fails on its own (gorun's SIGTERM is ignored in chaos mode) within
//     GORUN_PEER_TIMEOUT (+ --slack for a loaded machine) of the kill, with an error that
//     names the dead rank;
//   - gorun exits non-zero;
//   - no process of the job (found by a marker in the environment) and no shared-memory file
//     of the job (/dev/shm/ringtrain-shm-<run id>-*) is left once gorun has exited.
//
// A survivor that never reports is killed by gorun after --grace (PEER_TIMEOUT + 4 s): a
// hang. A gorun that has not exited by --hang-after is killed (its process group): a hang.

type chaosConfig struct {
	gorun       string
	rankProg    string
	seeds       []uint64
	transports  []string
	nproc       int
	peerTimeout time.Duration
	slack       time.Duration
	killMin     time.Duration
	killMax     time.Duration
	maxBytes    string
	hangAfter   time.Duration
	shmDir      string
	verbose     bool
	victim      int
}

func parseChaosFlags(args []string, out io.Writer) (*chaosConfig, error) {
	fs := flag.NewFlagSet("soak chaos", flag.ContinueOnError)
	fs.SetOutput(out)
	c := &chaosConfig{}
	var seeds, transports string
	fs.StringVar(&c.gorun, "gorun", "", "the gorun binary (required)")
	fs.StringVar(&c.rankProg, "prog", "", "the rank program (default: this binary)")
	fs.StringVar(&seeds, "seeds", "1-10", "seeds: a list and/or ranges, e.g. 1-10,42")
	fs.StringVar(&transports, "transports", "shm,tls,tcp,quic", "transports to run each seed over (shm: --shm require; tls, tcp, quic: that transport with --shm off)")
	fs.IntVar(&c.nproc, "nproc", 4, "ranks")
	fs.DurationVar(&c.peerTimeout, "peer-timeout", 3*time.Second, "GORUN_PEER_TIMEOUT given to the ranks")
	fs.DurationVar(&c.slack, "slack", time.Second, "tolerance on top of the peer timeout (scheduling on a loaded machine)")
	fs.DurationVar(&c.killMin, "kill-min", 500*time.Millisecond, "earliest kill, after the ranks joined")
	fs.DurationVar(&c.killMax, "kill-max", 3*time.Second, "latest kill")
	fs.StringVar(&c.maxBytes, "max-bytes", "1MiB", "the soak's largest buffer")
	fs.DurationVar(&c.hangAfter, "hang-after", 0, "kill gorun and count a hang after this (0: kill-max + 2·peer-timeout + 60s)")
	fs.StringVar(&c.shmDir, "shm-dir", "/dev/shm", "where the shared-memory files of the job would be left")
	fs.BoolVar(&c.verbose, "v", false, "print the whole output of every run")
	fs.IntVar(&c.victim, "victim", -1, "the rank that dies (-1: drawn from each seed)")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if c.gorun == "" {
		return nil, errors.New("--gorun is required")
	}
	if c.rankProg == "" {
		exe, err := os.Executable()
		if err != nil {
			return nil, err
		}
		c.rankProg = exe
	}
	var err error
	if c.seeds, err = parseSeeds(seeds); err != nil {
		return nil, fmt.Errorf("--seeds: %v", err)
	}
	for _, t := range strings.Split(transports, ",") {
		if t = strings.TrimSpace(t); t != "" {
			c.transports = append(c.transports, t)
		}
	}
	if len(c.transports) == 0 {
		return nil, errors.New("--transports: none given")
	}
	if c.nproc < 2 {
		return nil, errors.New("--nproc must be ≥ 2")
	}
	if c.victim >= c.nproc {
		return nil, fmt.Errorf("--victim %d: only %d ranks", c.victim, c.nproc)
	}
	if c.killMax < c.killMin || c.killMin <= 0 {
		return nil, errors.New("want 0 < --kill-min ≤ --kill-max")
	}
	if c.hangAfter == 0 {
		c.hangAfter = c.killMax + 2*c.peerTimeout + 60*time.Second
	}
	return c, nil
}

func parseSeeds(s string) ([]uint64, error) {
	var out []uint64
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		lo, hi, isRange := strings.Cut(part, "-")
		a, err := strconv.ParseUint(lo, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("bad seed %q", part)
		}
		b := a
		if isRange {
			if b, err = strconv.ParseUint(hi, 10, 64); err != nil || b < a || b-a > 100000 {
				return nil, fmt.Errorf("bad range %q", part)
			}
		}
		for x := a; x <= b; x++ {
			out = append(out, x)
		}
	}
	if len(out) == 0 {
		return nil, errors.New("no seeds")
	}
	return out, nil
}

// chaosResult is the outcome of one chaos run (one JSON line).
type chaosResult struct {
	Transport  string   `json:"transport"`
	Seed       uint64   `json:"seed"`
	RunID      string   `json:"run_id"`
	Victim     int      `json:"victim"`
	KillAfterS float64  `json:"kill_after_s"`
	Killed     bool     `json:"killed"` // the victim's kill line was seen
	GorunExit  int      `json:"gorun_exit"`
	Survivors  int      `json:"survivors"` // survivors that reported a failure
	Named      int      `json:"named"`     // ... naming the victim
	MaxLatS    float64  `json:"max_latency_s"`
	Hang       bool     `json:"hang"`           // a survivor never failed, or gorun never exited
	Late       int      `json:"late"`           // survivors that failed after peer timeout + slack
	WrongMsg   int      `json:"wrong_messages"` // survivors whose error does not name the victim
	LeftProcs  int      `json:"leftover_procs"`
	LeftShm    int      `json:"leftover_shm"`
	WallS      float64  `json:"wall_s"`
	OK         bool     `json:"ok"`
	Problems   []string `json:"problems,omitempty"`
}

// chaosOne runs one (transport, seed).
func chaosOne(ctx context.Context, c *chaosConfig, tr string, seed uint64, log io.Writer) chaosResult {
	var rb [6]byte
	rand.Read(rb[:])
	runID := fmt.Sprintf("chaos_%s_%d_%s", tr, seed, hex.EncodeToString(rb[:]))
	kill := c.killMin + time.Duration(mix(seed^0x4b111)%uint64(c.killMax-c.killMin+1))
	victim := int(mix(seed^0xc4a05) % uint64(c.nproc))
	if c.victim >= 0 {
		victim = c.victim
	}
	res := chaosResult{Transport: tr, Seed: seed, RunID: runID, Victim: victim, KillAfterS: kill.Seconds(), GorunExit: -1}
	problem := func(f string, a ...any) { res.Problems = append(res.Problems, fmt.Sprintf(f, a...)) }

	grace := c.peerTimeout + 4*time.Second
	args := append([]string{"--standalone", "--nproc", strconv.Itoa(c.nproc), "--grace", grace.String()}, gorunTransportFlags(tr)...)
	args = append(args, "--run-id", runID, c.rankProg,
		"--ops", "100000000", "--seed", strconv.FormatUint(seed, 10), "--max-bytes", c.maxBytes,
		"--chaos-kill-after", kill.String(), "--chaos-rank", strconv.Itoa(victim), "--op-timeout", "120s")
	cmd := exec.Command(c.gorun, args...)
	marker := "SOAK_CHAOS_MARKER=" + runID
	cmd.Env = append(chaosEnv(), marker, "GORUN_PEER_TIMEOUT="+c.peerTimeout.String())
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	var out syncBuf
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	if err := cmd.Start(); err != nil {
		problem("starting gorun: %v", err)
		return res
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	var werr error
	select {
	case werr = <-done:
	case <-time.After(c.hangAfter):
		res.Hang = true
		problem("gorun still running after %v: killed (its process group)", c.hangAfter)
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		werr = <-done
	case <-ctx.Done():
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-done
		problem("interrupted")
		return res
	}
	res.WallS = time.Since(start).Seconds()
	var ee *exec.ExitError
	switch {
	case werr == nil:
		res.GorunExit = 0
	case errors.As(werr, &ee):
		res.GorunExit = ee.ExitCode()
	}

	// What was left behind: give the kernel a moment to reap, then look.
	time.Sleep(200 * time.Millisecond)
	procs := markedPids(marker)
	res.LeftProcs = len(procs)
	shm := leftoverShm(c.shmDir, runID)
	res.LeftShm = len(shm)
	if len(procs) > 0 {
		problem("processes left: %v", procs)
		for _, p := range procs {
			syscall.Kill(p, syscall.SIGKILL)
		}
	}
	if len(shm) > 0 {
		problem("shared-memory files left: %v", shm)
		for _, f := range shm {
			os.Remove(f)
		}
	}

	// Parse the ranks' lines.
	var killNS int64
	survivors := map[int]map[string]any{}
	sc := bufio.NewScanner(bytes.NewReader(out.Bytes()))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		// "[r] {...}"
		i := strings.Index(line, "] {\"chaos\"")
		if !strings.HasPrefix(line, "[") || i < 0 {
			continue
		}
		var m map[string]any
		if json.Unmarshal([]byte(line[i+2:]), &m) != nil {
			continue
		}
		switch m["chaos"] {
		case "kill":
			res.Killed = true
			killNS = int64(m["t_ns"].(float64))
		case "survivor":
			survivors[int(m["rank"].(float64))] = m
		}
	}
	if !res.Killed {
		problem("the victim's kill line never appeared")
	}
	if res.GorunExit == 0 {
		problem("gorun exited 0")
	}
	for r := range c.nproc {
		if r == victim {
			continue
		}
		m, ok := survivors[r]
		if !ok {
			res.Hang = true
			problem("rank %d never reported a failure (killed by gorun after --grace %v?)", r, grace)
			continue
		}
		res.Survivors++
		msg, _ := m["err"].(string)
		if named, _ := m["named"].(bool); named {
			res.Named++
		} else {
			res.WrongMsg++
			problem("rank %d's error does not name rank %d: %s", r, victim, msg)
		}
		if killNS > 0 {
			tn, _ := m["t_ns"].(float64)
			lat := time.Duration(int64(tn) - killNS)
			res.MaxLatS = max(res.MaxLatS, lat.Seconds())
			if lat > c.peerTimeout+c.slack {
				res.Late++
				problem("rank %d failed %v after the kill (peer timeout %v + slack %v): %s", r, lat.Round(time.Millisecond), c.peerTimeout, c.slack, msg)
			}
		}
	}
	res.OK = len(res.Problems) == 0
	if c.verbose || !res.OK {
		fmt.Fprintf(log, "---- output of %s seed %d (%s) ----\n%s---- end ----\n", tr, seed, runID, tail(out.String(), 60))
	}
	return res
}

// runChaos runs every (transport, seed) and prints one JSON line per run and a summary.
// It returns the number of failed runs.
func runChaos(ctx context.Context, c *chaosConfig, stdout, stderr io.Writer) (int, []chaosResult) {
	var all []chaosResult
	start := time.Now()
	for _, tr := range c.transports {
		for _, seed := range c.seeds {
			r := chaosOne(ctx, c, tr, seed, stderr)
			all = append(all, r)
			line, _ := json.Marshal(r)
			fmt.Fprintln(stdout, string(line))
			if ctx.Err() != nil {
				break
			}
		}
	}
	failed := 0
	for _, tr := range c.transports {
		var runs, bad, hangs, late, wrong, lp, ls, notKilled, exit0 int
		var maxLat float64
		for _, r := range all {
			if r.Transport != tr {
				continue
			}
			runs++
			if !r.OK {
				bad++
			}
			if r.Hang {
				hangs++
			}
			if !r.Killed {
				notKilled++
			}
			if r.GorunExit == 0 {
				exit0++
			}
			late += r.Late
			wrong += r.WrongMsg
			lp += r.LeftProcs
			ls += r.LeftShm
			maxLat = max(maxLat, r.MaxLatS)
		}
		failed += bad
		fmt.Fprintf(stdout, "chaos: %s: %d runs (%d ranks, peer timeout %v), %d failed: %d hangs, %d late survivors, %d wrong messages, %d leftover processes, %d leftover shm files, %d without a kill, %d gorun exit 0; slowest survivor %.2fs after the kill\n",
			tr, runs, c.nproc, c.peerTimeout, bad, hangs, late, wrong, lp, ls, notKilled, exit0, maxLat)
	}
	fmt.Fprintf(stdout, "chaos: %d runs, %d failed, %.0f s\n", len(all), failed, time.Since(start).Seconds())
	return failed, all
}

func chaosMain(args []string) int {
	c, err := parseChaosFlags(args, os.Stderr)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		fmt.Fprintln(os.Stderr, "soak chaos:", err)
		return 2
	}
	failed, _ := runChaos(context.Background(), c, os.Stdout, os.Stderr)
	if failed > 0 {
		return 1
	}
	return 0
}

// chaosEnv is this process's environment without the variables gorun or the ranks would
// read as job settings.
func chaosEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		switch {
		case strings.HasPrefix(k, "PET_"), strings.HasPrefix(k, "SLURM_"), strings.HasPrefix(k, "GORUN_"),
			strings.HasPrefix(k, "SOAK_CHAOS_MARKER"):
			continue
		case k == "RANK" || k == "WORLD_SIZE" || k == "NNODES" || k == "NODE_RANK" || k == "MASTER_ADDR" ||
			k == "MASTER_PORT" || k == "LOCAL_RANK" || k == "LOCAL_WORLD_SIZE":
			continue
		}
		env = append(env, kv)
	}
	return env
}

// markedPids lists the processes whose environment holds marker.
func markedPids(marker string) []int {
	var pids []int
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "environ"))
		if err != nil {
			continue
		}
		for _, kv := range bytes.Split(b, []byte{0}) {
			if string(kv) == marker {
				pids = append(pids, pid)
				break
			}
		}
	}
	return pids
}

// leftoverShm lists the files of dir whose name holds the run id (shmtransport names its
// files ringtrain-shm-<run id>-<pid>-<random>).
func leftoverShm(dir, runID string) []string {
	var out []string
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		if strings.Contains(e.Name(), runID) {
			out = append(out, filepath.Join(dir, e.Name()))
		}
	}
	return out
}

func tail(s string, n int) string {
	lines := strings.SplitAfter(s, "\n")
	if len(lines) > n {
		lines = append([]string{fmt.Sprintf("... (%d lines before)\n", len(lines)-n)}, lines[len(lines)-n:]...)
	}
	return strings.Join(lines, "")
}

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) Bytes() []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return bytes.Clone(s.b.Bytes())
}

func (s *syncBuf) String() string { return string(s.Bytes()) }
