#include "textflag.h"

// The 6×32 single-precision micro-kernel for AVX-512F: the narrow partner of
// the 8×32 one (kernel512_amd64.s), for products whose row count fits six-row
// tiles better (LeNet's convolutions have 6 output channels).
//
// Accumulators: Z8..Z19, two 16-wide registers per row of the 6×32 tile
// (row r in Z(8+2r), Z(9+2r)). Per k step: load the 32 packed B values into
// Z0, Z1, broadcast the six packed A values into Z2..Z7 (distinct registers,
// so no broadcast waits for an FMA to free its source) and issue twelve
// FMAs: twelve independent chains cover the FMA latency of two 512-bit pipes
// (4 cycles × 2 needs ≥ 8). The k loop is unrolled four times; B is read 64
// bytes at a time, one cache line per load.

// STEP(ao, bo): one k step reading A at ao(SI) and B at bo(DI).
#define STEP(ao, bo) \
	VMOVUPS      bo(DI), Z0        \
	VMOVUPS      bo+64(DI), Z1     \
	VBROADCASTSS ao(SI), Z2        \
	VBROADCASTSS ao+4(SI), Z3      \
	VBROADCASTSS ao+8(SI), Z4      \
	VFMADD231PS  Z0, Z2, Z8        \
	VFMADD231PS  Z1, Z2, Z9        \
	VBROADCASTSS ao+12(SI), Z5     \
	VFMADD231PS  Z0, Z3, Z10       \
	VFMADD231PS  Z1, Z3, Z11       \
	VBROADCASTSS ao+16(SI), Z6     \
	VFMADD231PS  Z0, Z4, Z12       \
	VFMADD231PS  Z1, Z4, Z13       \
	VBROADCASTSS ao+20(SI), Z7     \
	VFMADD231PS  Z0, Z5, Z14       \
	VFMADD231PS  Z1, Z5, Z15       \
	VFMADD231PS  Z0, Z6, Z16       \
	VFMADD231PS  Z1, Z6, Z17       \
	VFMADD231PS  Z0, Z7, Z18       \
	VFMADD231PS  Z1, Z7, Z19

// STORE(lo, hi): scale one row's accumulators by alpha (Z2), add beta (Z3)
// times C when beta ≠ 0 (BX ≠ 0), store at (DX), advance DX by ldc (R8).
#define STORE(lo, hi) \
	VMULPS      lo, Z2, lo   \
	VMULPS      hi, Z2, hi   \
	TESTQ       BX, BX       \
	JZ          3(PC)        \
	VFMADD231PS (DX), Z3, lo \
	VFMADD231PS 64(DX), Z3, hi \
	VMOVUPS     lo, (DX)     \
	VMOVUPS     hi, 64(DX)   \
	ADDQ        R8, DX

// func kernel6x32AVX512(kc int, a, b, c *float32, ldc int, alpha, beta float32)
// c[i*ldc+j] = alpha·Σ_p a[p*6+i]·b[p*32+j] + beta·c[i*ldc+j], i<6, j<32;
// c is not read when beta is ±0.
TEXT ·kernel6x32AVX512(SB), NOSPLIT, $0-48
	MOVQ kc+0(FP), CX
	MOVQ a+8(FP), SI
	MOVQ b+16(FP), DI
	MOVQ c+24(FP), DX
	MOVQ ldc+32(FP), R8
	SHLQ $2, R8

	VPXORD Z8, Z8, Z8
	VPXORD Z9, Z9, Z9
	VPXORD Z10, Z10, Z10
	VPXORD Z11, Z11, Z11
	VPXORD Z12, Z12, Z12
	VPXORD Z13, Z13, Z13
	VPXORD Z14, Z14, Z14
	VPXORD Z15, Z15, Z15
	VPXORD Z16, Z16, Z16
	VPXORD Z17, Z17, Z17
	VPXORD Z18, Z18, Z18
	VPXORD Z19, Z19, Z19

	MOVQ CX, R9
	SHRQ $2, R9
	JZ   tail

loop4:
	PREFETCHT0 512(DI)
	STEP(0, 0)
	STEP(24, 128)
	PREFETCHT0 576(DI)
	STEP(48, 256)
	STEP(72, 384)
	ADDQ $96, SI
	ADDQ $512, DI
	DECQ R9
	JNZ  loop4

tail:
	ANDQ $3, CX
	JZ   store

loop1:
	STEP(0, 0)
	ADDQ $24, SI
	ADDQ $128, DI
	DECQ CX
	JNZ  loop1

store:
	VBROADCASTSS alpha+40(FP), Z2
	VBROADCASTSS beta+44(FP), Z3
	MOVL         beta+44(FP), BX
	ANDL         $0x7fffffff, BX
	STORE(Z8, Z9)
	STORE(Z10, Z11)
	STORE(Z12, Z13)
	STORE(Z14, Z15)
	STORE(Z16, Z17)
	STORE(Z18, Z19)
	VZEROUPPER
	RET
