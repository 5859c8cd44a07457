package pipeline_test

import (
	"context"
	"fmt"
	"sync"

	"github.com/ringtrain/ringtrain/collective"
	"github.com/ringtrain/ringtrain/collective/transport/memtransport"
	"github.com/ringtrain/ringtrain/models"
	"github.com/ringtrain/ringtrain/models/data"
	"github.com/ringtrain/ringtrain/pipeline"
)

// Two pipeline stages of the mlp model, one per rank, train one mini-batch
// of 32 samples in 4 micro-batches with 1F1B. The ranks are goroutines over
// an in-process transport here; under gorun each is a process and the group
// comes from collective.InitFromEnv.
func ExampleNew() {
	ctx := context.Background()
	ts := memtransport.New(2)
	src, _ := data.NewSynthetic(1000, models.ImageShape(), 10, 7)
	idx := make([]int, 32)
	for i := range idx {
		idx[i] = i
	}
	x, labels, _ := src.Gather(idx) // every rank builds the same batch

	var wg sync.WaitGroup
	lines := make([]string, 2)
	for rank := range 2 {
		wg.Go(func() {
			defer ts[rank].Close()
			g, err := collective.New(ctx, ts[rank], collective.Options{})
			if err != nil {
				panic(err)
			}
			defer g.Close()
			model, _ := models.Build("mlp", 1) // same seed on every rank
			e, err := pipeline.New(ctx, model, g, pipeline.Config{Batch: 32, MicroBatches: 4, InputShape: models.ImageShape()})
			if err != nil {
				panic(err)
			}
			opt, _ := models.NewSGD(e.Params(), models.SGDConfig{LR: 0.05})
			st, err := e.Step(ctx, x, labels, opt)
			if err != nil {
				panic(err)
			}
			if rank == 0 {
				fmt.Print(e.Plan().String() + e.Schedule().String())
			}
			lines[rank] = fmt.Sprintf("stage %d: %d params, peak stored activations %d micro-batches, loss computed here: %v",
				e.Stage(), models.CountParams(e.Params()), st.PeakLive, st.Samples > 0)
		})
	}
	wg.Wait()
	for _, l := range lines {
		fmt.Println(l)
	}
	// Output:
	// stage  layers               params  cost share  device
	// 0      0-2 flatten..relu1  401,920       50.0%  -
	// 1      3-5 fc2..fc3        267,786       50.0%  -
	// bottleneck 50.0% of total cost, imbalance 1.00 (max/mean stage cost)
	// stage 0: F0 F1 B0 F2 B1 F3 B2 B3
	// stage 1: F0 B0 F1 B1 F2 B2 F3 B3
	// stage 0: 401920 params, peak stored activations 2 micro-batches, loss computed here: false
	// stage 1: 267786 params, peak stored activations 1 micro-batches, loss computed here: true
}
