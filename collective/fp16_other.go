//go:build !amd64

package collective

// haveF16C is false off amd64: the portable Go loops do all the work.
const haveF16C = false

func f32ToF16x8(dst *uint16, src *float32, n int, scale float32) { panic("unreachable") }
func f16AddX8(dst *float32, src *uint16, n int, scale float32)   { panic("unreachable") }
func f16CopyX8(dst *float32, src *uint16, n int, scale float32)  { panic("unreachable") }
func maxAbsBitsX16(src *float32, n int) uint32                   { panic("unreachable") }

func maxAbsBitsU16X32(src *uint16, n int) uint16 { panic("unreachable") }
