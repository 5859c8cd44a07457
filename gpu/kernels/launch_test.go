package kernels

import "testing"

func TestElementwise(t *testing.T) {
	for _, n := range []int{0, 1, 255, 256, 257, 1 << 20, 1<<31 - 1} {
		l := Elementwise(n)
		if l.Block != [3]uint32{256, 1, 1} || l.Grid[1] != 1 || l.Grid[2] != 1 || l.Shared != 0 {
			t.Fatalf("Elementwise(%d) = %+v", n, l)
		}
		g := int(l.Grid[0])
		if g < 1 || g > MaxElementwiseGrid {
			t.Fatalf("Elementwise(%d): grid %d", n, g)
		}
		if n > 0 && l.Threads() < int64(n) && g != MaxElementwiseGrid {
			t.Fatalf("Elementwise(%d) covers %d items without being capped", n, l.Threads())
		}
		if n > 0 && (g-1)*256 >= n {
			t.Fatalf("Elementwise(%d): a block with no work (%d blocks)", n, g)
		}
	}
}

func TestReductionLaunches(t *testing.T) {
	for _, c := range []struct{ rows, cols, grid int }{{4096, 4096, 128}, {4096, 10, 1}, {1, 33, 2}, {0, 0, 1}} {
		l := ColSumLaunch(c.rows, c.cols)
		if l.Block != [3]uint32{32, 32, 1} || int(l.Grid[0]) != c.grid {
			t.Errorf("ColSumLaunch(%d, %d) = %+v, want grid %d", c.rows, c.cols, l, c.grid)
		}
	}
	for _, c := range []struct{ rows, cols, grid int }{{6, 400000, 6}, {4096, 10, 4096}, {100000, 3, MaxRowGrid}} {
		l := RowSumLaunch(c.rows, c.cols)
		if l.Block != [3]uint32{256, 1, 1} || int(l.Grid[0]) != c.grid {
			t.Errorf("RowSumLaunch(%d, %d) = %+v, want grid %d", c.rows, c.cols, l, c.grid)
		}
	}
	if l := RowsLaunch(4096); l.Threads() < 4096 || l.Block[0]*(l.Grid[0]-1) >= 4096 {
		t.Errorf("RowsLaunch(4096) = %+v", l)
	}
}

func TestConvGeomValidate(t *testing.T) {
	ok := ConvGeom{B: 2, C: 3, H: 7, W: 5, K: 3, Stride: 2, Pad: 1, OH: 4, OW: 3}
	if err := ok.Validate(); err != nil {
		t.Fatal(err)
	}
	if ok.ColRows() != 27 || ok.ColCols() != 24 || ok.InSize() != 210 || ok.OutSize() != 72 {
		t.Fatalf("sizes of %+v", ok)
	}
	bad := []func(*ConvGeom){
		func(g *ConvGeom) { g.B = 0 },
		func(g *ConvGeom) { g.W = -1 },
		func(g *ConvGeom) { g.K = 0 },
		func(g *ConvGeom) { g.Stride = 0 },
		func(g *ConvGeom) { g.Pad = -1 },
		func(g *ConvGeom) { g.OH = 5 },
		func(g *ConvGeom) { g.OW = 2 },
		func(g *ConvGeom) { g.K, g.OH, g.OW = 10, 0, 0 },
		func(g *ConvGeom) { g.B, g.C = 1<<16, 1<<12 }, // 2³¹+ elements
	}
	for i, f := range bad {
		g := ok
		f(&g)
		if g.Validate() == nil {
			t.Errorf("case %d: %+v accepted", i, g)
		}
	}
}

func TestTwinsPanicOnBadLengths(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Fatal("no panic")
		}
	}()
	ReluFwd(make([]float32, 3), make([]float32, 2))
}
