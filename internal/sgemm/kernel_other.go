//go:build !amd64

package sgemm

// kernel is the portable Go micro-kernel on architectures without an
// assembly one.
var kernel = kernelGo

// KernelName says which micro-kernel Gemm uses.
func KernelName() string { return "go" }
