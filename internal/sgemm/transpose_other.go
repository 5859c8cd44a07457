//go:build !amd64

package sgemm

const haveTranspose8 = false

func transpose8(d []float32, ldd int, b []float32, ldb int, blocks int) {
	transpose8Go(d, ldd, b, ldb, blocks)
}
