// Package cuda binds the NVIDIA CUDA driver API (libcuda.so.1) and cuBLAS
// (libcublas.so.13/.12/.11) at run time through purego, without cgo.
//
// Why run time and not cgo: a binary that links CUDA at build time dies at
// start on every machine without a GPU, needs the CUDA headers of one
// version at build time, and cannot be built with CGO_ENABLED=0. Here
// nothing is touched until Load is called, and Load returns an error (a
// *LoadError naming every path tried) instead of crashing where there is no
// driver, so callers fall back to the CPU.
//
// Threading: the CUDA "current context" is per OS thread. Every Context
// method therefore locks its goroutine to an OS thread, makes the device's
// primary context current, makes the call and unlocks, all under the
// Context's mutex; a Context may be shared by goroutines.
//
// Ordering: kernels (Launch), copies and cuBLAS calls all go to the legacy
// default (NULL) stream, so they run in the order they were issued; copies
// to and from host memory are synchronous.
//
// cuBLAS is column-major exactly as cublasSgemm_v2; callers with row-major
// matrices compute Cᵀ = Bᵀ·Aᵀ by swapping the operands.
package cuda
