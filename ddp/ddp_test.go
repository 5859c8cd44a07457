package ddp

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/ringtrain/ringtrain/collective"
	"github.com/ringtrain/ringtrain/models"
)

// tinyCaps makes a bucket per parameter or two of the small model.
var tinyCaps = Options{BucketCapMB: 600.0 / (1 << 20), FirstBucketCapMB: 300.0 / (1 << 20)}

// trainRanks trains an n-rank job for steps steps of per-rank batch b (micro micro-batches
// per step) and returns every rank's parameters after every step, and rank 0's buckets.
func trainRanks(t *testing.T, n, b, micro, steps int, opts Options) ([][][][]float32, []BucketInfo) {
	t.Helper()
	return trainRanksWith(t, n, b, micro, steps, opts, sgd)
}

// trainRanksWith is trainRanks with the optimizer made by mkOpt.
func trainRanksWith(t *testing.T, n, b, micro, steps int, opts Options, mkOpt func(testing.TB, *models.Sequential) models.Optimizer) ([][][][]float32, []BucketInfo) {
	t.Helper()
	gs := startJob(t, n)
	snaps := make([][][][]float32, n)
	var buckets []BucketInfo
	mustRanks(t, n, func(ctx context.Context, r int) error {
		// Different seeds per rank: Wrap must make rank 0's values everyone's.
		m := smallModel(t, 40, int64(1+r))
		d, err := Wrap(ctx, m, gs[r], opts)
		if err != nil {
			return err
		}
		if r == 0 {
			buckets = d.Buckets()
		}
		opt := mkOpt(t, m)
		gb := n * b * micro
		for s := range steps {
			mine := shard(globalBatch(s, gb), r, n)
			var batches []Batch
			for k := range micro {
				x, labels := sample(mine[k*b : (k+1)*b])
				batches = append(batches, Batch{X: x, Labels: labels})
			}
			res, err := d.TrainStep(ctx, opt, batches...)
			if err != nil {
				return fmt.Errorf("step %d: %w", s, err)
			}
			if res.Samples != b*micro || res.Stats.Buckets != len(d.Buckets()) {
				return fmt.Errorf("step %d: result %+v", s, res)
			}
			snaps[r] = append(snaps[r], paramsOf(m))
		}
		return nil
	})
	return snaps, buckets
}

// checkAgainstReference compares every rank's final parameters with one process training
// on the global batches, and the ranks with each other after every step.
func checkAgainstReference(t *testing.T, snaps [][][][]float32, gb, steps int, tol float64) {
	t.Helper()
	checkAgainstReferenceWith(t, snaps, gb, steps, tol, sgd)
}

// checkAgainstReferenceWith is checkAgainstReference with the optimizer made by mkOpt.
func checkAgainstReferenceWith(t *testing.T, snaps [][][][]float32, gb, steps int, tol float64, mkOpt func(testing.TB, *models.Sequential) models.Optimizer) {
	t.Helper()
	for r := 1; r < len(snaps); r++ {
		for s := range snaps[r] {
			if err := sameBits(snaps[0][s], snaps[r][s]); err != nil {
				t.Fatalf("after step %d rank %d differs from rank 0: %v", s, r, err)
			}
		}
	}
	ref := smallModel(t, 40, 1)
	referenceTrain(t, ref, mkOpt(t, ref), steps, gb)
	want := paramsOf(ref)
	got := snaps[0][steps-1]
	names := ref.Params()
	for i := range want {
		if d := relDiff(got[i], want[i]); d > tol {
			t.Errorf("%s: relative difference %.3g from the single-process run, want < %g", names[i].Name, d, tol)
		}
	}
	// The comparison must be able to fail: training moved the parameters.
	init := paramsOf(smallModel(t, 40, 1))
	if relDiff(want[0], init[0]) < 1e-3 {
		t.Fatalf("the reference barely moved (%.3g): the test would not notice anything", relDiff(want[0], init[0]))
	}
}

func TestMatchesLargeBatch(t *testing.T) {
	const b, steps = 6, 6
	for _, n := range []int{2, 4} {
		for _, c := range []struct {
			name    string
			opts    Options
			buckets func(int) bool
		}{
			{"one-bucket", Options{}, func(k int) bool { return k == 1 }},
			{"several-buckets", tinyCaps, func(k int) bool { return k >= 3 }},
		} {
			t.Run(fmt.Sprintf("N=%d/%s", n, c.name), func(t *testing.T) {
				snaps, buckets := trainRanks(t, n, b, 1, steps, c.opts)
				if !c.buckets(len(buckets)) {
					t.Fatalf("%d buckets: %+v", len(buckets), buckets)
				}
				checkAgainstReference(t, snaps, n*b, steps, 1e-5)
			})
		}
	}
}

// TestAccumulationMatchesLargeBatch: 2 ranks × 3 micro-batches of 4 equal one process
// with batch 24; the micro-batches are reduced once per step.
func TestAccumulationMatchesLargeBatch(t *testing.T) {
	const n, b, micro, steps = 2, 4, 3, 5
	snaps, _ := trainRanks(t, n, b, micro, steps, tinyCaps)
	checkAgainstReference(t, snaps, n*b*micro, steps, 1e-5)
}

// TestClippingAndAccumulationMatchLargeBatch: 2 ranks × 3 micro-batches of 4, with the
// global gradient norm clipped after the AllReduce (and the clip active: the limit is
// below the norms seen), equal one process with batch 24 clipping the same way.
func TestClippingAndAccumulationMatchLargeBatch(t *testing.T) {
	const n, b, micro, steps, maxNorm = 2, 4, 3, 5, 0.05
	var mu sync.Mutex
	var clipped int
	clipSGD := func(t testing.TB, m *models.Sequential) models.Optimizer {
		o, err := models.NewClippingOptimizer(sgd(t, m), m, maxNorm)
		if err != nil {
			t.Fatal(err)
		}
		return &normWatch{ClippingOptimizer: o, seen: func(norm float64) {
			mu.Lock()
			defer mu.Unlock()
			if norm > maxNorm {
				clipped++
			}
		}}
	}
	snaps, _ := trainRanksWith(t, n, b, micro, steps, tinyCaps, clipSGD)
	checkAgainstReferenceWith(t, snaps, n*b*micro, steps, 1e-5, clipSGD)
	if clipped == 0 {
		t.Fatal("no step clipped: the test would not see a wrong clip")
	}
}

// normWatch reports each step's gradient norm before clipping.
type normWatch struct {
	*models.ClippingOptimizer
	seen func(float64)
}

func (w *normWatch) Step() error {
	err := w.ClippingOptimizer.Step()
	w.seen(w.LastNorm())
	return err
}

// TestLowLevelNoSync drives BackwardNoSync/Backward/Wait by hand and checks the reduced
// gradient against the average of the ranks' local gradients computed without ddp.
func TestLowLevelNoSync(t *testing.T) {
	const n, b = 2, 5
	gs := startJob(t, n)
	local := make([][][]float32, n)
	reduced := make([][][]float32, n)
	var mu sync.Mutex
	mustRanks(t, n, func(ctx context.Context, r int) error {
		m := smallModel(t, 40, 1)
		replica := smallModel(t, 40, 1)
		d, err := Wrap(ctx, m, gs[r], tinyCaps)
		if err != nil {
			return err
		}
		if err := d.Wait(ctx); !errors.Is(err, ErrUsage) {
			return fmt.Errorf("Wait before Backward: got %v, want ErrUsage", err)
		}
		m.ZeroGrad()
		replica.ZeroGrad()
		for k := range 2 {
			x, labels := sample(shard(globalBatch(k, n*b), r, n))
			for _, mm := range []*models.Sequential{m, replica} {
				logits, saved, err := mm.Forward(x, true)
				if err != nil {
					return err
				}
				_, dl, err := models.SoftmaxCrossEntropy(logits, labels, 1.0/(2*b))
				if err != nil {
					return err
				}
				switch {
				case mm == replica:
					err = replica.BackwardParams(saved, dl, nil)
				case k == 0:
					err = d.BackwardNoSync(saved, dl)
				default:
					err = d.Backward(ctx, saved, dl)
				}
				if err != nil {
					return err
				}
			}
		}
		if err := d.Backward(ctx, nil, models.Tensor{}); !errors.Is(err, ErrUsage) {
			return fmt.Errorf("second Backward before Wait: got %v, want ErrUsage", err)
		}
		if err := d.Wait(ctx); err != nil {
			return err
		}
		mu.Lock()
		defer mu.Unlock()
		for i, p := range m.Params() {
			local[r] = append(local[r], append([]float32(nil), replica.Params()[i].Grad...))
			reduced[r] = append(reduced[r], append([]float32(nil), p.Grad...))
		}
		return nil
	})
	for i := range local[0] {
		want := make([]float32, len(local[0][i]))
		for j := range want {
			want[j] = (local[0][i][j] + local[1][i][j]) / 2
		}
		for r := range n {
			if d := relDiff(reduced[r][i], want); d > 1e-6 {
				t.Errorf("rank %d parameter %d: reduced gradient differs from the local average by %.3g", r, i, d)
			}
		}
	}
}

// TestOverlap records the pipeline's events with several buckets and checks that the
// first bucket's AllReduce is launched while backward still has layers to compute, each
// bucket right after the layer completing it, in order.
func TestOverlap(t *testing.T) {
	const n = 2
	gs := startJob(t, n)
	var events []Event
	var mu sync.Mutex
	var buckets []BucketInfo
	mustRanks(t, n, func(ctx context.Context, r int) error {
		opts := tinyCaps
		if r == 0 {
			opts.Trace = func(e Event) {
				mu.Lock()
				events = append(events, e)
				mu.Unlock()
			}
		}
		m := smallModel(t, 40, 1)
		d, err := Wrap(ctx, m, gs[r], opts)
		if err != nil {
			return err
		}
		if r == 0 {
			buckets = d.Buckets()
		}
		x, labels := sample(shard(globalBatch(0, 16), r, n))
		_, err = d.TrainStep(ctx, sgd(t, m), Batch{X: x, Labels: labels})
		return err
	})
	if len(buckets) < 3 {
		t.Fatalf("want several buckets, got %+v", buckets)
	}
	// The training goroutine's events, in the order they happened.
	var seq []string
	for _, e := range events {
		switch e.Kind {
		case EventLayerDone:
			seq = append(seq, fmt.Sprintf("L%d", e.Layer))
		case EventBucketLaunched:
			seq = append(seq, fmt.Sprintf("B%d", e.Bucket))
		case EventBackwardDone:
			seq = append(seq, "end")
		}
	}
	// Expected: after each layer, the buckets whose lowest layer it is.
	var want []string
	for l := 4; l >= 0; l-- {
		want = append(want, fmt.Sprintf("L%d", l))
		for _, b := range buckets {
			if b.Layers[0] == l {
				want = append(want, fmt.Sprintf("B%d", b.Index))
			}
		}
	}
	want = append(want, "end")
	if strings.Join(seq, " ") != strings.Join(want, " ") {
		t.Fatalf("event order\n got %v\nwant %v", seq, want)
	}
	// The point of it all: bucket 0 went out before the first layer's backward ran.
	if pos(seq, "B0") > pos(seq, "L0") || buckets[0].Layers[0] == 0 {
		t.Fatalf("bucket 0 (layers %v) was not launched before backward finished: %v", buckets[0].Layers, seq)
	}
	done := 0
	for _, e := range events {
		if e.Kind == EventBucketDone {
			done++
		}
	}
	if done != len(buckets) {
		t.Fatalf("%d bucket-done events for %d buckets", done, len(buckets))
	}
}

func pos(s []string, x string) int {
	for i, v := range s {
		if v == x {
			return i
		}
	}
	return len(s)
}

func TestPlanBuckets(t *testing.T) {
	m := smallModel(t, 40, 1) // fc1 24×40+40=1000, fc2 40×16+16=656, fc3 16×5+5=85 elements
	var refs []paramRef
	for i, l := range m.Layers() {
		for _, p := range l.Params() {
			refs = append(refs, paramRef{p: p, layer: i})
		}
	}
	names := func(plan [][]paramRef) string {
		var parts []string
		for _, b := range plan {
			var ns []string
			for _, pr := range b {
				ns = append(ns, pr.p.Name)
			}
			parts = append(parts, strings.Join(ns, ","))
		}
		return strings.Join(parts, " | ")
	}
	for _, c := range []struct {
		first, cap int64
		want       string
	}{
		{1 << 20, 1 << 20, "fc3.bias,fc3.weight,fc2.bias,fc2.weight,fc1.bias,fc1.weight"},
		// The first bucket closes once it reaches its cap, by its last parameter.
		{4 * 85, 4 * 690, "fc3.bias,fc3.weight | fc2.bias,fc2.weight,fc1.bias | fc1.weight"},
		// A parameter larger than the cap gets its own bucket.
		{4, 4, "fc3.bias | fc3.weight | fc2.bias | fc2.weight | fc1.bias | fc1.weight"},
	} {
		if got := names(planBuckets(refs, c.first, c.cap)); got != c.want {
			t.Errorf("caps %d/%d:\n got %s\nwant %s", c.first, c.cap, got, c.want)
		}
	}
}

func TestOptionsValidation(t *testing.T) {
	for _, c := range []struct {
		opts Options
		want string
	}{
		{Options{BucketCapMB: -1}, "BucketCapMB"},
		{Options{ErrorFeedback: true}, "ErrorFeedback needs Compression"},
		{Options{Compression: 7}, "unknown compression"},
	} {
		_, err := Wrap(context.Background(), smallModel(t, 8, 1), nil, c.opts)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: got %v, want an error about %s", c.opts, err, c.want)
		}
	}
	r, err := Options{}.resolve()
	if err != nil || r.capBytes != 25<<20 || r.firstCapBytes != 1<<20 || r.keep != 2 {
		t.Fatalf("zero Options resolve to %+v, %v", r, err)
	}
	r, _ = Options{BucketCapMB: 0.5}.resolve()
	if r.firstCapBytes != 512<<10 {
		t.Fatalf("first cap larger than the cap: %+v", r)
	}
}

// TestSingleProcess: with no group the DDP trains alone and matches plain training.
func TestSingleProcess(t *testing.T) {
	const b, steps = 12, 4
	m := smallModel(t, 40, 1)
	d, err := Wrap(context.Background(), m, nil, Options{})
	if err != nil {
		t.Fatal(err)
	}
	opt := sgd(t, m)
	for s := range steps {
		x, labels := sample(globalBatch(s, b))
		if _, err := d.TrainStep(context.Background(), opt, Batch{X: x, Labels: labels}); err != nil {
			t.Fatal(err)
		}
	}
	ref := smallModel(t, 40, 1)
	referenceTrain(t, ref, sgd(t, ref), steps, b)
	if err := sameBits(paramsOf(m), paramsOf(ref)); err != nil {
		t.Fatalf("single-process DDP differs from plain training: %v", err)
	}
	if st := d.TakeStats(); st.Steps != steps || st.Comm != 0 || st.Total <= 0 {
		t.Fatalf("stats %+v", st)
	}
}

// TestShapeMismatch: a rank with another model gets, on every rank, an error naming it
// and the parameter, and nothing is overwritten.
func TestShapeMismatch(t *testing.T) {
	const n = 3
	gs := startJob(t, n)
	errs := onRanks(t, n, func(ctx context.Context, r int) error {
		h := 40
		if r == 2 {
			h = 48
		}
		m := smallModel(t, h, int64(r+1))
		before := paramsOf(m)
		_, err := Wrap(ctx, m, gs[r], Options{})
		if e := sameBits(before, paramsOf(m)); e != nil {
			return fmt.Errorf("parameters changed by a failed Wrap: %v", e)
		}
		return err
	})
	for r, err := range errs {
		var me *MismatchError
		if !errors.As(err, &me) || !errors.Is(err, ErrMismatch) {
			t.Fatalf("rank %d: got %v, want a *MismatchError", r, err)
		}
		msg := err.Error()
		if me.Rank != 2 || !strings.Contains(msg, "rank 2") || !strings.Contains(msg, `"fc1.weight"`) || !strings.Contains(msg, "[24 48]") || !strings.Contains(msg, "[24 40]") {
			t.Fatalf("rank %d: error %q should name rank 2, fc1.weight and both shapes", r, msg)
		}
	}
	// The group still works after the refusal: the check itself did not break it.
	mustRanks(t, n, func(ctx context.Context, r int) error {
		opts := Options{}
		if r == 1 {
			opts.BucketCapMB = 10
		}
		_, err := Wrap(ctx, smallModel(t, 40, 1), gs[r], opts)
		var me *MismatchError
		if !errors.As(err, &me) || me.Rank != 1 || me.Option != "BucketCapMB" || !strings.Contains(err.Error(), "10 MiB") {
			return fmt.Errorf("option mismatch: got %v", err)
		}
		return nil
	})
	mustRanks(t, n, func(ctx context.Context, r int) error {
		ps := smallModel(t, 40, 1).Layers()
		if r == 1 { // same shapes, another order of names
			ps[0], ps[2] = ps[2], ps[0]
		}
		m, err := models.NewSequential(ps...)
		if err != nil {
			return err
		}
		_, err = Wrap(ctx, m, gs[r], Options{})
		if err == nil || !strings.Contains(err.Error(), "rank 1") {
			return fmt.Errorf("reordered layers: got %v", err)
		}
		return nil
	})
}

var _ = collective.FP16
