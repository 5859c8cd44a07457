package cuda

import (
	"errors"
	"strings"
	"testing"
	"unsafe"
)

// A zero Context has no driver: calls that pass validation reach do and
// return errClosed, so these tests run without a GPU and tell the two
// apart.
func TestArgumentValidation(t *testing.T) {
	c := &Context{}
	var x [4]byte
	src := unsafe.Pointer(&x[0])
	const A, B, C = DevicePtr(0x1000), DevicePtr(0x2000), DevicePtr(0x3000)
	cases := []struct {
		name string
		call func() error
		want string // "" means validation passes
	}{
		{"alloc zero", func() error { _, err := c.Alloc(0); return err }, "bytes = 0"},
		{"alloc negative", func() error { _, err := c.Alloc(-1); return err }, "bytes = -1"},
		{"alloc ok", func() error { _, err := c.Alloc(8); return err }, ""},
		{"free nil", func() error { return c.Free(0) }, "nil device pointer"},
		{"allochost zero", func() error { _, err := c.AllocHost(0); return err }, "bytes = 0"},
		{"freehost empty", func() error { return c.FreeHost(nil) }, "empty slice"},
		{"htod negative", func() error { return c.HtoD(A, src, -4) }, "bytes = -4 is negative"},
		{"htod nil dst", func() error { return c.HtoD(0, src, 4) }, "nil dst"},
		{"htod nil src", func() error { return c.HtoD(A, nil, 4) }, "nil src"},
		{"htod zero is a no-op", func() error { return c.HtoD(0, nil, 0) }, "<nil>"},
		{"htod ok", func() error { return c.HtoD(A, src, 4) }, ""},
		{"dtoh nil dst", func() error { return c.DtoH(nil, A, 4) }, "nil dst"},
		{"dtoh nil src", func() error { return c.DtoH(src, 0, 4) }, "nil src"},
		{"dtod negative", func() error { return c.DtoD(A, B, -1) }, "bytes = -1"},
		{"dtod nil src", func() error { return c.DtoD(A, 0, 4) }, "nil src"},
		{"memset negative", func() error { return c.Memset32(A, 0, -1) }, "n = -1"},
		{"memset unaligned", func() error { return c.Memset32(A+2, 0, 1) }, "not 4-byte aligned"},
		{"memset ok", func() error { return c.Memset32(A, 0, 1) }, ""},
		{"loadmodule empty", func() error { _, err := c.LoadModule(nil); return err }, "empty image"},

		{"sgemm m=0", func() error { return c.Sgemm(false, false, 0, 2, 2, 1, A, 1, B, 2, 0, C, 1) }, "m = 0"},
		{"sgemm k<0", func() error { return c.Sgemm(false, false, 2, 2, -1, 1, A, 2, B, 2, 0, C, 2) }, "k = -1"},
		{"sgemm nil A", func() error { return c.Sgemm(false, false, 2, 3, 4, 1, 0, 2, B, 4, 0, C, 2) }, "nil A"},
		{"sgemm nil C", func() error { return c.Sgemm(false, false, 2, 3, 4, 1, A, 2, B, 4, 0, 0, 2) }, "nil C"},
		// A is m×k = 2×4: lda ≥ 2; transposed it is stored k×m: lda ≥ 4.
		{"sgemm lda", func() error { return c.Sgemm(false, false, 2, 3, 4, 1, A, 1, B, 4, 0, C, 2) }, "lda = 1 < 2"},
		{"sgemm lda transA", func() error { return c.Sgemm(true, false, 2, 3, 4, 1, A, 2, B, 4, 0, C, 2) }, "lda = 2 < 4"},
		// B is k×n = 4×3: ldb ≥ 4; transposed it is stored n×k: ldb ≥ 3.
		{"sgemm ldb", func() error { return c.Sgemm(false, false, 2, 3, 4, 1, A, 2, B, 3, 0, C, 2) }, "ldb = 3 < 4"},
		{"sgemm ldb transB ok", func() error { return c.Sgemm(false, true, 2, 3, 4, 1, A, 2, B, 3, 0, C, 2) }, ""},
		{"sgemm ldc", func() error { return c.Sgemm(false, false, 2, 3, 4, 1, A, 2, B, 4, 0, C, 1) }, "ldc = 1 < 2"},
		{"sgemm ok", func() error { return c.Sgemm(true, true, 2, 3, 4, 1, A, 4, B, 3, 0, C, 2) }, ""},

		{"batched batch=0", func() error {
			return c.SgemmStridedBatched(false, false, 2, 3, 4, 1, A, 2, 8, B, 4, 12, 0, C, 2, 6, 0)
		}, "batch = 0"},
		{"batched negative stride", func() error {
			return c.SgemmStridedBatched(false, false, 2, 3, 4, 1, A, 2, -8, B, 4, 12, 0, C, 2, 6, 2)
		}, "strideA = -8"},
		{"batched overlapping C", func() error {
			return c.SgemmStridedBatched(false, false, 2, 3, 4, 1, A, 2, 8, B, 4, 12, 0, C, 2, 5, 2)
		}, "strideC = 5 < ldc·n = 6"},
		{"batched shared A ok", func() error {
			return c.SgemmStridedBatched(false, false, 2, 3, 4, 1, A, 2, 0, B, 4, 12, 0, C, 2, 6, 2)
		}, ""},
		{"batched lda", func() error {
			return c.SgemmStridedBatched(false, false, 2, 3, 4, 1, A, 1, 8, B, 4, 12, 0, C, 2, 6, 2)
		}, "lda = 1 < 2"},

		{"launch zero function", func() error { return c.Launch(Function{}, [3]uint32{1, 1, 1}, [3]uint32{1, 1, 1}, 0) }, "zero Function"},
		{"launch foreign function", func() error {
			return c.Launch(Function{ctx: &Context{}, h: 1, name: "k"}, [3]uint32{1, 1, 1}, [3]uint32{1, 1, 1}, 0)
		}, "another Context"},
		{"launch grid.y=0", func() error {
			return c.Launch(Function{ctx: c, h: 1}, [3]uint32{1, 0, 1}, [3]uint32{1, 1, 1}, 0)
		}, "grid.y = 0"},
		{"launch block.z=0", func() error {
			return c.Launch(Function{ctx: c, h: 1}, [3]uint32{1, 1, 1}, [3]uint32{1, 1, 0}, 0)
		}, "block.z = 0"},
		{"launch bad arg", func() error {
			return c.Launch(Function{ctx: c, h: 1}, [3]uint32{1, 1, 1}, [3]uint32{1, 1, 1}, 0, A, uint64(3))
		}, "argument 1: unsupported type uint64"},
		{"launch ok", func() error {
			return c.Launch(Function{ctx: c, h: 1}, [3]uint32{1, 1, 1}, [3]uint32{32, 1, 1}, 0, A, 3, float32(2))
		}, ""},
		{"record nil event", func() error { return c.Record(nil) }, "nil or destroyed event"},
		{"record foreign event", func() error { return c.Record(&Event{ctx: &Context{}, h: 1}) }, "another Context"},
		{"elapsed nil", func() error { _, err := c.Elapsed(&Event{ctx: c, h: 1}, nil); return err }, "nil or destroyed event"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.call()
			switch tc.want {
			case "":
				if !errors.Is(err, errClosed) {
					t.Fatalf("err %v, want validation to pass (and errClosed from the zero Context)", err)
				}
			case "<nil>":
				if err != nil {
					t.Fatalf("err %v, want nil", err)
				}
			default:
				if err == nil || !strings.Contains(err.Error(), tc.want) || errors.Is(err, errClosed) {
					t.Fatalf("err %v, want a validation error containing %q", err, tc.want)
				}
			}
		})
	}
}

func TestClosedContext(t *testing.T) {
	c := &Context{}
	for name, err := range map[string]error{
		"Sync":  c.Sync(),
		"Close": c.Close(),
		"MemInfo": func() error {
			_, _, err := c.MemInfo()
			return err
		}(),
		"NewEvent": func() error {
			_, err := c.NewEvent()
			return err
		}(),
	} {
		if !errors.Is(err, errClosed) {
			t.Errorf("%s on a zero Context: %v, want errClosed", name, err)
		}
	}
}
