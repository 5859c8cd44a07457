package quictransport_test

import (
	"context"
	"fmt"
	"io"
	"log"
	"time"

	"github.com/ringtrain/ringtrain/collective/quictransport"
)

// StartLocal runs a whole job inside one process, which is how the collective algorithms are
// tested; a real rank calls Establish(ctx, cfg) with cfg from ConfigFromEnv instead.
func ExampleStartLocal() {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	ts, err := quictransport.StartLocal(ctx, 2, quictransport.Config{})
	if err != nil {
		log.Fatal(err)
	}
	defer func() {
		for _, t := range ts {
			t.Close()
		}
	}()

	// Both ranks ask for the same channel; rank 0 (the lower) opens it.
	done := make(chan struct{})
	go func() {
		defer close(done)
		l, err := ts[0].Link(ctx, 1, "greetings")
		if err != nil {
			log.Fatal(err)
		}
		l.Write([]byte("hello"))
	}()
	l, err := ts[1].Link(ctx, 0, "greetings")
	if err != nil {
		log.Fatal(err)
	}
	msg := make([]byte, 5)
	if _, err := io.ReadFull(l, msg); err != nil {
		log.Fatal(err)
	}
	<-done
	fmt.Printf("rank %d got %q from rank %d\n", ts[1].Rank(), msg, l.Peer())
	// Output: rank 1 got "hello" from rank 0
}

// A rank started by gorun (or torchrun-style launchers) joins its job from the environment.
func ExampleEstablish() {
	cfg, err := quictransport.ConfigFromEnv()
	if err != nil {
		log.Fatal(err) // e.g. `environment variable RANK="x": not an integer`
	}
	tr, err := quictransport.Establish(context.Background(), cfg)
	if err != nil {
		log.Fatal(err) // e.g. `rendezvous: ranks [2 3] of 4 did not join within 2m0s`
	}
	defer tr.Close()
	fmt.Println("joined as rank", tr.Rank(), "of", tr.Size())
}
