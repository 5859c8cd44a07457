// Package sgemm is a single-precision general matrix multiply for row-major
// matrices, C = alpha·op(A)·op(B) + beta·C, in the style of BLIS / GotoBLAS:
//
//   - a register-blocked micro-kernel computes an MR×NR (6×16) tile of C from
//     a packed MR-wide sliver of A and a packed NR-wide sliver of B. On amd64
//     with AVX2 and FMA it is Go assembly (kernel_amd64.s: twelve 8-wide
//     accumulators, two B vectors and one broadcast A value per row, so every
//     k step is 12 independent FMAs); elsewhere it is portable Go.
//   - packing copies a kc×nc block of op(B) and an mc×kc block of op(A) into
//     contiguous slivers in the order the kernel reads them, which also turns
//     the four transpose cases into one kernel: only the packing routines
//     know about lda/ldb and transposition.
//   - cache blocking: the packed B block (kc×nc) stays in the last-level
//     cache, the packed A block (mc×kc) in L2, and one B sliver (kc×NR) plus
//     one A sliver (kc×MR) in L1 while the kernel streams through them.
//
// The packing buffers come from a free list, so steady-state calls allocate
// nothing, and concurrent calls are safe. The multiply runs on the calling
// goroutine: ranks of a data-parallel job already occupy the cores.
//
// Gemm is the plain entry point; Implementation plugs it into gonum's
// blas.Float32 interface (and so into gorgonia.Use / tensor.Use), delegating
// every routine other than Sgemm to gonum's native implementation.
package sgemm
