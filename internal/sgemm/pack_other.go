//go:build !amd64

package sgemm

func packRows32(dst, b []float32, ldb, kb, slivers int) {
	packRows32Go(dst, b, ldb, kb, slivers)
}
