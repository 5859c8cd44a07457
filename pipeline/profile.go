package pipeline

import (
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/ringtrain/ringtrain/models"
)

// MeasureLayerCosts times each layer of m on this machine, for balancing
// stages by measured time rather than by estimated FLOPs (Config.LayerCosts):
// estimated FLOPs miss how well each kind of layer runs (a 1-channel
// convolution does far fewer FLOPs per second than a large matmul). Each
// layer runs forward and backward on a batch of batch random samples of
// per-sample shape in, once untimed (which builds its programs) and then reps
// times; its cost is the fastest forward+backward, in seconds. As on
// pipeline stage 0 (Sequential.BackwardParams), the layers in front of the
// first layer with parameters run no backward, and that layer computes no
// input gradient where it can. Parameter gradients are cleared afterwards.
//
// Timings differ between machines and runs: in a job, measure on one rank
// and share the result (every rank must balance on the same numbers).
func MeasureLayerCosts(m *models.Sequential, in []int, batch, reps int) ([]float64, error) {
	if batch < 1 || reps < 1 {
		return nil, fmt.Errorf("%w: MeasureLayerCosts needs batch and reps >= 1, got %d and %d", ErrConfig, batch, reps)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	x := models.NewTensor(append([]int{batch}, in...)...)
	for i := range x.Data {
		x.Data[i] = rng.Float32()
	}
	defer m.ZeroGrad()
	costs := make([]float64, m.Len())
	first := m.Len()
	for i, l := range m.Layers() {
		if len(l.Params()) > 0 {
			first = i
			break
		}
	}
	for i, l := range m.Layers() {
		y, _, err := l.Forward(x, true)
		if err != nil {
			return nil, fmt.Errorf("pipeline: measuring layer %d (%s): %w", i, l.Name(), err)
		}
		dy := models.NewTensor(y.Shape...)
		for j := range dy.Data {
			dy.Data[j] = rng.Float32() - 0.5
		}
		best := time.Duration(1<<63 - 1)
		for r := 0; r <= reps; r++ {
			t := time.Now()
			_, saved, err := l.Forward(x, true)
			if err == nil && i >= first {
				if pl, ok := l.(models.ParamGradLayer); ok && i == first {
					err = pl.BackwardParams(saved, dy)
				} else {
					_, err = l.Backward(saved, dy)
				}
			}
			if err != nil {
				return nil, fmt.Errorf("pipeline: measuring layer %d (%s): %w", i, l.Name(), err)
			}
			if d := time.Since(t); r > 0 {
				best = min(best, d)
			}
		}
		costs[i] = best.Seconds()
		x = y
	}
	return costs, nil
}
