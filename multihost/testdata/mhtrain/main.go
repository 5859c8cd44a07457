// Command mhtrain is the data-parallel training program of the multi-host tests. It joins
// the job gorun describes (over QUIC, with shared memory between ranks of one host as
// GORUN_TRANSPORT allows), trains a two-layer MLP on synthetic data with checkpoints, and
// every rank writes its final parameters to --out/params-rank<R>.bin so that a test can
// check that all replicas agree and match a single-process run.
//
// Started without WORLD_SIZE it trains alone: with --batch set to the job's global batch,
// that is the independent reference (the sampler gives a single process the union of the
// ranks' batches, step by step).
//
// What the fault tests need besides training:
//
//   - a line "mhtrain: rank R pid P data D" at start (who to kill, where its data port is);
//   - "mhtrain: rank R allreduce-enter step=S bucket=B bytes=N" when a bucket's AllReduce is
//     issued and "... allreduce-done ..." when it completes, so a test can kill a rank while
//     an AllReduce is in flight and check afterwards that it really was;
//   - "mhtrain: rank R step S" after every step and "... checkpoint step S" after each save;
//   - on failure, "mhtrain: rank R failed (dead peer rank K): ERR" when the error names a
//     peer (a *transport.PeerError), "mhtrain: rank R failed: ERR" otherwise, exit 1;
//   - SIGTERM/SIGINT do not kill it outright: the step in progress finishes or fails, so that
//     a rank stopped by gorun because another rank died still reports which rank that was
//     (gorun KILLs it after --grace anyway);
//   - --crash-at-step/--crash-rank: that rank SIGKILLs itself after that step (first attempt
//     only), for restart tests;
//   - "mhtrain: rank R world W version V restart K batch B" once the group is formed;
//   - --global-batch G: the per-rank batch is G ÷ WORLD_SIZE, for elastic jobs;
//   - --pause-at-step/--pause-file: every rank waits before that step until the file exists;
//   - MULTIHOST_LISTEN=HOST:PORT and MULTIHOST_ADVERTISE=HOST:PORT (port + LOCAL_RANK for
//     each rank) pin the data endpoint and the address other ranks dial, to route the ring
//     through a relay.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/ringtrain/ringtrain/collective"
	"github.com/ringtrain/ringtrain/collective/quictransport"
	"github.com/ringtrain/ringtrain/collective/stack"
	"github.com/ringtrain/ringtrain/collective/transport"
	"github.com/ringtrain/ringtrain/ddp"
	"github.com/ringtrain/ringtrain/models"
	"github.com/ringtrain/ringtrain/models/data"
)

var (
	finished atomic.Bool // run reached its end; the group is shut down cleanly
	rank     int
	shm      *stack.Transport // the job's transport; nil when training alone
)

func main() {
	err := run()
	if err == nil {
		return
	}
	var pe *transport.PeerError
	if errors.As(err, &pe) {
		fmt.Fprintf(os.Stderr, "mhtrain: rank %d failed (dead peer rank %d): %v\n", rank, pe.Rank, err)
	} else {
		fmt.Fprintf(os.Stderr, "mhtrain: rank %d failed: %v\n", rank, err)
	}
	os.Exit(1)
}

type flags struct {
	steps, every, hidden, batch int
	globalBatch                 int
	lr                          float64
	dir, out                    string
	crashAt, crashRank          int
	pauseAt                     int
	pauseFile                   string
	stepSleep                   time.Duration
	minMarkBytes                int
}

func parseFlags() flags {
	var f flags
	flag.IntVar(&f.steps, "steps", 20, "optimizer steps in all")
	flag.IntVar(&f.every, "every", 5, "checkpoint every this many steps (0: never)")
	flag.IntVar(&f.hidden, "hidden", 32, "hidden units (the first layer has 784×hidden weights)")
	flag.IntVar(&f.batch, "batch", 8, "samples per rank per step")
	flag.IntVar(&f.globalBatch, "global-batch", 0, "samples per step over all ranks (overrides --batch with global ÷ WORLD_SIZE): "+
		"the sample order and the trajectory then do not depend on the world size, as an elastic job needs")
	flag.Float64Var(&f.lr, "lr", 0.05, "SGD learning rate (momentum 0.9)")
	flag.StringVar(&f.dir, "dir", "", "checkpoint directory (rank 0 writes it; empty: no checkpoints)")
	flag.StringVar(&f.out, "out", "", "directory for every rank's final parameters (params-rank<R>.bin)")
	flag.IntVar(&f.crashAt, "crash-at-step", 0, "on the first attempt, --crash-rank SIGKILLs itself after this step")
	flag.IntVar(&f.crashRank, "crash-rank", 0, "the rank that crashes")
	flag.IntVar(&f.pauseAt, "pause-at-step", -1, "before this step, wait until --pause-file exists")
	flag.StringVar(&f.pauseFile, "pause-file", "", "see --pause-at-step")
	flag.DurationVar(&f.stepSleep, "step-sleep", 0, "sleep after each step (a longer job for fault tests)")
	flag.IntVar(&f.minMarkBytes, "mark-bytes", 0, "print allreduce-enter/done markers only for buckets of at least this many bytes")
	flag.Parse()
	return f
}

// join sets up the group from gorun's environment; nil when there is no job (WORLD_SIZE
// unset): the program then trains alone.
func join(ctx context.Context) (*collective.Group, func(), error) {
	if _, ok := os.LookupEnv("WORLD_SIZE"); !ok {
		return nil, func() {}, nil
	}
	cfg, err := quictransport.ConfigFromEnv()
	if err != nil {
		return nil, nil, err
	}
	local := cfg.LocalRank
	if v := os.Getenv("MULTIHOST_LISTEN"); v != "" {
		if cfg.ListenAddr, err = shiftPort(v, local); err != nil {
			return nil, nil, fmt.Errorf("MULTIHOST_LISTEN: %w", err)
		}
	}
	if v := os.Getenv("MULTIHOST_ADVERTISE"); v != "" {
		if cfg.AdvertiseAddr, err = shiftPort(v, local); err != nil {
			return nil, nil, fmt.Errorf("MULTIHOST_ADVERTISE: %w", err)
		}
	}
	rank = cfg.Rank
	// The job's transports as collective.InitFromEnv composes them (--transport, --shm), on
	// the QUIC config above (the tests' relays may move the advertised addresses).
	settings, err := stack.SettingsFromEnv()
	if err != nil {
		return nil, nil, err
	}
	tr, err := stack.Establish(ctx, cfg, settings)
	if err != nil {
		return nil, nil, err
	}
	fmt.Printf("mhtrain: rank %d pid %d data %s advertised %q transport %s\n", cfg.Rank, os.Getpid(), tr.QUIC.LocalAddr(), cfg.AdvertiseAddr, settings)
	shm = tr
	g, err := collective.New(ctx, tr, collective.Options{})
	if err != nil {
		tr.Close()
		return nil, nil, err
	}
	return g, func() {
		// Finalize before Destroy: the last op's bytes reach the neighbours before this rank
		// goes (a prompt Close would fail a neighbour still reading them).
		// Only after success: a failed run closes at once.
		if finished.Load() {
			sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			_ = g.Shutdown(sctx)
		}
		g.Close()
		tr.Close()
	}, nil
}

// shiftPort returns host:(port+off).
func shiftPort(hostport string, off int) (string, error) {
	h, p, err := net.SplitHostPort(hostport)
	if err != nil {
		return "", err
	}
	n, err := strconv.Atoi(p)
	if err != nil || n <= 0 || n+off > 65535 {
		return "", fmt.Errorf("bad port in %q", hostport)
	}
	return net.JoinHostPort(h, strconv.Itoa(n+off)), nil
}

func run() error {
	f := parseFlags()
	var stopping atomic.Bool
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		for s := range sigs {
			fmt.Fprintf(os.Stderr, "mhtrain: rank %d got %v: stopping after the step in progress\n", rank, s)
			stopping.Store(true)
		}
	}()

	ctx := context.Background()
	g, closeGroup, err := join(ctx)
	if err != nil {
		return err
	}
	defer closeGroup()
	world := 1
	if g != nil {
		rank, world = g.Rank(), g.Size()
	}

	if f.globalBatch > 0 {
		if f.globalBatch%world != 0 {
			return fmt.Errorf("--global-batch %d is not a multiple of the world size %d", f.globalBatch, world)
		}
		f.batch = f.globalBatch / world
	}
	fmt.Printf("mhtrain: rank %d world %d version %s restart %s batch %d\n", rank, world,
		os.Getenv("GORUN_WORLD_VERSION"), os.Getenv("GORUN_RESTART_COUNT"), f.batch)
	fc1, err1 := models.NewLinear("fc1", 784, f.hidden, models.InitHe)
	fc2, err2 := models.NewLinear("fc2", f.hidden, 10, models.InitGlorot)
	if err := errors.Join(err1, err2); err != nil {
		return err
	}
	model, err := models.NewSequential(models.NewFlatten("flat"), fc1, models.NewReLU("relu"), fc2)
	if err != nil {
		return err
	}
	model.Init(int64(100 + rank)) // differing seeds: Wrap must give every rank rank 0's values
	// Bucket sizes, known once Wrap returns; the trace runs on other goroutines too.
	var sizes atomic.Pointer[[]int64]
	bucketBytes := func(b int) int64 {
		s := sizes.Load()
		if s == nil || b < 0 || b >= len(*s) {
			return 0
		}
		return (*s)[b]
	}
	opts := ddp.Options{
		FirstBucketCapMB: 0.01,
		Trace: func(e ddp.Event) {
			var what string
			switch e.Kind {
			case ddp.EventBucketLaunched:
				what = "allreduce-enter"
			case ddp.EventBucketDone:
				what = "allreduce-end" // done or failed
			default:
				return
			}
			if n := bucketBytes(e.Bucket); n >= int64(f.minMarkBytes) {
				fmt.Printf("mhtrain: rank %d %s step=%d bucket=%d bytes=%d\n", rank, what, e.Step, e.Bucket, n)
			}
		},
	}
	d, err := ddp.Wrap(ctx, model, g, opts)
	if err != nil {
		return err
	}
	var bs []int64
	for _, b := range d.Buckets() {
		bs = append(bs, b.Bytes())
	}
	sizes.Store(&bs)
	if shm != nil {
		fmt.Printf("mhtrain: rank %d links %v\n", rank, shm.Kinds())
	}
	opt, err := models.NewSGD(model.Params(), models.SGDConfig{LR: float32(f.lr), Momentum: 0.9})
	if err != nil {
		return err
	}
	src, err := data.NewSynthetic(480, models.ImageShape(), 10, 5)
	if err != nil {
		return err
	}
	sampler, err := data.NewDistributedSampler(data.SamplerConfig{N: src.Len(), Rank: rank, World: world, Batch: f.batch, Seed: 9})
	if err != nil {
		return err
	}
	var st ddp.TrainState
	if f.dir != "" {
		var path string
		if st, path, err = d.LoadCheckpoint(ctx, f.dir, opt); err != nil {
			return err
		}
		if path != "" {
			fmt.Printf("mhtrain: rank %d resumed from %s at step %d\n", rank, filepath.Base(path), st.Step)
		}
	}
	st.GlobalBatch, st.Seed = world*f.batch, 9
	restart := os.Getenv("GORUN_RESTART_COUNT")
	firstAttempt := restart == "" || restart == "0"
	for st.Step < int64(f.steps) {
		if stopping.Load() {
			return fmt.Errorf("stopped by a signal before step %d", st.Step)
		}
		if int(st.Step) == f.pauseAt && f.pauseFile != "" {
			fmt.Printf("mhtrain: rank %d paused before step %d\n", rank, st.Step)
			for {
				if _, err := os.Stat(f.pauseFile); err == nil {
					break
				}
				if stopping.Load() {
					return fmt.Errorf("stopped by a signal while paused before step %d", st.Step)
				}
				time.Sleep(50 * time.Millisecond)
			}
		}
		if st.Batch == sampler.NumBatches() {
			st.Epoch, st.Batch = st.Epoch+1, 0
		}
		sampler.SetEpoch(st.Epoch)
		x, labels, err := sampler.Batch(src, st.Batch)
		if err != nil {
			return err
		}
		res, err := d.TrainStep(ctx, opt, ddp.Batch{X: x, Labels: labels})
		if err != nil {
			return fmt.Errorf("step %d: %w", st.Step, err)
		}
		st.Step++
		st.Batch++
		fmt.Printf("mhtrain: rank %d step %d loss %.5f\n", rank, st.Step, res.Loss)
		if f.dir != "" && f.every > 0 && st.Step%int64(f.every) == 0 {
			if _, err := d.SaveCheckpoint(ctx, f.dir, st, opt); err != nil {
				return err
			}
			fmt.Printf("mhtrain: rank %d checkpoint step %d\n", rank, st.Step)
		}
		if firstAttempt && f.crashAt > 0 && st.Step == int64(f.crashAt) && rank == f.crashRank {
			fmt.Printf("mhtrain: rank %d killing itself after step %d\n", rank, st.Step)
			syscall.Kill(os.Getpid(), syscall.SIGKILL)
			select {}
		}
		if f.stepSleep > 0 {
			time.Sleep(f.stepSleep)
		}
	}
	if f.out != "" {
		b, err := models.ParamSnapshot(model.Params(), st.Step).MarshalBinary()
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(f.out, fmt.Sprintf("params-rank%d.bin", rank)), b, 0o644); err != nil {
			return err
		}
	}
	fmt.Printf("mhtrain: rank %d done after step %d\n", rank, st.Step)
	finished.Store(true)
	return nil
}
