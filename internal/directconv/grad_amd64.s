#include "textflag.h"

// func gradRows8AVX512(acc, dy *float32, dyv2, dyplane, nout int, x *float32, xv2, xrow, xplane, c, k, mask1, mask2 int)
//
// The weight-gradient twin of rows8AVX512: for each tap, acc[tap][o][lane]
// += dy[v][o][lane] · x[v][tap + lane] over the two vectors v. The output
// gradient of up to eight channels stays in Z0..Z7 (vector 1) and Z8..Z15
// (vector 2) for the whole call, zero for channels ≥ nout and masked-off
// lanes; per tap, the input under the two vectors goes to Z16, Z17 and the
// eight channels' partial sums are loaded, given two FMAs each and stored
// (Z18..Z25). The partial sums live in memory (L1: 8·16 floats a tap):
// there are too many taps to hold them in registers.
TEXT ·gradRows8AVX512(SB), NOSPLIT, $0-104
	MOVQ  mask1+88(FP), AX
	KMOVW AX, K1
	MOVQ  mask2+96(FP), AX
	KMOVW AX, K2
	MOVQ  dy+8(FP), SI
	MOVQ  dyv2+16(FP), R8
	MOVQ  dyplane+24(FP), R9
	MOVQ  nout+32(FP), CX
	VPXORD Z0, Z0, Z0
	VPXORD Z8, Z8, Z8
	VPXORD Z1, Z1, Z1
	VPXORD Z9, Z9, Z9
	VPXORD Z2, Z2, Z2
	VPXORD Z10, Z10, Z10
	VPXORD Z3, Z3, Z3
	VPXORD Z11, Z11, Z11
	VPXORD Z4, Z4, Z4
	VPXORD Z12, Z12, Z12
	VPXORD Z5, Z5, Z5
	VPXORD Z13, Z13, Z13
	VPXORD Z6, Z6, Z6
	VPXORD Z14, Z14, Z14
	VPXORD Z7, Z7, Z7
	VPXORD Z15, Z15, Z15
	VMOVUPS.Z (SI), K1, Z0
	VMOVUPS.Z (SI)(R8*1), K2, Z8
	ADDQ R9, SI
	DECQ CX
	JZ   loaded
	VMOVUPS.Z (SI), K1, Z1
	VMOVUPS.Z (SI)(R8*1), K2, Z9
	ADDQ R9, SI
	DECQ CX
	JZ   loaded
	VMOVUPS.Z (SI), K1, Z2
	VMOVUPS.Z (SI)(R8*1), K2, Z10
	ADDQ R9, SI
	DECQ CX
	JZ   loaded
	VMOVUPS.Z (SI), K1, Z3
	VMOVUPS.Z (SI)(R8*1), K2, Z11
	ADDQ R9, SI
	DECQ CX
	JZ   loaded
	VMOVUPS.Z (SI), K1, Z4
	VMOVUPS.Z (SI)(R8*1), K2, Z12
	ADDQ R9, SI
	DECQ CX
	JZ   loaded
	VMOVUPS.Z (SI), K1, Z5
	VMOVUPS.Z (SI)(R8*1), K2, Z13
	ADDQ R9, SI
	DECQ CX
	JZ   loaded
	VMOVUPS.Z (SI), K1, Z6
	VMOVUPS.Z (SI)(R8*1), K2, Z14
	ADDQ R9, SI
	DECQ CX
	JZ   loaded
	VMOVUPS.Z (SI), K1, Z7
	VMOVUPS.Z (SI)(R8*1), K2, Z15

loaded:
	MOVQ acc+0(FP), BX
	MOVQ x+40(FP), SI
	MOVQ xv2+48(FP), R8
	MOVQ xrow+56(FP), R9
	MOVQ xplane+64(FP), R10
	MOVQ c+72(FP), R11
	MOVQ k+80(FP), R12

channel:
	MOVQ SI, R13
	MOVQ R12, AX

krow:
	MOVQ R13, DX
	MOVQ R12, CX

tap:
	VMOVUPS.Z (DX), K1, Z16
	VMOVUPS.Z (DX)(R8*1), K2, Z17
	VMOVUPS     0(BX), Z18
	VMOVUPS     64(BX), Z19
	VMOVUPS     128(BX), Z20
	VMOVUPS     192(BX), Z21
	VMOVUPS     256(BX), Z22
	VMOVUPS     320(BX), Z23
	VMOVUPS     384(BX), Z24
	VMOVUPS     448(BX), Z25
	VFMADD231PS Z16, Z0, Z18
	VFMADD231PS Z16, Z1, Z19
	VFMADD231PS Z16, Z2, Z20
	VFMADD231PS Z16, Z3, Z21
	VFMADD231PS Z16, Z4, Z22
	VFMADD231PS Z16, Z5, Z23
	VFMADD231PS Z16, Z6, Z24
	VFMADD231PS Z16, Z7, Z25
	VFMADD231PS Z17, Z8, Z18
	VFMADD231PS Z17, Z9, Z19
	VFMADD231PS Z17, Z10, Z20
	VFMADD231PS Z17, Z11, Z21
	VFMADD231PS Z17, Z12, Z22
	VFMADD231PS Z17, Z13, Z23
	VFMADD231PS Z17, Z14, Z24
	VFMADD231PS Z17, Z15, Z25
	VMOVUPS     Z18, 0(BX)
	VMOVUPS     Z19, 64(BX)
	VMOVUPS     Z20, 128(BX)
	VMOVUPS     Z21, 192(BX)
	VMOVUPS     Z22, 256(BX)
	VMOVUPS     Z23, 320(BX)
	VMOVUPS     Z24, 384(BX)
	VMOVUPS     Z25, 448(BX)
	ADDQ $512, BX
	ADDQ $4, DX
	DECQ CX
	JNZ  tap
	ADDQ R9, R13
	DECQ AX
	JNZ  krow
	ADDQ R10, SI
	DECQ R11
	JNZ  channel
	VZEROUPPER
	RET
