package sgemm

import (
	"math"
	"math/rand/v2"
	"testing"

	"gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/blas/gonum"
)

// TestImplementationMatchesGonum compares Implementation.Sgemm with gonum's
// on every transpose combination.
func TestImplementationMatchesGonum(t *testing.T) {
	rng := rand.New(rand.NewPCG(13, 14))
	m, n, k := 19, 23, 29
	for _, tA := range []blas.Transpose{blas.NoTrans, blas.Trans, blas.ConjTrans} {
		for _, tB := range []blas.Transpose{blas.NoTrans, blas.Trans} {
			lda, ldb := k+1, n+2
			if tA != blas.NoTrans {
				lda = m + 1
			}
			if tB != blas.NoTrans {
				ldb = k + 2
			}
			a, b := randSlice(rng, 40*lda), randSlice(rng, 40*ldb)
			c1 := randSlice(rng, m*(n+3))
			c2 := append([]float32(nil), c1...)
			Implementation{}.Sgemm(tA, tB, m, n, k, 0.75, a, lda, b, ldb, -0.5, c1, n+3)
			gonum.Implementation{}.Sgemm(tA, tB, m, n, k, 0.75, a, lda, b, ldb, -0.5, c2, n+3)
			for i := range c1 {
				if math.Abs(float64(c1[i]-c2[i])) > 1e-4 {
					t.Fatalf("tA=%c tB=%c: c[%d] = %v, gonum %v", tA, tB, i, c1[i], c2[i])
				}
			}
		}
	}
}
