package kernels

// Launch is a kernel's launch geometry: grid and block dimensions and the
// bytes of dynamic shared memory (none of our kernels uses any: their shared
// arrays are static).
type Launch struct {
	Grid, Block [3]uint32
	Shared      uint32
}

// Threads is the total number of threads the launch starts.
func (l Launch) Threads() int64 {
	return int64(l.Grid[0]) * int64(l.Grid[1]) * int64(l.Grid[2]) *
		int64(l.Block[0]) * int64(l.Block[1]) * int64(l.Block[2])
}

const (
	// ElementwiseBlock is the block size of elementwise kernels: 8 warps,
	// enough for latency hiding with our few registers per thread.
	ElementwiseBlock = 256

	// MaxElementwiseGrid caps elementwise grids. The kernels loop
	// grid-stride, so a capped grid is still correct; 65535 blocks of 256
	// threads (16.7 M threads) already fill any current GPU many times over,
	// and the cap keeps index arithmetic well inside 32 bits.
	MaxElementwiseGrid = 65535

	// ColSumBlockX and ColSumBlockY are col_sum's block shape; the kernel's
	// shared array and summation order are built for exactly this shape.
	ColSumBlockX, ColSumBlockY = 32, 32

	// RowSumBlock is row_sum's block size; the kernel's shared array and
	// summation order are built for exactly this size.
	RowSumBlock = 256

	// MaxRowGrid caps the grids of col_sum, row_sum and softmax_xent; they
	// loop grid-stride over their column groups or rows.
	MaxRowGrid = 65535
)

func ceilDiv(a, b int) int { return (a + b - 1) / b }

func clampGrid(blocks, max int) uint32 {
	if blocks < 1 {
		return 1 // a zero grid is a launch error; the kernels return at once for n <= 0
	}
	if blocks > max {
		return uint32(max)
	}
	return uint32(blocks)
}

// Elementwise is the launch of a grid-stride kernel over n items: blocks of
// 256 threads, one thread per item up to MaxElementwiseGrid blocks.
// relu_fwd, relu_bwd, mul, add_inplace, add_bias_rows (n = rows*cols),
// conv_out, conv_grad_in (n = B*C*HW), im2col (n = ColRows*ColCols), col2im
// (n = B*C*H*W), maxpool_fwd (n = B*C*OH*OW), maxpool_bwd (n = B*C*H*W),
// sgd_step, adam_step, f32_to_f16 and f16_to_f32 take it.
func Elementwise(n int) Launch {
	return Launch{
		Grid:  [3]uint32{clampGrid(ceilDiv(n, ElementwiseBlock), MaxElementwiseGrid), 1, 1},
		Block: [3]uint32{ElementwiseBlock, 1, 1},
	}
}

// ColSumLaunch is col_sum's launch: 32×32 blocks, one per group of 32
// columns (grid-stride beyond MaxRowGrid groups). A warp reads 32 adjacent
// columns of a row, so cols = 4096 streams coalesced; with cols = 10 a
// single block still puts 32 rows in flight per column, and 4096 rows cost
// 128 loads per thread.
func ColSumLaunch(rows, cols int) Launch {
	_ = rows // the summation order depends on the block shape only
	return Launch{
		Grid:  [3]uint32{clampGrid(ceilDiv(cols, ColSumBlockX), MaxRowGrid), 1, 1},
		Block: [3]uint32{ColSumBlockX, ColSumBlockY, 1},
	}
}

// RowSumLaunch is row_sum's launch: one 256-thread block per row
// (grid-stride beyond MaxRowGrid rows). A long row (a convolution's bias
// gradient sums batch×positions, e.g. 400,000 values) is read coalesced by
// all 256 threads of its block.
func RowSumLaunch(rows, cols int) Launch {
	_ = cols
	return Launch{
		Grid:  [3]uint32{clampGrid(rows, MaxRowGrid), 1, 1},
		Block: [3]uint32{RowSumBlock, 1, 1},
	}
}

// RowsLaunch is softmax_xent's launch: one thread per row, blocks of 128
// (batches are small enough that wider blocks would leave SMs idle).
func RowsLaunch(rows int) Launch {
	const block = 128
	return Launch{
		Grid:  [3]uint32{clampGrid(ceilDiv(rows, block), MaxRowGrid), 1, 1},
		Block: [3]uint32{block, 1, 1},
	}
}
