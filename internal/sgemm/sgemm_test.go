package sgemm

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
)

// refGemm is C = alpha·op(A)·op(B) + beta·C in float64 (beta = 0 ignores C).
func refGemm(tA, tB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) []float64 {
	out := make([]float64, m*n)
	for i := range m {
		for j := range n {
			var s float64
			for p := range k {
				var av, bv float32
				if tA {
					av = a[p*lda+i]
				} else {
					av = a[i*lda+p]
				}
				if tB {
					bv = b[j*ldb+p]
				} else {
					bv = b[p*ldb+j]
				}
				s += float64(av) * float64(bv)
			}
			s *= float64(alpha)
			if beta != 0 {
				s += float64(beta) * float64(c[i*ldc+j])
			}
			out[i*n+j] = s
		}
	}
	return out
}

func randSlice(rng *rand.Rand, n int) []float32 {
	s := make([]float32, n)
	for i := range s {
		s[i] = float32(2*rng.Float64() - 1)
	}
	return s
}

// checkCase runs Gemm on one random problem (leading dimensions padded by
// pad) and compares it with the float64 reference: the error bound is k
// float32 roundings of |a||b| terms, plus the untouched padding must stay.
func checkCase(t *testing.T, rng *rand.Rand, tA, tB bool, m, n, k, pad int, alpha, beta float32) {
	t.Helper()
	ar, ac := m, k
	if tA {
		ar, ac = k, m
	}
	br, bc := k, n
	if tB {
		br, bc = n, k
	}
	lda, ldb, ldc := max(1, ac+pad), max(1, bc+pad), max(1, n+pad)
	a := randSlice(rng, max(0, (ar-1)*lda+ac))
	b := randSlice(rng, max(0, (br-1)*ldb+bc))
	c := randSlice(rng, max(0, (m-1)*ldc+n))
	if beta == 0 && n > 0 {
		for i := range m { // beta = 0 must not read C: NaNs must not leak
			c[i*ldc] = float32(math.NaN())
		}
	}
	c0 := append([]float32(nil), c...)
	want := refGemm(tA, tB, m, n, k, alpha, a, lda, b, ldb, beta, c0, ldc)
	Gemm(tA, tB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
	tol := 1e-6 * float64(k+4) * (math.Abs(float64(alpha)) + math.Abs(float64(beta)) + 1)
	for i := range m {
		for j := range n {
			got := float64(c[i*ldc+j])
			if d := math.Abs(got - want[i*n+j]); !(d <= tol) {
				t.Fatalf("tA=%v tB=%v m=%d n=%d k=%d pad=%d alpha=%v beta=%v: C[%d,%d] = %v, want %v (|diff| %.3g > %.3g)",
					tA, tB, m, n, k, pad, alpha, beta, i, j, got, want[i*n+j], d, tol)
			}
		}
		for j := n; j < ldc && i*ldc+j < len(c); j++ {
			if c[i*ldc+j] != c0[i*ldc+j] {
				t.Fatalf("m=%d n=%d k=%d: padding C[%d,%d] changed", m, n, k, i, j)
			}
		}
	}
}

func TestGemmShapes(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	dims := []int{1, 2, 5, 6, 7, 13, 16, 17, 31, 64, 97}
	for _, tA := range []bool{false, true} {
		for _, tB := range []bool{false, true} {
			for _, m := range dims {
				for _, n := range dims {
					for _, k := range []int{1, 3, 4, 17, 64} {
						checkCase(t, rng, tA, tB, m, n, k, (m+n+k)%3, 1, 0)
					}
				}
			}
		}
	}
}

// TestGemmBlocks crosses the kc, mc and nc block edges and mixes alpha/beta.
func TestGemmBlocks(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	cases := []struct{ m, n, k int }{
		{mcBlock + 7, 33, kcBlock + 5},
		{2*mcBlock + 1, maxNR + 1, 2*kcBlock + 3},
		{9, ncBlock + 19, kcBlock + 1},
		{64, 512, 784},
		// gemmFewRows (k·n ≥ fewRowsMinFloats): ragged chunks of B, an edge tile
		{13, 1100, 1907},
	}
	for _, cs := range cases {
		for _, tr := range [][2]bool{{false, false}, {true, false}, {false, true}, {true, true}} {
			for _, ab := range [][2]float32{{1, 0}, {-0.5, 1}, {2, 0.25}} {
				checkCase(t, rng, tr[0], tr[1], cs.m, cs.n, cs.k, 3, ab[0], ab[1])
			}
		}
	}
}

// TestGemmFewRows checks the few-rows path at a batch of 64 rows with beta
// ≠ 0 and a C wider than the product (its chunks of B end inside C's rows).
func TestGemmFewRows(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	m, n, k := 64, fewRowsNC*8+5, fewRowsMinFloats/(fewRowsNC*8)+kcBlock+3
	if k*n < fewRowsMinFloats {
		t.Fatalf("%d×%d B does not take the few-rows path", k, n)
	}
	for _, tB := range []bool{false, true} {
		checkCase(t, rng, false, tB, m, n, k, 5, 0.5, -1)
	}
	// gemmRowsA over more than one block of rowsABlock rows of B, both ways
	// of storing C (plain transposes, alpha and beta)
	n = rowsABlock + 13
	k = fewRowsMinFloats/n + 3
	checkCase(t, rng, false, true, 9, n, k, 2, 1, 0)
	checkCase(t, rng, false, true, 9, n, k, 2, -2, 0.5)
}

func TestGemmDegenerate(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	for _, ab := range [][2]float32{{0, 0}, {0, 0.5}, {1, 1}} {
		checkCase(t, rng, false, false, 7, 9, 0, 1, ab[0], ab[1])
		checkCase(t, rng, true, true, 7, 9, 5, 2, 0, ab[1])
	}
	Gemm(false, false, 0, 5, 3, 1, nil, 3, make([]float32, 15), 5, 0, nil, 5) // m = 0: nothing to do
	for _, bad := range []func(){
		func() {
			Gemm(false, false, 2, 2, 2, 1, make([]float32, 4), 1, make([]float32, 4), 2, 0, make([]float32, 4), 2)
		},
		func() {
			Gemm(false, false, 2, 2, 2, 1, make([]float32, 3), 2, make([]float32, 4), 2, 0, make([]float32, 4), 2)
		},
		func() {
			Gemm(false, false, 2, 2, 2, 1, make([]float32, 4), 2, make([]float32, 4), 2, 0, make([]float32, 3), 2)
		},
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Error("bad arguments did not panic")
				}
			}()
			bad()
		}()
	}
}

// withKernel runs f with Gemm on the micro-kernel k.
func withKernel(k microKernel, f func()) {
	saved := active
	active = k
	defer func() { active = saved }()
	f()
}

// TestKernelsAgree runs every micro-kernel this machine supports against the
// portable one of the same width.
func TestKernelsAgree(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	var all []microKernel
	for _, k := range kernels() {
		all = append(all, k)
		if k.narrow != nil {
			all = append(all, *k.narrow)
		}
	}
	for _, k := range all {
		ref := map[[2]int]microKernel{{6, 16}: goKernel6x16, {6, 32}: goKernel6x32, {8, 32}: goKernel8x32}[[2]int{k.mr, k.nr}]
		if ref.mr != k.mr {
			t.Fatalf("%s is %dx%d, its twin %s %dx%d", k.name, k.mr, k.nr, ref.name, ref.mr, ref.nr)
		}
		MR := k.mr
		for _, kc := range []int{0, 1, 3, 4, 5, 8, 255} {
			for _, beta := range []float32{0, 1, -0.75} {
				a, b := randSlice(rng, kc*MR+1), randSlice(rng, kc*k.nr+1)
				c1 := randSlice(rng, MR*40)
				c2 := append([]float32(nil), c1...)
				k.fn(kc, &a[0], &b[0], &c1[0], 40, 1.5, beta)
				ref.fn(kc, &a[0], &b[0], &c2[0], 40, 1.5, beta)
				for i := range c1 {
					if d := math.Abs(float64(c1[i] - c2[i])); d > 1e-5*float64(kc+1) {
						t.Fatalf("%s vs %s, kc=%d beta=%v: c[%d] %v vs %v", k.name, ref.name, kc, beta, i, c1[i], c2[i])
					}
				}
			}
		}
	}
}

// TestGemmEveryKernel runs the whole blocked multiply on every kernel this
// machine supports, the portable ones included (what !amd64 and CPUs
// without AVX2/FMA get).
func TestGemmEveryKernel(t *testing.T) {
	t.Logf("active kernel: %s", KernelName())
	for _, k := range kernels() {
		t.Run(k.name, func(t *testing.T) {
			withKernel(k, func() {
				rng := rand.New(rand.NewPCG(9, 10))
				for _, tr := range [][2]bool{{false, false}, {true, false}, {false, true}, {true, true}} {
					checkCase(t, rng, tr[0], tr[1], 23, 37, kcBlock+9, 1, 0.5, 0.5)
					checkCase(t, rng, tr[0], tr[1], 64, 2*maxNR+5, 64, 2, 1, 0)
					checkCase(t, rng, tr[0], tr[1], mcBlock+5, ncBlock+33, 7, 0, -1, 1)
				}
				for _, tB := range []bool{false, true} { // gemmFewRows
					checkCase(t, rng, false, tB, 9, 1100, 1907, 1, 1, 0)
				}
				for _, m := range []int{1, 5, 6, 7, 8, 9, 13, 16, 17} {
					for _, n := range []int{1, 15, 16, 17, 31, 32, 33, 65} {
						checkCase(t, rng, false, m%2 == 1, m, n, 19, 1, 1, 0)
					}
				}
			})
		})
	}
}

func TestGemmNoAllocs(t *testing.T) {
	rng := rand.New(rand.NewPCG(11, 12))
	a, b, c := randSlice(rng, 64*300), randSlice(rng, 300*200), make([]float32, 64*200)
	Gemm(false, false, 64, 200, 300, 1, a, 300, b, 200, 0, c, 200)
	if n := testing.AllocsPerRun(20, func() { Gemm(false, false, 64, 200, 300, 1, a, 300, b, 200, 0, c, 200) }); n > 0 {
		t.Errorf("Gemm allocates %v times per call in steady state", n)
	}
}

func FuzzGemm(f *testing.F) {
	f.Add(uint8(7), uint8(13), uint16(300), uint8(0), uint8(1), int8(4), int8(0), uint64(1))
	f.Add(uint8(64), uint8(17), uint16(5), uint8(3), uint8(0), int8(-2), int8(3), uint64(2))
	f.Fuzz(func(t *testing.T, m, n uint8, k uint16, trans, pad uint8, alpha, beta int8, seed uint64) {
		rng := rand.New(rand.NewPCG(seed, 99))
		checkCase(t, rng, trans&1 != 0, trans&2 != 0, int(m%150), int(n%150), int(k%600), int(pad%5),
			float32(alpha)/4, float32(beta)/4)
	})
}

// gemmShapes are the GEMMs of mlp and mlp-wide at batch 64 (forward, the
// weight gradient xᵀ·dy, the input gradient dy·Wᵀ) and a square reference.
var gemmShapes = []struct {
	name    string
	tA, tB  bool
	m, n, k int
}{
	{"mlp.fc1.fwd", false, false, 64, 512, 784},
	{"mlp.fc1.dW", true, false, 784, 512, 64},
	{"mlp.fc2.dx", false, true, 64, 512, 512},
	{"wide.fc2.fwd", false, false, 64, 4096, 4096},
	{"wide.fc2.dW", true, false, 4096, 4096, 64},
	{"wide.fc2.dx", false, true, 64, 4096, 4096},
	{"square512", false, false, 512, 512, 512},
}

func BenchmarkGemm(b *testing.B) {
	for _, s := range gemmShapes {
		b.Run(s.name, func(b *testing.B) {
			rng := rand.New(rand.NewPCG(1, 1))
			lda, ldb := s.k, s.n
			if s.tA {
				lda = s.m
			}
			if s.tB {
				ldb = s.k
			}
			a, bb, c := randSlice(rng, s.m*s.k), randSlice(rng, s.k*s.n), make([]float32, s.m*s.n)
			Gemm(s.tA, s.tB, s.m, s.n, s.k, 1, a, lda, bb, ldb, 0, c, s.n)
			b.ResetTimer()
			for range b.N {
				Gemm(s.tA, s.tB, s.m, s.n, s.k, 1, a, lda, bb, ldb, 0, c, s.n)
			}
			b.ReportMetric(2*float64(s.m)*float64(s.n)*float64(s.k)*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
		})
	}
}

var _ = fmt.Sprint

// TestTranspose8 checks the tile transpose packing uses (assembly where the
// CPU has AVX) against its portable twin, with strides wider than the tiles.
func TestTranspose8(t *testing.T) {
	rng := rand.New(rand.NewPCG(13, 14))
	for _, blocks := range []int{1, 2, 5} {
		const ldb, ldd = 45, 19
		b := randSlice(rng, 7*ldb+8*blocks)
		d1 := randSlice(rng, (8*blocks-1)*ldd+8)
		d2 := append([]float32(nil), d1...)
		transpose8(d1, ldd, b, ldb, blocks)
		transpose8Go(d2, ldd, b, ldb, blocks)
		for i := range d1 {
			if d1[i] != d2[i] {
				t.Fatalf("blocks=%d (assembly: %v): d[%d] = %v, want %v", blocks, haveTranspose8, i, d1[i], d2[i])
			}
		}
		for p := range 8 * blocks {
			for i := range 8 {
				if got, want := d2[p*ldd+i], b[i*ldb+p]; got != want {
					t.Fatalf("blocks=%d: d[%d][%d] = %v, want b[%d][%d] = %v", blocks, p, i, got, i, p, want)
				}
			}
		}
	}
}

// TestPackRows32 checks the row packing packB uses for 32-wide slivers
// (assembly where the CPU has AVX-512) against its portable twin.
func TestPackRows32(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 10))
	for _, cs := range []struct{ ldb, kb, slivers int }{{32, 1, 1}, {100, 7, 3}, {4096, 256, 4}, {97, 3, 2}} {
		b := randSlice(rng, (cs.kb-1)*cs.ldb+cs.slivers*32)
		got := randSlice(rng, cs.slivers*cs.kb*32+5)
		want := append([]float32(nil), got...)
		packRows32(got, b, cs.ldb, cs.kb, cs.slivers)
		packRows32Go(want, b, cs.ldb, cs.kb, cs.slivers)
		for i := range want {
			if got[i] != want[i] {
				t.Fatalf("ldb=%d kb=%d slivers=%d: dst[%d] = %v, want %v", cs.ldb, cs.kb, cs.slivers, i, got[i], want[i])
			}
		}
	}
}
