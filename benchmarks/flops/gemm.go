//go:build !baseline

package main

import (
	"math/rand/v2"
	"strings"

	"github.com/ringtrain/ringtrain/internal/sgemm"
)

const buildName = "new"

// gemmPeakKernel is the FMA loop of the same instruction set as the GEMM's
// micro-kernel: the peak the GEMM is measured against.
var gemmPeakKernel = peakFor(sgemm.KernelName())

// peakFor names the FMA loop of a micro-kernel's instruction set.
func peakFor(kernel string) string {
	switch {
	case strings.HasPrefix(kernel, "avx512"):
		return "avx512-fma"
	case strings.HasPrefix(kernel, "avx2"):
		return "avx2-fma"
	}
	return "go"
}

// gemmShapes are the products of a Linear layer at batch 64: forward x·W,
// weight gradient xᵀ·dy, input gradient dy·Wᵀ (m×n×k, C is m×n).
var gemmShapes = []struct {
	name    string
	tA, tB  bool
	m, n, k int
}{
	{"mlp fc1 fwd 64x512x784", false, false, 64, 512, 784},
	{"mlp fc1 dW 784x512x64", true, false, 784, 512, 64},
	{"mlp fc2 fwd 64x512x512", false, false, 64, 512, 512},
	{"mlp fc2 dW 512x512x64", true, false, 512, 512, 64},
	{"mlp fc2 dx 64x512x512", false, true, 64, 512, 512},
	{"wide fc1 fwd 64x4096x784", false, false, 64, 4096, 784},
	{"wide fc1 dW 784x4096x64", true, false, 784, 4096, 64},
	{"wide fc2 fwd 64x4096x4096", false, false, 64, 4096, 4096},
	{"wide fc2 dW 4096x4096x64", true, false, 4096, 4096, 64},
	{"wide fc2 dx 64x4096x4096", false, true, 64, 4096, 4096},
	{"cnn conv1 fwd/img 6x784x25", false, false, 6, 784, 25},
	{"cnn conv2 fwd/img 16x100x150", false, false, 16, 100, 150},
}

// gemmRecords times every shape on every assembly micro-kernel this machine
// runs (the one Gemm uses first): Record.Name is "<shape> [<kernel>]".
func gemmRecords(reps int) []Record {
	var recs []Record
	for _, k := range sgemm.Kernels() {
		if peakFor(k) == "go" {
			continue
		}
		restore, _ := sgemm.UseKernel(k)
		recs = append(recs, gemmKernelRecords(reps, k)...)
		restore()
	}
	return recs
}

func gemmKernelRecords(reps int, kernel string) []Record {
	var recs []Record
	rng := rand.New(rand.NewPCG(2, 2))
	for _, s := range gemmShapes {
		lda, ldb := s.k, s.n
		if s.tA {
			lda = s.m
		}
		if s.tB {
			ldb = s.k
		}
		a, b, c := randSlice(rng, s.m*s.k), randSlice(rng, s.k*s.n), make([]float32, s.m*s.n)
		call := func() { sgemm.Gemm(s.tA, s.tB, s.m, s.n, s.k, 1, a, lda, b, ldb, 0, c, s.n) }
		call()
		recs = append(recs, Record{Kind: "gemm", Name: s.name + " [" + kernel + "]", Ms: best(reps, call), FLOPs: 2 * float64(s.m) * float64(s.n) * float64(s.k)})
	}
	return recs
}

func randSlice(rng *rand.Rand, n int) []float32 {
	s := make([]float32, n)
	for i := range s {
		s[i] = float32(2*rng.Float64() - 1)
	}
	return s
}
