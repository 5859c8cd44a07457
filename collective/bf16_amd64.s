#include "textflag.h"

// Vector kernels for the bf16 wire format on amd64 CPUs with AVX2 (bf16_amd64.go; used
// where haveF16C says the AVX2 registers are usable). Rounding is done in the integer
// domain exactly as f32ToBF16 does it, so the results are bit-identical to the Go code
// (TestBF16KernelsMatchGo).

// func f32ToBF16x16(dst *uint16, src *float32, n int)
// dst[i] = f32ToBF16(src[i]) for i < n, n a multiple of 16: bits + 0x7fff + (bit 16), the
// upper half; NaN lanes keep their upper half with the quiet bit (0x40) set instead.
TEXT ·f32ToBF16x16(SB), NOSPLIT, $0-24
	MOVQ     dst+0(FP), DI
	MOVQ     src+8(FP), SI
	MOVQ     n+16(FP), CX
	VPCMPEQD Y15, Y15, Y15
	VPSRLD   $31, Y15, Y14   // 1 in every lane
	VPSRLD   $17, Y15, Y13   // 0x7fff
	VPSLLD   $6, Y14, Y12    // 0x40, the quiet bit of a bfloat16 NaN
	SHRQ     $4, CX
	JZ       done
loop:
	VMOVDQU   (SI), Y0
	VMOVDQU   32(SI), Y1
	VPSRLD    $16, Y0, Y2     // upper halves
	VPSRLD    $16, Y1, Y3
	VPAND     Y14, Y2, Y4     // their lowest bit: ties go to even
	VPAND     Y14, Y3, Y5
	VPADDD    Y13, Y4, Y4
	VPADDD    Y13, Y5, Y5
	VPADDD    Y0, Y4, Y4      // bits + 0x7fff + lsb
	VPADDD    Y1, Y5, Y5
	VPSRLD    $16, Y4, Y4
	VPSRLD    $16, Y5, Y5
	VPOR      Y12, Y2, Y2     // NaN: upper half, quieted
	VPOR      Y12, Y3, Y3
	VCMPPS    $3, Y0, Y0, Y6  // unordered: NaN lanes all ones
	VCMPPS    $3, Y1, Y1, Y7
	VPBLENDVB Y6, Y2, Y4, Y4
	VPBLENDVB Y7, Y3, Y5, Y5
	VPACKUSDW Y5, Y4, Y4      // 16 halves, 128-bit lanes interleaved: [0-3 8-11 4-7 12-15]
	VPERMQ    $0xd8, Y4, Y4   // in order
	VMOVDQU   Y4, (DI)
	ADDQ      $64, SI
	ADDQ      $32, DI
	DECQ      CX
	JNZ       loop
done:
	VZEROUPPER
	RET

// func bf16AddX8(dst *float32, src *uint16, n int)
// dst[i] += float32frombits(src[i] << 16) for i < n, n a multiple of 8.
TEXT ·bf16AddX8(SB), NOSPLIT, $0-24
	MOVQ dst+0(FP), DI
	MOVQ src+8(FP), SI
	MOVQ n+16(FP), CX
	SHRQ $3, CX
	JZ   done
loop:
	VPMOVZXWD (SI), Y0
	VPSLLD    $16, Y0, Y0
	VADDPS    (DI), Y0, Y0
	VMOVUPS   Y0, (DI)
	ADDQ      $16, SI
	ADDQ      $32, DI
	DECQ      CX
	JNZ       loop
done:
	VZEROUPPER
	RET

// func bf16CopyX8(dst *float32, src *uint16, n int)
// dst[i] = float32frombits(src[i] << 16) for i < n, n a multiple of 8.
TEXT ·bf16CopyX8(SB), NOSPLIT, $0-24
	MOVQ dst+0(FP), DI
	MOVQ src+8(FP), SI
	MOVQ n+16(FP), CX
	SHRQ $3, CX
	JZ   done
loop:
	VPMOVZXWD (SI), Y0
	VPSLLD    $16, Y0, Y0
	VMOVDQU   Y0, (DI)
	ADDQ      $16, SI
	ADDQ      $32, DI
	DECQ      CX
	JNZ       loop
done:
	VZEROUPPER
	RET
