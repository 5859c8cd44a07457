//go:build !amd64

package sgemm

// kernels lists the micro-kernels this machine can run, preferred first:
// the portable Go one on architectures without an assembly kernel.
func kernels() []microKernel { return []microKernel{goKernel6x16, goKernel8x32} }
