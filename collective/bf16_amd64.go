package collective

// The AVX2 kernels of bf16_amd64.s; they run where haveF16C (which includes AVX2 and the
// OS's support for its registers) is true.

//go:noescape
func f32ToBF16x16(dst *uint16, src *float32, n int)

//go:noescape
func bf16AddX8(dst *float32, src *uint16, n int)

//go:noescape
func bf16CopyX8(dst *float32, src *uint16, n int)
