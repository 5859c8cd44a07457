package quictransport

import (
	"context"
	"fmt"
	"io"
	"testing"
	"time"
)

// BenchmarkLinkThroughput streams large writes from rank 0 to rank 1 over one link of a
// 2-rank job on 127.0.0.1 and reports bytes/s (MB/s in the output), for several flow-control
// window settings and write sizes; "bidir" streams both ways at once, as a ring step does.
//
//	go test -run='^$' -bench=LinkThroughput -benchtime=20x ./collective/quictransport/
func BenchmarkLinkThroughput(b *testing.B) {
	type setting struct {
		name         string
		stream, conn uint64
		write        int
		bidir        bool
	}
	var settings []setting
	for _, w := range []struct{ s, c uint64 }{{1 << 20, 2 << 20}, {4 << 20, 8 << 20}, {16 << 20, 32 << 20},
		{DefaultStreamWindow, DefaultConnWindow}, {64 << 20, 128 << 20}} {
		settings = append(settings, setting{fmt.Sprintf("win=%dM-%dM/write=4M", w.s>>20, w.c>>20), w.s, w.c, 4 << 20, false})
	}
	for _, wr := range []int{64 << 10, 1 << 20} {
		settings = append(settings, setting{fmt.Sprintf("win=default/write=%dK", wr>>10), 0, 0, wr, false})
	}
	settings = append(settings, setting{"win=default/write=4M/bidir", 0, 0, 4 << 20, true})

	for _, s := range settings {
		b.Run(s.name, func(b *testing.B) {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
			defer cancel()
			ts, err := StartLocal(ctx, 2, Config{StreamWindow: s.stream, ConnWindow: s.conn})
			if err != nil {
				b.Fatal(err)
			}
			defer func() {
				for _, t := range ts {
					t.Close()
				}
			}()
			l0, err := ts[0].Link(ctx, 1, "bench")
			if err != nil {
				b.Fatal(err)
			}
			l0.Write([]byte{0})
			l1, err := ts[1].Link(ctx, 0, "bench")
			if err != nil {
				b.Fatal(err)
			}
			io.ReadFull(l1, make([]byte, 1))

			const perIter = 16 << 20 // bytes each direction per iteration
			writes := perIter / s.write
			total := int64(b.N) * int64(writes*s.write)
			stream := func(w io.Writer, r io.Reader) error {
				errc := make(chan error, 1)
				go func() {
					buf := make([]byte, s.write)
					for i := 0; i < b.N*writes; i++ {
						if _, err := w.Write(buf); err != nil {
							errc <- err
							return
						}
					}
					errc <- nil
				}()
				buf := make([]byte, 4<<20)
				for got := int64(0); got < total; {
					n, err := r.Read(buf[:min(int64(len(buf)), total-got)])
					got += int64(n)
					if err != nil {
						return err
					}
				}
				return <-errc
			}
			// Bytes moved per iteration, both directions counted for bidir.
			if s.bidir {
				b.SetBytes(2 * int64(writes*s.write))
			} else {
				b.SetBytes(int64(writes * s.write))
			}
			b.ResetTimer()
			done := make(chan error, 2)
			go func() { done <- stream(l0, l1) }()
			if s.bidir {
				go func() { done <- stream(l1, l0) }()
			} else {
				done <- nil
			}
			for i := 0; i < 2; i++ {
				if err := <-done; err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
