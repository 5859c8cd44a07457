package collective_test

import (
	"context"
	"fmt"
	"sync"

	"github.com/ringtrain/ringtrain/collective"
	"github.com/ringtrain/ringtrain/collective/transport/memtransport"
)

// Three ranks in one process (over the in-process transport) average their gradients. In a
// real job each rank is a process and calls collective.InitFromEnv instead.
func ExampleGroup_AllReduce() {
	ctx := context.Background()
	ts := memtransport.New(3)
	var wg sync.WaitGroup
	results := make([][]float32, 3)
	for r, t := range ts {
		wg.Go(func() {
			g, err := collective.New(ctx, t, collective.Options{})
			if err != nil {
				panic(err)
			}
			defer g.Close()
			grads := []float32{float32(r), 10 * float32(r)}
			if err := g.AllReduce(ctx, grads, collective.Avg); err != nil {
				panic(err)
			}
			results[r] = grads
		})
	}
	wg.Wait()
	fmt.Println(results)
	// Output: [[1 10] [1 10] [1 10]]
}

// Stage 0 of a two-stage pipeline sends activations to stage 1 with a tag per micro-batch;
// stage 1 may receive them in any order.
func ExampleGroup_Send() {
	ctx := context.Background()
	ts := memtransport.New(2)
	var wg sync.WaitGroup
	for r, t := range ts {
		wg.Go(func() {
			g, err := collective.New(ctx, t, collective.Options{})
			if err != nil {
				panic(err)
			}
			defer g.Close()
			if r == 0 {
				for mb := range 2 {
					if err := g.Send(ctx, []float32{float32(mb), 0.5}, 1, mb); err != nil {
						panic(err)
					}
				}
			} else {
				for _, mb := range []int{1, 0} {
					act := make([]float32, 2)
					if err := g.Recv(ctx, act, 0, mb); err != nil {
						panic(err)
					}
					fmt.Println("micro-batch", mb, act)
				}
			}
			g.Barrier(ctx)
		})
	}
	wg.Wait()
	// Output:
	// micro-batch 1 [1 0.5]
	// micro-batch 0 [0 0.5]
}
