// Package sgemm is a single-precision general matrix multiply for row-major
// matrices, C = alpha·op(A)·op(B) + beta·C, in the style of BLIS / GotoBLAS:
//
//   - a register-blocked micro-kernel computes an mr×nr tile of C from a
//     packed mr-wide sliver of A and a packed nr-wide sliver of B: 8×32 in
//     AVX-512 assembly (kernel512_amd64.s: sixteen 16-wide accumulators),
//     6×16 in AVX2+FMA assembly (kernel_amd64.s: twelve 8-wide ones), so
//     every k step is 16 or 12 independent FMAs; elsewhere portable Go.
//   - packing copies a kc×nc block of op(B) and an mc×kc block of op(A) into
//     contiguous slivers in the order the kernel reads them, which also turns
//     the four transpose cases into one kernel: only the packing routines
//     know about lda/ldb and transposition.
//     Transposed B is packed through 8×8 register transposes
//     (transpose_amd64.s).
//   - cache blocking: the packed B block (kc×nc) stays in the last-level
//     cache, the packed A block (mc×kc) in L2, and one B sliver (kc×nr) plus
//     one A sliver (kc×mr) in L1 while the kernel streams through them.
//     While the kernels work on one block of B, the next block is
//     prefetched a few lines per tile: with few rows of A (a batch of 64)
//     there is little arithmetic per byte of B, and reading B from memory
//     in the packing step cost as much as the arithmetic.
//   - products with few rows of A (m ≤ 144, a batch) and a large B (8 MiB
//     or more: a wide layer's weights, read from memory on every call) take
//     their own loops: gemmFewRows packs B in 128-column chunks that stay
//     in L2, prefetching the next chunk while the kernels run; for C =
//     A·Bᵀ, gemmRowsA computes Cᵀ = B·Aᵀ with a kernel that reads eight of
//     B's rows in place (kernel512rowa_amd64.s), so the large operand is
//     never transposed into a buffer. Rows of B are packed into 32-wide
//     slivers by AVX-512 copies (pack_amd64.s).
//
// The packing buffers come from a free list, so steady-state calls allocate
// nothing, and concurrent calls are safe. The multiply runs on the calling
// goroutine: ranks of a data-parallel job already occupy the cores.
//
// Gemm is the plain entry point; Implementation plugs it into gonum's
// blas.Float32 interface (and so into gorgonia.Use / tensor.Use), delegating
// every routine other than Sgemm to gonum's native implementation.
package sgemm
