package sgemm

// prefetchLines asks the CPU to bring the n floats at p into its caches
// (PREFETCHT1); it never faults, whatever p is.
//
//go:noescape
func prefetchLines(p *float32, n int)
