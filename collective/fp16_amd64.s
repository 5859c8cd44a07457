#include "textflag.h"

// Vector kernels for the fp16 wire format on amd64 CPUs with AVX2 and F16C (every x86-64
// since about 2013): VCVTPS2PH and VCVTPH2PS convert 8 values per instruction, with the
// same IEEE round-to-nearest-even as the portable Go code. fp16_amd64.go decides whether
// they may be used; fp16_test.go checks them against the Go code and x448/float16.

// func cpuSupportsF16C() bool
// CPUID.1:ECX has F16C (bit 29), AVX (28) and OSXSAVE (27); XCR0 shows the OS saves the
// SSE and AVX registers (bits 1, 2); CPUID.7.0:EBX bit 5 is AVX2.
TEXT ·cpuSupportsF16C(SB), NOSPLIT, $0-1
	MOVB $0, ret+0(FP)
	MOVL $1, AX
	XORL CX, CX
	CPUID
	ANDL $0x38000000, CX
	CMPL CX, $0x38000000
	JNE  no
	XORL CX, CX
	XGETBV
	ANDL $6, AX
	CMPL AX, $6
	JNE  no
	MOVL $7, AX
	XORL CX, CX
	CPUID
	BTL  $5, BX
	JCC  no
	MOVB $1, ret+0(FP)
no:
	RET

// func f32ToF16x8(dst *uint16, src *float32, n int, scale float32)
// dst[i] = binary16(src[i]*scale) for i < n, n a multiple of 8, rounding to nearest even.
TEXT ·f32ToF16x8(SB), NOSPLIT, $0-28
	MOVQ         dst+0(FP), DI
	MOVQ         src+8(FP), SI
	MOVQ         n+16(FP), CX
	VBROADCASTSS scale+24(FP), Y2
	SHRQ         $3, CX
	JZ           done
loop:
	VMULPS    (SI), Y2, Y0
	VCVTPS2PH $0, Y0, X1
	VMOVDQU   X1, (DI)
	ADDQ      $32, SI
	ADDQ      $16, DI
	DECQ      CX
	JNZ       loop
done:
	VZEROUPPER
	RET

// func f16AddX8(dst *float32, src *uint16, n int, scale float32)
// dst[i] += float32(src[i])*scale for i < n, n a multiple of 8.
TEXT ·f16AddX8(SB), NOSPLIT, $0-28
	MOVQ         dst+0(FP), DI
	MOVQ         src+8(FP), SI
	MOVQ         n+16(FP), CX
	VBROADCASTSS scale+24(FP), Y2
	SHRQ         $3, CX
	JZ           done
loop:
	VCVTPH2PS (SI), Y0
	VMULPS    Y2, Y0, Y0
	VADDPS    (DI), Y0, Y0
	VMOVUPS   Y0, (DI)
	ADDQ      $16, SI
	ADDQ      $32, DI
	DECQ      CX
	JNZ       loop
done:
	VZEROUPPER
	RET

// func f16CopyX8(dst *float32, src *uint16, n int, scale float32)
// dst[i] = float32(src[i])*scale for i < n, n a multiple of 8.
TEXT ·f16CopyX8(SB), NOSPLIT, $0-28
	MOVQ         dst+0(FP), DI
	MOVQ         src+8(FP), SI
	MOVQ         n+16(FP), CX
	VBROADCASTSS scale+24(FP), Y2
	SHRQ         $3, CX
	JZ           done
loop:
	VCVTPH2PS (SI), Y0
	VMULPS    Y2, Y0, Y0
	VMOVUPS   Y0, (DI)
	ADDQ      $16, SI
	ADDQ      $32, DI
	DECQ      CX
	JNZ       loop
done:
	VZEROUPPER
	RET

// func maxAbsBitsX16(src *float32, n int) uint32
// The largest of float32bits(src[i]) & 0x7fffffff for i < n, n a multiple of 16 (NaN and
// Inf included: the caller handles them). Two accumulators of 8 lanes.
TEXT ·maxAbsBitsX16(SB), NOSPLIT, $0-20
	MOVQ     src+0(FP), SI
	MOVQ     n+8(FP), CX
	VPCMPEQD Y3, Y3, Y3
	VPSRLD   $1, Y3, Y3
	VPXOR    Y0, Y0, Y0
	VPXOR    Y1, Y1, Y1
	SHRQ     $4, CX
	JZ       reduce
loop:
	VPAND   (SI), Y3, Y4
	VPAND   32(SI), Y3, Y5
	VPMAXUD Y4, Y0, Y0
	VPMAXUD Y5, Y1, Y1
	ADDQ    $64, SI
	DECQ    CX
	JNZ     loop
reduce:
	VPMAXUD      Y1, Y0, Y0
	VEXTRACTI128 $1, Y0, X1
	VPMAXUD      X1, X0, X0
	VPSHUFD      $0x4e, X0, X1
	VPMAXUD      X1, X0, X0
	VPSHUFD      $0xb1, X0, X1
	VPMAXUD      X1, X0, X0
	VMOVD        X0, AX
	MOVL         AX, ret+16(FP)
	VZEROUPPER
	RET

// func maxAbsBitsU16X32(src *uint16, n int) uint16
// The largest of src[i] & 0x7fff for i < n, n a multiple of 32 (binary16 Inf and NaN
// included: the caller handles them). Two accumulators of 16 lanes.
TEXT ·maxAbsBitsU16X32(SB), NOSPLIT, $0-18
	MOVQ     src+0(FP), SI
	MOVQ     n+8(FP), CX
	VPCMPEQW Y3, Y3, Y3
	VPSRLW   $1, Y3, Y3
	VPXOR    Y0, Y0, Y0
	VPXOR    Y1, Y1, Y1
	SHRQ     $5, CX
	JZ       reduce16
loop16:
	VPAND   (SI), Y3, Y4
	VPAND   32(SI), Y3, Y5
	VPMAXUW Y4, Y0, Y0
	VPMAXUW Y5, Y1, Y1
	ADDQ    $64, SI
	DECQ    CX
	JNZ     loop16
reduce16:
	VPMAXUW      Y1, Y0, Y0
	VEXTRACTI128 $1, Y0, X1
	VPMAXUW      X1, X0, X0
	VPSHUFD      $0x4e, X0, X1
	VPMAXUW      X1, X0, X0
	VPSHUFD      $0xb1, X0, X1
	VPMAXUW      X1, X0, X0
	VPSRLD       $16, X0, X1
	VPMAXUW      X1, X0, X0
	VMOVD        X0, AX
	MOVW         AX, ret+16(FP)
	VZEROUPPER
	RET
