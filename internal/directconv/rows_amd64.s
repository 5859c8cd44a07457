#include "textflag.h"

// func rows8AVX512(y *float32, yv2, yplane, nout int, x *float32, xv2, xrow, xplane, c, k int, w, bias *float32, mask1, mask2 int)
//
// Accumulators: Z16..Z31, two 16-lane vectors (v1, v2) for each of eight
// output channels (channel o in Z(16+2o), Z(17+2o)), started at the bias.
// Per tap (input channel, kernel row, kernel column): load the input under
// v1 (at x) and under v2 (at x+xv2) with masks K1, K2 (masked-off lanes read
// nothing: no fault past a row's end), broadcast the tap's eight packed
// weights and issue sixteen independent FMAs (two 512-bit FMA pipes with a
// 4-cycle latency need at least eight in flight).
TEXT ·rows8AVX512(SB), NOSPLIT, $0-112
	MOVQ         bias+88(FP), AX
	VBROADCASTSS 0(AX), Z16
	VMOVAPS      Z16, Z17
	VBROADCASTSS 4(AX), Z18
	VMOVAPS      Z18, Z19
	VBROADCASTSS 8(AX), Z20
	VMOVAPS      Z20, Z21
	VBROADCASTSS 12(AX), Z22
	VMOVAPS      Z22, Z23
	VBROADCASTSS 16(AX), Z24
	VMOVAPS      Z24, Z25
	VBROADCASTSS 20(AX), Z26
	VMOVAPS      Z26, Z27
	VBROADCASTSS 24(AX), Z28
	VMOVAPS      Z28, Z29
	VBROADCASTSS 28(AX), Z30
	VMOVAPS      Z30, Z31
	MOVQ  mask1+96(FP), AX
	KMOVW AX, K1
	MOVQ  mask2+104(FP), AX
	KMOVW AX, K2
	MOVQ  x+32(FP), SI
	MOVQ  xv2+40(FP), R8
	MOVQ  xrow+48(FP), R9
	MOVQ  xplane+56(FP), R10
	MOVQ  c+64(FP), R11
	MOVQ  k+72(FP), R12
	MOVQ  w+80(FP), BX

channel:
	MOVQ SI, R13
	MOVQ R12, AX

krow:
	MOVQ R13, DX
	MOVQ R12, CX

tap:
	VMOVUPS.Z (DX), K1, Z0
	VMOVUPS.Z (DX)(R8*1), K2, Z1
	VBROADCASTSS 0(BX), Z2
	VBROADCASTSS 4(BX), Z3
	VFMADD231PS  Z0, Z2, Z16
	VFMADD231PS  Z1, Z2, Z17
	VBROADCASTSS 8(BX), Z4
	VFMADD231PS  Z0, Z3, Z18
	VFMADD231PS  Z1, Z3, Z19
	VBROADCASTSS 12(BX), Z5
	VFMADD231PS  Z0, Z4, Z20
	VFMADD231PS  Z1, Z4, Z21
	VBROADCASTSS 16(BX), Z6
	VFMADD231PS  Z0, Z5, Z22
	VFMADD231PS  Z1, Z5, Z23
	VBROADCASTSS 20(BX), Z7
	VFMADD231PS  Z0, Z6, Z24
	VFMADD231PS  Z1, Z6, Z25
	VBROADCASTSS 24(BX), Z8
	VFMADD231PS  Z0, Z7, Z26
	VFMADD231PS  Z1, Z7, Z27
	VBROADCASTSS 28(BX), Z9
	VFMADD231PS  Z0, Z8, Z28
	VFMADD231PS  Z1, Z8, Z29
	VFMADD231PS  Z0, Z9, Z30
	VFMADD231PS  Z1, Z9, Z31
	ADDQ $32, BX
	ADDQ $4, DX
	DECQ CX
	JNZ  tap
	ADDQ R9, R13
	DECQ AX
	JNZ  krow
	ADDQ R10, SI
	DECQ R11
	JNZ  channel

	MOVQ y+0(FP), DI
	MOVQ yv2+8(FP), R8
	MOVQ yplane+16(FP), R9
	MOVQ nout+24(FP), CX
	VMOVUPS Z16, K1, (DI)
	VMOVUPS Z17, K2, (DI)(R8*1)
	ADDQ    R9, DI
	DECQ    CX
	JZ      done
	VMOVUPS Z18, K1, (DI)
	VMOVUPS Z19, K2, (DI)(R8*1)
	ADDQ    R9, DI
	DECQ    CX
	JZ      done
	VMOVUPS Z20, K1, (DI)
	VMOVUPS Z21, K2, (DI)(R8*1)
	ADDQ    R9, DI
	DECQ    CX
	JZ      done
	VMOVUPS Z22, K1, (DI)
	VMOVUPS Z23, K2, (DI)(R8*1)
	ADDQ    R9, DI
	DECQ    CX
	JZ      done
	VMOVUPS Z24, K1, (DI)
	VMOVUPS Z25, K2, (DI)(R8*1)
	ADDQ    R9, DI
	DECQ    CX
	JZ      done
	VMOVUPS Z26, K1, (DI)
	VMOVUPS Z27, K2, (DI)(R8*1)
	ADDQ    R9, DI
	DECQ    CX
	JZ      done
	VMOVUPS Z28, K1, (DI)
	VMOVUPS Z29, K2, (DI)(R8*1)
	ADDQ    R9, DI
	DECQ    CX
	JZ      done
	VMOVUPS Z30, K1, (DI)
	VMOVUPS Z31, K2, (DI)(R8*1)

done:
	VZEROUPPER
	RET
