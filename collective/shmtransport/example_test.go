package shmtransport_test

import (
	"context"
	"fmt"
	"log"
	"sync"

	"github.com/ringtrain/ringtrain/collective"
	"github.com/ringtrain/ringtrain/collective/quictransport"
	"github.com/ringtrain/ringtrain/collective/shmtransport"
)

// Ranks meet over QUIC; Wrap moves the data of same-host links into shared memory, and the
// collectives run over it unchanged. A rank process would use quictransport.Establish with
// quictransport.ConfigFromEnv and take the mode from GORUN_TRANSPORT with ModeFromEnv; this
// example starts a 2-rank job inside one process.
func ExampleWrap() {
	ctx := context.Background()
	base, err := quictransport.StartLocal(ctx, 2, quictransport.Config{})
	if err != nil {
		log.Fatal(err)
	}
	var wg sync.WaitGroup
	for rank := range base {
		wg.Go(func() {
			t, err := shmtransport.Wrap(base[rank], shmtransport.Options{Mode: shmtransport.ModeAuto})
			if err != nil {
				log.Fatal(err)
			}
			defer t.Close()
			g, err := collective.New(ctx, t, collective.Options{})
			if err != nil {
				log.Fatal(err)
			}
			defer g.Close()
			buf := []float32{float32(rank + 1), 10}
			if err := g.AllReduce(ctx, buf, collective.Sum); err != nil {
				log.Fatal(err)
			}
			if rank == 0 {
				fmt.Println(buf, "over", t.Kind(1))
			}
		})
	}
	wg.Wait()
	// Output: [3 20] over shm
}

// ModeFromEnv turns GORUN_TRANSPORT (gorun's --transport) into Options.Mode.
func ExampleModeFromEnv() {
	mode, err := shmtransport.ModeFromEnv()
	if err != nil {
		log.Fatal(err) // names GORUN_TRANSPORT and its bad value
	}
	fmt.Println(mode)
}
