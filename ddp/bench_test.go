package ddp

import (
	"context"
	"fmt"
	"testing"

	"github.com/ringtrain/ringtrain/collective"
	"github.com/ringtrain/ringtrain/models"
	"github.com/ringtrain/ringtrain/models/data"
)

// BenchmarkTrainStep measures data-parallel training steps of the mlp at batch 64 per
// rank, with 1 rank (no communication) and 2 ranks in this process over QUIC on
// 127.0.0.1, and reports global samples/s and the share of step time spent waiting for
// communication. The ranks share this process's GOMAXPROCS; for one process per rank use
// examples/fashion through gorun (see the README).
//
//	go test -run=^$ -bench=TrainStep -benchtime=30x ./ddp
func BenchmarkTrainStep(b *testing.B) {
	for _, c := range []struct {
		n    int
		opts Options
		name string
	}{
		{1, Options{}, "fp32"},
		{2, Options{}, "fp32"},
		{2, Options{Compression: collective.FP16}, "fp16"},
	} {
		b.Run(fmt.Sprintf("mlp/ranks=%d/%s", c.n, c.name), func(b *testing.B) {
			const batch = 64
			var gs []*collective.Group
			if c.n > 1 {
				gs = startJobB(b, c.n)
			}
			src, err := data.NewSynthetic(4096, models.ImageShape(), models.NumClasses, 1)
			if err != nil {
				b.Fatal(err)
			}
			ds := make([]*DDP, c.n)
			opts := make([]models.Optimizer, c.n)
			batches := make([]Batch, c.n)
			for r := range c.n {
				m, err := models.Build("mlp", 1)
				if err != nil {
					b.Fatal(err)
				}
				x, labels, err := src.Gather(seq(r*batch, batch))
				if err != nil {
					b.Fatal(err)
				}
				batches[r] = Batch{X: x, Labels: labels}
				// Build the graphs one model at a time (see buildMu).
				if _, _, err := m.Forward(x, true); err != nil {
					b.Fatal(err)
				}
				ds[r] = &DDP{model: m}
				opts[r], _ = models.NewSGD(m.Params(), models.SGDConfig{LR: 0.01, Momentum: 0.9})
			}
			errs := make([]error, c.n)
			wrapDone := make(chan int, c.n)
			for r := range c.n {
				go func() {
					var g *collective.Group
					if gs != nil {
						g = gs[r]
					}
					ds[r], errs[r] = Wrap(context.Background(), ds[r].model, g, c.opts)
					wrapDone <- r
				}()
			}
			for range c.n {
				<-wrapDone
			}
			for _, err := range errs {
				if err != nil {
					b.Fatal(err)
				}
			}
			step := func() {
				done := make(chan error, c.n)
				for r := range c.n {
					go func() {
						_, err := ds[r].TrainStep(context.Background(), opts[r], batches[r])
						done <- err
					}()
				}
				for range c.n {
					if err := <-done; err != nil {
						b.Fatal(err)
					}
				}
			}
			step()
			ds[0].TakeStats()
			b.ResetTimer()
			for range b.N {
				step()
			}
			st := ds[0].TakeStats()
			b.ReportMetric(float64(b.N*batch*c.n)/b.Elapsed().Seconds(), "samples/s")
			b.ReportMetric(100*st.ExposedShare(), "%exposed")
			b.ReportMetric(float64(st.PerStep().Comm.Microseconds())/1000, "comm-ms")
		})
	}
}

func seq(from, n int) []int {
	out := make([]int, n)
	for i := range out {
		out[i] = from + i
	}
	return out
}
