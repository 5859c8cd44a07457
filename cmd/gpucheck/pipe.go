package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"math"
	"os"
	"time"

	"github.com/ringtrain/ringtrain/gpu"
	"github.com/ringtrain/ringtrain/models"
	"github.com/ringtrain/ringtrain/pipeline"
)

func init() {
	commands["pipe-worker"] = pipeWorkerCmd
	commands["compare-losses"] = compareLossesCmd
}

// lossFile is what pipe-worker --loss-out writes: the last stage's mean loss
// over the global batch, per step.
type lossFile struct {
	Model       string    `json:"model"`
	Device      string    `json:"device"`
	Placed      string    `json:"placed"`
	Stages      int       `json:"stages"`
	GlobalBatch int       `json:"global_batch"`
	Micro       int       `json:"micro_batches"`
	Seed        int64     `json:"seed"`
	Losses      []float64 `json:"losses"`
}

// pipeWorkerCmd trains --model as a pipeline of as many stages as gorun
// started ranks (one replica), each stage compiled onto --device (the CPU
// path for cpu), on the same deterministic batches as ddp-worker, and
// reports the last stage's loss per step.
func pipeWorkerCmd(ctx context.Context, args []string, out *Reporter) error {
	fs := flag.NewFlagSet("pipe-worker", flag.ContinueOnError)
	model := fs.String("model", "mlp", "model: "+fmt.Sprint(models.ModelNames()))
	device := fs.String("device", "cuda", "device of every stage: "+gpu.Specs)
	batch := fs.Int("global-batch", 64, "samples per step")
	micro := fs.Int("micro-batches", 0, "micro-batches per step (0: the number of stages)")
	steps := fs.Int("steps", 5, "training steps")
	seed := fs.Int64("seed", 1, "seed of the weights and the data")
	lossOut := fs.String("loss-out", "", "the last stage writes its per-step losses here (JSON)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if *steps < 1 || *batch < 1 {
		return fmt.Errorf("--steps %d, --global-batch %d: want positive values", *steps, *batch)
	}
	g, rank, world, err := joinGroup(ctx)
	if err != nil {
		return err
	}
	if g == nil {
		return errors.New("pipe-worker runs under gorun (gorun --nproc 2 gpucheck pipe-worker ...)")
	}
	defer leave(ctx, g)

	full, err := models.Build(*model, *seed)
	if err != nil {
		return err
	}
	dev, note, err := gpu.Select(*device, localRank())
	if err != nil {
		return err
	}
	var compiled *gpu.Model
	cfg := pipeline.Config{Stages: world, MicroBatches: *micro, Batch: *batch, InputShape: models.ImageShape()}
	if dev != nil {
		cfg.Compile = func(stage *models.Sequential) (models.Model, error) {
			m, err := gpu.Compile(stage, dev)
			compiled = m
			return m, err
		}
	}
	e, err := pipeline.New(ctx, full, g, cfg)
	if err != nil {
		return fmt.Errorf("rank %d: %w", rank, err)
	}
	defer e.Close()
	if compiled != nil {
		defer compiled.Close()
	}
	opt, err := gpu.NewSGDFor(e.Model(), models.SGDConfig{LR: ddpLR, Momentum: ddpMomentum})
	if err != nil {
		return err
	}
	if c, ok := opt.(interface{ Close() }); ok {
		defer c.Close()
	}
	if rank == 0 {
		fmt.Fprintf(os.Stderr, "pipe-worker: %s in %d stages on %s, global batch %d\n%s", *model, world, note, *batch, e.Plan())
	}
	lf := lossFile{Model: *model, Device: *device, Placed: e.Device(), Stages: world, GlobalBatch: *batch,
		Micro: e.Config().MicroBatches, Seed: *seed}
	for step := 0; step < *steps; step++ {
		x, labels := globalBatch(*seed, step, *batch)
		t0 := time.Now()
		st, err := e.Step(ctx, x, labels, opt)
		if err != nil {
			return fmt.Errorf("rank %d: step %d: %w", rank, step, err)
		}
		if e.IsLast() {
			ok := !math.IsNaN(st.Loss) && !math.IsInf(st.Loss, 0)
			lf.Losses = append(lf.Losses, st.Loss)
			out.Report(map[string]any{"check": "pipe-step", "model": *model, "device": *device, "placed": e.Device(),
				"rank": rank, "stage": e.Stage(), "stages": world, "global_batch": *batch, "step": step, "loss": st.Loss,
				"step_ms": float64(time.Since(t0).Microseconds()) / 1e3, "ok": ok})
		}
	}
	if e.IsLast() && *lossOut != "" {
		b, err := json.Marshal(lf)
		if err != nil {
			return err
		}
		if err := os.WriteFile(*lossOut, append(b, '\n'), 0o644); err != nil {
			return err
		}
	}
	// Leave together, as ddp-worker does.
	return g.Barrier(ctx)
}

// compareLossesCmd compares the per-step losses of two pipe-worker runs
// (e.g. the device against the CPU): same count, each within --tol.
func compareLossesCmd(ctx context.Context, args []string, out *Reporter) error {
	fs := flag.NewFlagSet("compare-losses", flag.ContinueOnError)
	tol := fs.Float64("tol", 1e-3, "largest allowed absolute difference of a step's loss")
	check := fs.String("check", "pipeline-gpu-vs-cpu", "the record's check name")
	if err := fs.Parse(reorder(args)); err != nil {
		return err
	}
	if fs.NArg() != 2 {
		return errors.New("want two loss files: compare-losses A B [--tol 1e-3]")
	}
	rec := map[string]any{"check": *check, "a": fs.Arg(0), "b": fs.Arg(1), "tol": *tol}
	var files [2]lossFile
	var err error
	for i := range files {
		if err == nil {
			err = readLosses(fs.Arg(i), &files[i])
		}
	}
	if err == nil {
		a, b := files[0], files[1]
		rec["placed_a"], rec["placed_b"], rec["losses_a"], rec["losses_b"] = a.Placed, b.Placed, a.Losses, b.Losses
		switch {
		case len(a.Losses) == 0 || len(a.Losses) != len(b.Losses):
			err = fmt.Errorf("%d losses against %d", len(a.Losses), len(b.Losses))
		case a.Model != b.Model || a.GlobalBatch != b.GlobalBatch || a.Seed != b.Seed || a.Stages != b.Stages:
			err = fmt.Errorf("different runs: %s/%d/%d/%d stages against %s/%d/%d/%d stages",
				a.Model, a.GlobalBatch, a.Seed, a.Stages, b.Model, b.GlobalBatch, b.Seed, b.Stages)
		}
		var worst float64
		worstStep := -1
		for i := 0; err == nil && i < len(a.Losses); i++ {
			d := math.Abs(a.Losses[i] - b.Losses[i])
			if math.IsNaN(d) || math.IsInf(d, 0) {
				err = fmt.Errorf("step %d: loss not finite (%v, %v)", i, a.Losses[i], b.Losses[i])
			} else if d > worst || worstStep < 0 {
				worst, worstStep = d, i
			}
		}
		rec["max_abs_diff"], rec["worst_step"] = worst, worstStep
	}
	if err != nil {
		rec["ok"], rec["error"] = false, err.Error()
	} else {
		rec["ok"] = rec["max_abs_diff"].(float64) <= *tol
	}
	out.Report(rec)
	return nil
}

func readLosses(path string, lf *lossFile) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, lf); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}
