package data_test

import (
	"fmt"

	"github.com/ringtrain/ringtrain/models/data"
)

// Two ranks share 10 samples in batches of 2 (padding the last global batch).
func ExampleDistributedSampler() {
	for rank := 0; rank < 2; rank++ {
		s, _ := data.NewDistributedSampler(data.SamplerConfig{N: 10, World: 2, Rank: rank, Batch: 2, NoShuffle: true})
		fmt.Printf("rank %d: %d batches, samples %v\n", rank, s.NumBatches(), s.Indices())
	}
	// Output:
	// rank 0: 3 batches, samples [0 2 4 6 8 0]
	// rank 1: 3 batches, samples [1 3 5 7 9 1]
}

func ExampleEmbedded() {
	ds, err := data.Embedded()
	if err != nil {
		panic(err)
	}
	x, labels, _ := ds.Train.Gather([]int{0, 1, 2})
	fmt.Println(ds.Source)
	fmt.Println(x.Shape, labels)
	// Output:
	// embedded Fashion-MNIST subset (10000 train, 2000 test images)
	// [3 1 28 28] [9 0 0]
}
