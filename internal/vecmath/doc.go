// Package vecmath holds the loops over float32 slices that models runs on
// every activation of every step (ReLU and its gradient, 2×2 max pooling
// and its gradient), in AVX-512 assembly where the
// CPU has it (sixteen lanes and mask registers for the tail, where Go
// compiles a scalar loop with a CMOV per element) and portable Go
// elsewhere, with the same results bit for bit.
package vecmath
