package shmtransport

import (
	"fmt"
	"io"
	"testing"
	"time"
)

// BenchmarkStream measures one-way throughput of a link between two goroutines (the
// cross-process numbers come from benchmarks/allreduce/sweep.sh) for ring sizes and wait strategies.
func BenchmarkStream(b *testing.B) {
	const msg = 1 << 20
	for _, ring := range []int{256 << 10, 1 << 20, 4 << 20} {
		for _, wait := range []Wait{WaitSpin, WaitSpinThenBlock, WaitBlock} {
			b.Run(fmt.Sprintf("ring=%dK/wait=%s", ring>>10, wait), func(b *testing.B) {
				ts, _ := wrapAll(b, 2, 0, func(int) Options { return Options{Mode: ModeShm, RingBytes: ring, Wait: wait} })
				w, r := linkPair(b, ts, 0, 1, "x")
				src, dst := make([]byte, msg), make([]byte, msg)
				done := make(chan error, 1)
				b.SetBytes(msg)
				b.ResetTimer()
				go func() {
					for range b.N {
						if _, err := w.Write(src); err != nil {
							done <- err
							return
						}
					}
					done <- nil
				}()
				for range b.N {
					if _, err := io.ReadFull(r, dst); err != nil {
						b.Fatal(err)
					}
				}
				if err := <-done; err != nil {
					b.Fatal(err)
				}
			})
		}
	}
}

// BenchmarkPingPong measures the round trip of a small message, where the wait strategy
// decides the latency.
func BenchmarkPingPong(b *testing.B) {
	for _, wait := range []Wait{WaitSpin, WaitSpinThenBlock, WaitBlock} {
		b.Run("wait="+wait.String(), func(b *testing.B) {
			ts, _ := wrapAll(b, 2, 0, func(int) Options { return Options{Mode: ModeShm, RingBytes: 1 << 16, Wait: wait} })
			x, y := linkPair(b, ts, 0, 1, "x")
			go func() {
				buf := make([]byte, 64)
				for {
					if _, err := io.ReadFull(y, buf); err != nil {
						return
					}
					if _, err := y.Write(buf); err != nil {
						return
					}
				}
			}()
			buf := make([]byte, 64)
			start := time.Now()
			b.ResetTimer()
			for range b.N {
				x.Write(buf)
				if _, err := io.ReadFull(x, buf); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(time.Since(start).Microseconds())/float64(b.N), "us/roundtrip")
		})
	}
}
