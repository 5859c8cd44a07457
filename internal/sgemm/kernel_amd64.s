#include "textflag.h"

// The 6×16 single-precision micro-kernel for AVX2 + FMA.
//
// Accumulators: Y4..Y15, two 8-wide registers per row of the 6×16 tile
// (row r in Y(4+2r), Y(5+2r)). Per k step: load the 16 packed B values into
// Y0, Y1, then for each of the 6 rows broadcast its packed A value (Y2 or Y3,
// alternating so consecutive broadcasts are independent) and issue two FMAs:
// 12 independent FMAs per step hide the FMA latency (4 cycles × 2 ports needs
// ≥ 8 chains). The k loop is unrolled four times.

// STEP(ao, bo): one k step reading A at ao(SI) and B at bo(DI).
#define STEP(ao, bo) \
	VMOVUPS      bo(DI), Y0        \
	VMOVUPS      bo+32(DI), Y1     \
	VBROADCASTSS ao(SI), Y2        \
	VFMADD231PS  Y0, Y2, Y4        \
	VFMADD231PS  Y1, Y2, Y5        \
	VBROADCASTSS ao+4(SI), Y3      \
	VFMADD231PS  Y0, Y3, Y6        \
	VFMADD231PS  Y1, Y3, Y7        \
	VBROADCASTSS ao+8(SI), Y2      \
	VFMADD231PS  Y0, Y2, Y8        \
	VFMADD231PS  Y1, Y2, Y9        \
	VBROADCASTSS ao+12(SI), Y3     \
	VFMADD231PS  Y0, Y3, Y10       \
	VFMADD231PS  Y1, Y3, Y11       \
	VBROADCASTSS ao+16(SI), Y2     \
	VFMADD231PS  Y0, Y2, Y12       \
	VFMADD231PS  Y1, Y2, Y13       \
	VBROADCASTSS ao+20(SI), Y3     \
	VFMADD231PS  Y0, Y3, Y14       \
	VFMADD231PS  Y1, Y3, Y15

// STORE(lo, hi): scale one row's accumulators by alpha (Y2), add beta (Y3)
// times C when beta ≠ 0 (BX ≠ 0), store at (DX), advance DX by ldc (R8).
#define STORE(lo, hi) \
	VMULPS      lo, Y2, lo   \
	VMULPS      hi, Y2, hi   \
	TESTQ       BX, BX       \
	JZ          3(PC)        \
	VFMADD231PS (DX), Y3, lo \
	VFMADD231PS 32(DX), Y3, hi \
	VMOVUPS     lo, (DX)     \
	VMOVUPS     hi, 32(DX)   \
	ADDQ        R8, DX

// func kernel6x16AVX2(kc int, a, b, c *float32, ldc int, alpha, beta float32)
// c[i*ldc+j] = alpha·Σ_p a[p*6+i]·b[p*16+j] + beta·c[i*ldc+j], i<6, j<16;
// c is not read when beta is ±0.
TEXT ·kernel6x16AVX2(SB), NOSPLIT, $0-48
	MOVQ kc+0(FP), CX
	MOVQ a+8(FP), SI
	MOVQ b+16(FP), DI
	MOVQ c+24(FP), DX
	MOVQ ldc+32(FP), R8
	SHLQ $2, R8

	VXORPS Y4, Y4, Y4
	VXORPS Y5, Y5, Y5
	VXORPS Y6, Y6, Y6
	VXORPS Y7, Y7, Y7
	VXORPS Y8, Y8, Y8
	VXORPS Y9, Y9, Y9
	VXORPS Y10, Y10, Y10
	VXORPS Y11, Y11, Y11
	VXORPS Y12, Y12, Y12
	VXORPS Y13, Y13, Y13
	VXORPS Y14, Y14, Y14
	VXORPS Y15, Y15, Y15

	MOVQ CX, R9
	SHRQ $2, R9
	JZ   tail

loop4:
	STEP(0, 0)
	STEP(24, 64)
	STEP(48, 128)
	STEP(72, 192)
	ADDQ $96, SI
	ADDQ $256, DI
	DECQ R9
	JNZ  loop4

tail:
	ANDQ $3, CX
	JZ   store

loop1:
	STEP(0, 0)
	ADDQ $24, SI
	ADDQ $64, DI
	DECQ CX
	JNZ  loop1

store:
	VBROADCASTSS alpha+40(FP), Y2
	VBROADCASTSS beta+44(FP), Y3
	MOVL         beta+44(FP), BX
	ANDL         $0x7fffffff, BX
	STORE(Y4, Y5)
	STORE(Y6, Y7)
	STORE(Y8, Y9)
	STORE(Y10, Y11)
	STORE(Y12, Y13)
	STORE(Y14, Y15)
	VZEROUPPER
	RET
