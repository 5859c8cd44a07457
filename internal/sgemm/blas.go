package sgemm

import (
	"gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/blas/gonum"
)

// Implementation is gonum's native BLAS with Sgemm replaced by Gemm. It
// satisfies gorgonia's and tensor's BLAS interface (blas.Float32, Float64,
// Complex64, Complex128), so gorgonia.Use(sgemm.Implementation{}) routes
// every float32 matrix product of gorgonia through this package.
type Implementation struct{ gonum.Implementation }

var _ blas.Float32Level3 = Implementation{}

// Sgemm implements blas.Float32Level3 (row-major, as gonum): C = alpha·op(A)·op(B) + beta·C.
func (Implementation) Sgemm(tA, tB blas.Transpose, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	Gemm(isTrans(tA), isTrans(tB), m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
}

func isTrans(t blas.Transpose) bool {
	switch t {
	case blas.NoTrans:
		return false
	case blas.Trans, blas.ConjTrans:
		return true
	}
	panic("sgemm: bad transpose")
}
