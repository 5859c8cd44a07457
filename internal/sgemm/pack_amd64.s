#include "textflag.h"

// func packRows32AVX512(dst, src *float32, ldb, kb, slivers int)
// For p < kb and s < slivers: dst[(s·kb+p)·32 ..+32] = src[p·ldb+s·32 ..+32]:
// kb rows of B, each read left to right once, scattered into 32-wide
// slivers with two 64-byte loads and stores per piece (Go compiles a
// [32]float32 assignment to a memmove call).
TEXT ·packRows32AVX512(SB), NOSPLIT, $0-40
	MOVQ dst+0(FP), DI
	MOVQ src+8(FP), SI
	MOVQ ldb+16(FP), R8
	SHLQ $2, R8
	MOVQ kb+24(FP), CX
	MOVQ slivers+32(FP), R9
	TESTQ CX, CX
	JLE  done
	TESTQ R9, R9
	JLE  done
	MOVQ CX, R10
	SHLQ $7, R10 // bytes from one sliver to the next: kb·32·4

row:
	MOVQ SI, AX
	MOVQ DI, BX
	MOVQ R9, DX

piece:
	VMOVUPS (AX), Z0
	VMOVUPS 64(AX), Z1
	VMOVUPS Z0, (BX)
	VMOVUPS Z1, 64(BX)
	ADDQ    $128, AX
	ADDQ    R10, BX
	DECQ    DX
	JNZ     piece
	ADDQ    R8, SI
	ADDQ    $128, DI
	DECQ    CX
	JNZ     row
	VZEROUPPER

done:
	RET
