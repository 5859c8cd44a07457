package ddp_test

import (
	"context"
	"fmt"
	"log"

	"github.com/ringtrain/ringtrain/collective"
	"github.com/ringtrain/ringtrain/ddp"
	"github.com/ringtrain/ringtrain/models"
	"github.com/ringtrain/ringtrain/models/data"
)

// A data-parallel training loop. Under gorun, g comes from collective.InitFromEnv and
// every rank runs this same code on its own shard; with g == nil (no launcher) it trains
// alone.
func Example() {
	ctx := context.Background()
	var g *collective.Group // = collective.InitFromEnv(ctx) under gorun
	rank, world := 0, 1

	model, err := models.Build("mlp", 1)
	if err != nil {
		log.Fatal(err)
	}
	d, err := ddp.Wrap(ctx, model, g, ddp.Options{}) // 25 MiB buckets after a 1 MiB first one
	if err != nil {
		log.Fatal(err)
	}
	for _, b := range d.Buckets() {
		fmt.Printf("bucket %d: %v (%d bytes)\n", b.Index, b.Params, b.Bytes())
	}
	opt, err := models.NewSGD(model.Params(), models.SGDConfig{LR: 0.05, Momentum: 0.9})
	if err != nil {
		log.Fatal(err)
	}
	src, _ := data.NewSynthetic(256, models.ImageShape(), models.NumClasses, 1)
	sampler, _ := data.NewDistributedSampler(data.SamplerConfig{N: src.Len(), Rank: rank, World: world, Batch: 32, Seed: 1})
	for k := range sampler.NumBatches() {
		x, labels, err := sampler.Batch(src, k)
		if err != nil {
			log.Fatal(err)
		}
		if _, err := d.TrainStep(ctx, opt, ddp.Batch{X: x, Labels: labels}); err != nil {
			log.Fatal(err)
		}
	}
	fmt.Println("steps:", d.Steps())
	// Output:
	// bucket 0: [fc3.bias fc3.weight fc2.bias fc2.weight] (1071144 bytes)
	// bucket 1: [fc1.bias fc1.weight] (1607680 bytes)
	// steps: 8
}

// Checkpoints: every rank calls SaveCheckpoint after a step (rank 0 writes), and
// LoadCheckpoint once before training to resume from the newest one, if any.
func ExampleDDP_LoadCheckpoint() {
	ctx := context.Background()
	dir := "/tmp/ringtrain-example-ckpt"
	model, _ := models.Build("cnn", 1)
	d, _ := ddp.Wrap(ctx, model, nil, ddp.Options{})
	opt, _ := models.NewAdam(model.Params(), models.AdamConfig{})

	st, path, err := d.LoadCheckpoint(ctx, dir, opt)
	if err != nil {
		log.Fatal(err) // a damaged checkpoint, or one of another model: never silently ignored
	}
	if path == "" {
		st = ddp.TrainState{GlobalBatch: 64, Seed: 1} // fresh start
	}
	// ... train, advancing st.Step, st.Epoch and st.Batch, then now and then:
	if _, err := d.SaveCheckpoint(ctx, dir, st, opt); err != nil {
		log.Fatal(err)
	}
}

// preDivide is a user's communication hook: it divides the bucket by the group size before
// a summing AllReduce (PyTorch's default hook does the same), so that the sum of large
// gradients over many ranks cannot overflow float32.
type preDivide struct{}

func (preDivide) Name() string                                { return "pre-divide" }
func (preDivide) Setup(*collective.Group, []ddp.Bucket) error { return nil }
func (preDivide) Reduce(ctx context.Context, g *collective.Group, b ddp.Bucket) (*collective.Work, error) {
	n := float32(g.Size())
	for i := range b.Grads {
		b.Grads[i] /= n
	}
	return g.AllReduceAsync(ctx, b.Grads, collective.Sum), nil // ddp waits for it before the step
}

// A communication hook replaces how each bucket is averaged; every rank must use one of the
// same Name (Wrap checks). Built-in: ddp.AllReduceHook, ddp.CompressHook(FP16 or BF16, error
// feedback); package ddp/powersgd is a low-rank one.
func ExampleCommHook() {
	ctx := context.Background()
	g, err := collective.InitFromEnv(ctx) // under gorun
	if err != nil {
		log.Fatal(err)
	}
	model, _ := models.Build("mlp", 1)
	if _, err := ddp.Wrap(ctx, model, g, ddp.Options{CommHook: preDivide{}}); err != nil {
		log.Fatal(err)
	}
	bf16, _ := ddp.CompressHook(collective.BF16, true) // = Options{Compression: BF16, ErrorFeedback: true}
	_ = bf16
}
