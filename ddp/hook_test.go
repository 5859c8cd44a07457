package ddp

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/ringtrain/ringtrain/collective"
	"github.com/ringtrain/ringtrain/models"
)

// trainHooked trains n ranks for steps steps with the options optsFor(r) gives each rank and
// returns every rank's final parameters.
func trainHooked(t *testing.T, n, steps int, optsFor func(r int) Options) [][][]float32 {
	t.Helper()
	gs := startJob(t, n)
	final := make([][][]float32, n)
	mustRanks(t, n, func(ctx context.Context, r int) error {
		m := smallModel(t, 40, int64(1+r))
		d, err := Wrap(ctx, m, gs[r], optsFor(r))
		if err != nil {
			return err
		}
		opt := sgd(t, m)
		for s := range steps {
			x, labels := sample(shard(globalBatch(s, 8*n), r, n))
			if _, err := d.TrainStep(ctx, opt, Batch{X: x, Labels: labels}); err != nil {
				return fmt.Errorf("step %d: %w", s, err)
			}
		}
		final[r] = paramsOf(m)
		return nil
	})
	return final
}

// sumHook is a user's hook: AllReduce(Sum), then a division by the group size on this rank,
// done inside Reduce (nil Work), counting its calls. Avg divides the ring's sum by n in
// float32 once, the same operation, so the result must equal AllReduceHook's bit for bit.
type sumHook struct {
	calls, finishes atomic.Int64
	n               int
	scale           []float32 // state: a dummy per-bucket value, to exercise StatefulHook
}

func (h *sumHook) Name() string { return "sum-then-divide" }
func (h *sumHook) Setup(g *collective.Group, bs []Bucket) error {
	h.n = g.Size()
	h.scale = make([]float32, len(bs))
	return nil
}
func (h *sumHook) Reduce(ctx context.Context, g *collective.Group, b Bucket) (*collective.Work, error) {
	h.calls.Add(1)
	if err := g.AllReduce(ctx, b.Grads, collective.Sum); err != nil {
		return nil, err
	}
	for i := range b.Grads {
		b.Grads[i] /= float32(h.n)
	}
	h.scale[b.Index]++
	return nil, nil
}
func (h *sumHook) Finish(ctx context.Context, b Bucket) error { h.finishes.Add(1); return nil }
func (h *sumHook) State() []models.NamedSlice {
	return []models.NamedSlice{{Name: "calls", Shape: []int{len(h.scale)}, Data: h.scale}}
}
func (h *sumHook) LoadState(rank int, saved [][]models.NamedSlice) error { return nil }

// TestUserHookMatchesDefault: a hook written by a user, finishing inside Reduce, trains to
// exactly the parameters of the default hook, on every rank, and is called once per bucket
// and step (Reduce and Finish).
func TestUserHookMatchesDefault(t *testing.T) {
	const n, steps = 3, 4
	want := trainHooked(t, n, steps, func(int) Options { return tinyCaps })
	hooks := make([]*sumHook, n)
	got := trainHooked(t, n, steps, func(r int) Options {
		o := tinyCaps
		hooks[r] = &sumHook{}
		o.CommHook = hooks[r]
		return o
	})
	for r := range n {
		if err := sameBits(want[0], got[r]); err != nil {
			t.Fatalf("rank %d with the user's hook differs from the default hook: %v", r, err)
		}
	}
	nb := int64(len(hooks[0].scale))
	if nb < 2 {
		t.Fatalf("only %d buckets: the test wants several", nb)
	}
	for r, h := range hooks {
		if h.calls.Load() != steps*nb || h.finishes.Load() != steps*nb {
			t.Fatalf("rank %d: %d Reduce and %d Finish calls, want %d each", r, h.calls.Load(), h.finishes.Load(), steps*nb)
		}
	}
}

// TestBuiltinHooksAsOptions: Options.Compression/ErrorFeedback and CommHook =
// CompressHook(...) are the same thing (bit-identical training), for fp16 and bf16.
func TestBuiltinHooksAsOptions(t *testing.T) {
	const n, steps = 2, 3
	for _, c := range []collective.Compression{collective.FP16, collective.BF16} {
		t.Run(c.String(), func(t *testing.T) {
			viaOpts := trainHooked(t, n, steps, func(int) Options {
				o := tinyCaps
				o.Compression, o.ErrorFeedback = c, true
				return o
			})
			viaHook := trainHooked(t, n, steps, func(int) Options {
				o := tinyCaps
				h, err := CompressHook(c, true)
				if err != nil {
					t.Error(err)
				}
				o.CommHook = h
				return o
			})
			fp32 := trainHooked(t, n, steps, func(int) Options { return tinyCaps })
			if err := sameBits(viaOpts[0], viaHook[1]); err != nil {
				t.Fatalf("Options.Compression and CommHook differ: %v", err)
			}
			if sameBits(viaOpts[0], fp32[0]) == nil {
				t.Fatalf("%v training is bit-identical to fp32: nothing was compressed", c)
			}
			for i := range fp32[0] {
				if d := relDiff(viaOpts[0][i], fp32[0][i]); d > 0.02 {
					t.Fatalf("%v: parameter %d is %.3g (relative) away from fp32 training after %d steps", c, i, d, steps)
				}
			}
		})
	}
}

// otherHook is a stateless hook with a configurable name.
type otherHook struct{ name string }

func (h otherHook) Name() string                            { return h.name }
func (h otherHook) Setup(*collective.Group, []Bucket) error { return nil }
func (h otherHook) Reduce(ctx context.Context, g *collective.Group, b Bucket) (*collective.Work, error) {
	return g.AllReduceAsync(ctx, b.Grads, collective.Avg), nil
}

// TestHookMismatchNamesRank: ranks whose hooks differ (bf16 against fp16, or a user hook of
// another name) all fail Wrap with a *MismatchError naming the first odd rank and both hooks.
func TestHookMismatchNamesRank(t *testing.T) {
	const n = 3
	for _, c := range []struct {
		name     string
		odd      Options
		option   string
		got, wnt string
	}{
		{"bf16-vs-fp16", Options{Compression: collective.BF16}, "Compression", "bf16", "fp16"},
		{"user-hook", Options{CommHook: otherHook{"mine(v2)"}}, "CommHook", `"mine(v2)"`, `"mine(v1)"`},
	} {
		t.Run(c.name, func(t *testing.T) {
			gs := startJob(t, n)
			errs := onRanks(t, n, func(ctx context.Context, r int) error {
				o := Options{Compression: collective.FP16}
				if c.option == "CommHook" {
					o = Options{CommHook: otherHook{"mine(v1)"}}
				}
				if r == 1 {
					o = c.odd
				}
				_, err := Wrap(ctx, smallModel(t, 40, 1), gs[r], o)
				return err
			})
			for r, err := range errs {
				var me *MismatchError
				if !errors.As(err, &me) {
					t.Fatalf("rank %d: %v, want a *MismatchError", r, err)
				}
				if me.Rank != 1 || me.Option != c.option || me.Got != c.got || me.Want != c.wnt {
					t.Fatalf("rank %d: %+v, want rank 1, option %s, %s vs %s", r, me, c.option, c.got, c.wnt)
				}
			}
		})
	}
}

// failingHook fails Setup on one rank, or Reduce at a given step.
type failingHook struct {
	otherHook
	failSetup  bool
	failReduce bool
}

func (h *failingHook) Setup(*collective.Group, []Bucket) error {
	if h.failSetup {
		return errors.New("no room for the residuals")
	}
	return nil
}

func (h *failingHook) Reduce(ctx context.Context, g *collective.Group, b Bucket) (*collective.Work, error) {
	if h.failReduce {
		return nil, errors.New("factor went NaN")
	}
	return h.otherHook.Reduce(ctx, g, b)
}

// TestHookErrors: a Setup failing on one rank fails Wrap on every rank at once, naming the
// rank; a Reduce error fails the step and the DDP with the hook's words.
func TestHookErrors(t *testing.T) {
	const n = 2
	gs := startJob(t, n)
	errs := onRanks(t, n, func(ctx context.Context, r int) error {
		_, err := Wrap(ctx, smallModel(t, 40, 1), gs[r], Options{CommHook: &failingHook{otherHook: otherHook{"f"}, failSetup: r == 1}})
		return err
	})
	for r, err := range errs {
		if err == nil || !strings.Contains(err.Error(), "no room for the residuals") || !strings.Contains(err.Error(), "rank 1") {
			t.Fatalf("rank %d: Wrap error %v does not carry rank 1's Setup failure", r, err)
		}
	}
	gs = startJob(t, n)
	errs = onRanks(t, n, func(ctx context.Context, r int) error {
		m := smallModel(t, 40, 1)
		d, err := Wrap(ctx, m, gs[r], Options{CommHook: &failingHook{otherHook: otherHook{"f"}, failReduce: true}})
		if err != nil {
			return err
		}
		x, labels := sample(shard(globalBatch(0, 8*n), r, n))
		_, err = d.TrainStep(ctx, sgd(t, m), Batch{X: x, Labels: labels})
		if !errors.Is(d.Err(), ErrFailed) {
			return fmt.Errorf("DDP not failed after a hook error (step error %v)", err)
		}
		return err
	})
	for r, err := range errs {
		if err == nil || !strings.Contains(err.Error(), "factor went NaN") || !strings.Contains(err.Error(), "CommHook f") {
			t.Fatalf("rank %d: step error %v does not name the hook and its failure", r, err)
		}
	}
}

// TestHookOptionErrors: CommHook with Compression, and bad compressions, are refused.
func TestHookOptionErrors(t *testing.T) {
	for _, o := range []Options{
		{CommHook: otherHook{"x"}, Compression: collective.FP16},
		{CommHook: otherHook{"x"}, ErrorFeedback: true},
		{ErrorFeedback: true},
		{Compression: collective.Compression(9)},
	} {
		if _, err := o.resolve(); err == nil {
			t.Errorf("%+v: accepted", o)
		}
	}
	if _, err := CompressHook(collective.NoCompression, true); err == nil {
		t.Error("CompressHook(none, feedback) accepted")
	}
}
