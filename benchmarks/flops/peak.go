package main

import (
	"time"
)

// peakKernel is a tight FMA loop: run(n) executes n iterations of flops FLOPs.
type peakKernel struct {
	name  string
	run   func(n int)
	flops int
}

// measurePeak returns the best GFLOP/s of 20·reps timed runs of about 2 ms:
// on a shared machine short runs are the likeliest to go uninterrupted.
func measurePeak(k peakKernel, reps int) float64 {
	n := 1 << 10
	for { // calibrate to ~2 ms
		t := now()
		k.run(n)
		if d := now() - t; d > time.Millisecond {
			n = int(float64(n) * float64(2*time.Millisecond) / float64(d))
			break
		}
		n *= 2
	}
	best := 0.0
	for range 20 * reps {
		t := now()
		k.run(n)
		if g := float64(n) * float64(k.flops) / (now() - t).Seconds() / 1e9; g > best {
			best = g
		}
	}
	return best
}
