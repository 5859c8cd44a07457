#include "textflag.h"

// func reluAVX512(y, x *float32, n int)
// y = VMAXPS(x, +0): the maximum returns its second operand (+0) unless
// x > +0, so NaN and −0 give +0, as reluGo. 64 floats per iteration, then
// 16 at a time, then the last 0-15 under a mask.
TEXT ·reluAVX512(SB), NOSPLIT, $0-24
	MOVQ   y+0(FP), DI
	MOVQ   x+8(FP), SI
	MOVQ   n+16(FP), CX
	VPXORD Z31, Z31, Z31

loop64:
	CMPQ    CX, $64
	JLT     loop16
	VMOVUPS (SI), Z0
	VMOVUPS 64(SI), Z1
	VMOVUPS 128(SI), Z2
	VMOVUPS 192(SI), Z3
	VMAXPS  Z31, Z0, Z0
	VMAXPS  Z31, Z1, Z1
	VMAXPS  Z31, Z2, Z2
	VMAXPS  Z31, Z3, Z3
	VMOVUPS Z0, (DI)
	VMOVUPS Z1, 64(DI)
	VMOVUPS Z2, 128(DI)
	VMOVUPS Z3, 192(DI)
	ADDQ    $256, SI
	ADDQ    $256, DI
	SUBQ    $64, CX
	JMP     loop64

loop16:
	CMPQ    CX, $16
	JLT     tail
	VMOVUPS (SI), Z0
	VMAXPS  Z31, Z0, Z0
	VMOVUPS Z0, (DI)
	ADDQ    $64, SI
	ADDQ    $64, DI
	SUBQ    $16, CX
	JMP     loop16

tail:
	TESTQ     CX, CX
	JZ        done
	MOVL      $1, AX
	SHLL      CX, AX
	DECL      AX
	KMOVW     AX, K1
	VMOVUPS.Z (SI), K1, Z0
	VMAXPS    Z31, Z0, Z0
	VMOVUPS   Z0, K1, (DI)

done:
	VZEROUPPER
	RET

// func reluGradAVX512(d, dy, x *float32, n int)
// d = dy where x ≥ 0 (VCMPPS GE_OQ: false for NaN, true for −0), else +0.
TEXT ·reluGradAVX512(SB), NOSPLIT, $0-32
	MOVQ   d+0(FP), DI
	MOVQ   dy+8(FP), DX
	MOVQ   x+16(FP), SI
	MOVQ   n+24(FP), CX
	VPXORD Z31, Z31, Z31

gloop32:
	CMPQ      CX, $32
	JLT       gloop16
	VMOVUPS   (SI), Z0
	VMOVUPS   64(SI), Z1
	VCMPPS    $0x1d, Z31, Z0, K1
	VCMPPS    $0x1d, Z31, Z1, K2
	VMOVUPS.Z (DX), K1, Z2
	VMOVUPS.Z 64(DX), K2, Z3
	VMOVUPS   Z2, (DI)
	VMOVUPS   Z3, 64(DI)
	ADDQ      $128, SI
	ADDQ      $128, DX
	ADDQ      $128, DI
	SUBQ      $32, CX
	JMP       gloop32

gloop16:
	CMPQ      CX, $16
	JLT       gtail
	VMOVUPS   (SI), Z0
	VCMPPS    $0x1d, Z31, Z0, K1
	VMOVUPS.Z (DX), K1, Z2
	VMOVUPS   Z2, (DI)
	ADDQ      $64, SI
	ADDQ      $64, DX
	ADDQ      $64, DI
	SUBQ      $16, CX
	JMP       gloop16

gtail:
	TESTQ     CX, CX
	JZ        gdone
	MOVL      $1, AX
	SHLL      CX, AX
	DECL      AX
	KMOVW     AX, K3
	VMOVUPS.Z (SI), K3, Z0
	VCMPPS    $0x1d, Z31, Z0, K1
	KANDW     K1, K3, K1
	VMOVUPS.Z (DX), K1, Z2
	VMOVUPS   Z2, K3, (DI)

gdone:
	VZEROUPPER
	RET
