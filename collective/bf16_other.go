//go:build !amd64

package collective

func f32ToBF16x16(dst *uint16, src *float32, n int) { panic("unreachable") }
func bf16AddX8(dst *float32, src *uint16, n int)    { panic("unreachable") }
func bf16CopyX8(dst *float32, src *uint16, n int)   { panic("unreachable") }
