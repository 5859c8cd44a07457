// Command scaling measures how ringtrain's data-parallel training scales and writes the
// report users judge the project by.
//
//	go run ./benchmarks/scaling --nproc 1,2,4 --model mlp,mlp-wide,cnn --out benchmarks/results
//
// It builds gorun, the Fashion-MNIST trainer (examples/fashion) and the AllReduce
// benchmark (benchmarks/allreduce) once, then runs through gorun, on synthetic data, every
// configuration: each model on each rank count, weak scaling (fixed per-rank batch) and
// strong scaling (fixed global batch), fp32 and fp16 gradients, --reps times, each rank
// with --threads-per-rank cores' worth of GOMAXPROCS. It runs the AllReduce sweep (fp32 and
// fp16, with the raw ring-exchange ceiling), fits the α-β cost of the ring to it, projects
// the scaling efficiency of the measured workloads to 8…1024 ranks on 10, 25 and 100 Gbit/s
// links, and writes to --out:
//
//	results.json   every run and every derived number (package report's Results)
//	report.md      machine, headline table, breakdown, sweep, fit, projection, plots
//	*.svg, *.png   efficiency, throughput, breakdown, busbw, alphabeta, projection
//
// Progress (configuration, i of n, elapsed, ETA) goes to stderr. The exit status is 0 when
// every run succeeded, 1 when some failed (the report is still written, naming them), 2
// for a usage error.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/ringtrain/ringtrain/benchmarks/report"
	"github.com/ringtrain/ringtrain/models"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

// run is the whole command; it returns the exit status.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	c, err := parseArgs(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "scaling: %v\n", err)
		return 2
	}
	if c.rerender {
		if err := rerender(c); err != nil {
			fmt.Fprintf(stderr, "scaling: %v\n", err)
			return 1
		}
		return 0
	}
	if err := session(ctx, c, stdout, stderr); err != nil {
		// Failed runs (*failedRunsError) still leave a report; both are exit status 1.
		fmt.Fprintf(stderr, "scaling: %v\n", err)
		return 1
	}
	return 0
}

// failedRunsError says the report was written but some runs failed.
type failedRunsError struct{ failed, total int }

func (e *failedRunsError) Error() string {
	return fmt.Sprintf("%d of %d runs failed (named in the report's notes)", e.failed, e.total)
}

// gradBytes returns the float32 gradient size of each model, from its definition.
func gradBytes(names []string) (map[string]float64, error) {
	out := map[string]float64{}
	for _, n := range names {
		m, err := models.Build(n, 1)
		if err != nil {
			return nil, fmt.Errorf("--model: %w", err)
		}
		out[n] = 4 * float64(m.NumParams())
	}
	return out, nil
}

func session(ctx context.Context, c *config, stdout, stderr io.Writer) error {
	start := time.Now()
	var err error
	if c.repo == "" {
		wd, _ := os.Getwd()
		if c.repo, err = findRepo(wd); err != nil {
			return err
		}
	} else if c.repo, err = filepath.Abs(c.repo); err != nil {
		return err
	}
	if c.out == "" {
		c.out = filepath.Join(c.repo, "benchmarks", "results")
	}
	if err := os.MkdirAll(c.out, 0o755); err != nil {
		return fmt.Errorf("--out: %w", err)
	}
	grads, err := gradBytes(c.models)
	if err != nil {
		return err
	}

	machine := report.DetectMachine(ctx, c.repo, c.threadsPerRank)
	all := func(p perModel) map[string]int {
		m := map[string]int{}
		for _, name := range c.models {
			m[name] = p.of(name)
		}
		return m
	}
	res := &report.Results{Schema: report.SchemaVersion, Machine: machine, Settings: report.Settings{
		NProc: c.nproc, Models: c.models, Modes: c.modes, Compress: c.compress,
		Reps: c.reps.of(c.models[0]), Batch: c.batch.of(c.models[0]), GlobalBatch: c.globalBatch.of(c.models[0]), Steps: c.steps.of(c.models[0]),
		ModelReps: all(c.reps), ModelBatch: all(c.batch), ModelGlobalBatch: all(c.globalBatch), ModelSteps: all(c.steps),
		ThreadsPerRank: c.threadsPerRank, Transport: c.transport,
		Quick: c.quick, SweepMinBytes: c.sweepMin, SweepMaxBytes: c.sweepMax, SweepFactor: c.sweepFactor, SweepIters: c.sweepIters,
		Command: "scaling " + strings.Join(c.args, " "),
	}}
	res.Runs = []report.Run{}
	res.Notes = []string{}
	fmt.Fprintf(stderr, "scaling: %s, %d cores, %.1f GiB, %s, commit %s\n", machine.CPUModel, machine.Cores,
		float64(machine.MemoryBytes)/(1<<30), machine.GoVersion, machine.Commit)
	if fit := res.Oversubscribed(); fit > 0 {
		msg := fmt.Sprintf("WARNING: %d cores and %d thread(s) per rank: runs with more than %d rank(s) oversubscribe the machine (ranks share cores)",
			machine.Cores, c.threadsPerRank, fit)
		fmt.Fprintf(stderr, "scaling: %s\n", msg)
		res.Notes = append(res.Notes, msg+"; their figures measure time-slicing, not the collective.")
	}

	tmp, err := os.MkdirTemp("", "ringtrain-scaling-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	bins, err := buildBinaries(ctx, c, tmp, stderr)
	if err != nil {
		return err
	}
	jobs, err := plan(c)
	if err != nil {
		return err
	}

	prog := newProgress(stderr, len(jobs), nil)
	failed := 0
	for i, j := range jobs {
		if ctx.Err() != nil {
			return fmt.Errorf("interrupted after %d of %d runs: %w", i, len(jobs), ctx.Err())
		}
		label := j.label(c.reps.of(j.model))
		prog.begin(i, label, jobs[i:])
		out, err := runGorun(ctx, bins.gorun, gorunArgs(c, bins, j), c.runTimeout, c.repo)
		outcome := "ok"
		if err == nil {
			switch j.kind {
			case jobTrain:
				var r report.Run
				if r, err = trainRun(j, out.lines, measuredEpoch); err == nil {
					r.WallS = out.elapsed.Seconds()
					res.Runs = append(res.Runs, r)
					outcome = fmt.Sprintf("%.0f samples/s, step %.1f ms (compute %.1f, comm %.1f, exposed %.1f)",
						r.SamplesPerS, r.StepMS, r.ComputeMS, r.CommMS, r.ExposedCommMS)
				}
			case jobSweep:
				var rows []report.SweepRow
				if rows, err = sweepRows(j, out.lines); err == nil {
					res.AllReduce = append(res.AllReduce, rows...)
					outcome = fmt.Sprintf("%d rows", len(rows))
				}
			}
		}
		elapsed := time.Duration(0)
		if out != nil {
			elapsed = out.elapsed
		}
		if err != nil {
			failed++
			outcome = "FAILED: " + err.Error()
			note := fmt.Sprintf("%s failed: %v", label, err)
			if out != nil && len(out.tail) > 0 {
				fmt.Fprintf(stderr, "scaling:     last output:\n")
				for _, l := range out.tail {
					fmt.Fprintf(stderr, "scaling:       %s\n", l)
				}
				note += " — last output: " + strings.Join(lastN(out.tail, 3), " | ")
			}
			res.Notes = append(res.Notes, note)
		}
		prog.end(j.costKey(), elapsed, outcome)
	}

	if err := finish(ctx, c, res, grads); err != nil {
		return err
	}
	res.ElapsedS = time.Since(start).Seconds()
	paths, err := write(c.out, res)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "\n%s\n", report.HeadlineTable(res))
	fmt.Fprintf(stdout, "wrote %s (%d runs, %d sweep rows, %d plot files) in %s\n", c.out, len(res.Runs), len(res.AllReduce), len(paths), fmtDur(time.Since(start)))
	if failed > 0 {
		return &failedRunsError{failed: failed, total: len(jobs)}
	}
	return nil
}

func lastN(xs []string, n int) []string {
	if len(xs) > n {
		return xs[len(xs)-n:]
	}
	return xs
}

// measuredEpoch is the trainer epoch that is measured; the ones before it warm up.
const measuredEpoch = 2

// gorunArgs is gorun's command line for one job.
func gorunArgs(c *config, b binaries, j job) []string {
	a := []string{"--nproc", strconv.Itoa(j.ranks), "--threads-per-rank", strconv.Itoa(c.threadsPerRank), "--standalone"}
	if c.transport != "" {
		a = append(a, "--transport", c.transport)
	}
	switch j.kind {
	case jobSweep:
		a = append(a, b.allreduce, "--min", strconv.FormatInt(c.sweepMin, 10), "--max", strconv.FormatInt(c.sweepMax, 10),
			"--factor", strconv.Itoa(c.sweepFactor), "--dtype", j.dtype, "--iters", strconv.Itoa(c.sweepIters), "--json", "--baseline")
	case jobTrain:
		// Two epochs of exactly --steps steps each: the first is the warm-up (gorgonia
		// compiles each layer's graphs on first use, connections open, memory is first
		// touched) and only the second is measured. The trainer has no warm-up flag and
		// times whole epochs, so the epoch length is set through the synthetic set's size.
		steps := c.steps.of(j.model)
		a = append(a, b.trainer, "--model", j.model, "--synthetic", "--batch", strconv.Itoa(j.batch),
			"--synthetic-size", strconv.Itoa(j.ranks*j.batch*steps), "--epochs", strconv.Itoa(measuredEpoch),
			"--compress", j.compress, "--json", "--progress", "0")
	}
	return a
}

// finish derives everything from the raw runs and sweep rows: scaling points, fits,
// projection.
func finish(ctx context.Context, c *config, res *report.Results, grads map[string]float64) error {
	pts, notes, err := report.Aggregate(res.Runs, res.Settings, res.Machine)
	if err != nil {
		return err
	}
	res.Scaling = pts
	res.Notes = append(res.Notes, notes...)
	var fnotes []string
	res.Fits, fnotes = report.FitSweep(res.AllReduce, res.Machine.Cores/max(1, c.threadsPerRank))
	res.Notes = append(res.Notes, fnotes...)

	alpha, source := 0.0, ""
	switch {
	case c.alphaUS > 0:
		alpha, source = c.alphaUS*1e-6, "given with --alpha-us"
	default:
		for _, f := range res.Fits {
			if f.Dtype == "fp32" {
				alpha, source = f.Alpha, "fitted to this machine's fp32 loopback sweep"
			}
		}
	}
	if source == "" {
		res.Notes = append(res.Notes, "no projection: no α (the fp32 sweep did not run or could not be fitted; give --alpha-us)")
		return nil
	}
	var ws []report.Workload
	for _, model := range c.models {
		buckets := 0
		for _, r := range res.Runs {
			if r.Model == model && r.Buckets > 0 {
				buckets = r.Buckets // the same on every rank count: ddp plans from the model
			}
		}
		for _, p := range res.Scaling {
			if p.Model == model && p.Ranks == 1 && p.Mode == c.modes[0] && p.Compress == c.compress[0] {
				ws = append(ws, report.Workload{Name: model, StepSeconds: p.StepMS.Median / 1e3,
					ComputeSeconds: min(p.ComputeMS.Median, p.StepMS.Median) / 1e3, GradBytes: grads[model], Buckets: buckets})
			}
		}
	}
	sort.SliceStable(ws, func(i, j int) bool { return ws[i].GradBytes > ws[j].GradBytes })
	if len(ws) == 0 {
		res.Notes = append(res.Notes, "no projection: no single-rank run succeeded")
		return nil
	}
	pr, err := report.BuildProjection(ws, alpha, source)
	if err != nil {
		res.Notes = append(res.Notes, fmt.Sprintf("no projection: %v", err))
		return nil
	}
	res.Projection = pr
	return nil
}

// rerender renders report.md and the plots again from an existing results.json (after a
// change to the report's layout, without measuring again).
func rerender(c *config) error {
	if c.out == "" {
		repo := c.repo
		if repo == "" {
			wd, _ := os.Getwd()
			var err error
			if repo, err = findRepo(wd); err != nil {
				return err
			}
		}
		c.out = filepath.Join(repo, "benchmarks", "results")
	}
	res, err := report.ReadJSON(filepath.Join(c.out, "results.json"))
	if err != nil {
		return fmt.Errorf("--rerender: %w", err)
	}
	_, err = write(c.out, res)
	return err
}

// write renders results.json, the plots and report.md into dir.
func write(dir string, res *report.Results) ([]string, error) {
	if err := res.WriteJSON(filepath.Join(dir, "results.json")); err != nil {
		return nil, err
	}
	paths, err := report.WritePlots(dir, res)
	if err != nil {
		return nil, err
	}
	f, err := os.Create(filepath.Join(dir, "report.md"))
	if err != nil {
		return nil, err
	}
	if err := report.WriteMarkdown(f, res, paths); err != nil {
		f.Close()
		return nil, err
	}
	return paths, f.Close()
}
