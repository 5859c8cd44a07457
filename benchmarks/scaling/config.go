package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/ringtrain/ringtrain/benchmarks/report"
)

// config is the parsed command line.
type config struct {
	nproc          []int
	models         []string
	modes          []string
	compress       []string
	reps           perModel
	batch          perModel // per rank, weak scaling
	globalBatch    perModel // strong scaling; 0: derived from batch
	steps          perModel // measured steps per run (after as many warm-up steps)
	threadsPerRank int
	transport      string
	sweep          bool
	sweepMin       int64
	sweepMax       int64
	sweepIters     int
	sweepFactor    int
	alphaUS        float64 // > 0: the projection's α instead of the fit's
	out            string
	repo           string
	gorun          string // prebuilt executables; empty: build them
	trainer        string
	allreduce      string
	runTimeout     time.Duration
	quick          bool
	rerender       bool
	args           []string // the command line, for the report
}

const usageText = `usage: scaling [flags]

Measures ringtrain's data-parallel scaling through gorun on synthetic data (weak and strong
scaling, fp32 and fp16 gradients, several repetitions), runs the AllReduce sweep, fits the
α-β model of the ring, projects efficiency to large clusters, and writes results.json,
report.md and plots (SVG and PNG) to --out.

`

// parseArgs parses the command line. --quick changes the defaults of the flags not given.
func parseArgs(args []string, stderr io.Writer) (*config, error) {
	fs := flag.NewFlagSet("scaling", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, usageText)
		fs.PrintDefaults()
	}
	var (
		nproc      = fs.String("nproc", "1,2,4", "comma-separated rank counts (1 is the baseline and is always measured)")
		models     = fs.String("model", "mlp,mlp-wide,cnn", "comma-separated models (examples/fashion --model); --quick: mlp,cnn")
		modes      = fs.String("modes", "weak,strong", "scaling modes: weak (fixed per-rank batch), strong (fixed global batch)")
		compress   = fs.String("compress", "none,fp16", "gradient exchanges: none (fp32), fp16")
		reps       = perModel{def: 3, by: map[string]int{"mlp-wide": 2}}
		batch      = perModel{def: 64, by: map[string]int{"mlp-wide": 16}}
		gbatch     = perModel{}
		steps      = perModel{def: 16, by: map[string]int{"mlp-wide": 3}}
		threads    = fs.Int("threads-per-rank", 1, "GOMAXPROCS of every rank (gorun --threads-per-rank)")
		transport  = fs.String("transport", "", "rank-to-rank transport given to gorun --transport (empty: gorun's default)")
		noSweep    = fs.Bool("no-sweep", false, "skip the AllReduce sweep (and so the α-β fit, unless --alpha-us is given)")
		sweepMin   = fs.String("sweep-min", "4K", "smallest AllReduce message, bytes (K, M suffixes: powers of 1024)")
		sweepMax   = fs.String("sweep-max", "16M", "largest AllReduce message, bytes")
		sweepIters = fs.Int("sweep-iters", 20, "timed AllReduce iterations per message size")
		sweepFact  = fs.Int("sweep-factor", 4, "size multiplier between the sweep's message sizes")
		alphaUS    = fs.Float64("alpha-us", 0, "latency per ring step for the projection, µs (0: the α fitted to the sweep)")
		out        = fs.String("out", "", "output directory (default: benchmarks/results in the repository)")
		repo       = fs.String("repo", "", "repository root (default: found from the working directory)")
		gorun      = fs.String("gorun", "", "prebuilt gorun executable (default: built from cmd/gorun)")
		trainer    = fs.String("trainer", "", "prebuilt training executable (default: built from examples/fashion)")
		allreduce  = fs.String("allreduce", "", "prebuilt AllReduce benchmark executable (default: built from benchmarks/allreduce)")
		timeout    = fs.Duration("run-timeout", 5*time.Minute, "limit on one run (one gorun job)")
		rerender   = fs.Bool("rerender", false, "run nothing: render report.md and the plots again from --out's results.json")
		quick      = fs.Bool("quick", false, "small settings for a fast smoke report: 1 repetition, few steps, small batches and sweep")
	)
	fs.Var(&reps, "reps", "repetitions of every configuration, as N or N,MODEL=N,... (medians and min/max are reported)")
	fs.Var(&batch, "batch", "per-rank batch for weak scaling, as N or N,MODEL=N,...")
	fs.Var(&gbatch, "global-batch", "global batch for strong scaling, divided among the ranks, as N or N,MODEL=N,... (0: the model's --batch, rounded up to a multiple of every rank count)")
	fs.Var(&steps, "steps", "measured training steps per run, as N or N,MODEL=N,...; each run first trains as many warm-up steps (graph compilation, connections), not measured")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q (all settings are flags)", fs.Arg(0))
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if *quick {
		// Quick defaults: every configuration once, briefly.
		def := func(name string, apply func()) {
			if !set[name] {
				apply()
			}
		}
		def("reps", func() { reps = perModel{def: 1} })
		def("steps", func() { steps = perModel{def: 4, by: map[string]int{"mlp-wide": 2}} })
		def("batch", func() { batch = perModel{def: 32, by: map[string]int{"mlp-wide": 8}} })
		def("sweep-max", func() { *sweepMax = "1M" })
		def("sweep-iters", func() { *sweepIters = 5 })
		// mlp-wide's 20 M parameters cost more than the whole quick budget on 2 cores.
		def("model", func() { *models = "mlp,cnn" })
		def("run-timeout", func() { *timeout = 2 * time.Minute })
	}

	c := &config{reps: reps, batch: batch, globalBatch: gbatch, steps: steps,
		threadsPerRank: *threads, transport: *transport, sweep: !*noSweep, sweepIters: *sweepIters, sweepFactor: *sweepFact,
		alphaUS: *alphaUS, out: *out, repo: *repo, gorun: *gorun, trainer: *trainer, allreduce: *allreduce,
		runTimeout: *timeout, quick: *quick, rerender: *rerender, args: args}
	var err error
	if c.nproc, err = parseInts("--nproc", *nproc); err != nil {
		return nil, err
	}
	c.models = parseList(*models)
	c.modes = parseList(*modes)
	c.compress = parseList(*compress)
	if c.sweepMin, err = parseBytes("--sweep-min", *sweepMin); err != nil {
		return nil, err
	}
	if c.sweepMax, err = parseBytes("--sweep-max", *sweepMax); err != nil {
		return nil, err
	}
	if err := c.validate(); err != nil {
		return nil, err
	}
	return c, nil
}

func (c *config) validate() error {
	seen := map[int]bool{}
	hasOne := false
	for _, n := range c.nproc {
		if n < 1 {
			return fmt.Errorf("--nproc: rank count %d, want at least 1", n)
		}
		if seen[n] {
			return fmt.Errorf("--nproc: rank count %d given twice", n)
		}
		seen[n] = true
		hasOne = hasOne || n == 1
	}
	if !hasOne {
		// Efficiency is defined against one rank: measure it even if not asked.
		c.nproc = append([]int{1}, c.nproc...)
	}
	if len(c.models) == 0 {
		return errors.New("--model: no model given")
	}
	for _, m := range c.modes {
		if m != "weak" && m != "strong" {
			return fmt.Errorf("--modes: unknown mode %q (want weak, strong)", m)
		}
	}
	if len(c.modes) == 0 {
		return errors.New("--modes: no mode given")
	}
	for _, m := range c.compress {
		if m != "none" && m != "fp16" {
			return fmt.Errorf("--compress: unknown gradient exchange %q (want none, fp16)", m)
		}
	}
	if len(c.compress) == 0 {
		return errors.New("--compress: nothing given")
	}
	for _, m := range c.models {
		switch {
		case c.reps.of(m) < 1:
			return fmt.Errorf("--reps: %d for %s, want at least 1", c.reps.of(m), m)
		case c.batch.of(m) < 1:
			return fmt.Errorf("--batch: %d for %s, want at least 1", c.batch.of(m), m)
		case c.steps.of(m) < 1:
			return fmt.Errorf("--steps: %d for %s, want at least 1", c.steps.of(m), m)
		case c.globalBatch.of(m) < 0:
			return fmt.Errorf("--global-batch: %d for %s, want at least 0", c.globalBatch.of(m), m)
		}
	}
	switch {
	case c.threadsPerRank < 1:
		return fmt.Errorf("--threads-per-rank %d: want at least 1", c.threadsPerRank)
	case c.sweepFactor < 2:
		return fmt.Errorf("--sweep-factor %d: want at least 2", c.sweepFactor)
	case c.sweepIters < 1:
		return fmt.Errorf("--sweep-iters %d: want at least 1", c.sweepIters)
	case c.sweepMin < 4 || c.sweepMax < c.sweepMin:
		return fmt.Errorf("--sweep-min %d / --sweep-max %d: want 4 ≤ min ≤ max bytes", c.sweepMin, c.sweepMax)
	case c.alphaUS < 0:
		return fmt.Errorf("--alpha-us %v: want ≥ 0", c.alphaUS)
	case c.runTimeout <= 0:
		return fmt.Errorf("--run-timeout %v: want > 0", c.runTimeout)
	}
	// Strong scaling starts by default from the weak-scaling single-rank run (same batch),
	// so the baseline is shared; the batch then splits evenly over every rank count.
	l := 1
	for _, n := range c.nproc {
		l = lcm(l, n)
	}
	for _, m := range c.models {
		if c.globalBatch.of(m) > 0 {
			continue
		}
		if c.globalBatch.by == nil {
			c.globalBatch.by = map[string]int{}
		}
		c.globalBatch.by[m] = (c.batch.of(m) + l - 1) / l * l
	}
	for _, m := range c.models {
		for _, mode := range c.modes {
			for _, n := range c.nproc {
				if _, err := report.BatchFor(mode, n, c.batch.of(m), c.globalBatch.of(m)); err != nil {
					return fmt.Errorf("--global-batch %d for %s: %v", c.globalBatch.of(m), m, err)
				}
			}
		}
	}
	return nil
}

func parseList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

func parseInts(flagName, s string) ([]int, error) {
	var out []int
	for _, f := range parseList(s) {
		n, err := strconv.Atoi(f)
		if err != nil {
			return nil, fmt.Errorf("%s: %q is not an integer", flagName, f)
		}
		out = append(out, n)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s: empty list", flagName)
	}
	return out, nil
}

// parseBytes reads "4096", "4K", "16M", "1G" (binary multiples).
func parseBytes(flagName, s string) (int64, error) {
	t := strings.ToUpper(strings.TrimSpace(s))
	t = strings.TrimSuffix(strings.TrimSuffix(t, "B"), "I")
	mult := int64(1)
	if t != "" {
		switch t[len(t)-1] {
		case 'K':
			mult, t = 1<<10, t[:len(t)-1]
		case 'M':
			mult, t = 1<<20, t[:len(t)-1]
		case 'G':
			mult, t = 1<<30, t[:len(t)-1]
		}
	}
	n, err := strconv.ParseInt(t, 10, 64)
	if err != nil || n < 0 || n > (1<<40)/mult {
		return 0, fmt.Errorf("%s: %q is not a byte count (e.g. 4096, 64K, 16M)", flagName, s)
	}
	return n * mult, nil
}

// findRepo walks up from dir to the directory whose go.mod declares the ringtrain module.
func findRepo(dir string) (string, error) {
	d, err := filepath.Abs(dir)
	if err != nil {
		return "", err
	}
	for {
		b, err := os.ReadFile(filepath.Join(d, "go.mod"))
		if err == nil && strings.Contains(string(b), "module github.com/ringtrain/ringtrain\n") {
			return d, nil
		}
		parent := filepath.Dir(d)
		if parent == d {
			return "", fmt.Errorf("no ringtrain repository (go.mod of github.com/ringtrain/ringtrain) at or above %s: give --repo", dir)
		}
		d = parent
	}
}

func gcd(a, b int) int {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}

func lcm(a, b int) int { return a / gcd(a, b) * b }
