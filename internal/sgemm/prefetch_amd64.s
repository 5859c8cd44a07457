#include "textflag.h"

// func prefetchLines(p *float32, n int)
// Prefetches the n floats at p (whole 64-byte lines) toward the caches.
TEXT ·prefetchLines(SB), NOSPLIT, $0-16
	MOVQ p+0(FP), SI
	MOVQ n+8(FP), CX
	SHLQ $2, CX
	ADDQ SI, CX
	ANDQ $-64, SI

loop:
	CMPQ       SI, CX
	JGE        done
	PREFETCHT1 (SI)
	ADDQ       $64, SI
	JMP        loop

done:
	RET
