// Package directconv computes small stride-1 convolutions directly, without
// im2col: a kernel produces up to eight output channels of one output row
// (up to 32 wide) or of two rows (up to 16 wide each) from the input rows
// under it, with the filter taps packed eight channels side by side. LeNet's
// convolutions (28×28 and 10×10 outputs, 6 and 16 channels, C·k·k = 25 and
// 150) are too thin for a GEMM to pay back the im2col copy and the packing
// of a 5 MB column matrix; here every tap is one vector load of the input
// and sixteen FMAs, and nothing is copied.
//
// The AVX-512 kernel is in rows_amd64.s; rowsGo is its portable twin, used
// where AVX-512 is missing.
package directconv
