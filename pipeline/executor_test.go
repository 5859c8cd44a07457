package pipeline_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ringtrain/ringtrain/collective"
	"github.com/ringtrain/ringtrain/collective/quictransport"
	"github.com/ringtrain/ringtrain/models"
	"github.com/ringtrain/ringtrain/models/data"
	"github.com/ringtrain/ringtrain/pipeline"
)

// The tests run real pipelines over real QUIC connections on 127.0.0.1: one
// 4-rank job (quictransport.StartLocal) serves the whole package, and every
// test case makes its own subgroup of the first K·D ranks, so cases never
// share a channel.

const (
	worldSize = 4
	testLimit = 60 * time.Second
)

var (
	jobOnce  sync.Once
	jobErr   error
	jobWorld []*collective.Group
)

// world returns the world groups of the shared 4-rank QUIC job.
func world(t *testing.T) []*collective.Group {
	t.Helper()
	jobOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		logger := slog.New(slog.DiscardHandler)
		ts, err := quictransport.StartLocal(ctx, worldSize, quictransport.Config{Logger: logger})
		if err != nil {
			jobErr = fmt.Errorf("StartLocal(%d): %w", worldSize, err)
			return
		}
		jobWorld = make([]*collective.Group, worldSize)
		errs := make([]error, worldSize)
		var wg sync.WaitGroup
		for r := range worldSize {
			wg.Go(func() {
				jobWorld[r], errs[r] = collective.New(ctx, ts[r], collective.Options{Timeout: 20 * time.Second, Logger: logger})
			})
		}
		wg.Wait()
		jobErr = errors.Join(errs...)
	})
	if jobErr != nil {
		t.Fatal(jobErr)
	}
	return jobWorld
}

// onRanks runs f on world ranks 0..n-1 at once, each with the subgroup of
// those ranks (group rank == world rank), and returns their errors by rank.
func onRanks(t *testing.T, n int, f func(ctx context.Context, g *collective.Group) error) []error {
	t.Helper()
	w := world(t)
	ctx, cancel := context.WithTimeout(context.Background(), testLimit)
	defer cancel()
	ranks := make([]int, n)
	for i := range ranks {
		ranks[i] = i
	}
	errs := make([]error, n)
	var wg sync.WaitGroup
	for r := range n {
		wg.Go(func() {
			g, err := w[r].Subgroup(ctx, ranks)
			if err != nil {
				errs[r] = err
				return
			}
			defer g.Close()
			errs[r] = f(ctx, g)
		})
	}
	wg.Wait()
	return errs
}

// testInput is the per-sample input of the test model: 12 values seen as
// [3 4], flattened first so the model has a parameterless layer too.
var testInput = []int{3, 4}

// graphMu serialises the first forward of each batch shape (which builds the
// layers' gorgonia graphs) across the in-process ranks: gorgonia v0.9.18
// counts graph groups in an unsynchronised global (internal/encoding
// NewGroup, called by Rectify, Conv2d and MaxPool2D), which -race reports
// when two models build graphs at once. Separate processes, as gorun starts,
// do not share it.
var graphMu sync.Mutex

// warm builds m's programs for micro-batches of the given sizes.
func warm(t testing.TB, m *models.Sequential, sizes ...int) {
	t.Helper()
	graphMu.Lock()
	defer graphMu.Unlock()
	for _, b := range sizes {
		if _, _, err := m.Forward(models.NewTensor(append([]int{b}, testInput...)...), true); err != nil {
			t.Fatal(err)
		}
	}
}

// microSizes are the micro-batch sizes of a batch of b in m parts, as the
// executor cuts it.
func microSizes(b, m int) []int {
	out := make([]int, m)
	for i := range out {
		out[i] = b / m
		if i < b%m {
			out[i]++
		}
	}
	return out
}

// testModel is a small MLP: flatten → 12-16 → relu → 16-16 → relu → 16-10,
// with its graphs built for the given batch sizes (see graphMu).
func testModel(t testing.TB, seed int64, sizes ...int) *models.Sequential {
	t.Helper()
	fc1, err1 := models.NewLinear("fc1", 12, 16, models.InitHe)
	fc2, err2 := models.NewLinear("fc2", 16, 16, models.InitHe)
	fc3, err3 := models.NewLinear("fc3", 16, 10, models.InitGlorot)
	if err := errors.Join(err1, err2, err3); err != nil {
		t.Fatal(err)
	}
	m, err := models.NewSequential(models.NewFlatten("flatten"), fc1, models.NewReLU("relu1"), fc2, models.NewReLU("relu2"), fc3)
	if err != nil {
		t.Fatal(err)
	}
	m.Init(seed)
	warm(t, m, sizes...)
	return m
}

func newSGD(params []*models.Param) (models.Optimizer, error) {
	return models.NewSGD(params, models.SGDConfig{LR: 0.2, Momentum: 0.9})
}

// testData is the synthetic dataset every rank draws from.
func testData(t testing.TB) *data.Synthetic {
	t.Helper()
	src, err := data.NewSynthetic(512, testInput, 10, 11)
	if err != nil {
		t.Fatal(err)
	}
	return src
}

// replicaBatch returns replica's share of mini-batch step: what every rank
// of that replica builds for itself (see Executor).
func replicaBatch(src data.Source, batch, replicas, replica, step int) (models.Tensor, []int, error) {
	s, err := data.NewDistributedSampler(data.SamplerConfig{N: src.Len(), Rank: replica, World: replicas, Batch: batch / replicas, Seed: 5})
	if err != nil {
		return models.Tensor{}, nil, err
	}
	return s.Batch(src, step)
}

// reference trains the model on one process with the whole mini-batch of
// every step: the result pipeline training must reproduce.
func reference(t *testing.T, batch, steps int) (params map[string][]float32, losses []float64) {
	t.Helper()
	src := testData(t)
	m := testModel(t, 1)
	opt, err := newSGD(m.Params())
	if err != nil {
		t.Fatal(err)
	}
	for step := range steps {
		x, y, err := replicaBatch(src, batch, 1, 0, step)
		if err != nil {
			t.Fatal(err)
		}
		m.ZeroGrad()
		logits, saved, err := m.Forward(x, true)
		if err != nil {
			t.Fatal(err)
		}
		loss, dl, err := models.SoftmaxCrossEntropy(logits, y, float32(1/float64(batch)))
		if err != nil {
			t.Fatal(err)
		}
		if err := m.BackwardParams(saved, dl, nil); err != nil {
			t.Fatal(err)
		}
		if err := opt.Step(); err != nil {
			t.Fatal(err)
		}
		losses = append(losses, loss)
	}
	params = make(map[string][]float32)
	for _, p := range m.Params() {
		params[p.Name] = slices.Clone(p.Value)
	}
	return params, losses
}

// relDiff is ‖a−b‖/‖b‖.
func relDiff(a, b []float32) float64 {
	var d, n float64
	for i := range a {
		x := float64(a[i]) - float64(b[i])
		d += x * x
		n += float64(b[i]) * float64(b[i])
	}
	if n == 0 {
		return math.Sqrt(d)
	}
	return math.Sqrt(d / n)
}

// rankResult is what one rank of a pipeline run ends with.
type rankResult struct {
	stage, replica int
	params         map[string][]float32
	stats          []pipeline.StepStats
}

// trainPipeline trains testModel for steps steps on K·D ranks and returns
// every rank's parameters and stats.
func trainPipeline(t *testing.T, cfg pipeline.Config, steps int) []rankResult {
	t.Helper()
	n := cfg.Stages * max(cfg.Replicas, 1)
	src := testData(t)
	res := make([]rankResult, n)
	errs := onRanks(t, n, func(ctx context.Context, g *collective.Group) error {
		c := cfg
		c.InputShape = testInput
		sizes := microSizes(c.Batch/max(c.Replicas, 1), c.MicroBatches)
		e, err := pipeline.New(ctx, testModel(t, 1, sizes...), g, c)
		if err != nil {
			return err
		}
		defer e.Close()
		opt, err := newSGD(e.Params())
		if err != nil {
			return err
		}
		r := rankResult{stage: e.Stage(), replica: e.Replica(), params: map[string][]float32{}}
		for step := range steps {
			x, y, err := replicaBatch(src, cfg.Batch, e.Layout().Replicas, e.Replica(), step)
			if err != nil {
				return err
			}
			st, err := e.Step(ctx, x, y, opt)
			if err != nil {
				return err
			}
			r.stats = append(r.stats, st)
		}
		for _, p := range e.Params() {
			r.params[p.Name] = slices.Clone(p.Value)
		}
		res[g.Rank()] = r
		return nil
	})
	for r, err := range errs {
		if err != nil {
			t.Fatalf("rank %d: %v", r, err)
		}
	}
	return res
}

// checkAgainstReference compares every rank's parameters and the last
// stage's losses with single-process training, and the replicas of each
// stage with each other (bit for bit).
func checkAgainstReference(t *testing.T, res []rankResult, batch, steps int) {
	t.Helper()
	want, losses := reference(t, batch, steps)
	seen := map[string]bool{}
	for rank, r := range res {
		for name, v := range r.params {
			seen[name] = true
			if d := relDiff(v, want[name]); !(d < 1e-5) {
				t.Errorf("rank %d (stage %d, replica %d): %s differs from single-process training by %.3g (relative)", rank, r.stage, r.replica, name, d)
			}
		}
		for step, st := range r.stats {
			if st.Samples == 0 {
				continue
			}
			if d := math.Abs(st.Loss-losses[step]) / losses[step]; !(d < 1e-5) {
				t.Errorf("rank %d step %d: loss %.7g, single process %.7g", rank, step, st.Loss, losses[step])
			}
		}
	}
	if len(seen) != len(want) {
		t.Errorf("the stages hold %d parameters, the model %d", len(seen), len(want))
	}
	for a := range res {
		for b := a + 1; b < len(res); b++ {
			if res[a].stage != res[b].stage {
				continue
			}
			for name, v := range res[a].params {
				if !slices.Equal(v, res[b].params[name]) {
					t.Errorf("%s differs between replicas %d and %d of stage %d (ranks %d, %d)", name, res[a].replica, res[b].replica, res[a].stage, a, b)
				}
			}
		}
	}
}

// checkPeaks compares the measured peak of stored activations with what the
// schedule implies: 1F1B min(K−s, M) on stage s, GPipe M.
func checkPeaks(t *testing.T, res []rankResult, schedule string, k, m int) {
	t.Helper()
	for rank, r := range res {
		want := m
		if schedule == "1f1b" {
			want = min(k-r.stage, m)
		}
		for _, st := range r.stats {
			if st.PeakLive != want {
				t.Errorf("rank %d (stage %d) step %d: peak stored activations %d micro-batches, want %d (%s, K=%d, M=%d)",
					rank, r.stage, st.Step, st.PeakLive, want, schedule, k, m)
			}
			if st.PeakLiveBytes <= 0 {
				t.Errorf("rank %d step %d: peak stored activation bytes %d", rank, st.Step, st.PeakLiveBytes)
			}
			if st.Busy <= 0 || st.Wall < st.Busy {
				t.Errorf("rank %d step %d: busy %v, wall %v", rank, st.Step, st.Busy, st.Wall)
			}
		}
	}
}

// TestMatchesSingleProcess trains K stages with M micro-batches under both
// schedules and checks the parameters against single-process training on
// the whole mini-batch, and the measured activation peaks.
func TestMatchesSingleProcess(t *testing.T) {
	const batch, steps = 16, 3
	for _, k := range []int{2, 3, 4} {
		for _, m := range []int{1, 4, 8} {
			for _, sched := range []string{"gpipe", "1f1b"} {
				t.Run(fmt.Sprintf("K=%d/M=%d/%s", k, m, sched), func(t *testing.T) {
					f, err := pipeline.ByName(sched)
					if err != nil {
						t.Fatal(err)
					}
					res := trainPipeline(t, pipeline.Config{Stages: k, MicroBatches: m, Batch: batch, Schedule: f}, steps)
					checkAgainstReference(t, res, batch, steps)
					checkPeaks(t, res, sched, k, m)
				})
			}
		}
	}
}

// TestPipelineTimesDataParallel runs 2 stages × 2 replicas (ranks 0→1 and
// 2→3; stage groups {0,2} and {1,3}).
func TestPipelineTimesDataParallel(t *testing.T) {
	const batch, steps = 16, 3
	for _, sched := range []string{"gpipe", "1f1b"} {
		t.Run(sched, func(t *testing.T) {
			f, _ := pipeline.ByName(sched)
			res := trainPipeline(t, pipeline.Config{Stages: 2, Replicas: 2, MicroBatches: 4, Batch: batch, Schedule: f}, steps)
			for rank, r := range res {
				if ws, wr := rank%2, rank/2; r.stage != ws || r.replica != wr {
					t.Errorf("rank %d runs stage %d replica %d, want %d %d", rank, r.stage, r.replica, ws, wr)
				}
			}
			checkAgainstReference(t, res, batch, steps)
			checkPeaks(t, res, sched, 2, 4)
		})
	}
}

// TestUnevenMicroBatches splits a per-replica batch of 10 into 4
// micro-batches (3, 3, 2, 2) with explicit split points.
func TestUnevenMicroBatches(t *testing.T) {
	const batch, steps = 10, 2
	res := trainPipeline(t, pipeline.Config{Stages: 3, MicroBatches: 4, Batch: batch, Splits: []int{2, 4}}, steps)
	checkAgainstReference(t, res, batch, steps)
	want := [][]string{{"fc1.bias", "fc1.weight"}, {"fc2.bias", "fc2.weight"}, {"fc3.bias", "fc3.weight"}}
	for rank, r := range res {
		var got []string
		for name := range r.params {
			got = append(got, name)
		}
		slices.Sort(got)
		if rank != r.stage || !slices.Equal(got, want[r.stage]) {
			t.Errorf("rank %d runs stage %d with %v, want stage %d with %v", rank, r.stage, got, rank, want[rank])
		}
	}
}

// TestSummary gathers stats from every rank and checks the summary's
// arithmetic against the per-rank numbers.
func TestSummary(t *testing.T) {
	var mu sync.Mutex
	var sums []pipeline.Summary
	var locals []pipeline.StepStats
	traces := make([][]pipeline.ActionTrace, 2)
	errs := onRanks(t, 2, func(ctx context.Context, g *collective.Group) error {
		e, err := pipeline.New(ctx, testModel(t, 1, 4), g, pipeline.Config{Batch: 16, MicroBatches: 4, InputShape: testInput, Trace: true})
		if err != nil {
			return err
		}
		src := testData(t)
		var total pipeline.StepStats
		for step := range 3 {
			x, y, err := replicaBatch(src, 16, 1, 0, step)
			if err != nil {
				return err
			}
			st, err := e.Step(ctx, x, y, nil)
			if err != nil {
				return err
			}
			traces[g.Rank()] = st.Trace
			total.Add(st)
		}
		all, err := e.Gather(ctx, total)
		if err != nil {
			return err
		}
		if !reflect.DeepEqual(all[g.Rank()], total) {
			return fmt.Errorf("gathered stats of rank %d differ from its own: %+v vs %+v", g.Rank(), all[g.Rank()], total)
		}
		s, err := pipeline.Summarize(all, e.Layout(), e.Schedule())
		if err != nil {
			return err
		}
		mu.Lock()
		sums = append(sums, s)
		locals = append(locals, total)
		mu.Unlock()
		return nil
	})
	for r, err := range errs {
		if err != nil {
			t.Fatalf("rank %d: %v", r, err)
		}
	}
	// The last step's timelines: every action in schedule order, its phases
	// in order, and no stage computing a micro-batch before its neighbour
	// produced the input.
	sched, _ := pipeline.OneFOneB(2, 4)
	end := map[[3]int]time.Time{} // (stage, kind, micro) → End
	for st, tr := range traces {
		if len(tr) != len(sched[st]) {
			t.Fatalf("stage %d traced %d actions, want %d", st, len(tr), len(sched[st]))
		}
		for i, a := range tr {
			if a.Action != sched[st][i] || a.Compute.Before(a.Begin) || a.End.Before(a.Compute) || a.Posted.Before(a.End) {
				t.Errorf("stage %d action %d: %+v (want %v, phases in order)", st, i, a, sched[st][i])
			}
			end[[3]int{st, int(a.Action.Kind), a.Action.Micro}] = a.End
		}
	}
	for _, a := range traces[1] {
		if a.Action.Kind == pipeline.Forward && a.Compute.Before(end[[3]int{0, int(pipeline.Forward), a.Action.Micro}]) {
			t.Errorf("stage 1 computed %v before stage 0 finished it", a.Action)
		}
	}
	for _, a := range traces[0] {
		if a.Action.Kind == pipeline.Backward && a.Compute.Before(end[[3]int{1, int(pipeline.Backward), a.Action.Micro}]) {
			t.Errorf("stage 0 computed %v before stage 1 finished it", a.Action)
		}
	}
	if len(sums) != 2 || sums[0].Bubble != sums[1].Bubble {
		t.Fatalf("ranks summarise differently: %+v", sums)
	}
	s := sums[0]
	var want float64
	for _, l := range locals {
		want += l.Bubble() / 2
	}
	if math.Abs(s.Bubble-want) > 1e-12 || s.Steps != 3 || s.Theory != pipeline.TheoreticalBubble(2, 4) {
		t.Errorf("summary %+v: bubble want %v, steps 3, theory %v", s, want, pipeline.TheoreticalBubble(2, 4))
	}
	if math.IsNaN(s.Loss) || s.Loss <= 0 || s.Accuracy < 0 || s.Accuracy > 1 {
		t.Errorf("summary loss %v accuracy %v", s.Loss, s.Accuracy)
	}
	for _, st := range s.PerStage {
		if st.PeakLive != 2-st.Stage {
			t.Errorf("stage %d: peak %d", st.Stage, st.PeakLive)
		}
	}
}

// TestMismatchedSeed: a rank that built its model from another seed makes
// New fail on every rank, naming it.
func TestMismatchedSeed(t *testing.T) {
	errs := onRanks(t, 2, func(ctx context.Context, g *collective.Group) error {
		seed := int64(1)
		if g.Rank() == 1 {
			seed = 2
		}
		_, err := pipeline.New(ctx, testModel(t, seed), g, pipeline.Config{Batch: 8, InputShape: testInput})
		return err
	})
	for r, err := range errs {
		var me *pipeline.MismatchError
		if !errors.As(err, &me) || me.Rank != 1 || len(me.What) != 1 {
			t.Errorf("rank %d: got %v, want a MismatchError naming rank 1 and the parameters", r, err)
		}
	}
}

// TestBadConfig checks that impossible settings are refused with errors
// naming the problem, before any communication.
func TestBadConfig(t *testing.T) {
	cases := []struct {
		name string
		cfg  pipeline.Config
		is   error
	}{
		{"no batch", pipeline.Config{}, pipeline.ErrConfig},
		{"batch not multiple of replicas", pipeline.Config{Stages: 1, Replicas: 2, Batch: 7}, pipeline.ErrConfig},
		{"too many micro-batches", pipeline.Config{Batch: 4, MicroBatches: 5}, pipeline.ErrConfig},
		{"layout", pipeline.Config{Stages: 3, Batch: 8}, pipeline.ErrLayout},
		{"splits vs stages", pipeline.Config{Batch: 8, Splits: []int{1, 2}}, pipeline.ErrConfig},
		{"split range", pipeline.Config{Batch: 8, Splits: []int{6}}, pipeline.ErrSplitRange},
		{"costs", pipeline.Config{Batch: 8, LayerCosts: []float64{1, 2}}, pipeline.ErrConfig},
		{"input shape", pipeline.Config{Batch: 8, InputShape: []int{5}}, pipeline.ErrConfig},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if c.cfg.InputShape == nil {
				c.cfg.InputShape = testInput
			}
			errs := onRanks(t, 2, func(ctx context.Context, g *collective.Group) error {
				_, err := pipeline.New(ctx, testModel(t, 1), g, c.cfg)
				return err
			})
			for r, err := range errs {
				if !errors.Is(err, c.is) {
					t.Errorf("rank %d: got %v, want %v", r, err, c.is)
				}
			}
		})
	}
}

// TestBadInputsAndCancel: wrong inputs are refused, and a stage whose
// neighbour never runs its step returns when its context ends.
func TestBadInputsAndCancel(t *testing.T) {
	errs := onRanks(t, 2, func(ctx context.Context, g *collective.Group) error {
		e, err := pipeline.New(ctx, testModel(t, 1), g, pipeline.Config{Batch: 8, MicroBatches: 2, InputShape: testInput})
		if err != nil {
			return err
		}
		if e.IsFirst() {
			_, err := e.Step(ctx, models.NewTensor(4, 3, 4), nil, nil)
			if !errors.Is(err, pipeline.ErrConfig) {
				return fmt.Errorf("half a batch: got %v, want ErrConfig", err)
			}
			short, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
			defer cancel()
			t0 := time.Now()
			_, err = e.Step(short, models.NewTensor(8, 3, 4), nil, nil)
			if !errors.Is(err, context.DeadlineExceeded) {
				return fmt.Errorf("step without a partner: got %v, want a deadline error", err)
			}
			if d := time.Since(t0); d > 5*time.Second {
				return fmt.Errorf("cancelled step took %v", d)
			}
			return nil
		}
		_, err = e.Step(ctx, models.Tensor{}, []int{1, 2, 3}, nil)
		if !errors.Is(err, pipeline.ErrConfig) {
			return fmt.Errorf("3 labels: got %v, want ErrConfig", err)
		}
		return nil
	})
	for r, err := range errs {
		if err != nil {
			t.Errorf("rank %d: %v", r, err)
		}
	}
}

func TestLayout(t *testing.T) {
	l, err := pipeline.NewLayout(6, 0, 2)
	if err != nil {
		t.Fatal(err)
	}
	if l.Stages != 3 || l.Size() != 6 {
		t.Fatalf("layout %+v", l)
	}
	for r := range 6 {
		s, rep := l.Coords(r)
		if l.Rank(s, rep) != r || s != r%3 || rep != r/3 {
			t.Errorf("rank %d ↔ stage %d replica %d", r, s, rep)
		}
	}
	if got := l.StageRanks(1); !slices.Equal(got, []int{1, 4}) {
		t.Errorf("StageRanks(1) = %v", got)
	}
	if got := l.PipelineRanks(1); !slices.Equal(got, []int{3, 4, 5}) {
		t.Errorf("PipelineRanks(1) = %v", got)
	}
	for _, c := range [][3]int{{0, 1, 1}, {4, 3, 0}, {5, 0, 2}, {4, 2, 3}, {4, -1, 1}} {
		if _, err := pipeline.NewLayout(c[0], c[1], c[2]); !errors.Is(err, pipeline.ErrLayout) {
			t.Errorf("NewLayout%v: got %v, want ErrLayout", c, err)
		}
	}
}

// TestConfigErrorOnOneRankFailsAll: a rank whose configuration is impossible fails before it
// can exchange fingerprints; the others must fail at once naming it (they used to wait for it
// in the fingerprint AllGather until the group's timeout).
func TestConfigErrorOnOneRankFailsAll(t *testing.T) {
	start := time.Now()
	errs := onRanks(t, 2, func(ctx context.Context, g *collective.Group) error {
		cfg := pipeline.Config{Batch: 8, MicroBatches: 2, InputShape: testInput}
		if g.Rank() == 1 {
			cfg.MicroBatches = 100
		}
		_, err := pipeline.New(ctx, testModel(t, 1), g, cfg)
		return err
	})
	for r, err := range errs {
		if err == nil || !strings.Contains(err.Error(), "rank 1 failed") || !strings.Contains(err.Error(), "100 micro-batches") {
			t.Fatalf("rank %d: %v; want an error naming rank 1's configuration", r, err)
		}
		if errors.Is(err, pipeline.ErrConfig) != (r == 1) {
			t.Fatalf("rank %d: errors.Is(err, ErrConfig) = %v; only rank 1's own error is one", r, r != 1)
		}
	}
	if el := time.Since(start); el > 5*time.Second {
		t.Fatalf("took %v", el)
	}
}
