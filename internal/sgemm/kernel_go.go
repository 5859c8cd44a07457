package sgemm

import "unsafe"

// kernelGo is the portable micro-kernel: C[MR×NR] (row stride ldc) =
// alpha·Σ_p a[p·MR+i]·b[p·NR+j] + beta·C, reading C only when beta ≠ 0.
func kernelGo(kc int, a, b, c *float32, ldc int, alpha, beta float32) {
	as := unsafe.Slice(a, kc*MR)
	bs := unsafe.Slice(b, kc*NR)
	var acc [MR][NR]float32
	for p := range kc {
		av := as[p*MR:][:MR]
		bv := (*[NR]float32)(bs[p*NR:][:NR])
		for i := range MR {
			ai := av[i]
			r := &acc[i]
			for j := range NR {
				r[j] += ai * bv[j]
			}
		}
	}
	cs := unsafe.Slice(c, (MR-1)*ldc+NR)
	for i := range MR {
		row := cs[i*ldc:][:NR]
		if beta == 0 {
			for j := range row {
				row[j] = alpha * acc[i][j]
			}
		} else {
			for j := range row {
				row[j] = alpha*acc[i][j] + beta*row[j]
			}
		}
	}
}
