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
