//go:build !amd64

package main

func peakKernels() []peakKernel { return nil }
