package sgemm

import (
	"sync"
	"unsafe"
)

// Register tile of the micro-kernel: mr rows of C by nr columns (6×16 for
// AVX2, 8×32 for AVX-512), the active kernel's, chosen at start-up
// (kernel_*.go); maxMR and maxNR bound them for the buffers.
const (
	maxMR = 8
	maxNR = 32
)

// Cache blocking. kc×nr floats of packed B (16 or 32 KiB) and kc×mr of
// packed A (6 or 8 KiB) fit L1 together (48 KiB on Zen 4/5); mc×kc of packed
// A (144 KiB) sits in L2; kc×nc of packed B (2 MiB) in L3 (2048 measured at
// least as fast as 4080 and 1024 on the 64×4096×4096 products of mlp-wide).
// mc is a multiple of every kernel's mr (6 and 8), nc of maxNR.
const (
	kcBlock = 256
	mcBlock = 144
	ncBlock = 2048
)

// workspace holds the packing buffers of one call.
type workspace struct {
	a []float32 // mcBlock × kcBlock, mr-row slivers
	b []float32 // kcBlock × ncBlock, nr-column slivers
	// tile receives edge tiles (the kernel is called through a function
	// variable, so a stack array would escape).
	tile [maxMR * maxNR]float32
	// ct is gemmRowsA's Cᵀ of up to rowsABlock rows, grown to the largest
	// block it served.
	ct []float32
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
	mk := active.forRows(m)
	if m <= fewRowsMax && k*n >= fewRowsMinFloats && !transA && transB && active.rowA != nil {
		gemmRowsA(ws, active, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
		return
	}
	if m <= fewRowsMax && k*n >= fewRowsMinFloats {
		gemmFewRows(ws, mk, transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
		return
	}
	// k is cut into equal blocks of at most kcBlock (784 = 4×196, not
	// 3×256+16: a thin last block pays a whole pass over C for little work).
	kc := ceilDiv(k, ceilDiv(k, kcBlock))
	for jc := 0; jc < n; jc += ncBlock {
		nb := min(ncBlock, n-jc)
		for pc := 0; pc < k; pc += kc {
			kb := min(kc, k-pc)
			packB(ws.b, mk.nr, transB, b, ldb, pc, jc, kb, nb)
			pf := prefetchNext(mk, transB, b, ldb, m, n, k, kc, jc, pc, nb)
			bt := beta
			if pc > 0 {
				bt = 1
			}
			for ic := 0; ic < m; ic += mcBlock {
				mb := min(mcBlock, m-ic)
				packA(ws.a, mk.mr, transA, a, lda, ic, pc, mb, kb)
				macroKernel(mk, mb, nb, kb, alpha, ws.a, ws.b, bt, c[ic*ldc+jc:], ldc, &ws.tile, &pf)
			}
		}
	}
}

// Products with few rows of A (a batch of 64) and a large B (the weights
// of a wide layer) take the few-rows path (gemmFewRows): B is read from
// memory once per call for only 2·m FLOPs per float, so reading it must
// overlap the arithmetic. Below 8 MiB of B (mlp's 1.6 MB weights stay in the
// last-level cache between calls) the general path measured as fast or
// faster.
const (
	fewRowsMax       = mcBlock // m up to one block of packed A
	fewRowsMinFloats = prefetchMinFloats
	// fewRowsNC is the width of a chunk of packed B: 128 columns × kc=256
	// (128 KiB) measured faster than 256 or 512 on the 64×4096×4096
	// products, and no slower than 64.
	fewRowsNC = 128
)

// gemmFewRows is Gemm for m ≤ mcBlock with a large B. Its loops differ from
// the general path's: A (m×kc) is packed once per block of k and stays in
// L2; B is packed in narrow chunks (kc × fewRowsNC, 128 KiB) that fit L2
// beside it, and while the kernels compute on one chunk the raw rows of the
// next are prefetched, so packing reads them from L2, not memory. The
// general path's 2 MiB blocks of packed B overflow L2 (1 MiB here) and the
// next block, prefetched as a whole, did not stay in it.
func gemmFewRows(ws *workspace, mk microKernel, transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	kc := ceilDiv(k, ceilDiv(k, kcBlock))
	nc := fewRowsNC
	for pc := 0; pc < k; pc += kc {
		kb := min(kc, k-pc)
		packA(ws.a, mk.mr, transA, a, lda, 0, pc, m, kb)
		bt := beta
		if pc > 0 {
			bt = 1
		}
		for jc := 0; jc < n; jc += nc {
			nb := min(nc, n-jc)
			packB(ws.b, mk.nr, transB, b, ldb, pc, jc, kb, nb)
			// The next chunk: the next columns, or the first ones of the next
			// block of k.
			var pf blockPrefetch
			npc, njc := pc, jc+nc
			if njc >= n {
				npc, njc = pc+kc, 0
			}
			if npc < k {
				pf = planPrefetch(mk, transB, b, ldb, m, nb, npc, njc, min(kc, k-npc), min(nc, n-njc))
			}
			macroKernel(mk, m, nb, kb, alpha, ws.a, ws.b, bt, c[jc:], ldc, &ws.tile, &pf)
		}
	}
}

// rowsAhead is how many blocks of 8 rows ahead of the kernels gemmRowsA
// prefetches B (8 measured ahead of 4 and 16 on 64×4096×4096, by a little).
const rowsAhead = 8

// gemmRowsA is Gemm for C = alpha·A·Bᵀ + beta·C with few rows of A and a
// large B (the input gradient dy·Wᵀ of a wide layer). It computes Cᵀ =
// B·Aᵀ into a scratch (n × m, rounded up to whole tiles) with the kernel
// that reads B's rows in place (mk.rowA: eight rows of B are the eight
// rows of a tile), then transposes the scratch into C. The large operand
// is never copied: the few-rows path packed it through 8×8 transposes,
// 64 MiB of them per 4096×4096 call, and measured ~15% slower. Only Aᵀ,
// small, is packed (kc × m, once per block of k). Eight rows 16 KiB apart
// share one set of L1 (12 ways) without evicting each other; the rows
// rowsAhead blocks ahead are prefetched while the kernels run.
func gemmRowsA(ws *workspace, mk microKernel, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	// Blocks of rowsABlock rows of B (columns of C) bound the scratch (at
	// most 4096 × 160 floats, 2.5 MiB) whatever n is.
	for j0 := 0; j0 < n; j0 += rowsABlock {
		nb := min(rowsABlock, n-j0)
		rowsABlockT(ws, mk, m, nb, k, a, lda, b[j0*ldb:], ldb)
		storeTransposed(m, nb, alpha, ws.ct, ceilDiv(m, 32)*32, beta, c[j0:], ldc)
	}
}

// rowsABlock is the number of B's rows gemmRowsA takes at a time.
const rowsABlock = 4096

// rowsABlockT computes ws.ct = B·Aᵀ (n × m, row stride m rounded up to 32)
// for gemmRowsA.
func rowsABlockT(ws *workspace, mk microKernel, m, n, k int, a []float32, lda int, b []float32, ldb int) {
	const MR, NR = 8, 32
	mp, np := ceilDiv(m, NR)*NR, ceilDiv(n, MR)*MR
	if cap(ws.ct) < np*mp {
		ws.ct = make([]float32, np*mp)
	}
	ct := ws.ct[:np*mp]
	kc := ceilDiv(k, ceilDiv(k, kcBlock))
	full := n &^ (MR - 1)
	for pc := 0; pc < k; pc += kc {
		kb := min(kc, k-pc)
		// op(B') = Aᵀ: op(B')(p, j) = a[j*lda+p], in NR-column slivers.
		packB(ws.b, NR, true, a, lda, pc, 0, kb, m)
		var bt float32
		if pc > 0 {
			bt = 1
		}
		for i0 := 0; i0 < full; i0 += MR {
			// the block rowsAhead ahead, or one of the next block of k
			r, col := i0+rowsAhead*MR, pc
			if r >= full {
				r, col = r-full, pc+kc
			}
			if col < k && r < full {
				for i := range MR {
					prefetchLines(&b[(r+i)*ldb+col], min(kc, k-col))
				}
			}
			rows := b[i0*ldb+pc:][:(MR-1)*ldb+kb] // what the kernel reads
			for s := 0; s*NR < m; s++ {
				mk.rowA(kb, &rows[0], ldb, &ws.b[s*kb*NR], &ct[i0*mp+s*NR], mp, 1, bt)
			}
		}
		if full < n { // the last rows of B, fewer than MR: packed, zero-padded
			packA(ws.a, MR, false, b, ldb, full, pc, n-full, kb)
			for s := 0; s*NR < m; s++ {
				mk.fn(kb, &ws.a[0], &ws.b[s*kb*NR], &ct[full*mp+s*NR], mp, 1, bt)
			}
		}
	}
}

// storeTransposed sets C (m × n) = alpha·ctᵀ + beta·C, ct being n × m with
// row stride ldt.
func storeTransposed(m, n int, alpha float32, ct []float32, ldt int, beta float32, c []float32, ldc int) {
	if alpha == 1 && beta == 0 {
		m8 := m &^ 7
		for j0 := 0; j0+8 <= n; j0 += 8 {
			if m8 > 0 {
				transpose8(c[j0:][:(m8-1)*ldc+8], ldc, ct[j0*ldt:][:7*ldt+m8], ldt, m8/8)
			}
			for i := m8; i < m; i++ {
				for j := j0; j < j0+8; j++ {
					c[i*ldc+j] = ct[j*ldt+i]
				}
			}
		}
		for j := n &^ 7; j < n; j++ {
			for i := range m {
				c[i*ldc+j] = ct[j*ldt+i]
			}
		}
		return
	}
	for i := range m {
		row := c[i*ldc:][:n]
		for j := range row {
			v := alpha * ct[j*ldt+i]
			if beta != 0 {
				v += beta * row[j]
			}
			row[j] = v
		}
	}
}

// planPrefetch plans the prefetch of the kb×nbNext block of op(B) at (pc,
// jc), spread over the tiles of an m×nb block.
func planPrefetch(mk microKernel, transB bool, b []float32, ldb, m, nb, pc, jc, kb, nbNext int) blockPrefetch {
	f := blockPrefetch{b: b, ld: ldb, row: pc, end: pc + kb, col: jc, cols: nbNext}
	if transB { // op(B)(p, j) = b[j*ldb+p]
		f.row, f.end, f.col, f.cols = jc, jc+nbNext, pc, kb
	}
	tiles := ceilDiv(m, mk.mr) * ceilDiv(nb, mk.nr)
	f.perTile = (ceilDiv(kb*nbNext, tiles) + 15) &^ 15 // whole 64-byte lines
	return f
}

// macroKernel multiplies a packed mb×kb block of A by a packed kb×nb block of
// B into C (whose element (0,0) is c[0]), one MR×NR tile at a time. Edge
// tiles are computed into a full tile (scratch) and merged.
//
// After every tile it prefetches a share of the next block of B (pf).
func macroKernel(mk microKernel, mb, nb, kb int, alpha float32, ap, bp []float32, beta float32, c []float32, ldc int, tile *[maxMR * maxNR]float32, pf *blockPrefetch) {
	MR, NR, kernel := mk.mr, mk.nr, mk.fn
	for jr := 0; jr < nb; jr += NR {
		nr := min(NR, nb-jr)
		bs := unsafe.Pointer(&bp[(jr/NR)*kb*NR])
		for ir := 0; ir < mb; ir += MR {
			mr := min(MR, mb-ir)
			as := unsafe.Pointer(&ap[(ir/MR)*kb*MR])
			pf.step()
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

// blockPrefetch walks the part of B, as stored, that packing the next (jc, pc)
// block will read (blocks of kc rows of op(B)), a few cache lines after each tile of the current block.
// Packing reads B once per call from memory, and when A has few rows (a batch
// of 64) there is little arithmetic per byte of B: the 64×4096×4096 products
// of mlp-wide read 64 MiB of B per call, and packing them took as long as the
// FMAs did. Prefetched while the kernels compute, those reads overlap the
// arithmetic instead of stalling the packing that follows.
type blockPrefetch struct {
	b         []float32
	ld        int
	row, end  int // next row of b to prefetch, one past the last
	col, cols int // the columns of each row
	off       int // floats of the current row already prefetched
	perTile   int // floats to prefetch after each tile
}

// Prefetching pays when B comes from memory and each of its bytes meets
// enough arithmetic to hide the reads behind. With a handful of rows (LeNet's
// convolutions: 6 and 16) the prefetches themselves stall on full miss
// buffers and measured slower than none; a B that stays in the last-level
// cache between calls (mlp's 1.6 MB weights) measured 5% slower with them.
const (
	prefetchMinRows   = 32
	prefetchMinFloats = 2 << 20 // 8 MiB of B
)

// prefetchNext plans the prefetch of the block after (jc, pc), spread over the
// tiles of the current one (m rows by nb columns). It plans nothing after the
// last block, or when prefetching does not pay.
func prefetchNext(mk microKernel, transB bool, b []float32, ldb, m, n, k, kc, jc, pc, nb int) blockPrefetch {
	pc += kc
	if pc >= k {
		pc, jc = 0, jc+ncBlock
	}
	if jc >= n || m < prefetchMinRows || k*n < prefetchMinFloats {
		return blockPrefetch{}
	}
	kb, nbNext := min(kc, k-pc), min(ncBlock, n-jc)
	f := blockPrefetch{b: b, ld: ldb, row: pc, end: pc + kb, col: jc, cols: nbNext}
	if transB { // op(B)(p, j) = b[j*ldb+p]
		f.row, f.end, f.col, f.cols = jc, jc+nbNext, pc, kb
	}
	tiles := ceilDiv(m, mk.mr) * ceilDiv(nb, mk.nr)
	f.perTile = (ceilDiv(kb*nbNext, tiles) + 15) &^ 15 // whole 64-byte lines
	return f
}

// step prefetches the next perTile floats of the plan.
func (f *blockPrefetch) step() {
	for n := f.perTile; n > 0 && f.row < f.end; {
		k := min(n, f.cols-f.off)
		prefetchLines(&f.b[f.row*f.ld+f.col+f.off], k)
		n -= k
		if f.off += k; f.off == f.cols {
			f.off = 0
			f.row++
		}
	}
}

func ceilDiv(a, b int) int { return (a + b - 1) / b }

// packA copies the mb×kb block of op(A) at (ic, pc) into MR-row slivers:
// sliver s holds rows ic+s·MR.., laid out k-major (MR values per k), the last
// one zero-padded to MR rows.
func packA(dst []float32, MR int, trans bool, a []float32, lda, ic, pc, mb, kb int) {
	for s := 0; s*MR < mb; s++ {
		d := dst[s*kb*MR:][:kb*MR]
		i0 := ic + s*MR
		rows := min(MR, mb-s*MR)
		if !trans {
			// op(A)(i, p) = a[i*lda+p]: each row contiguous in p, stored with stride MR.
			if rows < MR {
				clear(d)
			}
			for i := range rows {
				r := a[(i0+i)*lda+pc:][:kb]
				for p, v := range r {
					d[p*MR+i] = v
				}
			}
			continue
		}
		// op(A)(i, p) = a[p*lda+i]: for each p, MR contiguous values.
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
		if NR == 32 && full > 0 {
			packRows32(dst, b[pc*ldb+jc:], ldb, kb, full)
		}
		for p := range kb {
			row := b[(pc+p)*ldb+jc:][:nb]
			if NR != 32 {
				for s := range full {
					copy(dst[(s*kb+p)*NR:][:NR], row[s*NR:][:NR])
				}
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

// packRows32Go copies kb rows of b (stride ldb) into slivers 32-wide
// slivers of dst: dst[(s·kb+p)·32 ..+32] = b[p·ldb+s·32 ..+32].
func packRows32Go(dst, b []float32, ldb, kb, slivers int) {
	for p := range kb {
		row := b[p*ldb:][:slivers*32]
		for s := range slivers {
			copy(dst[(s*kb+p)*32:][:32], row[s*32:][:32])
		}
	}
}

// packBTrans fills a sliver from cols rows of b (transposed B): 8×8 tiles
// transposed in registers (transpose8), the ragged edges element by element.
func packBTrans(d []float32, NR int, b []float32, ldb, pc, j0, kb, cols int) {
	kb8 := kb &^ 7
	j := 0
	for ; j+8 <= cols; j += 8 {
		if kb8 > 0 {
			// The slices bound what the tiles touch: 8 rows of b, kb8 columns
			// each; kb8 rows of d, 8 columns each.
			src := b[(j0+j)*ldb+pc:][:7*ldb+kb8]
			transpose8(d[j:][:(kb8-1)*NR+8], NR, src, ldb, kb8/8)
		}
		for i := range 8 {
			r := b[(j0+j+i)*ldb+pc:][:kb]
			for p := kb8; p < kb; p++ {
				d[p*NR+j+i] = r[p]
			}
		}
	}
	for ; j < cols; j++ {
		r := b[(j0+j)*ldb+pc:][:kb]
		for p, v := range r {
			d[p*NR+j] = v
		}
	}
}

// transpose8Go is the portable transpose8: tile q copies the 8 floats at
// column 8q of rows 0..7 of b into column i, rows 8q..8q+7 of d.
func transpose8Go(d []float32, ldd int, b []float32, ldb int, blocks int) {
	for q := range blocks {
		for i := range 8 {
			r := b[i*ldb+8*q:][:8]
			for p, v := range r {
				d[(8*q+p)*ldd+i] = v
			}
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
