package collective

//go:noescape
func sumF32X32(dst, src *float32, n int)

// sumVector adds src into dst with the AVX2 kernel where the CPU has it (haveF16C includes
// AVX2), and returns how many leading elements it did (a multiple of 32); the caller's loop
// does the rest. The kernel runs in windows of sumWindow elements: an assembly loop cannot
// be preempted, and a window keeps each stretch to microseconds whatever the caller's length.
func sumVector(dst, src []float32) int {
	if !haveF16C {
		return 0
	}
	n := len(dst) &^ 31
	for i := 0; i < n; i += sumWindow {
		w := min(sumWindow, n-i)
		sumF32X32(&dst[i], &src[i], w)
	}
	return n
}

// sumWindow is the most elements one call of the assembly kernel adds (256 KiB of dst).
const sumWindow = 64 << 10
