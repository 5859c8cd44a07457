// Command scalereport projects ring vs hierarchical vs tuned AllReduce to 8..1024 ranks
// (issue 15) from measurements committed in the repository, and writes report.md, the
// plot and the numbers (projection.json) into --out:
//
//	go run ./benchmarks/scalereport
//
// Inputs: the single-rank workloads of the scaling report (--results), the shared-memory
// row and γ of the tuner table (--table), and the inter-host sweep with one rank per host
// (--sweep, benchmarks/allreduce JSON lines from benchmarks/results/scale/netns/run.sh),
// whose fitted α is the α between hosts. Every assumption is stated in report.md.
package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/ringtrain/ringtrain/benchmarks/report"
	"github.com/ringtrain/ringtrain/collective"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "scalereport:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	fs := flag.NewFlagSet("scalereport", flag.ContinueOnError)
	results := fs.String("results", "benchmarks/results/results.json", "the scaling report's results (single-rank workloads)")
	tableF := fs.String("table", "collective/alphabeta.json", "tuner table: its shm row is the link on a host, reduce_gbps γ")
	sweep := fs.String("sweep", "benchmarks/results/scale/netns/round1/2x1-sweep.jsonl,benchmarks/results/scale/netns/round2/2x1-sweep.jsonl,benchmarks/results/scale/netns/round3/2x1-sweep.jsonl",
		"benchmarks/allreduce JSON lines of sweeps with one rank per host, comma-separated files (fitted together)")
	out := fs.String("out", "benchmarks/results/scale/projection", "output directory")
	gbps := fs.Float64("gbps", 25, "line rate between hosts, Gbit/s per rank")
	perHost := fs.Int("per-host", 8, "ranks per host")
	batch := fs.Int("batch", 64, "per-rank batch the workloads are scaled to")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *gbps <= 0 || *perHost < 1 || *batch < 1 {
		return errors.New("--gbps, --per-host and --batch must be positive")
	}
	in := report.ScaleInputs{Gbps: *gbps, PerHost: *perHost, BatchRank: *batch}
	if err := readWorkloads(*results, *batch, &in); err != nil {
		return err
	}
	tb, err := os.ReadFile(*tableF)
	if err != nil {
		return err
	}
	table, err := collective.ParseTunerTable(tb)
	if err != nil {
		return fmt.Errorf("%s: %w", *tableF, err)
	}
	shm, ok := table.Links["shm"]
	if !ok {
		return fmt.Errorf("%s has no shm row", *tableF)
	}
	in.Intra, in.IntraSource, in.ReduceGBps, in.OpUS = shm, *tableF+" ("+table.Source+")", table.ReduceGBps, table.OpUS
	for _, path := range strings.Split(*sweep, ",") {
		ts, err := readSweep(path)
		if err != nil {
			return err
		}
		in.Sweep = append(in.Sweep, ts...)
	}
	if in.InterFit, err = report.FitAlphaBeta(in.Sweep); err != nil {
		return fmt.Errorf("fitting %s: %w", *sweep, err)
	}
	in.InterAlpha = in.InterFit.Alpha
	in.InterSource = "α fitted to " + strings.ReplaceAll(*sweep, ",", ", ") + " (allreduce, ring, 2 network-namespace hosts × 1 rank, TLS)"
	curves, err := report.ScaleCurves(in)
	if err != nil {
		return err
	}
	sims, err := report.ScaleSims(in)
	if err != nil {
		return err
	}
	targets := report.ScaleTargets(in, curves)
	if err := os.MkdirAll(*out, 0o755); err != nil {
		return err
	}
	plots, err := report.WriteScalePlots(*out, in, curves)
	if err != nil {
		return err
	}
	var rel []string
	for _, p := range plots {
		rel = append(rel, filepath.Base(p))
	}
	f, err := os.Create(filepath.Join(*out, "report.md"))
	if err != nil {
		return err
	}
	cmd := "go run ./benchmarks/scalereport " + strings.Join(args, " ")
	if err := report.WriteScaleMarkdown(f, in, curves, sims, targets, rel, strings.TrimSpace(cmd)); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	j, err := json.MarshalIndent(struct {
		Inputs  report.ScaleInputs   `json:"inputs"`
		Curves  []report.AlgoCurve   `json:"curves"`
		Sims    []report.ScaleSim    `json:"simulation_64"`
		Targets []report.ScaleTarget `json:"targets"`
	}{in, curves, sims, targets}, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(*out, "projection.json"), append(j, '\n'), 0o644); err != nil {
		return err
	}
	for _, t := range targets {
		fmt.Printf("%s ≥ %.0f%% at %d: %.1f%% (%s) reached=%v %s\n", t.Workload, 100*t.Want, t.Ranks, 100*t.Got, t.Algo, t.Reached, t.Blocker)
	}
	return nil
}

// readWorkloads takes the scaling report's single-rank workloads and scales each to the
// per-rank batch: compute in proportion, the rest of the step as measured.
func readWorkloads(path string, batch int, in *report.ScaleInputs) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	var res struct {
		Settings struct {
			Batch      int            `json:"batch_per_rank"`
			ModelBatch map[string]int `json:"model_batch_per_rank"`
		} `json:"settings"`
		Projection struct {
			Workloads []report.Workload `json:"workloads"`
		} `json:"projection"`
	}
	if err := json.Unmarshal(b, &res); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	if len(res.Projection.Workloads) == 0 {
		return fmt.Errorf("%s: no workloads", path)
	}
	for _, w := range res.Projection.Workloads {
		measured := res.Settings.ModelBatch[w.Name]
		if measured == 0 {
			measured = res.Settings.Batch
		}
		if measured <= 0 {
			return fmt.Errorf("%s: no batch size for %s", path, w.Name)
		}
		note := fmt.Sprintf("measured at batch %d per rank (%s)", measured, path)
		if measured != batch {
			k := float64(batch) / float64(measured)
			compute := w.ComputeSeconds
			if compute == 0 {
				compute = w.StepSeconds
			}
			w.StepSeconds += compute * (k - 1)
			w.ComputeSeconds = compute * k
			note = fmt.Sprintf("measured at batch %d per rank (%s); compute × %g for batch %d", measured, path, k, batch)
		}
		if err := w.Validate(); err != nil {
			return err
		}
		in.Workloads = append(in.Workloads, w)
		in.WorkloadNotes = append(in.WorkloadNotes, note)
	}
	return nil
}

// readSweep reads the AllReduce rows (allreduce's JSON lines) as timings.
func readSweep(path string) ([]report.Timing, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var ts []report.Timing
	sc := bufio.NewScanner(f)
	for line := 1; sc.Scan(); line++ {
		var r struct {
			Op     string  `json:"op"`
			Ranks  int     `json:"ranks"`
			Bytes  float64 `json:"bytes"`
			TimeUS float64 `json:"time_us"`
			Dtype  string  `json:"dtype"`
		}
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			return nil, fmt.Errorf("%s:%d: %w", path, line, err)
		}
		if r.Op != "allreduce" || r.Dtype != "fp32" {
			continue
		}
		if !(r.TimeUS > 0) || r.Ranks < 2 || !(r.Bytes > 0) {
			return nil, fmt.Errorf("%s:%d: implausible row (ranks %d, bytes %g, time %g µs)", path, line, r.Ranks, r.Bytes, r.TimeUS)
		}
		ts = append(ts, report.Timing{Ranks: r.Ranks, Bytes: r.Bytes, Seconds: r.TimeUS * 1e-6})
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if len(ts) == 0 {
		return nil, fmt.Errorf("%s: no fp32 AllReduce rows", path)
	}
	return ts, nil
}
