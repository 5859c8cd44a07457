package models_test

import (
	"fmt"

	"github.com/ringtrain/ringtrain/models"
)

// A training step: forward, loss scaled by 1/globalBatch, backward with a
// per-layer hook (where data parallelism starts reducing gradients), update.
func Example() {
	m, err := models.Build("mlp", 1)
	if err != nil {
		panic(err)
	}
	opt, _ := models.NewSGD(m.Params(), models.SGDConfig{LR: 0.1, Momentum: 0.9})

	x := models.NewTensor(2, 1, 28, 28) // two blank images
	labels := []int{3, 7}

	m.ZeroGrad()
	logits, saved, _ := m.Forward(x, true)
	loss, dlogits, _ := models.SoftmaxCrossEntropy(logits, labels, 1.0/2)
	var done []string
	_ = m.BackwardParams(saved, dlogits, func(i int) {
		if len(m.Layers()[i].Params()) > 0 {
			done = append(done, m.Layers()[i].Name())
		}
	})
	_ = opt.Step()

	fmt.Printf("%d parameters, loss %.2f, gradients ready in order %v\n", m.NumParams(), loss, done)
	// Output: 669706 parameters, loss 2.30, gradients ready in order [fc3 fc2 fc1]
}

func ExampleBuild() {
	for _, name := range models.ModelNames() {
		m, _ := models.Build(name, 42)
		costs, _ := m.Costs(models.ImageShape())
		var flops int64
		for _, c := range costs {
			flops += c.FLOPs
		}
		fmt.Printf("%-8s %2d layers %9d params %10d forward FLOPs/sample\n", name, m.Len(), m.NumParams(), flops)
	}
	// Output:
	// cnn      12 layers     61706 params     852370 forward FLOPs/sample
	// mlp       6 layers    669706 params    1339402 forward FLOPs/sample
	// mlp-wide  6 layers  20037642 params   40075274 forward FLOPs/sample
}
