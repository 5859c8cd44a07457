package main

import (
	"context"
	"flag"
	"fmt"
	"math"
	"math/rand/v2"
	"strings"

	"github.com/ringtrain/ringtrain/ddp"
	"github.com/ringtrain/ringtrain/gpu"
	"github.com/ringtrain/ringtrain/models"
)

func init() { commands["steps"] = stepsCmd }

// trainer is one model on one device driven the way a user's program drives
// it: ddp (alone) around the model, TrainStep with an optimizer made for the
// model's device.
type trainer struct {
	model models.Model
	d     *ddp.DDP
	opt   models.Optimizer
}

var sgdConfig = models.SGDConfig{LR: 0.01, Momentum: 0.9}

func newTrainer(ctx context.Context, name string, seed int64, dev gpu.Device) (*trainer, error) {
	seq, err := models.Build(name, seed)
	if err != nil {
		return nil, err
	}
	var m models.Model = seq
	if dev != nil {
		if m, err = gpu.Compile(seq, dev); err != nil {
			return nil, err
		}
	}
	d, err := ddp.Wrap(ctx, m, nil, ddp.Options{})
	if err != nil {
		return nil, err
	}
	opt, err := gpu.NewSGDFor(m, sgdConfig)
	if err != nil {
		return nil, err
	}
	return &trainer{model: m, d: d, opt: opt}, nil
}

func (t *trainer) step(ctx context.Context, x models.Tensor, labels []int) (float64, error) {
	res, err := t.d.TrainStep(ctx, t.opt, ddp.Batch{X: x, Labels: labels})
	return res.Loss, err
}

func (t *trainer) close() {
	if m, ok := t.model.(*gpu.Model); ok {
		m.Close()
	}
}

// batchFor draws a deterministic batch of images and labels.
func batchFor(seed uint64, step, batch int) (models.Tensor, []int) {
	rng := rand.New(rand.NewPCG(seed, uint64(step)))
	x := models.NewTensor(append([]int{batch}, models.ImageShape()...)...)
	for i := range x.Data {
		x.Data[i] = float32(rng.NormFloat64())
	}
	labels := make([]int, batch)
	for i := range labels {
		labels[i] = rng.IntN(models.NumClasses)
	}
	return x, labels
}

// stepsCmd trains each model for a few steps on the device and on the CPU
// path (gorgonia) from the same parameters and batches, and compares the
// losses step by step and the parameters at the end.
func stepsCmd(ctx context.Context, args []string, out *Reporter) error {
	fs := flag.NewFlagSet("steps", flag.ContinueOnError)
	spec := fs.String("device", "cuda", "device to check ("+gpu.Specs+")")
	names := fs.String("models", "mlp,mlp-wide,cnn", "comma-separated models")
	batch := fs.Int("batch", 64, "batch size")
	steps := fs.Int("steps", 3, "training steps")
	tol := fs.Float64("tol", 1e-3, "largest loss difference accepted")
	if err := fs.Parse(args); err != nil {
		return err
	}
	dev, err := openDevice(*spec)
	if err != nil {
		return err
	}
	for _, name := range strings.Split(*names, ",") {
		cpu, err := newTrainer(ctx, name, 1, nil)
		if err != nil {
			return err
		}
		gt, err := newTrainer(ctx, name, 1, dev)
		if err != nil {
			return fmt.Errorf("%s on %s: %w", name, dev.Name(), err)
		}
		var cpuLoss, devLoss []float64
		worstLoss := 0.0
		for s := 0; s < *steps; s++ {
			x, labels := batchFor(7, s, *batch)
			lc, err := cpu.step(ctx, x, labels)
			if err != nil {
				return fmt.Errorf("%s step %d on the CPU: %w", name, s, err)
			}
			lg, err := gt.step(ctx, x, labels)
			if err != nil {
				return fmt.Errorf("%s step %d on %s: %w", name, s, dev.Name(), err)
			}
			cpuLoss, devLoss = append(cpuLoss, lc), append(devLoss, lg)
			worstLoss = max(worstLoss, math.Abs(lc-lg))
		}
		if err := gt.model.(*gpu.Model).PullParams(); err != nil {
			return err
		}
		worstParam := 0.0
		for i, p := range gt.model.Params() {
			for j, v := range p.Value {
				worstParam = max(worstParam, math.Abs(float64(v-cpu.model.Params()[i].Value[j])))
			}
		}
		gt.close()
		out.Report(map[string]any{"check": "steps", "model": name, "device": dev.Name(), "batch": *batch,
			"optimizer": fmt.Sprintf("sgd lr %g momentum %g", sgdConfig.LR, sgdConfig.Momentum),
			"cpu_loss":  cpuLoss, "device_loss": devLoss, "max_loss_diff": worstLoss, "max_param_diff": worstParam,
			"tol": *tol, "ok": worstLoss <= *tol && !math.IsNaN(worstLoss)})
	}
	return nil
}
