// Command crashresume is a small data-parallel training program for ddp's process tests:
// it trains with checkpoints, and one rank kills itself at a chosen step on the first
// attempt (RINGTRAIN_TEST_CRASH_AT_STEP and RINGTRAIN_TEST_CRASH_RANK, honoured only when
// GORUN_RESTART_COUNT is 0), so that gorun --max-restarts restarts the job from the last
// checkpoint. Rank 0 writes the final parameters to --out.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"strconv"
	"syscall"

	"github.com/ringtrain/ringtrain/collective"
	"github.com/ringtrain/ringtrain/ddp"
	"github.com/ringtrain/ringtrain/models"
	"github.com/ringtrain/ringtrain/models/data"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "crashresume:", err)
		os.Exit(1)
	}
}

func run() error {
	dir := flag.String("dir", "", "checkpoint directory")
	steps := flag.Int("steps", 20, "steps in all")
	every := flag.Int("every", 5, "checkpoint every this many steps")
	out := flag.String("out", "", "final parameters file (rank 0)")
	fp16 := flag.Bool("fp16", false, "fp16 compression with error feedback")
	flag.Parse()
	ctx := context.Background()
	var g *collective.Group
	if _, ok := os.LookupEnv("WORLD_SIZE"); ok {
		var err error
		if g, err = collective.InitFromEnv(ctx); err != nil {
			return err
		}
		defer g.Close()
	}
	rank, world := 0, 1
	if g != nil {
		rank, world = g.Rank(), g.Size()
	}
	fc1, err1 := models.NewLinear("fc1", 784, 24, models.InitHe)
	fc2, err2 := models.NewLinear("fc2", 24, 10, models.InitGlorot)
	if err := errors.Join(err1, err2); err != nil {
		return err
	}
	model, err := models.NewSequential(models.NewFlatten("flat"), fc1, models.NewReLU("relu"), fc2)
	if err != nil {
		return err
	}
	model.Init(int64(100 + rank)) // differing seeds: Wrap and the checkpoint must fix them
	opts := ddp.Options{BucketCapMB: 0.02, FirstBucketCapMB: 0.001}
	if *fp16 {
		opts.Compression, opts.ErrorFeedback = collective.FP16, true
	}
	d, err := ddp.Wrap(ctx, model, g, opts)
	if err != nil {
		return err
	}
	opt, err := models.NewAdam(model.Params(), models.AdamConfig{LR: 0.01})
	if err != nil {
		return err
	}
	const batch = 8
	src, err := data.NewSynthetic(200, models.ImageShape(), 10, 5)
	if err != nil {
		return err
	}
	sampler, err := data.NewDistributedSampler(data.SamplerConfig{N: src.Len(), Rank: rank, World: world, Batch: batch, Seed: 9})
	if err != nil {
		return err
	}
	st, path, err := d.LoadCheckpoint(ctx, *dir, opt)
	if err != nil {
		return err
	}
	if path != "" {
		fmt.Printf("resumed from %s at step %d (epoch %d, batch %d)\n", path, st.Step, st.Epoch, st.Batch)
	}
	st.GlobalBatch, st.Seed = world*batch, 9
	crashAt, _ := strconv.Atoi(os.Getenv("RINGTRAIN_TEST_CRASH_AT_STEP"))
	crashRank, _ := strconv.Atoi(os.Getenv("RINGTRAIN_TEST_CRASH_RANK"))
	firstAttempt := os.Getenv("GORUN_RESTART_COUNT") == "" || os.Getenv("GORUN_RESTART_COUNT") == "0"
	for st.Step < int64(*steps) {
		if st.Batch == sampler.NumBatches() {
			st.Epoch, st.Batch = st.Epoch+1, 0
		}
		sampler.SetEpoch(st.Epoch)
		x, labels, err := sampler.Batch(src, st.Batch)
		if err != nil {
			return err
		}
		if _, err := d.TrainStep(ctx, opt, ddp.Batch{X: x, Labels: labels}); err != nil {
			return err
		}
		st.Step++
		st.Batch++
		if st.Step%int64(*every) == 0 {
			if _, err := d.SaveCheckpoint(ctx, *dir, st, opt); err != nil {
				return err
			}
		}
		if firstAttempt && crashAt > 0 && st.Step == int64(crashAt) && rank == crashRank {
			fmt.Printf("rank %d killing itself after step %d\n", rank, st.Step)
			syscall.Kill(os.Getpid(), syscall.SIGKILL)
			select {}
		}
	}
	if rank == 0 && *out != "" {
		b, err := models.ParamSnapshot(model.Params(), st.Step).MarshalBinary()
		if err != nil {
			return err
		}
		return os.WriteFile(*out, b, 0o644)
	}
	return nil
}
