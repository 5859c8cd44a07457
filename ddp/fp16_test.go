package ddp

import (
	"context"
	"fmt"
	"math"
	"sync"
	"testing"

	"github.com/ringtrain/ringtrain/collective"
	"github.com/ringtrain/ringtrain/models"
)

// fp16Run runs steps TrainSteps on n ranks with fp16 compression; before each step every
// rank computes its local gradient on a replica without ddp. It returns, per step, rank
// and parameter, the local gradient, the reduced gradient, and (with error feedback) the
// residual before and after the step, all in parameter order; and rank 0's buckets.
type fp16Step struct {
	local, reduced, resBefore, resAfter [][][]float32 // [rank][param][elem]
}

func fp16Run(t *testing.T, n, steps int, ef, sameData bool) ([]fp16Step, []BucketInfo, [][][]float32) {
	t.Helper()
	return codecRun(t, collective.FP16, n, steps, ef, sameData)
}

// codecRun is fp16Run with compression comp (FP16 or BF16).
func codecRun(t *testing.T, comp collective.Compression, n, steps int, ef, sameData bool) ([]fp16Step, []BucketInfo, [][][]float32) {
	t.Helper()
	gs := startJob(t, n)
	out := make([]fp16Step, steps)
	for s := range out {
		out[s] = fp16Step{make([][][]float32, n), make([][][]float32, n), make([][][]float32, n), make([][][]float32, n)}
	}
	final := make([][][]float32, n)
	var buckets []BucketInfo
	var mu sync.Mutex
	mustRanks(t, n, func(ctx context.Context, r int) error {
		m := smallModel(t, 40, 1)
		replica := smallModel(t, 40, 1)
		opts := tinyCaps
		opts.Compression, opts.ErrorFeedback = comp, ef
		d, err := Wrap(ctx, m, gs[r], opts)
		if err != nil {
			return err
		}
		resid := func() [][]float32 {
			byName := map[string][]float32{}
			if sh, ok := d.opts.hook.(StatefulHook); ok {
				for _, s := range sh.State() {
					byName[s.Name] = append([]float32(nil), s.Data...)
				}
			}
			var o [][]float32
			for _, p := range m.Params() {
				o = append(o, byName[p.Name])
			}
			return o
		}
		opt := sgd(t, m)
		for s := range steps {
			idx := shard(globalBatch(s, 8*n), r, n)
			if sameData {
				idx = shard(globalBatch(s, 8*n), 0, n)
			}
			x, labels := sample(idx)
			for i, p := range replica.Params() {
				copy(p.Value, m.Params()[i].Value)
			}
			replica.ZeroGrad()
			logits, saved, err := replica.Forward(x, true)
			if err != nil {
				return err
			}
			_, dl, err := models.SoftmaxCrossEntropy(logits, labels, 1/float32(len(labels)))
			if err != nil {
				return err
			}
			if err := replica.BackwardParams(saved, dl, nil); err != nil {
				return err
			}
			before := resid()
			if _, err := d.TrainStep(ctx, opt, Batch{X: x, Labels: labels}); err != nil {
				return err
			}
			mu.Lock()
			st := &out[s]
			st.resBefore[r], st.resAfter[r] = before, resid()
			for i, p := range m.Params() {
				st.local[r] = append(st.local[r], append([]float32(nil), replica.Params()[i].Grad...))
				st.reduced[r] = append(st.reduced[r], append([]float32(nil), p.Grad...))
			}
			mu.Unlock()
		}
		final[r] = paramsOf(m)
		if r == 0 {
			buckets = d.Buckets()
		}
		return nil
	})
	return out, buckets, final
}

// TestFP16WithinBound checks every reduced gradient element of every step against the
// exact average of the ranks' contributions, within FP16Bound of its bucket (BF16Bound of
// the element itself with bf16); with error feedback the contributions are the gradients
// plus the old residual minus the new one.
func TestFP16WithinBound(t *testing.T) {
	for _, comp := range []collective.Compression{collective.FP16, collective.BF16} {
		for _, n := range []int{2, 4} {
			for _, ef := range []bool{false, true} {
				t.Run(fmt.Sprintf("%v/N=%d/ef=%v", comp, n, ef), func(t *testing.T) { testCodecWithinBound(t, comp, n, ef) })
			}
		}
	}
}

func testCodecWithinBound(t *testing.T, comp collective.Compression, n int, ef bool) {
	{
		{
			{
				steps, buckets, final := codecRun(t, comp, n, 4, ef, false)
				for r := 1; r < n; r++ {
					if err := sameBits(final[0], final[r]); err != nil {
						t.Fatalf("rank %d differs from rank 0 with fp16: %v", r, err)
					}
				}
				pidx := map[string]int{}
				for i, p := range smallModel(t, 40, 1).Params() {
					pidx[p.Name] = i
				}
				worst := 0.0
				// owner[name][j] is the rank that owns element j of a parameter in its
				// bucket's ring segmentation (segment r = [C·r/n, C·(r+1)/n) of the bucket's
				// C elements): it encodes that element once, after the division by n, so its
				// residual is in the averaged values' units; every other rank's residual is
				// in the sum's (collective.Feedback).
				owner := map[string][]int{}
				sizes := map[string]int{}
				for _, p := range smallModel(t, 40, 1).Params() {
					sizes[p.Name] = p.Size()
				}
				for _, b := range buckets {
					off := 0
					for _, name := range b.Params {
						o := make([]int, sizes[name])
						for j := range o {
							for r := range n {
								if off+j >= b.Elems*r/n && off+j < b.Elems*(r+1)/n {
									o[j] = r
								}
							}
						}
						owner[name] = o
						off += sizes[name]
					}
				}
				names := smallModel(t, 40, 1).Params()
				for s, st := range steps {
					contrib := func(r, i, j int) float64 {
						c := float64(st.local[r][i][j])
						if ef {
							d := float64(st.resBefore[r][i][j]) - float64(st.resAfter[r][i][j])
							if owner[names[i].Name][j] == r {
								d *= float64(n)
							}
							c += d
						}
						return c
					}
					for _, b := range buckets {
						var a float64
						for _, name := range b.Params {
							i := pidx[name]
							for j := range st.local[0][i] {
								var sum float64
								for r := range n {
									sum += math.Abs(contrib(r, i, j))
								}
								a = max(a, sum)
							}
						}
						bound := FP16Bound(n, a)
						for _, name := range b.Params {
							i := pidx[name]
							for j := range st.local[0][i] {
								var exact float64
								for r := range n {
									exact += contrib(r, i, j)
								}
								exact /= float64(n)
								got := float64(st.reduced[0][i][j])
								if comp == collective.BF16 {
									var aj float64
									for r := range n {
										aj += math.Abs(contrib(r, i, j))
									}
									bound = BF16Bound(n, aj)
								}
								if e := math.Abs(got - exact); e > bound {
									t.Fatalf("step %d %s[%d]: error %.3g exceeds the bound %.3g (a=%.3g)", s, name, j, e, bound, a)
								} else {
									worst = max(worst, e/bound)
								}
							}
						}
					}
				}
				t.Logf("largest error: %.2f of the bound", worst)
				if worst == 0 && !ef { // with feedback the contributions absorb the rounding
					t.Fatalf("no error at all: the gradients did not go through %v", comp)
				}
			}
		}
	}
}

// TestErrorFeedbackUnbiased: two ranks with the same data and fixed parameters produce
// the same gradient g every step. Without error feedback, fp16 rounds it the same way
// every step and the delivered sum drifts linearly from T·g; with it, the delivered sum
// stays within one residual of T·g.
func TestErrorFeedbackUnbiased(t *testing.T) {
	const n, T = 2, 24
	drift := map[bool]float64{}
	for _, ef := range []bool{false, true} {
		gs := startJob(t, n)
		var mu sync.Mutex
		mustRanks(t, n, func(ctx context.Context, r int) error {
			m := smallModel(t, 40, 1)
			opts := Options{Compression: collective.FP16, ErrorFeedback: ef}
			d, err := Wrap(ctx, m, gs[r], opts)
			if err != nil {
				return err
			}
			x, labels := sample(globalBatch(0, 16))
			sums := make([][]float64, len(m.Params()))
			var exact [][]float32
			for range T {
				m.ZeroGrad()
				logits, saved, err := d.Forward(x, true)
				if err != nil {
					return err
				}
				_, dl, _ := models.SoftmaxCrossEntropy(logits, labels, 1.0/16)
				if err := d.Backward(ctx, saved, dl); err != nil {
					return err
				}
				if err := d.Wait(ctx); err != nil {
					return err
				}
				for i, p := range m.Params() {
					if sums[i] == nil {
						sums[i] = make([]float64, len(p.Grad))
					}
					for j, v := range p.Grad {
						sums[i][j] += float64(v)
					}
				}
			}
			// The exact gradient, without ddp.
			ref := smallModel(t, 40, 1)
			for i, p := range ref.Params() {
				copy(p.Value, m.Params()[i].Value)
			}
			logits, saved, _ := ref.Forward(x, true)
			_, dl, _ := models.SoftmaxCrossEntropy(logits, labels, 1.0/16)
			if err := ref.BackwardParams(saved, dl, nil); err != nil {
				return err
			}
			for _, p := range ref.Params() {
				exact = append(exact, p.Grad)
			}
			var worst, scale float64
			for i := range sums {
				for j := range sums[i] {
					worst = max(worst, math.Abs(sums[i][j]-T*float64(exact[i][j])))
					scale = max(scale, math.Abs(float64(exact[i][j])))
				}
			}
			if r == 0 {
				mu.Lock()
				drift[ef] = worst / scale
				mu.Unlock()
			}
			return nil
		})
	}
	t.Logf("largest |Σ delivered − T·g| / max|g| over %d steps: without error feedback %.3g, with %.3g", T, drift[false], drift[true])
	// One rounding errs by up to 2^-11 of the largest |g|; T of them add up without
	// feedback. With feedback only the residual (one rounding) and float32 noise remain.
	if drift[false] < 4*math.Ldexp(1, -11) {
		t.Fatalf("without error feedback the drift %.3g is too small for this test to show anything", drift[false])
	}
	if drift[true] > 2*math.Ldexp(1, -11) {
		t.Fatalf("with error feedback the drift %.3g exceeds one rounding (2^-11)", drift[true])
	}
}
