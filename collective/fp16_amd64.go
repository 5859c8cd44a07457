package collective

// haveF16C says the vector kernels of fp16_amd64.s may run: the CPU has AVX2 and F16C and
// the OS saves the AVX registers.
var haveF16C = cpuSupportsF16C()

func cpuSupportsF16C() bool

//go:noescape
func f32ToF16x8(dst *uint16, src *float32, n int, scale float32)

//go:noescape
func f16AddX8(dst *float32, src *uint16, n int, scale float32)

//go:noescape
func f16CopyX8(dst *float32, src *uint16, n int, scale float32)

//go:noescape
func maxAbsBitsX16(src *float32, n int) uint32

//go:noescape
func maxAbsBitsU16X32(src *uint16, n int) uint16
