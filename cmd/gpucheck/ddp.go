package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"time"

	"github.com/ringtrain/ringtrain/collective"
	"github.com/ringtrain/ringtrain/ddp"
	"github.com/ringtrain/ringtrain/gpu"
	"github.com/ringtrain/ringtrain/models"
)

func init() {
	commands["ddp-worker"] = ddpWorkerCmd
	commands["compare-params"] = compareParamsCmd
}

// ddpLR and ddpMomentum are the SGD settings of ddp-worker.
const (
	ddpLR       = 0.05
	ddpMomentum = 0.9
)

// joinGroup joins the job gorun started (WORLD_SIZE set); alone it returns a
// nil group (rank 0 of 1).
func joinGroup(ctx context.Context) (g *collective.Group, rank, world int, err error) {
	if _, ok := os.LookupEnv("WORLD_SIZE"); !ok {
		return nil, 0, 1, nil
	}
	if g, err = collective.InitFromEnv(ctx); err != nil {
		return nil, 0, 0, err
	}
	return g, g.Rank(), g.Size(), nil
}

// localRank is LOCAL_RANK from gorun's environment, 0 when unset or bad.
func localRank() int {
	var r int
	if _, err := fmt.Sscan(os.Getenv("LOCAL_RANK"), &r); err != nil || r < 0 {
		return 0
	}
	return r
}

// globalBatch returns step's global batch: n samples of shape
// models.ImageShape() with standard-normal pixels and uniform labels in
// [0, NumClasses), drawn from (seed, step) alone, so every rank (and every
// world size) sees the same samples.
func globalBatch(seed int64, step, n int) (models.Tensor, []int) {
	rng := rand.New(rand.NewPCG(uint64(seed), uint64(step)+0x9e3779b97f4a7c15))
	shape := append([]int{n}, models.ImageShape()...)
	x := models.NewTensor(shape...)
	for i := range x.Data {
		x.Data[i] = float32(rng.NormFloat64())
	}
	labels := make([]int, n)
	for i := range labels {
		labels[i] = rng.IntN(models.NumClasses)
	}
	return x, labels
}

// rows returns samples [from, to) of a batch (a copy).
func rows(x models.Tensor, labels []int, from, to int) (models.Tensor, []int) {
	per := len(x.Data) / x.Shape[0]
	shape := append([]int{to - from}, x.Shape[1:]...)
	return models.Tensor{Shape: shape, Data: append([]float32(nil), x.Data[from*per:to*per]...)},
		append([]int(nil), labels[from:to]...)
}

// writeParams writes the parameters as a models.Snapshot of kind "params"
// (its self-checking binary form).
func writeParams(path string, params []*models.Param, step int64) error {
	b, err := models.ParamSnapshot(params, step).MarshalBinary()
	if err != nil {
		return err
	}
	return os.WriteFile(path, b, 0o644)
}

// readParams reads what writeParams wrote.
func readParams(path string) (models.Snapshot, error) {
	var s models.Snapshot
	b, err := os.ReadFile(path)
	if err != nil {
		return s, err
	}
	if err := s.UnmarshalBinary(b); err != nil {
		return s, fmt.Errorf("%s: %w", path, err)
	}
	if s.Kind != "params" {
		return s, fmt.Errorf("%s: a %q snapshot, want \"params\"", path, s.Kind)
	}
	return s, nil
}

// ddpWorkerCmd trains --steps steps of --model data-parallel over the ranks
// gorun started, on --device, and reports each rank's per-step loss. Rank r
// of W trains on rows [r·B/W, (r+1)·B/W) of each global batch of B samples,
// so any world size dividing B makes the same updates (up to rounding): the
// ranks' mean-loss gradients, averaged by ddp, are the mean-loss gradient of
// the whole batch.
func ddpWorkerCmd(ctx context.Context, args []string, out *Reporter) error {
	fs := flag.NewFlagSet("ddp-worker", flag.ContinueOnError)
	model := fs.String("model", "mlp", "model: "+fmt.Sprint(models.ModelNames()))
	device := fs.String("device", "cuda", "device: "+gpu.Specs)
	batch := fs.Int("global-batch", 64, "samples per step over all ranks (a multiple of WORLD_SIZE)")
	steps := fs.Int("steps", 3, "training steps")
	seed := fs.Int64("seed", 1, "seed of the weights and the data")
	paramsOut := fs.String("params-out", "", "rank 0 writes the final parameters here (a models.Snapshot)")
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
	if g != nil {
		defer leave(ctx, g)
	}
	if *batch%world != 0 {
		return fmt.Errorf("--global-batch %d is not a multiple of the %d ranks", *batch, world)
	}
	seq, err := models.Build(*model, *seed)
	if err != nil {
		return err
	}
	m, note, err := gpu.Place(seq, *device, localRank())
	if err != nil {
		return err
	}
	if c, ok := m.(interface{ Close() }); ok {
		defer c.Close()
	}
	d, err := ddp.Wrap(ctx, m, g, ddp.Options{})
	if err != nil {
		return err
	}
	opt, err := gpu.NewSGDFor(m, models.SGDConfig{LR: ddpLR, Momentum: ddpMomentum})
	if err != nil {
		return err
	}
	if c, ok := opt.(interface{ Close() }); ok {
		defer c.Close()
	}
	placed := models.DevicePlacement(m)
	base := map[string]any{"check": "ddp-step", "model": *model, "device": *device, "placed": placed,
		"rank": rank, "world": world, "global_batch": *batch}
	rec := func(kv ...any) map[string]any {
		r := make(map[string]any, len(base)+len(kv)/2)
		for k, v := range base {
			r[k] = v
		}
		for i := 0; i+1 < len(kv); i += 2 {
			r[kv[i].(string)] = kv[i+1]
		}
		return r
	}
	if rank == 0 {
		fmt.Fprintf(os.Stderr, "ddp-worker: %s on %s, %d rank(s), global batch %d\n", *model, note, world, *batch)
	}
	lo, hi := rank**batch/world, (rank+1)**batch/world
	for step := 0; step < *steps; step++ {
		gx, gl := globalBatch(*seed, step, *batch)
		x, labels := rows(gx, gl, lo, hi)
		t0 := time.Now()
		res, err := d.TrainStep(ctx, opt, ddp.Batch{X: x, Labels: labels})
		if err != nil {
			return fmt.Errorf("step %d: %w", step, err)
		}
		ok := !math.IsNaN(res.Loss) && !math.IsInf(res.Loss, 0)
		out.Report(rec("step", step, "loss", res.Loss, "samples", res.Samples,
			"step_ms", float64(time.Since(t0).Microseconds())/1e3, "ok", ok))
	}
	if dr, ok := m.(models.DeviceResident); ok {
		if err := dr.PullParams(); err != nil {
			return err
		}
	}
	if rank == 0 && *paramsOut != "" {
		if err := writeParams(*paramsOut, m.Params(), int64(*steps)); err != nil {
			return err
		}
	}
	if g != nil {
		// Leave together: a rank that exits first would look like a failure to gorun's peers.
		if err := g.Barrier(ctx); err != nil {
			return err
		}
	}
	return nil
}

// compareParamsCmd compares two parameter files of ddp-worker: same names
// and shapes, and every value within --tol (absolute).
func compareParamsCmd(ctx context.Context, args []string, out *Reporter) error {
	fs := flag.NewFlagSet("compare-params", flag.ContinueOnError)
	tol := fs.Float64("tol", 1e-5, "largest allowed absolute difference")
	check := fs.String("check", "ddp-equivalence", "the record's check name")
	if err := fs.Parse(reorder(args)); err != nil {
		return err
	}
	if fs.NArg() != 2 {
		return errors.New("want two parameter files: compare-params A B [--tol 1e-5]")
	}
	a, b := fs.Arg(0), fs.Arg(1)
	rec := map[string]any{"check": *check, "a": a, "b": b, "tol": *tol}
	sa, err := readParams(a)
	if err == nil {
		var sb models.Snapshot
		if sb, err = readParams(b); err == nil {
			err = compareSnapshots(sa, sb, rec)
		}
	}
	if err != nil {
		rec["ok"], rec["error"] = false, err.Error()
	} else {
		rec["ok"] = rec["max_abs_diff"].(float64) <= *tol
	}
	out.Report(rec)
	return nil
}

// compareSnapshots fills rec with max_abs_diff (and where: param, index),
// the parameter count and max_abs_value; it fails when the layouts differ or
// a value is not finite.
func compareSnapshots(a, b models.Snapshot, rec map[string]any) error {
	if len(a.Slices) != len(b.Slices) {
		return fmt.Errorf("%d parameters against %d", len(a.Slices), len(b.Slices))
	}
	var maxDiff, maxAbs float64
	var where string
	var at, n int
	for i, sa := range a.Slices {
		sb := b.Slices[i]
		if sa.Name != sb.Name || len(sa.Data) != len(sb.Data) || fmt.Sprint(sa.Shape) != fmt.Sprint(sb.Shape) {
			return fmt.Errorf("parameter %d: %s %v against %s %v", i, sa.Name, sa.Shape, sb.Name, sb.Shape)
		}
		for j, v := range sa.Data {
			w := sb.Data[j]
			if math.IsNaN(float64(v)) || math.IsNaN(float64(w)) || math.IsInf(float64(v), 0) || math.IsInf(float64(w), 0) {
				return fmt.Errorf("%s[%d]: not finite (%v, %v)", sa.Name, j, v, w)
			}
			if d := math.Abs(float64(v) - float64(w)); d > maxDiff || where == "" {
				maxDiff, where, at = d, sa.Name, j
			}
			maxAbs = max(maxAbs, math.Abs(float64(v)))
		}
		n += len(sa.Data)
	}
	rec["max_abs_diff"], rec["worst_param"], rec["worst_index"] = maxDiff, where, at
	rec["params"], rec["max_abs_value"], rec["step_a"], rec["step_b"] = n, maxAbs, a.Step, b.Step
	return nil
}

// reorder moves flags after the positional arguments in front of them, so
// that "compare-params A B --tol 1e-5" parses (package flag stops at the
// first positional argument). Every flag of these commands takes a value.
func reorder(args []string) []string {
	var flags, pos []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "--":
			pos = append(pos, args[i+1:]...)
			i = len(args)
		case len(a) > 1 && a[0] == '-':
			flags = append(flags, a)
			if !containsEq(a) && i+1 < len(args) {
				flags = append(flags, args[i+1])
				i++
			}
		default:
			pos = append(pos, a)
		}
	}
	return append(flags, pos...)
}

func containsEq(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] == '=' {
			return true
		}
	}
	return false
}

// leave shuts the group down in order (every byte sent was received), then
// closes it.
func leave(ctx context.Context, g *collective.Group) {
	sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	g.Shutdown(sctx)
	g.Close()
}
