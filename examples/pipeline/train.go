// Command pipeline trains a model on Fashion-MNIST with pipeline parallelism
// (GPipe or 1F1B), optionally times data parallelism, through gorun:
//
//	gorun --nproc 4 examples/pipeline/train.go --schedule 1f1b --micro-batches 8
//	gorun --nproc 4 examples/pipeline/train.go --stages 2 --dp 2 --model cnn
//
// The model's layers are cut into K contiguous stages (balanced by estimated
// FLOPs, by measured time with --balance time, or at --split points), one per
// rank of each of D replicas: rank = replica·K + stage (package pipeline's
// Layout). Every rank builds the same model from --seed and keeps its
// stage's layers. Each mini-batch of --batch samples is split among the
// replicas and each replica's share into M micro-batches that flow through
// the stages; the replicas of a stage AllReduce their gradients before the
// optimizer step.
//
// Rank 0 prints the plan (stages, layers, parameters, devices), the last
// stage of replica 0 prints progress, and at the end rank 0 prints the
// measured bubble (the idle share of the stages' time) next to the theory
// (K−1)/(M+K−1), and the peak number (and size) of stored activations per
// stage. --json prints the same as JSON lines.
//
// Without WORLD_SIZE in the environment it runs alone: one stage, one rank.
//
// --device picks where each rank's stage computes (package gpu): auto (the
// default) a CUDA GPU when the backend loads and finds one (LOCAL_RANK picks
// it), else the CPU; a stage holding a layer the GPU backend lacks then stays
// on the CPU and its rank says why. cuda insists on a GPU; cpu and emu (the
// GPU kernels' Go twins, for tests) need none. Rank 0 prints its device and
// why; the plan shows where every rank's stage computes.
//
// Data: the directory of --data, else /usr/share/datasets/fashion-mnist,
// else the subset embedded in the binary (models/data.Default). Every rank
// of a replica draws the same mini-batch share from the seeded sampler; stage
// 0 uses its images, the last stage its labels.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/ringtrain/ringtrain/collective"
	"github.com/ringtrain/ringtrain/collective/transport/memtransport"
	"github.com/ringtrain/ringtrain/errorfile"
	"github.com/ringtrain/ringtrain/gpu"
	"github.com/ringtrain/ringtrain/models"
	"github.com/ringtrain/ringtrain/models/data"
	"github.com/ringtrain/ringtrain/pipeline"
	"github.com/ringtrain/ringtrain/pipeline/devices"
)

type options struct {
	schedule string
	stages   int
	micro    int
	dp       int
	batch    int
	model    string
	device   string
	lr       float64
	momentum float64
	steps    int
	warmup   int
	split    string
	balance  string
	seed     int64
	dataDir  string
	logEvery int
	json     bool
	sendWait time.Duration
	trace    int
}

func parseFlags(args []string, stderr io.Writer) (options, error) {
	var o options
	fs := flag.NewFlagSet("pipeline", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.schedule, "schedule", "1f1b", "pipeline schedule: gpipe or 1f1b")
	fs.IntVar(&o.stages, "stages", 0, "pipeline stages K (0: world size / dp)")
	fs.IntVar(&o.micro, "micro-batches", 8, "micro-batches M per replica and mini-batch")
	fs.IntVar(&o.dp, "dp", 1, "data-parallel replicas D of every stage")
	fs.IntVar(&o.batch, "batch", 64, "global mini-batch size (all replicas together)")
	fs.StringVar(&o.model, "model", "mlp", "model: "+strings.Join(models.ModelNames(), ", "))
	fs.StringVar(&o.device, "device", "auto", "where each rank's stage computes: "+gpu.Specs+" (auto: a CUDA GPU if the backend loads and finds one and supports the stage's layers, else the CPU; cuda: LOCAL_RANK picks the GPU)")
	fs.Float64Var(&o.lr, "lr", 0.05, "SGD learning rate")
	fs.Float64Var(&o.momentum, "momentum", 0.9, "SGD momentum")
	fs.IntVar(&o.steps, "steps", 100, "optimizer steps (mini-batches) to train")
	fs.IntVar(&o.warmup, "warmup", -1, "first steps left out of the bubble measurement (they build the gorgonia graphs and grow the heap, whose first touch of fresh pages is slow on VMs); -1: a fifth of the steps, at least 1 when steps > 1")
	fs.StringVar(&o.split, "split", "", "explicit split points, e.g. \"3,7\" for stages [0,3) [3,7) [7,n) (default: balanced)")
	fs.StringVar(&o.balance, "balance", "flops", "what --split-less balancing equalises: flops (estimated) or time (measured on rank 0)")
	fs.Int64Var(&o.seed, "seed", 1, "seed of the model's initialisation and of the data order (the same on every rank)")
	fs.StringVar(&o.dataDir, "data", "", "directory of the Fashion-MNIST IDX files (default: "+data.DefaultDir+", else embedded)")
	fs.DurationVar(&o.sendWait, "send-wait", 0, "how long a stage waits for the transport to take each message it sends before computing on (0: pipeline.DefaultSendWait; negative: never wait)")
	fs.IntVar(&o.trace, "trace-step", -1, "print every rank's timeline of this step (0-based) as JSON lines (event \"trace\"); -1: none")
	fs.IntVar(&o.logEvery, "log-every", 10, "print progress every N steps")
	fs.BoolVar(&o.json, "json", false, "print JSON lines instead of text")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	switch {
	case o.steps < 1:
		return o, fmt.Errorf("--steps %d: must be at least 1", o.steps)
	case o.dp < 1:
		return o, fmt.Errorf("--dp %d: must be at least 1", o.dp)
	case o.stages < 0:
		return o, fmt.Errorf("--stages %d: must be positive (or 0 for world size / dp)", o.stages)
	case o.micro < 1:
		return o, fmt.Errorf("--micro-batches %d: must be at least 1", o.micro)
	case o.batch < 1:
		return o, fmt.Errorf("--batch %d: must be at least 1", o.batch)
	case !(o.lr > 0):
		return o, fmt.Errorf("--lr %g: must be positive", o.lr)
	case o.logEvery < 1:
		return o, fmt.Errorf("--log-every %d: must be at least 1", o.logEvery)
	case o.balance != "flops" && o.balance != "time":
		return o, fmt.Errorf("--balance %q: want flops or time", o.balance)
	case !validDevice(o.device):
		return o, fmt.Errorf("--device %q: want %s", o.device, gpu.Specs)
	}
	if o.warmup < 0 {
		o.warmup = min(max(1, o.steps/5), o.steps-1)
	}
	if o.warmup >= o.steps {
		return o, fmt.Errorf("--warmup %d: must be below --steps %d so that some steps are measured", o.warmup, o.steps)
	}
	return o, nil
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

// stageCompiler is pipeline.Config.Compile for a --device: it compiles the
// rank's stage onto dev, or, with auto and a layer the GPU backend does not
// support, keeps the stage on the CPU and records why.
type stageCompiler struct {
	spec     string
	dev      gpu.Device // nil once released
	model    *gpu.Model // the compiled stage, if any
	fallback error      // why the stage stays on the CPU (auto only)
}

func (c *stageCompiler) compile(stage *models.Sequential) (models.Model, error) {
	m, err := gpu.Compile(stage, c.dev)
	if err != nil {
		if c.spec == "auto" && errors.Is(err, gpu.ErrUnsupportedLayer) {
			c.fallback = err
			c.releaseDevice() // unused: give its memory back
			return stage, nil
		}
		return nil, err
	}
	c.model = m
	return m, nil
}

func (c *stageCompiler) releaseDevice() {
	if d, ok := c.dev.(interface{ Close() error }); ok {
		d.Close()
	}
	c.dev = nil
}

// close frees the compiled stage and the device.
func (c *stageCompiler) close() {
	if c.model != nil {
		c.model.Close()
		c.model = nil
	}
	c.releaseDevice()
}

// deviceNote is the line saying where this rank computes: where its stage
// computes (placement, the Executor's Device) first, then Select's note
// or, when the stage fell back to the CPU, why.
func deviceNote(placement, note string, comp *stageCompiler) string {
	if comp != nil && comp.fallback != nil {
		note = "cpu (--device " + comp.spec + ": " + comp.fallback.Error() + ")"
	}
	if !strings.HasPrefix(note, placement) {
		note = placement + ": " + note
	}
	return note
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(1)
		}
		// Under gorun, the error also goes to TORCHELASTIC_ERROR_FILE: gorun's summary
		// quotes it, and its own error file carries it to the scheduler.
		if _, rerr := errorfile.Record(err); rerr != nil {
			fmt.Fprintln(os.Stderr, "pipeline:", rerr)
		}
		fmt.Fprintln(os.Stderr, "pipeline:", err)
		os.Exit(1)
	}
}

// joinJob returns the world group: the gorun job's when WORLD_SIZE is set,
// else a group of this process alone. Ranks meet over QUIC
// (collective.InitFromEnv's transport); links between ranks on the same host
// then move their bytes through shared memory unless GORUN_SHM (gorun --shm)
// is off; other links take GORUN_TRANSPORT (tls by default). The hand-offs between stages are small, frequent
// and on the critical path, where shared memory's latency pays most.
func joinJob(ctx context.Context) (*collective.Group, func(), error) {
	if os.Getenv("WORLD_SIZE") != "" {
		g, err := collective.InitFromEnv(ctx) // honours GORUN_TRANSPORT and GORUN_SHM; g owns its transport
		if err != nil {
			return nil, nil, fmt.Errorf("joining the job: %w", err)
		}
		// Leave in order (NCCL's Finalize, then Destroy): every byte sent reaches
		// its neighbour before the process exits. A failed group just closes.
		return g, func() {
			sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			defer cancel()
			g.Shutdown(sctx)
			g.Close()
		}, nil
	}
	ts := memtransport.New(1)
	g, err := collective.New(ctx, ts[0], collective.Options{})
	if err != nil {
		return nil, nil, err
	}
	return g, func() { g.Close(); ts[0].Close() }, nil
}

// printer writes text or JSON lines.
type printer struct {
	w    io.Writer
	json bool
}

func (p printer) event(kind string, fields map[string]any, text string) {
	if p.json {
		fields["event"] = kind
		b, err := json.Marshal(fields)
		if err != nil {
			fmt.Fprintf(p.w, "{\"event\":\"error\",\"error\":%q}\n", err.Error())
			return
		}
		fmt.Fprintln(p.w, string(b))
		return
	}
	fmt.Fprint(p.w, text)
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	o, err := parseFlags(args, stderr)
	if err != nil {
		return err
	}
	sched, err := pipeline.ByName(o.schedule)
	if err != nil {
		return fmt.Errorf("--schedule: %w", err)
	}
	splits, err := pipeline.ParseSplits(o.split)
	if err != nil {
		return fmt.Errorf("--split: %w", err)
	}
	out := printer{w: stdout, json: o.json}

	g, closeJob, err := joinJob(ctx)
	if err != nil {
		return err
	}
	defer closeJob()
	rank := g.Rank()

	full, err := models.Build(o.model, o.seed)
	if err != nil {
		return fmt.Errorf("--model: %w", err)
	}
	var costs []float64
	if o.balance == "time" && splits == nil {
		if costs, err = sharedLayerCosts(ctx, g, full, o); err != nil {
			return err
		}
	}
	// Where this rank computes: the device --device names for its local rank,
	// onto which pipeline.New compiles the rank's stage (nil dev: the CPU).
	local, err := devices.LocalRankFromEnv(nil)
	if err != nil {
		return err
	}
	dev, note, err := gpu.Select(o.device, local)
	if err != nil {
		return err
	}
	var comp *stageCompiler
	var compile func(*models.Sequential) (models.Model, error)
	if dev != nil {
		comp = &stageCompiler{spec: o.device, dev: dev}
		defer comp.close()
		compile = comp.compile
	}
	e, err := pipeline.New(ctx, full, g, pipeline.Config{
		Stages: o.stages, Replicas: o.dp, MicroBatches: o.micro, Batch: o.batch, InputShape: models.ImageShape(),
		Schedule: sched, Splits: splits, LayerCosts: costs, SendWait: o.sendWait, Trace: o.trace >= 0,
		Compile: compile,
	})
	if err != nil {
		return fmt.Errorf("rank %d: %w", rank, err)
	}
	defer e.Close()
	note = deviceNote(e.Device(), note, comp)
	if comp != nil && comp.fallback != nil && rank != 0 {
		// Rank 0 says it in its device line; the others say it here, once each.
		fmt.Fprintf(stderr, "rank %d (stage %d): device: %s\n", rank, e.Stage(), note)
	}
	lay := e.Layout()
	ds, err := data.Open(o.dataDir)
	if err != nil {
		return fmt.Errorf("rank %d: loading the data: %w", rank, err)
	}

	plan, err := planWithDevices(ctx, g, e)
	if err != nil {
		return err
	}
	if rank == 0 {
		out.event("plan", map[string]any{
			"device": note, "placement": e.Device(),
			"model": o.model, "data": ds.Source, "world": lay.Size(), "stages": lay.Stages, "replicas": lay.Replicas,
			"micro_batches": o.micro, "batch": o.batch, "micro_batch_sizes": e.MicroBatchSizes(),
			"schedule": o.schedule, "splits": plan.Splits(), "plan": plan.String(),
		}, fmt.Sprintf("device: %s\nmodel %s on %s; %d rank(s) = %d stage(s) × %d replica(s); schedule %s, %d micro-batches of %v samples per replica, global batch %d\n%s%s",
			note, o.model, ds.Source, lay.Size(), lay.Stages, lay.Replicas, o.schedule, o.micro, e.MicroBatchSizes(), o.batch, plan, e.Schedule()))
	}

	// The optimizer updates the stage's parameters where the stage computes.
	opt, err := gpu.NewSGDFor(e.Model(), models.SGDConfig{LR: float32(o.lr), Momentum: float32(o.momentum)})
	if err != nil {
		return fmt.Errorf("--lr/--momentum: %w", err)
	}
	if c, ok := opt.(interface{ Close() }); ok {
		defer c.Close()
	}
	sampler, err := data.NewDistributedSampler(data.SamplerConfig{
		N: ds.Train.Len(), Rank: e.Replica(), World: lay.Replicas, Batch: e.ReplicaBatch(), Seed: o.seed,
	})
	if err != nil {
		return fmt.Errorf("rank %d: %w", rank, err)
	}

	var total, window pipeline.StepStats
	var measured []pipeline.StepStats
	start := time.Now()
	for step := range o.steps {
		epoch, k := step/sampler.NumBatches(), step%sampler.NumBatches()
		sampler.SetEpoch(epoch)
		x, labels, err := sampler.Batch(ds.Train, k)
		if err != nil {
			return fmt.Errorf("rank %d: step %d: %w", rank, step, err)
		}
		st, err := e.Step(ctx, x, labels, opt)
		if err != nil {
			return fmt.Errorf("step %d: %w", step, err)
		}
		if step == o.trace {
			printTrace(stdout, st)
		}
		if step >= o.warmup {
			total.Add(st)
			st.Trace = nil
			measured = append(measured, st)
		}
		window.Add(st)
		if e.IsLast() && e.Replica() == 0 && ((step+1)%o.logEvery == 0 || step+1 == o.steps) {
			loss := window.Loss / float64(window.Steps)
			acc := float64(window.Correct) / float64(max(window.Samples, 1))
			rate := float64(window.Samples) / window.Wall.Seconds()
			out.event("step", map[string]any{
				"step": step + 1, "steps": o.steps, "epoch": epoch, "loss": loss, "accuracy": acc,
				"bubble_stage": window.Bubble(), "samples_per_s_stage": rate, "elapsed_s": time.Since(start).Seconds(),
			}, fmt.Sprintf("step %d/%d epoch %d: loss %.4f, accuracy %.3f (last %d steps), last stage busy %.0f%% of its pipeline time\n",
				step+1, o.steps, epoch, loss, acc, window.Steps, 100*(1-window.Bubble())))
			window = pipeline.StepStats{}
		}
	}
	elapsed := time.Since(start)

	all, err := e.Gather(ctx, total)
	if err != nil {
		return err
	}
	sum, err := pipeline.Summarize(all, lay, e.Schedule())
	if err != nil {
		return err
	}
	spread, err := stepSpread(ctx, e, measured)
	if err != nil {
		return err
	}
	if rank == 0 {
		stages := make([]map[string]any, len(sum.PerStage))
		for i, s := range sum.PerStage {
			stages[i] = map[string]any{
				"stage": s.Stage, "ranks": s.Ranks, "busy_s": s.Busy.Seconds(), "wall_s": s.Wall.Seconds(), "bubble": s.Bubble,
				"forward_s": sum.ForwardTime[i].Seconds(), "backward_s": sum.BackwardTime[i].Seconds(),
				"peak_stored_activations": s.PeakLive, "peak_stored_activation_bytes": s.PeakLiveBytes,
			}
		}
		samples := float64(o.batch * (o.steps - o.warmup))
		wall := maxWall(all)
		out.event("summary", map[string]any{
			"schedule": o.schedule, "stages": sum.Stages, "replicas": sum.Replicas, "micro_batches": sum.MicroBatches,
			"measured_steps": sum.Steps, "bubble_measured": sum.Bubble, "bubble_theory": sum.Theory, "bubble_simulated": finite(sum.Simulated),
			"efficiency_measured": sum.Efficiency(), "efficiency_theory": sum.TheoreticalEfficiency(),
			"per_stage": stages, "loss": finite(sum.Loss), "accuracy": finite(sum.Accuracy),
			"samples_per_s": samples / wall.Seconds(), "elapsed_s": elapsed.Seconds(),
			"step_efficiency_median": spread[1], "step_efficiency_best": spread[2], "step_efficiency_worst": spread[0],
		}, fmt.Sprintf("%sper-step efficiency: median %.3f, best %.3f, worst %.3f over %d steps\ntrain loss %.4f, accuracy %.3f over the %d measured steps; %.0f samples/s\n",
			sum, spread[1], spread[2], spread[0], len(measured), sum.Loss, sum.Accuracy, sum.Steps, samples/wall.Seconds()))
	}
	return nil
}

// stepSpread summarises each measured step on its own (every rank's stats of
// that step) and returns the worst, median and best pipeline efficiency: on
// a shared machine the best steps show what the pipeline does when nothing
// else takes its cores. Collective: one Gather per step.
func stepSpread(ctx context.Context, e *pipeline.Executor, steps []pipeline.StepStats) ([3]float64, error) {
	var effs []float64
	for _, st := range steps {
		all, err := e.Gather(ctx, st)
		if err != nil {
			return [3]float64{}, err
		}
		s, err := pipeline.Summarize(all, e.Layout(), e.Schedule())
		if err != nil {
			return [3]float64{}, err
		}
		effs = append(effs, s.Efficiency())
	}
	if len(effs) == 0 {
		return [3]float64{}, nil
	}
	slices.Sort(effs)
	return [3]float64{effs[0], effs[len(effs)/2], effs[len(effs)-1]}, nil
}

// printTrace writes the rank's timeline of one step as a JSON line, times
// in Unix nanoseconds (comparable between the ranks of one host).
func printTrace(w io.Writer, st pipeline.StepStats) {
	type action struct {
		Action                      string
		Begin, Compute, End, Posted int64
	}
	acts := make([]action, len(st.Trace))
	for i, a := range st.Trace {
		acts[i] = action{a.Action.String(), a.Begin.UnixNano(), a.Compute.UnixNano(), a.End.UnixNano(), a.Posted.UnixNano()}
	}
	b, err := json.Marshal(map[string]any{"event": "trace", "step": st.Step, "rank": st.Rank, "stage": st.Stage, "replica": st.Replica, "actions": acts})
	if err != nil {
		return
	}
	fmt.Fprintln(w, string(b))
}

// maxWall is the longest schedule phase (with AllReduce and optimizer step)
// over the ranks: the measured steps' duration.
func maxWall(all []pipeline.StepStats) time.Duration {
	var w time.Duration
	for _, s := range all {
		w = max(w, s.Wall+s.Sync+s.Optim)
	}
	return w
}

func finite(v float64) any {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return nil
	}
	return v
}

// sharedLayerCosts measures every layer's time on rank 0 and broadcasts the
// result, so that all ranks balance on the same numbers.
func sharedLayerCosts(ctx context.Context, g *collective.Group, full *models.Sequential, o options) ([]float64, error) {
	buf := make([]float32, full.Len())
	if g.Rank() == 0 {
		micro := max(1, o.batch/o.dp/o.micro)
		costs, err := pipeline.MeasureLayerCosts(full, models.ImageShape(), micro, 3)
		if err != nil {
			return nil, fmt.Errorf("--balance time: %w", err)
		}
		for i, c := range costs {
			buf[i] = float32(c)
		}
	}
	if err := g.Broadcast(ctx, buf, 0); err != nil {
		return nil, fmt.Errorf("rank %d: --balance time: sharing the measured layer costs: %w", g.Rank(), err)
	}
	costs := make([]float64, len(buf))
	for i, c := range buf {
		costs[i] = float64(c)
	}
	return costs, nil
}

// planWithDevices gathers where every rank's stage computes (its model's
// placement, e.Device()) and the GPU NVML found for it by LOCAL_RANK, if any,
// and returns the plan with each stage's devices filled in: a stage is shown
// on the device it computes on, and a GPU it does not use is named as such.
func planWithDevices(ctx context.Context, g *collective.Group, e *pipeline.Executor) (*pipeline.Plan, error) {
	logf := func(string, ...any) {}
	if g.Rank() == 0 {
		logf = func(format string, args ...any) { fmt.Fprintf(os.Stderr, format+"\n", args...) }
	}
	inv, err := devices.Discover(ctx, devices.Options{Logf: logf})
	if err != nil {
		return nil, fmt.Errorf("rank %d: devices: %w", g.Rank(), err)
	}
	local, err := devices.LocalRankFromEnv(nil)
	if err != nil {
		return nil, err
	}
	found, err := inv.ForLocalRank(local)
	if err != nil {
		return nil, err
	}
	// Per rank: the kind (0 CPU, 1 GPU) and cuda index of the device found,
	// then the placement's length and bytes, one float each.
	const maxName = 32
	const per = 3 + maxName
	placement := e.Device()
	if len(placement) > maxName {
		placement = placement[:maxName]
	}
	buf := make([]float32, per*g.Size())
	mine := buf[per*g.Rank():]
	mine[0], mine[1], mine[2] = float32(found.Kind), float32(found.Index), float32(len(placement))
	for i := range len(placement) {
		mine[3+i] = float32(placement[i])
	}
	if err := g.AllGather(ctx, buf); err != nil {
		return nil, fmt.Errorf("rank %d: gathering devices: %w", g.Rank(), err)
	}
	name := func(r int) string {
		row := buf[per*r : per*(r+1)]
		b := make([]byte, min(int(row[2]), maxName))
		for i := range b {
			b[i] = byte(row[3+i])
		}
		where := string(b)
		if where == "cpu" && devices.Kind(row[0]) == devices.GPU {
			where += fmt.Sprintf(" (GPU %d found, not used)", int(row[1]))
		}
		return where
	}
	p := *e.Plan()
	p.Stages = append([]pipeline.StagePlan(nil), p.Stages...)
	lay := e.Layout()
	for i := range p.Stages {
		var parts []string
		for _, r := range lay.StageRanks(i) {
			parts = append(parts, fmt.Sprintf("rank %d %s", r, name(r)))
		}
		p.Stages[i].Device = strings.Join(parts, ", ")
	}
	return &p, nil
}
