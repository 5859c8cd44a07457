//go:build baseline

package main

// The baseline build (an older commit, see compare.sh) has no internal/sgemm.

const buildName = "baseline"

var gemmPeakKernel = "avx2-fma"

func gemmRecords(int) []Record { return nil }
