package collective

import (
	"math"
	"math/rand/v2"
	"testing"
)

// TestFeedbackRunningSum: 4 ranks with distinct random data reduce in fp16 for 200 steps.
// With Feedback the running sum of the results stays within one step's quantization bound of
// the exact running sum, because every encoding's loss (each reduce-scatter hop's partial
// sums and the owner's all-gather encoding) is carried into the next step at the same point.
// Without it the per-step errors, which repeat as the data do, accumulate: the test shows
// both and checks that the drift is many times larger. (Before, error feedback lived in ddp
// and corrected only each rank's first hop: the later hops and the all-gather drifted.)
func TestFeedbackRunningSum(t *testing.T) {
	for _, comp := range []Compression{FP16, BF16} {
		t.Run(comp.String(), func(t *testing.T) { testFeedbackRunningSum(t, comp) })
	}
}

// testFeedbackRunningSum is TestFeedbackRunningSum for one compression (BF16's rounding is
// bounded by 2^-8 of each value, below fp16's 2^-11 of the chunk's largest: the same
// conservative A serves both).
func testFeedbackRunningSum(t *testing.T, comp Compression) {
	const n, steps, count = 4, 200, 3001
	// Every rank's data: a fixed random vector of mixed magnitudes (distinct per rank) plus a
	// small fresh perturbation each step, as gradients are, so that rounding errors are
	// biased from step to step.
	base := make([][]float32, n)
	for r := range n {
		base[r] = randomInput(7, r, count)
		for i := range base[r] {
			if i%5 == 0 {
				base[r][i] *= 1e-3 // small components next to large ones in the same chunk
			}
		}
	}
	input := func(r, step int) []float32 {
		rng := rand.New(rand.NewPCG(uint64(step), uint64(r)+100))
		v := clone(base[r])
		for i := range v {
			v[i] += float32(rng.NormFloat64() * 1e-4)
		}
		return v
	}
	// One step's bound (AllReduce's doc): ((1+u)^n − 1)·A with A the largest Σ_r |x_r| (over
	// the whole buffer: conservative), plus float32's own roundings, which no feedback
	// corrects and which the running sum accumulates: n·2^-24·A per step.
	var A float64
	for i := range count {
		var s float64
		for r := range n {
			s += math.Abs(float64(base[r][i])) + 1e-3
		}
		A = max(A, s)
	}
	u := 0x1p-11 + 0x1p-24
	if comp == BF16 {
		u = 0x1p-8 + 0x1p-24
	}
	stepBound := (math.Pow(1+u, n)-1)*A + n*0x1p-137
	fp32Drift := 2 * steps * n * 0x1p-24 * A

	run := func(feedback bool) float64 {
		j := startJob(t, memFabric, n, Options{ChunkBytes: 2 << 10}) // several chunks per segment
		res := make([][]float32, n)
		for r := range res {
			res[r] = make([]float32, count)
		}
		sum := make([]float64, count)   // running sum of rank 0's results
		exact := make([]float64, count) // running sum of the exact reductions
		for step := range steps {
			results := make([][]float32, n)
			j.mustEach(func(r int, g *Group) error {
				buf := input(r, step)
				opts := []ReduceOption{comp}
				if feedback {
					opts = append(opts, Feedback(res[r]))
				}
				results[r] = buf
				return g.AllReduce(ctxT(t), buf, Sum, opts...)
			})
			sameBits(t, "results", results)
			for r := range n {
				for i, x := range input(r, step) {
					exact[i] += float64(x)
				}
			}
			for i, x := range results[0] {
				sum[i] += float64(x)
			}
		}
		var worst float64
		for i := range sum {
			worst = max(worst, math.Abs(sum[i]-exact[i]))
		}
		return worst
	}
	with, without := run(true), run(false)
	t.Logf("after %d steps: running-sum error %.3g with feedback, %.3g without; one step's bound %.3g (A = %.3g)", steps, with, without, stepBound, A)
	if with > stepBound+fp32Drift {
		t.Errorf("with feedback the running sum is %.3g off, more than one step's bound %.3g (+ %.3g of float32 rounding)", with, stepBound, fp32Drift)
	}
	if without < 10*with || without < 2*stepBound {
		t.Errorf("without feedback the running sum is only %.3g off (with: %.3g, one step's bound %.3g): the test does not show the drift", without, with, stepBound)
	}
}

// TestFeedbackOptionChecks: Feedback is refused where it has no meaning.
func TestFeedbackOptionChecks(t *testing.T) {
	j := startJob(t, memFabric, 2, Options{})
	j.mustEach(func(r int, g *Group) error {
		buf := make([]float32, 10)
		for _, c := range []struct {
			op   Op
			opts []ReduceOption
		}{
			{Sum, []ReduceOption{Feedback(make([]float32, 10))}},       // no FP16
			{Max, []ReduceOption{FP16, Feedback(make([]float32, 10))}}, // Max
			{Sum, []ReduceOption{FP16, Feedback(make([]float32, 9))}},  // wrong length
		} {
			if err := g.AllReduce(ctxT(t), buf, c.op, c.opts...); err == nil {
				t.Errorf("AllReduce(%v, %v) with a bad Feedback succeeded", c.op, c.opts)
			}
		}
		return nil
	})
}
