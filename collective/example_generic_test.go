package collective_test

import (
	"context"
	"fmt"
	"sync"

	"github.com/ringtrain/ringtrain/collective"
	"github.com/ringtrain/ringtrain/collective/transport/memtransport"
)

// Every collective is also a generic function over the element types (float32, float64,
// int32, int64). Here three ranks count the samples each saw (int64: no rounding), gather
// per-rank losses (float64) on rank 0, and route tokens to experts with AllToAll, as a
// mixture-of-experts layer does.
func ExampleAllReduce() {
	ctx := context.Background()
	ts := memtransport.New(3)
	var wg sync.WaitGroup
	var mu sync.Mutex
	out := make([]string, 3)
	for r, t := range ts {
		wg.Go(func() {
			g, err := collective.New(ctx, t, collective.Options{})
			if err != nil {
				panic(err)
			}
			defer g.Close()
			seen := []int64{int64(1000 + r)}
			if err := collective.AllReduce(ctx, g, seen, collective.Sum); err != nil {
				panic(err)
			}
			losses := make([]float64, 3) // only rank 0's is filled
			if err := collective.Gather(ctx, g, []float64{0.5 * float64(r)}, losses, 0); err != nil {
				panic(err)
			}
			// Token i of this rank goes to expert (rank) i.
			tokens := []int32{int32(10*r + 0), int32(10*r + 1), int32(10*r + 2)}
			mine := make([]int32, 3)
			if err := collective.AllToAll(ctx, g, tokens, mine); err != nil {
				panic(err)
			}
			mu.Lock()
			out[r] = fmt.Sprintf("rank %d: samples %v, tokens %v", r, seen, mine)
			if r == 0 {
				out[r] += fmt.Sprintf(", losses %v", losses)
			}
			mu.Unlock()
		})
	}
	wg.Wait()
	for _, s := range out {
		fmt.Println(s)
	}
	// Output:
	// rank 0: samples [3003], tokens [0 10 20], losses [0 0.5 1]
	// rank 1: samples [3003], tokens [1 11 21]
	// rank 2: samples [3003], tokens [2 12 22]
}
