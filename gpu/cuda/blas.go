package cuda

import "math"

// cublasOperation_t values.
const (
	cublasOpN = 0
	cublasOpT = 1
)

func op(trans bool) int32 {
	if trans {
		return cublasOpT
	}
	return cublasOpN
}

// gemmArgs is the shape part of a GEMM call, checked in Go so that a bad
// call names its argument instead of returning CUBLAS_STATUS_INVALID_VALUE.
type gemmArgs struct {
	call           string
	transA, transB bool
	m, n, k        int
	a, b, c        DevicePtr
	lda, ldb, ldc  int
}

// check validates a column-major GEMM: op(A) is m×k, op(B) k×n, C m×n; A
// is stored m×k (k×m when transposed) with leading dimension lda ≥ its row
// count, likewise B and C.
func (g gemmArgs) check() error {
	for _, d := range []struct {
		name string
		v    int
	}{{"m", g.m}, {"n", g.n}, {"k", g.k}} {
		if d.v <= 0 {
			return argError(g.call, "%s = %d, want > 0", d.name, d.v)
		}
		if d.v > math.MaxInt32 {
			return argError(g.call, "%s = %d exceeds int32", d.name, d.v)
		}
	}
	rowsA, rowsB := g.m, g.k
	if g.transA {
		rowsA = g.k
	}
	if g.transB {
		rowsB = g.n
	}
	for _, l := range []struct {
		name      string
		v, rows   int
		ptr       DevicePtr
		matrix    string
		transpose bool
	}{{"lda", g.lda, rowsA, g.a, "A", g.transA}, {"ldb", g.ldb, rowsB, g.b, "B", g.transB}, {"ldc", g.ldc, g.m, g.c, "C", false}} {
		if l.ptr == 0 {
			return argError(g.call, "nil %s", l.matrix)
		}
		if l.v < max(1, l.rows) {
			return argError(g.call, "%s = %d < %d, the rows of %s as stored (column-major, trans=%v)", l.name, l.v, max(1, l.rows), l.matrix, l.transpose)
		}
		if l.v > math.MaxInt32 {
			return argError(g.call, "%s = %d exceeds int32", l.name, l.v)
		}
	}
	return nil
}

// Sgemm computes C = alpha·op(A)·op(B) + beta·C in FP32 (cublasSgemm_v2),
// column-major, op(X) = Xᵀ when transX. A row-major caller computes
// C = A·B as Sgemm(false, false, n, m, k, 1, B, n, A, k, 0, C, n).
func (c *Context) Sgemm(transA, transB bool, m, n, k int, alpha float32, A DevicePtr, lda int, B DevicePtr, ldb int, beta float32, C DevicePtr, ldc int) error {
	g := gemmArgs{"Sgemm", transA, transB, m, n, k, A, B, C, lda, ldb, ldc}
	if err := g.check(); err != nil {
		return err
	}
	return c.do(func(*driverAPI) error {
		st := c.drv.blas.cublasSgemm(c.blas, op(transA), op(transB), int32(m), int32(n), int32(k),
			&alpha, A, int32(lda), B, int32(ldb), &beta, C, int32(ldc))
		return cublasError("cublasSgemm_v2", st)
	})
}

// SgemmStridedBatched runs batch independent Sgemms, matrix i of A at
// A + i·strideA floats (likewise B and C), in one call
// (cublasSgemmStridedBatched). A stride of 0 shares one matrix across the
// batch (e.g. a convolution's weights); C's must not make outputs overlap.
func (c *Context) SgemmStridedBatched(transA, transB bool, m, n, k int, alpha float32, A DevicePtr, lda int, strideA int64, B DevicePtr, ldb int, strideB int64, beta float32, C DevicePtr, ldc int, strideC int64, batch int) error {
	const call = "SgemmStridedBatched"
	g := gemmArgs{call, transA, transB, m, n, k, A, B, C, lda, ldb, ldc}
	if err := g.check(); err != nil {
		return err
	}
	if batch <= 0 || batch > math.MaxInt32 {
		return argError(call, "batch = %d, want 1..MaxInt32", batch)
	}
	for _, s := range []struct {
		name string
		v    int64
	}{{"strideA", strideA}, {"strideB", strideB}, {"strideC", strideC}} {
		if s.v < 0 {
			return argError(call, "%s = %d is negative", s.name, s.v)
		}
	}
	if batch > 1 && strideC < int64(ldc)*int64(n) {
		return argError(call, "strideC = %d < ldc·n = %d: outputs of the batch would overlap", strideC, int64(ldc)*int64(n))
	}
	return c.do(func(*driverAPI) error {
		st := c.drv.blas.cublasSgemmStridedBatched(c.blas, op(transA), op(transB), int32(m), int32(n), int32(k),
			&alpha, A, int32(lda), strideA, B, int32(ldb), strideB, &beta, C, int32(ldc), strideC, int32(batch))
		return cublasError("cublasSgemmStridedBatched", st)
	})
}
