package ddp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/ringtrain/ringtrain/collective"
	"github.com/ringtrain/ringtrain/collective/quictransport"
	"github.com/ringtrain/ringtrain/models"
)

// testDeadline bounds every multi-rank phase of a test: a hang fails with a stack dump.
const testDeadline = 45 * time.Second

// startJob starts an n-rank job over real QUIC endpoints on 127.0.0.1 and returns the
// world group of every rank (index = rank).
func startJob(t *testing.T, n int) []*collective.Group { return startJobB(t, n) }

// startJobB is startJob for tests and benchmarks.
func startJobB(t testing.TB, n int) []*collective.Group {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	logger := slog.New(slog.DiscardHandler)
	ts, err := quictransport.StartLocal(ctx, n, quictransport.Config{
		Logger:      logger,
		PeerTimeout: 10 * time.Second,
		// Modest windows: several jobs may share this process and its memory.
		StreamWindow: 4 << 20,
		ConnWindow:   8 << 20,
		SocketBuffer: 2 << 20,
	})
	if err != nil {
		t.Fatalf("quictransport.StartLocal(%d): %v", n, err)
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
		// Concurrently, as separate processes would: closing one rank's group waits for
		// its peers to close theirs (or for the group's Timeout).
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
		t.Fatalf("collective.New: %v", err)
	}
	return gs
}

// onRanks runs f on every rank at once and returns the errors by rank; it fails the test
// with every goroutine's stack if the ranks do not finish within testDeadline.
func onRanks(t *testing.T, n int, f func(ctx context.Context, r int) error) []error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testDeadline)
	defer cancel()
	errs := make([]error, n)
	var wg sync.WaitGroup
	for r := range n {
		wg.Go(func() { errs[r] = f(ctx, r) })
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(testDeadline + 5*time.Second):
		buf := make([]byte, 1<<20)
		t.Fatalf("ranks did not finish within %v; goroutines:\n%s", testDeadline, buf[:runtime.Stack(buf, true)])
	}
	return errs
}

// mustRanks is onRanks failing the test on any error.
func mustRanks(t *testing.T, n int, f func(ctx context.Context, r int) error) {
	t.Helper()
	for r, err := range onRanks(t, n, f) {
		if err != nil {
			t.Fatalf("rank %d: %v", r, err)
		}
	}
}

// Small models keep the tests fast while still having several layers (and so several
// buckets with small caps) and a nonlinearity.
const (
	inDim   = 24
	classes = 5
)

// smallModel is fc1(24→h) relu fc2(h→16) relu fc3(16→5), initialised from seed.
func smallModel(t testing.TB, h int, seed int64) *models.Sequential {
	t.Helper()
	fc1, err1 := models.NewLinear("fc1", inDim, h, models.InitHe)
	fc2, err2 := models.NewLinear("fc2", h, 16, models.InitHe)
	fc3, err3 := models.NewLinear("fc3", 16, classes, models.InitGlorot)
	if err := errors.Join(err1, err2, err3); err != nil {
		t.Fatal(err)
	}
	m, err := models.NewSequential(fc1, models.NewReLU("relu1"), fc2, models.NewReLU("relu2"), fc3)
	if err != nil {
		t.Fatal(err)
	}
	m.Init(seed)
	warm(t, m)
	return m
}

// buildMu serialises gorgonia graph construction across the in-process ranks of a test:
// gorgonia v0.9.18 counts node groups in an unsynchronised global
// (internal/encoding.NewGroup), so two models building graphs at once race (harmlessly,
// but -race says so). Separate processes, the real deployment, share nothing.
var buildMu sync.Mutex

// warm builds the model's programs for the batch sizes the tests use, one model at a
// time, so that no graph is built while ranks run concurrently.
func warm(t testing.TB, m *models.Sequential) {
	t.Helper()
	buildMu.Lock()
	defer buildMu.Unlock()
	for _, b := range []int{4, 5, 6, 8, 16} {
		if _, _, err := m.Forward(models.NewTensor(b, inDim), true); err != nil {
			t.Fatal(err)
		}
	}
}

// sample returns deterministic inputs and labels for global sample indices idx.
func sample(idx []int) (models.Tensor, []int) {
	x := models.NewTensor(len(idx), inDim)
	labels := make([]int, len(idx))
	for j, i := range idx {
		rng := rand.New(rand.NewPCG(uint64(i), 99))
		labels[j] = rng.IntN(classes)
		for k := range inDim {
			x.Data[j*inDim+k] = float32(rng.NormFloat64()) + 0.5*float32(labels[j]%3)
		}
	}
	return x, labels
}

// globalBatch lists the samples of step s for a global batch of size gb.
func globalBatch(s, gb int) []int {
	idx := make([]int, gb)
	for i := range idx {
		idx[i] = s*gb + i
	}
	return idx
}

// shard is rank r's part of a global batch (every n-th sample, as the sampler deals).
func shard(global []int, r, n int) []int {
	var out []int
	for i := r; i < len(global); i += n {
		out = append(out, global[i])
	}
	return out
}

// referenceTrain trains m alone with plain models calls (no ddp) on the global batches.
func referenceTrain(t testing.TB, m *models.Sequential, opt models.Optimizer, steps, gb int) {
	t.Helper()
	for s := range steps {
		x, labels := sample(globalBatch(s, gb))
		m.ZeroGrad()
		logits, saved, err := m.Forward(x, true)
		if err != nil {
			t.Fatal(err)
		}
		_, dl, err := models.SoftmaxCrossEntropy(logits, labels, 1/float32(gb))
		if err != nil {
			t.Fatal(err)
		}
		if err := m.BackwardParams(saved, dl, nil); err != nil {
			t.Fatal(err)
		}
		if err := opt.Step(); err != nil {
			t.Fatal(err)
		}
	}
}

func sgd(t testing.TB, m *models.Sequential) models.Optimizer {
	t.Helper()
	o, err := models.NewSGD(m.Params(), models.SGDConfig{LR: 0.1, Momentum: 0.9})
	if err != nil {
		t.Fatal(err)
	}
	return o
}

// relDiff is max|a−b| / max|b| (0 when both are zero).
func relDiff(a, b []float32) float64 {
	var d, m float64
	for i := range a {
		d = max(d, math.Abs(float64(a[i])-float64(b[i])))
		m = max(m, math.Abs(float64(b[i])))
	}
	if m == 0 {
		return d
	}
	return d / m
}

func paramsOf(m *models.Sequential) [][]float32 {
	var out [][]float32
	for _, p := range m.Params() {
		out = append(out, append([]float32(nil), p.Value...))
	}
	return out
}

// sameBits reports the first parameter element where two replicas differ in any bit.
func sameBits(a, b [][]float32) error {
	for i := range a {
		for j := range a[i] {
			if math.Float32bits(a[i][j]) != math.Float32bits(b[i][j]) {
				return fmt.Errorf("parameter %d element %d: %v vs %v", i, j, a[i][j], b[i][j])
			}
		}
	}
	return nil
}
