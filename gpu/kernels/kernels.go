// Package kernels holds the CUDA kernels of ringtrain's GPU backend: their
// CUDA C source (kernels.cu), the PTX compiled from it (kernels.ptx,
// embedded as PTX), the launch geometry each kernel expects (launch.go), and
// a Go twin of every kernel (twins.go) doing the same arithmetic on the CPU.
//
// The twins exist so the GPU layer can be tested without a GPU: the emulator
// backend runs them where the CUDA backend launches the kernels, so CI
// exercises the whole device code path (buffers, layouts, launch arguments)
// and compares it with the CPU models. Where the kernel's result depends on
// a summation order, the twin follows that same order, so twin and GPU agree
// bit for bit (except where noted: softmax_xent's exp and log).
//
// On a GPU, testdata/devcheck.py (Python and the driver's libcuda only)
// launches every kernel on inputs and twin outputs that TestWriteDeviceCases
// writes, under its Elementwise/ColSumLaunch/RowSumLaunch/RowsLaunch
// geometry and under a deliberately small grid. On an H200 (driver 580,
// CUDA 13, this PTX JIT-compiled) every output matched its twin bit for bit
// (NaN and -0 cases, f16 rounding boundaries, optimizer steps, tree sums)
// except 10 of 1000 softmax_xent row losses, off by under 2e-18 relative.
//
// Regenerate the PTX after editing kernels.cu:
//
//	go generate ./gpu/kernels
//
// which compiles it with NVRTC (see internal/nvrtc), no GPU needed.
// TestPTXUpToDate fails if the committed kernels.ptx is stale.
package kernels

import (
	_ "embed"
	"fmt"
	"math"
)

// PTX is kernels.ptx: the PTX of every kernel in Names, for compute_75 and
// later, without a trailing NUL (see PTXForLoad).
//
//go:embed kernels.ptx
var PTX []byte

// PTXForLoad returns a copy of PTX with the trailing NUL that
// cuModuleLoadData needs (it reads a C string).
func PTXForLoad() []byte {
	b := make([]byte, len(PTX)+1)
	copy(b, PTX)
	return b
}

// Names are the entry points in PTX, in kernels.cu order.
var Names = []string{
	"relu_fwd",
	"relu_bwd",
	"mul",
	"add_inplace",
	"add_bias_rows",
	"col_sum",
	"row_sum",
	"conv_out",
	"conv_grad_in",
	"im2col",
	"col2im",
	"maxpool_fwd",
	"maxpool_bwd",
	"softmax_xent",
	"sgd_step",
	"adam_step",
	"f32_to_f16",
	"f16_to_f32",
}

// ConvGeom is the geometry shared by im2col, col2im and max pooling: a
// batch of B images of C channels, H×W, a K×K window moved by Stride with
// Pad zeros around the image, giving OH×OW outputs per channel. The kernels
// take these nine numbers as int arguments in this order.
type ConvGeom struct {
	B, C, H, W, K, Stride, Pad, OH, OW int
}

// OutSize is the output extent of a window of k moved by stride over n
// inputs padded by pad on both sides.
func OutSize(n, k, stride, pad int) int { return (n+2*pad-k)/stride + 1 }

// Validate checks that every size is positive (Pad ≥ 0), that the window
// fits the padded image, that OH and OW are what K, Stride and Pad give, and
// that every buffer the kernels index (input, output, column matrix) has
// fewer than 2³¹ elements: the kernels index in 32 bits.
func (g ConvGeom) Validate() error {
	switch {
	case g.B <= 0 || g.C <= 0 || g.H <= 0 || g.W <= 0:
		return fmt.Errorf("kernels: geometry %+v: B, C, H and W must be positive", g)
	case g.K <= 0 || g.Stride <= 0 || g.Pad < 0:
		return fmt.Errorf("kernels: geometry %+v: K and Stride must be positive and Pad non-negative", g)
	case g.H+2*g.Pad < g.K || g.W+2*g.Pad < g.K:
		return fmt.Errorf("kernels: geometry %+v: window larger than the padded image", g)
	case g.OH != OutSize(g.H, g.K, g.Stride, g.Pad) || g.OW != OutSize(g.W, g.K, g.Stride, g.Pad):
		return fmt.Errorf("kernels: geometry %+v: want OH = %d, OW = %d", g, OutSize(g.H, g.K, g.Stride, g.Pad), OutSize(g.W, g.K, g.Stride, g.Pad))
	}
	for _, s := range []struct {
		what string
		dims []int
	}{
		{"input", []int{g.B, g.C, g.H, g.W}},
		{"output", []int{g.B, g.C, g.OH, g.OW}},
		{"column matrix", []int{g.C, g.K, g.K, g.B, g.OH, g.OW}},
	} {
		n := int64(1)
		for _, d := range s.dims {
			n *= int64(d)
			if n > math.MaxInt32 {
				return fmt.Errorf("kernels: geometry %+v: %s has 2³¹ elements or more", g, s.what)
			}
		}
	}
	return nil
}

// InSize is B*C*H*W, the element count of the input (and of col2im's and
// maxpool_bwd's output).
func (g ConvGeom) InSize() int { return g.B * g.C * g.H * g.W }

// OutSize is B*C*OH*OW, the element count of the pooled output.
func (g ConvGeom) OutSize() int { return g.B * g.C * g.OH * g.OW }

// ColRows is C*K*K, the rows of the column matrix (a GEMM's inner dimension).
func (g ConvGeom) ColRows() int { return g.C * g.K * g.K }

// ColCols is B*OH*OW, the columns of the column matrix.
func (g ConvGeom) ColCols() int { return g.B * g.OH * g.OW }
