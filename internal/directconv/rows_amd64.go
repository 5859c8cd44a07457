package directconv

import "golang.org/x/sys/cpu"

// rows8AVX512 is rowsGo in AVX-512F assembly (rows_amd64.s); offsets are in
// bytes.
//
//go:noescape
func rows8AVX512(y *float32, yv2, yplane, nout int, x *float32, xv2, xrow, xplane, c, k int, w, bias *float32, mask1, mask2 int)

var hasAVX512 = cpu.X86.HasAVX512F

var rowsImpl = rowsFor(hasAVX512)

func rowsFor(avx512 bool) func(*Rows) {
	if !avx512 {
		return rowsGo
	}
	return func(r *Rows) {
		rows8AVX512(&r.Y[0], 4*r.YV2, 4*r.YPlane, r.NOut, &r.X[0], 4*r.XV2, 4*r.XRow, 4*r.XPlane, r.C, r.K,
			&r.W[0], &r.Bias[0], int(r.Mask1), int(r.Mask2))
	}
}

// gradRows8AVX512 is gradRowsGo in AVX-512F assembly (grad_amd64.s);
// offsets are in bytes.
//
//go:noescape
func gradRows8AVX512(acc, dy *float32, dyv2, dyplane, nout int, x *float32, xv2, xrow, xplane, c, k, mask1, mask2 int)

var gradRowsImpl = gradRowsFor(hasAVX512)

func gradRowsFor(avx512 bool) func(*GradRows) {
	if !avx512 {
		return gradRowsGo
	}
	return func(r *GradRows) {
		gradRows8AVX512(&r.Acc[0], &r.DY[0], 4*r.DYV2, 4*r.DYPlane, r.NOut, &r.X[0], 4*r.XV2, 4*r.XRow, 4*r.XPlane, r.C, r.K,
			int(r.Mask1), int(r.Mask2))
	}
}
