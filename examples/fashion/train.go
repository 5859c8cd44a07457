// Command train trains a classifier on Fashion-MNIST, data-parallel over as many ranks as
// gorun starts:
//
//	go run ./cmd/gorun --nproc 2 examples/fashion/train.go --epochs 1
//
// or alone, without a launcher (no network):
//
//	go run ./examples/fashion --epochs 1
//
// Each rank trains a full replica of the model on its own shard of every global batch
// (--batch samples per rank); package ddp averages the gradients across ranks while
// backward runs, so all replicas take the same steps. Rank 0 prints progress every few
// seconds and one line per epoch (or, with --json, one JSON object per epoch on stdout).
//
// With --checkpoint DIR the run saves its state every --checkpoint-every steps and at the
// end of every epoch, and a run started with the same DIR resumes from the newest
// checkpoint: the same steps on the same samples, as if it had never stopped. Combined
// with gorun --max-restarts, a crashed job restarts and carries on. SIGTERM (gorun forwards
// it on preemption) makes every rank finish its step, save a checkpoint and exit 75
// (package preempt); a failure is recorded in TORCHELASTIC_ERROR_FILE (package errorfile).
//
// When the world size changes between runs (an elastic job lost or gained a node, or the
// job is simply restarted on more or fewer ranks), the resumed run continues at the next
// sample of the epoch's permutation, which depends only on --seed and the epoch: it counts
// samples, not steps, so within the epoch no sample is trained twice or skipped. The batch:
//
//   - --batch B (the default mode) keeps B samples per rank: the global batch is
//     WORLD_SIZE × B and changes with the world, and so does the number of steps per epoch.
//   - --global-batch G keeps G samples per step over all ranks (each takes G ÷ WORLD_SIZE;
//     a world size that does not divide G is refused): every step trains the same samples
//     it would at any world size, so the run is that of one process with batch G, up to
//     float32 rounding.
//
// Learning-rate schedules (--lr-schedule, --warmup-samples, --lr-step-samples) are defined on
// samples seen (epoch × N + the position in the epoch), never on steps, so they continue
// unchanged across a resize in both modes. The learning rate itself is not rescaled: with
// --batch, a smaller world takes smaller steps at the same rate (use --global-batch to keep
// the optimisation exactly as it was).
//
// --device picks where each rank computes (package gpu): auto (the default) uses a CUDA GPU
// when the CUDA backend loads and finds one, else the CPU, and rank 0 says which and why;
// cuda insists on a GPU (LOCAL_RANK picks it: several ranks may share one); cpu and emu
// (the GPU kernels' Go twins, for tests) need none.
//
// This file is meant to be copied as the starting point of your own training program.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/ringtrain/ringtrain/collective"
	"github.com/ringtrain/ringtrain/ddp"
	"github.com/ringtrain/ringtrain/ddp/powersgd"
	"github.com/ringtrain/ringtrain/errorfile"
	"github.com/ringtrain/ringtrain/gpu"
	"github.com/ringtrain/ringtrain/models"
	"github.com/ringtrain/ringtrain/models/data"
	"github.com/ringtrain/ringtrain/pipeline/devices"
	"github.com/ringtrain/ringtrain/preempt"
)

type config struct {
	model, optimizer, compress, dataDir, checkpoint, saveParams string
	device                                                      string
	epochs, batch, steps, checkpointEvery, syntheticN           int
	globalBatch                                                 int
	traceSamples                                                string
	lr, momentum, bucketMB                                      float64
	schedule                                                    string
	warmupSamples, lrStepSamples                                int64
	lrGamma, lrMin, weightDecay, clipNorm                       float64
	accumSteps, powerSGDRank, powerSGDStart                     int
	synthetic, jsonOut, errorFeedback, eval                     bool
	seed                                                        int64
	progress                                                    time.Duration

	// preempt, when set, turns its signal (SIGTERM) into a checkpoint at the next step
	// boundary and the exit status preempt.ExitCode (main sets it with --checkpoint).
	preempt *preempt.Watcher
}

// errPreempted ends run after a preemption's checkpoint was saved.
var errPreempted = errors.New("preempted")

func parseFlags(args []string) (config, error) {
	var c config
	fs := flag.NewFlagSet("train", flag.ContinueOnError)
	fs.StringVar(&c.model, "model", "mlp", "model: "+strings.Join(models.ModelNames(), ", "))
	fs.StringVar(&c.device, "device", "auto", "where each rank computes: "+gpu.Specs+" (auto: a CUDA GPU if the backend loads and finds one, else the CPU; cuda: LOCAL_RANK picks the GPU)")
	fs.IntVar(&c.epochs, "epochs", 1, "epochs to train")
	fs.IntVar(&c.batch, "batch", 64, "samples per rank per step (the global batch is ranks × batch, so it changes with the world size)")
	fs.IntVar(&c.globalBatch, "global-batch", 0, "samples per step over all ranks, split evenly (WORLD_SIZE must divide it), the same at any world size (0: use --batch)")
	fs.StringVar(&c.traceSamples, "trace-samples", "", "for tests: every rank appends, per micro-batch, \"epoch step index,index,...\" to FILE.w<WORLD_SIZE>.r<RANK>")
	fs.Float64Var(&c.lr, "lr", 0, "learning rate (0: 0.05 for sgd, 0.001 for adam)")
	fs.Float64Var(&c.momentum, "momentum", 0.9, "SGD momentum")
	fs.StringVar(&c.optimizer, "optimizer", "sgd", "optimizer: sgd (with momentum) or adam")
	fs.StringVar(&c.schedule, "lr-schedule", "constant", "learning-rate schedule over samples seen (all ranks): constant, step or cosine (to --lr-min over all --epochs)")
	fs.Int64Var(&c.warmupSamples, "warmup-samples", 0, "linear learning-rate warm-up over this many samples (0: none)")
	fs.Int64Var(&c.lrStepSamples, "lr-step-samples", 0, "with --lr-schedule step: multiply the rate by --lr-gamma every this many samples")
	fs.Float64Var(&c.lrGamma, "lr-gamma", 0.1, "with --lr-schedule step: the factor")
	fs.Float64Var(&c.lrMin, "lr-min", 0, "with --lr-schedule cosine: the final learning rate")
	fs.Float64Var(&c.weightDecay, "weight-decay", 0, "L2 weight decay (λ·w added to the gradient, as torch.optim)")
	fs.Float64Var(&c.clipNorm, "clip-norm", 0, "clip the global gradient norm to this after the AllReduce (0: no clipping)")
	fs.IntVar(&c.accumSteps, "accum-steps", 1, "micro-batches of --batch per optimizer step (gradient accumulation; only the last communicates)")
	fs.StringVar(&c.compress, "compress", "none", "gradient compression (the DDP communication hook): none, fp16, bf16, or powersgd (low-rank factors, ddp/powersgd)")
	fs.BoolVar(&c.errorFeedback, "error-feedback", false, "with --compress fp16 or bf16: carry each rank's rounding error into its next step (powersgd always does)")
	fs.IntVar(&c.powerSGDRank, "powersgd-rank", 4, "with --compress powersgd: the rank of the factors")
	fs.IntVar(&c.powerSGDStart, "powersgd-start", 10, "with --compress powersgd: steps averaged in float32 before the low-rank compression starts")
	fs.Float64Var(&c.bucketMB, "bucket-mb", 0, fmt.Sprintf("gradient bucket size in MiB (0: %d; the first bucket holds %d MiB, or less if this is smaller)", ddp.DefaultBucketCapMB, ddp.DefaultFirstBucketCapMB))
	fs.StringVar(&c.checkpoint, "checkpoint", "", "checkpoint directory: resume from its newest checkpoint, save into it")
	fs.IntVar(&c.checkpointEvery, "checkpoint-every", 500, "with --checkpoint: also save every this many steps (0: only at epoch ends)")
	fs.StringVar(&c.dataDir, "data", "", "directory with the four Fashion-MNIST IDX files (default: "+data.DefaultDir+" if present, else the embedded subset)")
	fs.BoolVar(&c.synthetic, "synthetic", false, "train on synthetic images instead (for benchmarks)")
	fs.IntVar(&c.syntheticN, "synthetic-size", 60000, "with --synthetic: training samples")
	fs.IntVar(&c.steps, "steps", 0, "stop after this many steps in all (0: run all epochs)")
	fs.BoolVar(&c.jsonOut, "json", false, "print one JSON object per epoch on stdout (progress goes to stderr)")
	fs.Int64Var(&c.seed, "seed", 1, "seed of the model's initialisation and of the data order")
	fs.DurationVar(&c.progress, "progress", 5*time.Second, "interval of rank 0's progress lines (0: none)")
	fs.StringVar(&c.saveParams, "save-params", "", "write the final parameters to this file (rank 0)")
	fs.BoolVar(&c.eval, "eval", true, "evaluate the test set after every epoch (--eval=false skips it, e.g. for benchmarks of big models)")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	batchSet := false
	fs.Visit(func(f *flag.Flag) { batchSet = batchSet || f.Name == "batch" })
	if batchSet && c.globalBatch != 0 {
		return c, errors.New("--batch (per rank) and --global-batch (over all ranks) exclude each other")
	}
	switch {
	case c.epochs < 1:
		return c, fmt.Errorf("--epochs must be at least 1, got %d", c.epochs)
	case c.batch < 1:
		return c, fmt.Errorf("--batch must be at least 1, got %d", c.batch)
	case c.globalBatch < 0:
		return c, fmt.Errorf("--global-batch must not be negative, got %d", c.globalBatch)
	case c.steps < 0:
		return c, fmt.Errorf("--steps must not be negative, got %d", c.steps)
	case c.checkpointEvery < 0:
		return c, fmt.Errorf("--checkpoint-every must not be negative, got %d", c.checkpointEvery)
	case c.syntheticN < 1:
		return c, fmt.Errorf("--synthetic-size must be at least 1, got %d", c.syntheticN)
	case c.compress != "none" && c.compress != "fp16" && c.compress != "bf16" && c.compress != "powersgd":
		return c, fmt.Errorf("--compress must be none, fp16, bf16 or powersgd, got %q", c.compress)
	case c.errorFeedback && c.compress != "fp16" && c.compress != "bf16":
		return c, errors.New("--error-feedback needs --compress fp16 or bf16 (powersgd has its own)")
	case c.powerSGDRank < 1:
		return c, fmt.Errorf("--powersgd-rank must be at least 1, got %d", c.powerSGDRank)
	case c.powerSGDStart < 0:
		return c, fmt.Errorf("--powersgd-start must not be negative, got %d", c.powerSGDStart)
	case c.optimizer != "sgd" && c.optimizer != "adam":
		return c, fmt.Errorf("--optimizer must be sgd or adam, got %q", c.optimizer)
	case c.synthetic && c.dataDir != "":
		return c, errors.New("--synthetic and --data exclude each other")
	case c.accumSteps < 1:
		return c, fmt.Errorf("--accum-steps must be at least 1, got %d", c.accumSteps)
	case c.weightDecay < 0:
		return c, fmt.Errorf("--weight-decay must not be negative, got %g", c.weightDecay)
	case c.clipNorm < 0:
		return c, fmt.Errorf("--clip-norm must not be negative, got %g", c.clipNorm)
	case !validDevice(c.device):
		return c, fmt.Errorf("--device %q: want %s", c.device, gpu.Specs)
	}
	if c.lr == 0 {
		c.lr = map[string]float64{"sgd": 0.05, "adam": 0.001}[c.optimizer]
	}
	return c, nil
}

// validDevice reports whether spec is a --device value gpu.Select understands.
func validDevice(spec string) bool {
	switch spec {
	case "auto", "cpu", "cuda", "emu":
		return true
	}
	n, ok := strings.CutPrefix(spec, "cuda:")
	if !ok || n == "" {
		return false
	}
	for _, r := range n {
		if r < '0' || r > '9' {
			return false
		}
	}
	return true
}

func main() {
	cfg, err := parseFlags(os.Args[1:])
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(0)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "train:", err)
		os.Exit(2)
	}
	// SIGINT cancels at once. SIGTERM (gorun forwards it on preemption: spot reclaim, Slurm,
	// Kubernetes eviction) does too without --checkpoint; with one, every rank finishes the
	// step, saves a checkpoint and exits preempt.ExitCode (package preempt's contract).
	sigs := []os.Signal{os.Interrupt}
	if cfg.checkpoint != "" {
		cfg.preempt = preempt.Watch(syscall.SIGTERM)
		defer cfg.preempt.Stop()
	} else {
		sigs = append(sigs, syscall.SIGTERM)
	}
	ctx, stop := signal.NotifyContext(context.Background(), sigs...)
	defer stop()
	err = run(ctx, cfg, os.Stdout, os.Stderr)
	if errors.Is(err, errPreempted) {
		os.Exit(preempt.ExitCode)
	}
	if err != nil {
		// Under gorun, the error also goes to TORCHELASTIC_ERROR_FILE: gorun's summary
		// quotes it, and its own error file carries it to the scheduler.
		if _, rerr := errorfile.Record(err); rerr != nil {
			fmt.Fprintln(os.Stderr, "train:", rerr)
		}
		fmt.Fprintln(os.Stderr, "train:", err)
		os.Exit(1)
	}
}

// epochReport is the --json line of one epoch; benchmarks parse it.
type epochReport struct {
	Epoch            int      `json:"epoch"` // 1-based
	Steps            int      `json:"steps"` // steps trained in this epoch by this run
	Partial          bool     `json:"partial,omitempty"`
	TrainLoss        float64  `json:"train_loss"`
	TrainAcc         float64  `json:"train_acc"`
	TestLoss         *float64 `json:"test_loss,omitempty"` // absent with --eval=false: not measured
	TestAcc          *float64 `json:"test_acc,omitempty"`  // absent with --eval=false
	SamplesPerS      float64  `json:"samples_per_s"`
	EpochS           float64  `json:"epoch_s"`
	StepMS           float64  `json:"step_ms"`
	ComputeMS        float64  `json:"compute_ms"`
	CommMS           float64  `json:"comm_ms"`
	ExposedCommMS    float64  `json:"exposed_comm_ms"`
	ExposedCommShare float64  `json:"exposed_comm_share"`
	OptimizerMS      float64  `json:"optimizer_ms"`
	LR               float64  `json:"lr"` // the learning rate of the epoch's last step
	WorldSize        int      `json:"world_size"`
	Batch            int      `json:"batch"`
	Model            string   `json:"model"`
	Device           string   `json:"device"` // where rank 0 computes: "cpu", "cuda:0", "emu"
	Compress         string   `json:"compress"`
	Buckets          int      `json:"buckets"`
	GOMAXPROCS       int      `json:"gomaxprocs"`
}

// run trains; rank 0 reports on stdout (progress too, unless --json sends it to stderr).
func run(ctx context.Context, cfg config, stdout, stderr io.Writer) (err error) {
	// Started by gorun (WORLD_SIZE set): join the job. Alone: train without a group.
	var g *collective.Group
	if _, ok := os.LookupEnv("WORLD_SIZE"); ok {
		if g, err = collective.InitFromEnv(ctx); err != nil {
			return err
		}
		defer func() {
			// A finished run leaves in order (every byte sent was received by
			// its neighbours); a failed one just closes.
			if err == nil {
				sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
				err = g.Shutdown(sctx)
				cancel()
			}
			g.Close()
		}()
	}
	rank, world := 0, 1
	if g != nil {
		rank, world = g.Rank(), g.Size()
	}
	out, info := stdout, stdout
	if cfg.jsonOut {
		info = stderr
	}
	if rank != 0 {
		out, info = io.Discard, io.Discard
	}
	logf := func(format string, args ...any) { fmt.Fprintf(info, format+"\n", args...) }

	seq, err := models.Build(cfg.model, cfg.seed)
	if err != nil {
		return err
	}
	// Place the model where --device says: seq itself on the CPU, seq compiled onto
	// a GPU (or the emulator) otherwise, sharing seq's parameters.
	localRank, err := devices.LocalRankFromEnv(nil)
	if err != nil {
		return err
	}
	model, note, err := gpu.Place(seq, cfg.device, localRank)
	if err != nil {
		return err
	}
	if cm, ok := model.(*gpu.Model); ok {
		if c, ok := cm.DeviceOf().(interface{ Close() error }); ok {
			defer c.Close()
		}
		defer cm.Close()
	}
	placement := models.DevicePlacement(model)
	if !strings.HasPrefix(note, placement) {
		note = placement + ": " + note
	}
	logf("device: %s", note)
	train, test, source, err := loadData(cfg)
	if err != nil {
		return err
	}
	opts := ddp.Options{BucketCapMB: cfg.bucketMB, ErrorFeedback: cfg.errorFeedback}
	switch cfg.compress {
	case "fp16":
		opts.Compression = collective.FP16
	case "bf16":
		opts.Compression = collective.BF16
	case "powersgd":
		opts.ErrorFeedback = false
		if opts.CommHook, err = powersgd.New(powersgd.Config{Rank: cfg.powerSGDRank, StartStep: cfg.powerSGDStart, Seed: uint64(cfg.seed)}); err != nil {
			return err
		}
	}
	d, err := ddp.Wrap(ctx, model, g, opts)
	if err != nil {
		return err
	}
	var opt models.Optimizer
	// The optimizer updates the parameters where the model computes.
	if cfg.optimizer == "adam" {
		opt, err = gpu.NewAdamFor(model, models.AdamConfig{LR: float32(cfg.lr), WeightDecay: float32(cfg.weightDecay)})
	} else {
		opt, err = gpu.NewSGDFor(model, models.SGDConfig{LR: float32(cfg.lr), Momentum: float32(cfg.momentum), WeightDecay: float32(cfg.weightDecay)})
	}
	if err != nil {
		return err
	}
	if c, ok := opt.(interface{ Close() }); ok {
		defer c.Close()
	}
	if cfg.clipNorm > 0 {
		// Step runs after the AllReduce: every rank clips the same gradients.
		if opt, err = models.NewClippingOptimizer(opt, model, cfg.clipNorm); err != nil {
			return err
		}
	}
	// The batch: --batch per rank (the global batch follows the world size), or
	// --global-batch split evenly between the ranks (the world size must divide it).
	batch := cfg.batch
	if cfg.globalBatch > 0 {
		if cfg.globalBatch%world != 0 {
			return fmt.Errorf("--global-batch %d is not divisible by the %d ranks (WORLD_SIZE): every rank takes an equal share; choose a multiple of %d",
				cfg.globalBatch, world, world)
		}
		batch = cfg.globalBatch / world
	}
	global, n := world*batch, train.Len()
	sampler, err := data.NewDistributedSampler(data.SamplerConfig{N: n, Rank: rank, World: world, Batch: batch, Seed: cfg.seed})
	if err != nil {
		return err
	}
	epochBatches := sampler.NumBatches() // of an epoch from its start
	// The schedule runs on samples seen: epoch × N + the position in the epoch's
	// permutation, which depends neither on the world size nor on the batch, so a
	// resumed run continues it exactly, resharded or not. The cosine spans --epochs,
	// never --steps: a run stopped early with --steps and resumed later must follow the
	// same curve.
	seen := func(st ddp.TrainState) int64 { return int64(st.Epoch)*int64(n) + st.Sample }
	totalSamples := int64(cfg.epochs) * int64(n)
	sched, err := models.NewSchedule(models.ScheduleConfig{Kind: cfg.schedule, Base: float32(cfg.lr), WarmupSamples: cfg.warmupSamples,
		StepSamples: cfg.lrStepSamples, Gamma: float32(cfg.lrGamma), TotalSamples: totalSamples, Min: float32(cfg.lrMin)})
	if err != nil {
		return fmt.Errorf("--lr-schedule: %w", err)
	}
	st := ddp.TrainState{GlobalBatch: global, Seed: cfg.seed, Meta: map[string]string{"model": cfg.model, "optimizer": cfg.optimizer}}
	if cfg.checkpoint != "" {
		saved, path, err := d.LoadCheckpoint(ctx, cfg.checkpoint, opt)
		if err != nil {
			return err
		}
		if path != "" {
			if saved.Seed != st.Seed {
				return fmt.Errorf("checkpoint %s was written with --seed %d, this run has --seed %d: the data order would differ; "+
					"use the same seed or another --checkpoint directory", path, saved.Seed, st.Seed)
			}
			if saved.Sample == 0 && saved.Batch > 0 { // written without the position: same global batch assumed
				saved.Sample = min(int64(saved.Batch)*int64(saved.GlobalBatch), int64(n))
			}
			if saved.Sample > int64(n) {
				return fmt.Errorf("checkpoint %s is at sample %d of epoch %d, but the data set has %d samples", path, saved.Sample, saved.Epoch+1, n)
			}
			if saved.GlobalBatch != global {
				// Another world size (or batch): continue at the next sample of the epoch's
				// permutation with this run's global batch.
				logf("resharding: checkpoint written with global batch %d, this run has %d (%d rank(s) × batch %d); continuing at sample %d/%d of epoch %d",
					saved.GlobalBatch, global, world, batch, saved.Sample, n, saved.Epoch+1)
			}
			st = saved
			st.GlobalBatch = global
			if err := sampler.SetEpochFrom(st.Epoch, int(st.Sample)); err != nil {
				return err
			}
			logf("resumed from %s: step %d, epoch %d, batch %d/%d", path, st.Step, st.Epoch+1, st.Batch, st.Batch+sampler.NumBatches())
		}
	}
	logf("fashion: %s (%d parameters, %d gradient buckets) on %s, %d rank(s) × batch %d × %d micro-batch(es), %s lr %s, weight decay %g, clip norm %g, compression %s; data: %s; %d steps per epoch",
		cfg.model, seq.NumParams(), len(d.Buckets()), placement, world, batch, cfg.accumSteps, cfg.optimizer, sched, cfg.weightDecay, cfg.clipNorm, cfg.compress, source, (epochBatches+cfg.accumSteps-1)/cfg.accumSteps)

	save := func() error {
		if cfg.checkpoint == "" {
			return nil
		}
		_, err := d.SaveCheckpoint(ctx, cfg.checkpoint, st, opt)
		return err
	}
	stopped := func() bool { return cfg.steps > 0 && st.Step >= int64(cfg.steps) }
	// preemptNow tells, at a step boundary, whether any rank was asked to stop: every rank
	// must leave at the same step, and the signal reaches them at different moments.
	preemptNow := func() (bool, error) {
		if cfg.preempt == nil {
			return false, nil
		}
		f := []float32{cfg.preempt.Flag()}
		if g != nil {
			if err := g.AllReduce(ctx, f, collective.Max); err != nil {
				return false, fmt.Errorf("agreeing on preemption after step %d: %w", st.Step, err)
			}
		}
		return f[0] > 0, nil
	}
	if st.Epoch >= cfg.epochs || stopped() {
		logf("nothing to train: the checkpoint is at step %d, epoch %d (--epochs %d, --steps %d)", st.Step, st.Epoch, cfg.epochs, cfg.steps)
	}
	for st.Epoch < cfg.epochs && !stopped() {
		epoch := st.Epoch
		// Batch 0 of this run's epoch starts at the first sample not yet trained (0 for a
		// fresh epoch; a resumed run's position, whatever global batch reached it).
		epochStart := int(st.Sample)
		if err := sampler.SetEpochFrom(epoch, epochStart); err != nil {
			return err
		}
		nb, done := sampler.NumBatches(), st.Batch // batches left from epochStart; trained before it
		k := 0                                     // this run's batches of the epoch
		d.TakeStats()                              // start the epoch's timing afresh
		var lossSum float64
		var correct, samples, steps int
		var batches []ddp.Batch
		start, lastReport := time.Now(), time.Now()
		for k < nb && !stopped() {
			opt.SetLR(sched.LR(seen(st)))
			batches = batches[:0]
			for j := 0; j < cfg.accumSteps && k+j < nb; j++ {
				x, labels, err := sampler.Batch(train, k+j)
				if err != nil {
					return err
				}
				batches = append(batches, ddp.Batch{X: x, Labels: labels})
				if cfg.traceSamples != "" {
					if err := traceSamples(cfg.traceSamples, world, rank, st.Step+1, epoch, sampler, k+j); err != nil {
						return err
					}
				}
			}
			res, err := d.TrainStep(ctx, opt, batches...)
			if err != nil {
				return fmt.Errorf("epoch %d, step %d: %w", epoch+1, st.Step+1, err)
			}
			st.Step++
			st.Batch += len(batches)
			k += len(batches)
			st.Sample = min(int64(epochStart)+int64(k)*int64(global), int64(n)) // the padding is no new position
			steps++
			lossSum += res.Loss * float64(res.Samples)
			correct += res.Correct
			samples += res.Samples
			if cfg.checkpointEvery > 0 && st.Step%int64(cfg.checkpointEvery) == 0 && k < nb {
				if err := save(); err != nil {
					return err
				}
			}
			if stop, err := preemptNow(); err != nil {
				return err
			} else if stop {
				if err := save(); err != nil {
					return fmt.Errorf("preempted after step %d, but the checkpoint was not saved: %w", st.Step, err)
				}
				why := "another rank was asked to stop"
				if sig := cfg.preempt.Signal(); sig != nil {
					why = sig.String()
				}
				logf("preempted (%s) after step %d (epoch %d, batch %d/%d): checkpoint saved in %s; exiting %d",
					why, st.Step, st.Epoch+1, st.Batch, done+nb, cfg.checkpoint, preempt.ExitCode)
				return errPreempted
			}
			if cfg.progress > 0 && time.Since(lastReport) >= cfg.progress {
				lastReport = time.Now()
				el := time.Since(start).Seconds()
				logf("epoch %d/%d  step %d/%d  loss %.4f (rank 0)  %.0f samples/s", epoch+1, cfg.epochs, st.Batch, done+nb,
					lossSum/float64(samples), float64(steps*global)/el)
			}
		}
		elapsed := time.Since(start)
		stats := d.TakeStats()
		partial := k < nb
		if !partial {
			st.Epoch++
			st.Batch, st.Sample = 0, 0
		}
		// Every rank reaches this point after the same steps: sum the epoch's training
		// figures and evaluate the test set, each rank on its own share.
		sums := []float32{float32(lossSum), float32(correct), float32(samples)}
		if g != nil {
			if err := g.AllReduce(ctx, sums, collective.Sum); err != nil {
				return err
			}
		}
		testLoss, testAcc := 0.0, 0.0
		if cfg.eval {
			if testLoss, testAcc, err = evaluate(ctx, g, model, test, rank, world); err != nil {
				return err
			}
		}
		if !partial || stopped() {
			if err := save(); err != nil {
				return err
			}
		}
		per := stats.PerStep()
		ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
		rep := epochReport{
			Epoch: epoch + 1, Steps: steps, Partial: partial,
			TrainLoss: float64(sums[0]) / max(1, float64(sums[2])), TrainAcc: float64(sums[1]) / max(1, float64(sums[2])),
			SamplesPerS: float64(steps*global) / elapsed.Seconds(), EpochS: elapsed.Seconds(),
			StepMS: ms(per.Total), ComputeMS: ms(per.Compute), CommMS: ms(per.Comm), ExposedCommMS: ms(per.ExposedComm),
			ExposedCommShare: stats.ExposedShare(), OptimizerMS: ms(per.Optimizer), LR: float64(opt.LR()),
			WorldSize: world, Batch: batch, Model: cfg.model, Device: placement, Compress: cfg.compress, Buckets: len(d.Buckets()),
			GOMAXPROCS: runtime.GOMAXPROCS(0),
		}
		if cfg.eval {
			rep.TestLoss, rep.TestAcc = &testLoss, &testAcc
		}
		if cfg.jsonOut {
			b, _ := json.Marshal(rep)
			fmt.Fprintln(out, string(b))
		} else {
			what := "epoch"
			if partial {
				what = "partial epoch"
			}
			// Only what was measured: without --eval there is no test figure to print.
			test := ""
			if cfg.eval {
				test = fmt.Sprintf(" | test loss %.4f acc %.2f%%", testLoss, 100*testAcc)
			}
			fmt.Fprintf(out, "%s %d/%d (%d steps, %.1fs): train loss %.4f acc %.2f%%%s | %.0f samples/s | step %.1f ms: compute %.1f, comm %.1f, exposed comm %.1f (%.1f%%)\n",
				what, epoch+1, cfg.epochs, steps, elapsed.Seconds(), rep.TrainLoss, 100*rep.TrainAcc, test,
				rep.SamplesPerS, rep.StepMS, rep.ComputeMS, rep.CommMS, rep.ExposedCommMS, 100*rep.ExposedCommShare)
		}
	}
	if cfg.saveParams != "" && rank == 0 {
		// On a device the parameters' truth is there: bring it to Param.Value first.
		if dr, ok := model.(models.DeviceResident); ok {
			if err := dr.PullParams(); err != nil {
				return fmt.Errorf("--save-params: downloading the parameters from %s: %w", dr.Device(), err)
			}
		}
		b, err := models.ParamSnapshot(model.Params(), st.Step).MarshalBinary()
		if err == nil {
			err = os.WriteFile(cfg.saveParams, b, 0o644)
		}
		if err != nil {
			return fmt.Errorf("--save-params: %w", err)
		}
	}
	return nil
}

// traceSamples appends this rank's sample indices of batch k (step step, epoch epoch) to
// its trace file, so that a test can reassemble the global batches of every step.
func traceSamples(prefix string, world, rank int, step int64, epoch int, s *data.DistributedSampler, k int) error {
	idx, err := s.BatchIndices(k)
	if err != nil {
		return err
	}
	f, err := os.OpenFile(fmt.Sprintf("%s.w%d.r%d", prefix, world, rank), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("--trace-samples: %w", err)
	}
	line := fmt.Sprintf("%d %d ", epoch, step)
	for i, j := range idx {
		if i > 0 {
			line += ","
		}
		line += strconv.Itoa(j)
	}
	_, err = f.WriteString(line + "\n")
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// loadData returns the training and test sources and a description of where they came
// from.
func loadData(cfg config) (train, test data.Source, source string, err error) {
	if cfg.synthetic {
		const testN = 2000
		all, err := data.NewSynthetic(cfg.syntheticN+testN, models.ImageShape(), models.NumClasses, cfg.seed)
		if err != nil {
			return nil, nil, "", err
		}
		return window{all, 0, cfg.syntheticN}, window{all, cfg.syntheticN, testN},
			fmt.Sprintf("synthetic (%d train, %d test images)", cfg.syntheticN, testN), nil
	}
	ds, err := data.Open(cfg.dataDir)
	if err != nil {
		return nil, nil, "", err
	}
	return ds.Train, ds.Test, ds.Source, nil
}

// window is the samples [off, off+n) of a source: the synthetic test set is drawn from
// the same generator as the training set (same class patterns), but other samples.
type window struct {
	data.Source
	off, n int
}

func (w window) Len() int { return w.n }

func (w window) Gather(idx []int) (models.Tensor, []int, error) {
	shifted := make([]int, len(idx))
	for i, j := range idx {
		if j < 0 || j >= w.n {
			return models.Tensor{}, nil, fmt.Errorf("index %d out of range [0, %d)", j, w.n)
		}
		shifted[i] = j + w.off
	}
	return w.Source.Gather(shifted)
}

// evaluate computes the test loss and accuracy, each rank on a contiguous share of the
// test set, summed over the group. It runs m's Forward: on m's device, with the
// parameters the device holds.
func evaluate(ctx context.Context, g *collective.Group, m models.Model, test data.Source, rank, world int) (loss, acc float64, err error) {
	const batch = 500
	n := test.Len()
	lo, hi := n*rank/world, n*(rank+1)/world
	var sums [3]float32 // loss sum, correct, samples
	for a := lo; a < hi; a += batch {
		b := min(a+batch, hi)
		idx := make([]int, b-a)
		for i := range idx {
			idx[i] = a + i
		}
		x, labels, err := test.Gather(idx)
		if err != nil {
			return 0, 0, err
		}
		logits, _, err := m.Forward(x, false)
		if err != nil {
			return 0, 0, err
		}
		l, _, err := models.SoftmaxCrossEntropy(logits, labels, 1)
		if err != nil {
			return 0, 0, err
		}
		c, err := models.CountCorrect(logits, labels)
		if err != nil {
			return 0, 0, err
		}
		sums[0] += float32(l)
		sums[1] += float32(c)
		sums[2] += float32(len(labels))
	}
	if g != nil {
		if err := g.AllReduce(ctx, sums[:], collective.Sum); err != nil {
			return 0, 0, err
		}
	}
	if sums[2] == 0 {
		return 0, 0, nil
	}
	return float64(sums[0] / sums[2]), float64(sums[1] / sums[2]), nil
}
