#include "textflag.h"

// 2×2 max pooling with stride 2, sixteen outputs at a time. A row pair of
// x gives 32 inputs per row (Z0, Z1 top, Z2, Z3 bottom); VPERMI2PS with the
// even and odd index vectors (idx[0:16], idx[16:32] in Z28, Z29) splits
// each row into the windows' left (E) and right (O) columns. VMAXPS a, b
// returns b where b > a, else a: the > chain of the Go loop (max2), NaNs
// included. The last 1-15 outputs of a row run under masks: K1, K2 for the
// inputs (m0, m1), K3 for the outputs (mo; 0 when the row has no tail).
// Rows of x are w floats (R8 bytes), rows of y ow.

// func maxPool2x2AVX512(y, x *float32, w, ow, rows, nfull, m0, m1, mo int, idx *[64]int32)
TEXT ·maxPool2x2AVX512(SB), NOSPLIT, $0-80
	MOVQ      y+0(FP), DI
	MOVQ      x+8(FP), SI
	MOVQ      w+16(FP), R8
	SHLQ      $2, R8
	MOVQ      ow+24(FP), R9
	SHLQ      $2, R9
	MOVQ      rows+32(FP), R10
	MOVQ      nfull+40(FP), R11
	MOVQ      m0+48(FP), AX
	KMOVW     AX, K1
	MOVQ      m1+56(FP), AX
	KMOVW     AX, K2
	MOVQ      mo+64(FP), R12
	KMOVW     R12, K3
	MOVQ      idx+72(FP), AX
	VMOVDQU32 (AX), Z28
	VMOVDQU32 64(AX), Z29
	VMOVDQU32 128(AX), Z30
	VMOVDQU32 192(AX), Z31
	TESTQ     R10, R10
	JZ        fdone

frow:
	MOVQ  SI, R13
	MOVQ  DI, BX
	MOVQ  R11, CX
	TESTQ CX, CX
	JZ    ftail

fgroup:
	VMOVUPS (R13), Z0
	VMOVUPS 64(R13), Z1
	VMOVUPS (R13)(R8*1), Z2
	VMOVUPS 64(R13)(R8*1), Z3
	VMOVAPS Z28, Z4
	VPERMI2PS Z1, Z0, Z4
	VMOVAPS Z29, Z5
	VPERMI2PS Z1, Z0, Z5
	VMOVAPS Z28, Z6
	VPERMI2PS Z3, Z2, Z6
	VMOVAPS Z29, Z7
	VPERMI2PS Z3, Z2, Z7
	VMAXPS Z4, Z5, Z8
	VMAXPS Z6, Z7, Z9
	VMAXPS  Z8, Z9, Z10
	VMOVUPS Z10, (BX)
	ADDQ    $128, R13
	ADDQ    $64, BX
	DECQ    CX
	JNZ     fgroup

ftail:
	TESTQ R12, R12
	JZ    fnext
	VMOVUPS.Z (R13), K1, Z0
	VMOVUPS.Z 64(R13), K2, Z1
	VMOVUPS.Z (R13)(R8*1), K1, Z2
	VMOVUPS.Z 64(R13)(R8*1), K2, Z3
	VMOVAPS Z28, Z4
	VPERMI2PS Z1, Z0, Z4
	VMOVAPS Z29, Z5
	VPERMI2PS Z1, Z0, Z5
	VMOVAPS Z28, Z6
	VPERMI2PS Z3, Z2, Z6
	VMOVAPS Z29, Z7
	VPERMI2PS Z3, Z2, Z7
	VMAXPS Z4, Z5, Z8
	VMAXPS Z6, Z7, Z9
	VMAXPS  Z8, Z9, Z10
	VMOVUPS Z10, K3, (BX)

fnext:
	LEAQ (SI)(R8*2), SI
	ADDQ R9, DI
	DECQ R10
	JNZ  frow

fdone:
	VZEROUPPER
	RET

// func maxPool2x2GradAVX512(dx, dy, x *float32, w, ow, rows, nfull, m0, m1, mo int, idx *[64]int32)
//
// The gradient: K4 = O0 > E0, K5 = O1 > E1, K6 = max(bottom) > max(top),
// the comparisons of the Go loop; each window's dy goes to the one of its
// four inputs they select (zero to the other three) and the two rows are
// interleaved back (idx[32:48], idx[48:64] in Z30, Z31) and added into dx.
TEXT ·maxPool2x2GradAVX512(SB), NOSPLIT, $0-88
	MOVQ      dx+0(FP), DI
	MOVQ      x+16(FP), SI
	MOVQ      w+24(FP), R8
	SHLQ      $2, R8
	MOVQ      ow+32(FP), R9
	SHLQ      $2, R9
	MOVQ      rows+40(FP), R10
	MOVQ      nfull+48(FP), R11
	MOVQ      m0+56(FP), AX
	KMOVW     AX, K1
	MOVQ      m1+64(FP), AX
	KMOVW     AX, K2
	MOVQ      mo+72(FP), R12
	KMOVW     R12, K3
	MOVQ      idx+80(FP), AX
	VMOVDQU32 (AX), Z28
	VMOVDQU32 64(AX), Z29
	VMOVDQU32 128(AX), Z30
	VMOVDQU32 192(AX), Z31
	TESTQ     R10, R10
	JZ        gdone
	MOVQ      dy+8(FP), AX

grow:
	MOVQ  SI, R13
	MOVQ  DI, DX
	MOVQ  AX, BX
	MOVQ  R11, CX
	TESTQ CX, CX
	JZ    gtail

ggroup:
	VMOVUPS (R13), Z0
	VMOVUPS 64(R13), Z1
	VMOVUPS (R13)(R8*1), Z2
	VMOVUPS 64(R13)(R8*1), Z3
	VMOVAPS Z28, Z4
	VPERMI2PS Z1, Z0, Z4
	VMOVAPS Z29, Z5
	VPERMI2PS Z1, Z0, Z5
	VMOVAPS Z28, Z6
	VPERMI2PS Z3, Z2, Z6
	VMOVAPS Z29, Z7
	VPERMI2PS Z3, Z2, Z7
	VMAXPS Z4, Z5, Z8
	VMAXPS Z6, Z7, Z9
	VCMPPS $0x1e, Z4, Z5, K4
	VCMPPS $0x1e, Z6, Z7, K5
	VCMPPS $0x1e, Z8, Z9, K6
	VMOVUPS (BX), Z11
	KORW K4, K6, K7
	KNOTW K7, K7
	VMOVAPS.Z Z11, K7, Z12
	KANDNW K4, K6, K7
	VMOVAPS.Z Z11, K7, Z13
	KANDNW K6, K5, K7
	VMOVAPS.Z Z11, K7, Z14
	KANDW K5, K6, K7
	VMOVAPS.Z Z11, K7, Z15
	VMOVAPS Z30, Z16
	VPERMI2PS Z13, Z12, Z16
	VMOVAPS Z31, Z17
	VPERMI2PS Z13, Z12, Z17
	VMOVAPS Z30, Z18
	VPERMI2PS Z15, Z14, Z18
	VMOVAPS Z31, Z19
	VPERMI2PS Z15, Z14, Z19
	VADDPS (DX), Z16, Z16
	VMOVUPS Z16, (DX)
	VADDPS 64(DX), Z17, Z17
	VMOVUPS Z17, 64(DX)
	VADDPS (DX)(R8*1), Z18, Z18
	VMOVUPS Z18, (DX)(R8*1)
	VADDPS 64(DX)(R8*1), Z19, Z19
	VMOVUPS Z19, 64(DX)(R8*1)
	ADDQ    $128, R13
	ADDQ    $128, DX
	ADDQ    $64, BX
	DECQ    CX
	JNZ     ggroup

gtail:
	TESTQ R12, R12
	JZ    gnext
	VMOVUPS.Z (R13), K1, Z0
	VMOVUPS.Z 64(R13), K2, Z1
	VMOVUPS.Z (R13)(R8*1), K1, Z2
	VMOVUPS.Z 64(R13)(R8*1), K2, Z3
	VMOVAPS Z28, Z4
	VPERMI2PS Z1, Z0, Z4
	VMOVAPS Z29, Z5
	VPERMI2PS Z1, Z0, Z5
	VMOVAPS Z28, Z6
	VPERMI2PS Z3, Z2, Z6
	VMOVAPS Z29, Z7
	VPERMI2PS Z3, Z2, Z7
	VMAXPS Z4, Z5, Z8
	VMAXPS Z6, Z7, Z9
	VCMPPS $0x1e, Z4, Z5, K4
	VCMPPS $0x1e, Z6, Z7, K5
	VCMPPS $0x1e, Z8, Z9, K6
	VMOVUPS.Z (BX), K3, Z11
	KORW K4, K6, K7
	KNOTW K7, K7
	VMOVAPS.Z Z11, K7, Z12
	KANDNW K4, K6, K7
	VMOVAPS.Z Z11, K7, Z13
	KANDNW K6, K5, K7
	VMOVAPS.Z Z11, K7, Z14
	KANDW K5, K6, K7
	VMOVAPS.Z Z11, K7, Z15
	VMOVAPS Z30, Z16
	VPERMI2PS Z13, Z12, Z16
	VMOVAPS Z31, Z17
	VPERMI2PS Z13, Z12, Z17
	VMOVAPS Z30, Z18
	VPERMI2PS Z15, Z14, Z18
	VMOVAPS Z31, Z19
	VPERMI2PS Z15, Z14, Z19
	VMOVUPS.Z (DX), K1, Z20
	VADDPS Z20, Z16, Z16
	VMOVUPS Z16, K1, (DX)
	VMOVUPS.Z 64(DX), K2, Z20
	VADDPS Z20, Z17, Z17
	VMOVUPS Z17, K2, 64(DX)
	VMOVUPS.Z (DX)(R8*1), K1, Z20
	VADDPS Z20, Z18, Z18
	VMOVUPS Z18, K1, (DX)(R8*1)
	VMOVUPS.Z 64(DX)(R8*1), K2, Z20
	VADDPS Z20, Z19, Z19
	VMOVUPS Z19, K2, 64(DX)(R8*1)

gnext:
	LEAQ (SI)(R8*2), SI
	LEAQ (DI)(R8*2), DI
	ADDQ R9, AX
	DECQ R10
	JNZ  grow

gdone:
	VZEROUPPER
	RET
