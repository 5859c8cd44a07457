package pipeline_test

import (
	"fmt"

	"github.com/ringtrain/ringtrain/pipeline"
)

// A 1F1B schedule for 3 stages and 4 micro-batches, its simulated bubble with
// unit-time forwards and backwards, and the activations each stage keeps.
func ExampleOneFOneB() {
	s, err := pipeline.OneFOneB(3, 4)
	if err != nil {
		panic(err)
	}
	fmt.Print(s)
	r, err := pipeline.Simulate(s, 1, 1)
	if err != nil {
		panic(err)
	}
	fmt.Printf("makespan %g, bubble %.3f (theory %.3f)\n", r.Makespan, r.Bubble, pipeline.TheoreticalBubble(3, 4))
	fmt.Println("peak stored activations per stage:", r.PeakActivations)
	// Output:
	// stage 0: F0 F1 F2 B0 F3 B1 B2 B3
	// stage 1: F0 F1 B0 F2 B1 F3 B2 B3
	// stage 2: F0 B0 F1 B1 F2 B2 F3 B3
	// makespan 12, bubble 0.333 (theory 0.333)
	// peak stored activations per stage: [3 2 1]
}

// Balancing six layers over two stages by estimated cost, then printing the
// plan with the devices the ranks picked.
func ExampleBalancedPlan() {
	layers := []pipeline.Layer{
		{Name: "fc1", Params: 100480, Cost: 100480},
		{Name: "relu1", Cost: 128},
		{Name: "fc2", Params: 16512, Cost: 16512},
		{Name: "relu2", Cost: 128},
		{Name: "fc3", Params: 1290, Cost: 1290},
		{Name: "loss", Cost: 10},
	}
	p, err := pipeline.BalancedPlan(layers, 2)
	if err != nil {
		panic(err)
	}
	p.Stages[0].Device = "cuda:0"
	p.Stages[1].Device = "cuda:1"
	fmt.Print(p)
	// Output:
	// stage  layers            params  cost share  device
	// 0      0 fc1            100,480       84.8%  cuda:0
	// 1      1-5 relu1..loss   17,802       15.2%  cuda:1
	// bottleneck 84.8% of total cost, imbalance 1.70 (max/mean stage cost)
}

// GPipe and 1F1B side by side for 4 stages and 8 micro-batches, backward
// twice as long as forward: the same bubble, very different memory.
func ExampleSimulate() {
	for _, name := range []string{"gpipe", "1f1b"} {
		fn, _ := pipeline.ByName(name)
		s, _ := fn(4, 8)
		r, err := pipeline.Simulate(s, 1, 2)
		if err != nil {
			panic(err)
		}
		fmt.Printf("%-5s makespan %g  bubble %.3f  peak activations %v\n", name, r.Makespan, r.Bubble, r.PeakActivations)
	}
	fmt.Printf("theory: bubble (K-1)/(M+K-1) = %.3f\n", pipeline.TheoreticalBubble(4, 8))
	// Output:
	// gpipe makespan 33  bubble 0.273  peak activations [8 8 8 8]
	// 1f1b  makespan 33  bubble 0.273  peak activations [4 3 2 1]
	// theory: bubble (K-1)/(M+K-1) = 0.273
}
