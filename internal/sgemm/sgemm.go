package sgemm

import (
	"sync"
	"unsafe"
)

// Register tile of the micro-kernel: MR rows of C by nr columns, where nr
// (16 or 32) is the active kernel's width, chosen at start-up (kernel_*.go);
// maxNR bounds it for the buffers.
const (
	MR    = 6
	maxNR = 32
)

// Cache blocking. kc×nr floats of packed B (16 or 32 KiB) and kc×MR of
// packed A (6 KiB) fit L1 together (48 KiB on Zen 4/5); mc×kc of packed A (144 KiB) sits in L2; kc×nc of
// packed B (2 MiB) in L3 (2048 measured at least as fast as 4080 and 1024 on
// the 64×4096×4096 products of mlp-wide). mc is a multiple of MR, nc of maxNR.
const (
	kcBlock = 256
	mcBlock = 144
	ncBlock = 2048
)

// workspace holds the packing buffers of one call.
type workspace struct {
	a []float32 // mcBlock × kcBlock, MR-row slivers
	b []float32 // kcBlock × ncBlock, nr-column slivers
	// tile receives edge tiles (the kernel is called through a function
	// variable, so a stack array would escape).
	tile [MR * maxNR]float32
}

// workspaces is a free list of packing buffers. Unlike a sync.Pool it is
// never emptied by the garbage collector, so steady-state calls allocate
// nothing; it holds as many workspaces (2.1 MiB each) as calls ever ran at
// once.
var workspaces struct {
	mu   sync.Mutex
	free []*workspace
}

func getWorkspace() *workspace {
	workspaces.mu.Lock()
	defer workspaces.mu.Unlock()
	if n := len(workspaces.free); n > 0 {
		ws := workspaces.free[n-1]
		workspaces.free = workspaces.free[:n-1]
		return ws
	}
	return &workspace{a: make([]float32, mcBlock*kcBlock), b: make([]float32, kcBlock*ncBlock)}
}

func putWorkspace(ws *workspace) {
	workspaces.mu.Lock()
	workspaces.free = append(workspaces.free, ws)
	workspaces.mu.Unlock()
}

// Gemm computes C = alpha·op(A)·op(B) + beta·C for row-major matrices, where
// op(X) is X or Xᵀ as transA/transB say, op(A) is m×k, op(B) is k×n and C is
// m×n; lda, ldb, ldc are the row strides of A, B and C as stored. With beta
// = 0, C is only written (NaNs in it do not propagate). Arguments are checked
// like gonum's Sgemm and a violation panics.
func Gemm(transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	checkArgs(transA, transB, m, n, k, a, lda, b, ldb, c, ldc)
	if m == 0 || n == 0 {
		return
	}
	if alpha == 0 || k == 0 {
		scaleC(m, n, beta, c, ldc)
		return
	}
	ws := getWorkspace()
	defer putWorkspace(ws)
	mk := active
	for jc := 0; jc < n; jc += ncBlock {
		nb := min(ncBlock, n-jc)
		for pc := 0; pc < k; pc += kcBlock {
			kb := min(kcBlock, k-pc)
			packB(ws.b, mk.nr, transB, b, ldb, pc, jc, kb, nb)
			bt := beta
			if pc > 0 {
				bt = 1
			}
			for ic := 0; ic < m; ic += mcBlock {
				mb := min(mcBlock, m-ic)
				packA(ws.a, transA, a, lda, ic, pc, mb, kb)
				macroKernel(mk, mb, nb, kb, alpha, ws.a, ws.b, bt, c[ic*ldc+jc:], ldc, &ws.tile)
			}
		}
	}
}

// macroKernel multiplies a packed mb×kb block of A by a packed kb×nb block of
// B into C (whose element (0,0) is c[0]), one MR×NR tile at a time. Edge
// tiles are computed into a full tile (scratch) and merged.
func macroKernel(mk microKernel, mb, nb, kb int, alpha float32, ap, bp []float32, beta float32, c []float32, ldc int, tile *[MR * maxNR]float32) {
	NR, kernel := mk.nr, mk.fn
	for jr := 0; jr < nb; jr += NR {
		nr := min(NR, nb-jr)
		bs := unsafe.Pointer(&bp[(jr/NR)*kb*NR])
		for ir := 0; ir < mb; ir += MR {
			mr := min(MR, mb-ir)
			as := unsafe.Pointer(&ap[(ir/MR)*kb*MR])
			if mr == MR && nr == NR {
				kernel(kb, (*float32)(as), (*float32)(bs), &c[ir*ldc+jr], ldc, alpha, beta)
				continue
			}
			kernel(kb, (*float32)(as), (*float32)(bs), &tile[0], NR, 1, 0)
			for i := 0; i < mr; i++ {
				row := c[(ir+i)*ldc+jr:][:nr]
				t := tile[i*NR:][:nr]
				if beta == 0 {
					for j := range row {
						row[j] = alpha * t[j]
					}
				} else {
					for j := range row {
						row[j] = alpha*t[j] + beta*row[j]
					}
				}
			}
		}
	}
}

// packA copies the mb×kb block of op(A) at (ic, pc) into MR-row slivers:
// sliver s holds rows ic+s·MR.., laid out k-major (MR values per k), the last
// one zero-padded to MR rows.
func packA(dst []float32, trans bool, a []float32, lda, ic, pc, mb, kb int) {
	for s := 0; s*MR < mb; s++ {
		d := dst[s*kb*MR:][:kb*MR]
		i0 := ic + s*MR
		rows := min(MR, mb-s*MR)
		if !trans {
			// op(A)(i, p) = a[i*lda+p]: MR rows, each contiguous in p.
			if rows == MR {
				r0 := a[(i0+0)*lda+pc:][:kb]
				r1 := a[(i0+1)*lda+pc:][:kb]
				r2 := a[(i0+2)*lda+pc:][:kb]
				r3 := a[(i0+3)*lda+pc:][:kb]
				r4 := a[(i0+4)*lda+pc:][:kb]
				r5 := a[(i0+5)*lda+pc:][:kb]
				for p := range kb {
					q := d[p*MR:][:MR]
					q[0], q[1], q[2], q[3], q[4], q[5] = r0[p], r1[p], r2[p], r3[p], r4[p], r5[p]
				}
				continue
			}
			clear(d)
			for i := range rows {
				r := a[(i0+i)*lda+pc:][:kb]
				for p, v := range r {
					d[p*MR+i] = v
				}
			}
			continue
		}
		// op(A)(i, p) = a[p*lda+i]: for each p, MR contiguous values.
		if rows == MR {
			for p := range kb {
				copy(d[p*MR:][:MR], a[(pc+p)*lda+i0:][:MR])
			}
			continue
		}
		for p := range kb {
			q := d[p*MR:][:MR]
			n := copy(q, a[(pc+p)*lda+i0:][:rows])
			clear(q[n:])
		}
	}
}

// packB copies the kb×nb block of op(B) at (pc, jc) into NR-column slivers:
// sliver s holds columns jc+s·NR.., laid out k-major (NR values per k), the
// last one zero-padded to NR columns.
func packB(dst []float32, NR int, trans bool, b []float32, ldb, pc, jc, kb, nb int) {
	if !trans {
		// op(B)(p, j) = b[p*ldb+j]. Walk B row by row (each row read once,
		// sequentially, which the prefetchers follow; a sliver at a time would
		// stride down ldb for every 64 bytes) and scatter NR-wide pieces into
		// the slivers.
		full := nb / NR
		for p := range kb {
			row := b[(pc+p)*ldb+jc:][:nb]
			for s := range full {
				copy(dst[(s*kb+p)*NR:][:NR], row[s*NR:][:NR])
			}
			if rest := nb - full*NR; rest > 0 {
				q := dst[(full*kb+p)*NR:][:NR]
				copy(q, row[full*NR:])
				clear(q[rest:])
			}
		}
		return
	}
	for s := 0; s*NR < nb; s++ {
		d := dst[s*kb*NR:][:kb*NR]
		cols := min(NR, nb-s*NR)
		// op(B)(p, j) = b[j*ldb+p]: column j of op(B) is row j of b.
		if cols < NR {
			clear(d)
		}
		packBTrans(d, NR, b, ldb, pc, jc+s*NR, kb, cols)
	}
}

// packBTrans fills a sliver from cols rows of b (transposed B), eight rows
// at a time so the stores of one k step fill 32 contiguous bytes.
func packBTrans(d []float32, NR int, b []float32, ldb, pc, j0, kb, cols int) {
	j := 0
	for ; j+8 <= cols; j += 8 {
		r0 := b[(j0+j+0)*ldb+pc:][:kb]
		r1 := b[(j0+j+1)*ldb+pc:][:kb]
		r2 := b[(j0+j+2)*ldb+pc:][:kb]
		r3 := b[(j0+j+3)*ldb+pc:][:kb]
		r4 := b[(j0+j+4)*ldb+pc:][:kb]
		r5 := b[(j0+j+5)*ldb+pc:][:kb]
		r6 := b[(j0+j+6)*ldb+pc:][:kb]
		r7 := b[(j0+j+7)*ldb+pc:][:kb]
		for p := range kb {
			q := (*[8]float32)(d[p*NR+j:][:8])
			q[0], q[1], q[2], q[3], q[4], q[5], q[6], q[7] = r0[p], r1[p], r2[p], r3[p], r4[p], r5[p], r6[p], r7[p]
		}
	}
	for ; j < cols; j++ {
		r := b[(j0+j)*ldb+pc:][:kb]
		for p, v := range r {
			d[p*NR+j] = v
		}
	}
}

// scaleC sets C = beta·C (C = 0 when beta is 0, whatever C held).
func scaleC(m, n int, beta float32, c []float32, ldc int) {
	for i := range m {
		row := c[i*ldc:][:n]
		switch beta {
		case 0:
			clear(row)
		case 1:
		default:
			for j := range row {
				row[j] *= beta
			}
		}
	}
}

func checkArgs(transA, transB bool, m, n, k int, a []float32, lda int, b []float32, ldb int, c []float32, ldc int) {
	if m < 0 || n < 0 || k < 0 {
		panic("sgemm: negative dimension")
	}
	ar, ac := m, k // rows and columns of A as stored
	if transA {
		ar, ac = k, m
	}
	br, bc := k, n
	if transB {
		br, bc = n, k
	}
	if lda < max(1, ac) {
		panic("sgemm: bad lda")
	}
	if ldb < max(1, bc) {
		panic("sgemm: bad ldb")
	}
	if ldc < max(1, n) {
		panic("sgemm: bad ldc")
	}
	if m == 0 || n == 0 {
		return
	}
	if ar > 0 && ac > 0 && len(a) < (ar-1)*lda+ac {
		panic("sgemm: insufficient length of a")
	}
	if br > 0 && bc > 0 && len(b) < (br-1)*ldb+bc {
		panic("sgemm: insufficient length of b")
	}
	if len(c) < (m-1)*ldc+n {
		panic("sgemm: insufficient length of c")
	}
}
