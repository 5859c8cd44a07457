package powersgd

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/ringtrain/ringtrain/collective"
	"github.com/ringtrain/ringtrain/collective/quictransport"
	"github.com/ringtrain/ringtrain/ddp"
	"github.com/ringtrain/ringtrain/models"
)

func TestOrthonormalize(t *testing.T) {
	const n, r = 50, 4
	rng := rand.New(rand.NewPCG(1, 2))
	P := make([]float32, n*r)
	for i := range P {
		P[i] = float32(rng.NormFloat64())
	}
	for i := range n {
		P[i*r+2] = 0 // a vanished column stays zero, not NaN
	}
	orthonormalize(P, n, r)
	for a := range r {
		for b := range r {
			var dot float64
			for i := range n {
				dot += float64(P[i*r+a]) * float64(P[i*r+b])
			}
			want := 0.0
			if a == b && a != 2 {
				want = 1
			}
			if math.Abs(dot-want) > 1e-5 || math.IsNaN(dot) {
				t.Fatalf("columns %d·%d = %g, want %g", a, b, dot, want)
			}
		}
	}
}

func TestMatMul(t *testing.T) {
	// M (2×3), Q (3×2): P = M·Q; M^T·P back.
	M := []float32{1, 2, 3, 4, 5, 6}
	Q := []float32{1, 0, 0, 1, 1, 1}
	P := make([]float32, 4)
	matMul(P, M, Q, 2, 3, 2)
	if want := []float32{4, 5, 10, 11}; fmt.Sprint(P) != fmt.Sprint(want) {
		t.Fatalf("M·Q = %v, want %v", P, want)
	}
	R := make([]float32, 6)
	matTMul(R, M, P, 2, 3, 2)
	if want := []float32{44, 49, 58, 65, 72, 81}; fmt.Sprint(R) != fmt.Sprint(want) {
		t.Fatalf("M^T·P = %v, want %v", R, want)
	}
}

func TestConfigErrors(t *testing.T) {
	for _, c := range []Config{{}, {Rank: 1, MinCompression: 0.5}, {Rank: 2, StartStep: -1}, {Rank: 1, MinCompression: math.NaN()}} {
		if _, err := New(c); err == nil {
			t.Errorf("New(%+v) accepted", c)
		}
	}
}

// The training task: 5 Gaussian clusters in 32 dimensions, an MLP 32-64-64-5 (its
// 64×32 and 64×64 weight matrices compress at rank 2; the biases and the 5×64 output layer
// travel in float32).
const (
	inDim   = 32
	classes = 5
)

var buildMu sync.Mutex // gorgonia builds graphs through an unsynchronised global

func newModel(t testing.TB, seed int64) *models.Sequential {
	t.Helper()
	fc1, e1 := models.NewLinear("fc1", inDim, 64, models.InitHe)
	fc2, e2 := models.NewLinear("fc2", 64, 64, models.InitHe)
	fc3, e3 := models.NewLinear("fc3", 64, classes, models.InitGlorot)
	if err := errors.Join(e1, e2, e3); err != nil {
		t.Fatal(err)
	}
	m, err := models.NewSequential(fc1, models.NewReLU("relu1"), fc2, models.NewReLU("relu2"), fc3)
	if err != nil {
		t.Fatal(err)
	}
	m.Init(seed)
	buildMu.Lock()
	defer buildMu.Unlock()
	for _, b := range []int{16, 256} {
		if _, _, err := m.Forward(models.NewTensor(b, inDim), true); err != nil {
			t.Fatal(err)
		}
	}
	return m
}

// samples returns the inputs and labels of global sample indices lo..lo+n-1 (step·n + i).
func samples(idx []int) (models.Tensor, []int) {
	centers := rand.New(rand.NewPCG(7, 7))
	mu := make([]float32, classes*inDim)
	for i := range mu {
		mu[i] = float32(centers.NormFloat64())
	}
	x := models.NewTensor(len(idx), inDim)
	labels := make([]int, len(idx))
	for j, i := range idx {
		rng := rand.New(rand.NewPCG(uint64(i), 3))
		c := rng.IntN(classes)
		labels[j] = c
		for k := range inDim {
			x.Data[j*inDim+k] = mu[c*inDim+k] + 1.5*float32(rng.NormFloat64())
		}
	}
	return x, labels
}

func span(lo, n int) []int {
	out := make([]int, n)
	for i := range out {
		out[i] = lo + i
	}
	return out
}

// evalLoss is the mean loss of m on 256 held-out samples.
func evalLoss(t testing.TB, m *models.Sequential) float64 {
	x, labels := samples(span(1<<30, 256))
	logits, _, err := m.Forward(x, false)
	if err != nil {
		t.Fatal(err)
	}
	loss, _, err := models.SoftmaxCrossEntropy(logits, labels, 1.0/256)
	if err != nil {
		t.Fatal(err)
	}
	return loss
}

func startJob(t *testing.T, n int) []*collective.Group {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	logger := slog.New(slog.DiscardHandler)
	ts, err := quictransport.StartLocal(ctx, n, quictransport.Config{Logger: logger, PeerTimeout: 10 * time.Second, StreamWindow: 4 << 20, ConnWindow: 8 << 20, SocketBuffer: 2 << 20})
	if err != nil {
		t.Fatal(err)
	}
	gs := make([]*collective.Group, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for r := range n {
		wg.Go(func() {
			gs[r], errs[r] = collective.New(ctx, ts[r], collective.Options{Timeout: 20 * time.Second, Logger: logger})
		})
	}
	wg.Wait()
	t.Cleanup(func() {
		var wg sync.WaitGroup
		for r, g := range gs {
			wg.Go(func() {
				if g != nil {
					g.Close()
				}
				ts[r].Close()
			})
		}
		wg.Wait()
	})
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	return gs
}

// run trains n ranks from step `from` to step `to` (batch 16 per rank), each rank with the
// hook mk() makes (nil: float32), loading dir's checkpoint first if load and saving one
// after step save (0: none). It returns rank 0's final parameters and held-out loss, and
// fails if the ranks' parameters differ in any bit.
func run(t *testing.T, n, to int, mk func() ddp.CommHook, dir string, save int, load bool) ([][]float32, float64) {
	t.Helper()
	gs := startJob(t, n)
	params := make([][][]float32, n)
	var loss float64
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	errs := make([]error, n)
	var wg sync.WaitGroup
	for r := range n {
		wg.Go(func() {
			errs[r] = func() error {
				seed := int64(1)
				if load {
					seed = 99 // the checkpoint's values must replace these
				}
				m := newModel(t, seed)
				opts := ddp.Options{BucketCapMB: 0.01, FirstBucketCapMB: 0.001}
				if mk != nil {
					opts.CommHook = mk()
				}
				d, err := ddp.Wrap(ctx, m, gs[r], opts)
				if err != nil {
					return err
				}
				opt, err := models.NewSGD(m.Params(), models.SGDConfig{LR: 0.05, Momentum: 0.9})
				if err != nil {
					return err
				}
				from := 0
				if load {
					st, path, err := d.LoadCheckpoint(ctx, dir, opt)
					if err != nil {
						return err
					}
					if path == "" {
						return errors.New("no checkpoint to resume from")
					}
					from = int(st.Step)
				}
				for s := from; s < to; s++ {
					x, labels := samples(span((s*n+r)*16, 16))
					if _, err := d.TrainStep(ctx, opt, ddp.Batch{X: x, Labels: labels}); err != nil {
						return fmt.Errorf("step %d: %w", s, err)
					}
					if s+1 == save {
						if _, err := d.SaveCheckpoint(ctx, dir, ddp.TrainState{Step: int64(s + 1)}, opt); err != nil {
							return err
						}
					}
				}
				for _, p := range m.Params() {
					params[r] = append(params[r], append([]float32(nil), p.Value...))
				}
				if r == 0 {
					loss = evalLoss(t, m)
				}
				return nil
			}()
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	for r := 1; r < n; r++ {
		for i := range params[0] {
			for j := range params[0][i] {
				if math.Float32bits(params[r][i][j]) != math.Float32bits(params[0][i][j]) {
					t.Fatalf("rank %d parameter %d element %d differs from rank 0's", r, i, j)
				}
			}
		}
	}
	return params[0], loss
}

// TestTrainsCloseToFP32: PowerSGD (rank 2, error feedback, warm start) trains the task to a
// held-out loss close to float32 AllReduce's after the same steps, while sending the weight
// matrices as rank-2 factors; without error feedback's and warm start's help it would lag.
func TestTrainsCloseToFP32(t *testing.T) {
	const n, steps = 2, 120
	m0 := newModel(t, 1)
	initial := evalLoss(t, m0)
	_, fp32 := run(t, n, steps, nil, "", 0, false)
	var hooks []*Hook
	var mu sync.Mutex
	_, psgd := run(t, n, steps, func() ddp.CommHook {
		h, err := New(Config{Rank: 2, StartStep: 5, Seed: 1})
		if err != nil {
			t.Fatal(err)
		}
		mu.Lock()
		hooks = append(hooks, h)
		mu.Unlock()
		return h
	}, "", 0, false)
	t.Logf("held-out loss: initial %.4f, fp32 %.4f, powersgd rank 2 %.4f", initial, fp32, psgd)
	compressed := 0
	for _, b := range hooks[0].buckets {
		compressed += len(b.mats)
	}
	if compressed < 2 {
		t.Fatalf("only %d matrices compressed: the test wants fc1's and fc2's", compressed)
	}
	if !(fp32 < initial/3) {
		t.Fatalf("fp32 training did not learn the task (%.4f from %.4f): the comparison means nothing", fp32, initial)
	}
	// Within half again fp32's loss: training the weight matrices not at all (only the
	// float32 biases and output layer) ends near 0.49 here, fp32 near 0.10.
	if !(psgd <= 1.5*fp32+0.02) {
		t.Fatalf("powersgd's loss %.4f is not close to fp32's %.4f (initial %.4f)", psgd, fp32, initial)
	}
}

// TestResumeIsExact: 8 steps straight, or 4 steps, a checkpoint, and 4 more in a new job
// from other initial values, give bit-identical parameters: every rank's errors, Q and the
// step count (StartStep 2 falls inside the first run) travel in ddp's checkpoint.
func TestResumeIsExact(t *testing.T) {
	const n = 2
	mk := func() ddp.CommHook {
		h, err := New(Config{Rank: 2, StartStep: 2, Seed: 5})
		if err != nil {
			t.Fatal(err)
		}
		return h
	}
	dir := t.TempDir()
	straight, _ := run(t, n, 8, mk, dir, 4, false)
	resumed, _ := run(t, n, 8, mk, dir, 0, true)
	for i := range straight {
		for j := range straight[i] {
			if math.Float32bits(straight[i][j]) != math.Float32bits(resumed[i][j]) {
				t.Fatalf("parameter %d element %d: resumed %g, straight %g", i, j, resumed[i][j], straight[i][j])
			}
		}
	}
	// And the state matters: resuming with a fresh hook state diverges.
	fresh, _ := run(t, n, 8, func() ddp.CommHook { return &forgetful{mk().(*Hook)} }, dir, 0, true)
	same := true
	for i := range straight {
		for j := range straight[i] {
			same = same && math.Float32bits(straight[i][j]) == math.Float32bits(fresh[i][j])
		}
	}
	if same {
		t.Fatal("resuming without the saved state gives the same parameters: the test cannot see the state")
	}
}

// forgetful is the PowerSGD hook loading no state.
type forgetful struct{ *Hook }

func (f *forgetful) LoadState(rank int, saved [][]models.NamedSlice) error {
	return f.Hook.LoadState(rank, nil)
}
