#include "textflag.h"

// The float32 Sum kernel of the ring's reduce-scatter on amd64 with AVX2 (haveF16C):
// 32 values per iteration in four independent YMM additions. Each element is one IEEE
// single addition dst[i] + src[i], exactly what the portable loop computes (no
// reassociation), so the results are bit-identical; sum_amd64_test.go checks that.

// func sumF32X32(dst, src *float32, n int)
// dst[i] += src[i] for i < n, n a multiple of 32.
TEXT ·sumF32X32(SB), NOSPLIT, $0-24
	MOVQ dst+0(FP), DI
	MOVQ src+8(FP), SI
	MOVQ n+16(FP), CX
	SHRQ $5, CX
	JZ   done
loop:
	VMOVUPS (SI), Y0
	VMOVUPS 32(SI), Y1
	VMOVUPS 64(SI), Y2
	VMOVUPS 96(SI), Y3
	VADDPS  (DI), Y0, Y0
	VADDPS  32(DI), Y1, Y1
	VADDPS  64(DI), Y2, Y2
	VADDPS  96(DI), Y3, Y3
	VMOVUPS Y0, (DI)
	VMOVUPS Y1, 32(DI)
	VMOVUPS Y2, 64(DI)
	VMOVUPS Y3, 96(DI)
	ADDQ    $128, SI
	ADDQ    $128, DI
	DECQ    CX
	JNZ     loop
done:
	VZEROUPPER
	RET
