package cuda

import (
	"math"
	"strings"
	"testing"
)

func TestPackArgs(t *testing.T) {
	slots, err := packArgs([]any{
		DevicePtr(0x7f0000001000),
		int32(-2),
		7,
		-1,
		uint32(0xfffffffe),
		float32(1.5),
		float64(-0.25),
		int64(-5_000_000_000),
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []uint64{
		0x7f0000001000,
		0xfffffffe,         // int32 -2 in the low 4 bytes, high bytes zero
		7,                  // int as int32
		0xffffffff,         // int -1 as int32
		0xfffffffe,         // uint32
		0x3fc00000,         // float32 1.5 bits
		0xbfd0000000000000, // float64 -0.25 bits
		uint64(0xfffffffed5fa0e00),
	}
	if len(slots) != len(want) {
		t.Fatalf("%d slots, want %d", len(slots), len(want))
	}
	for i := range want {
		if slots[i] != want[i] {
			t.Errorf("slot %d = %#x, want %#x", i, slots[i], want[i])
		}
	}
	if got := math.Float32frombits(uint32(slots[5])); got != 1.5 {
		t.Errorf("float32 round trip %v", got)
	}
	if got := int64(slots[7]); got != -5_000_000_000 {
		t.Errorf("int64 round trip %v", got)
	}
}

func TestPackArgsErrors(t *testing.T) {
	for _, tc := range []struct {
		args []any
		want string
	}{
		{[]any{1, math.MaxInt32 + 1}, "argument 1: int 2147483648 does not fit int32"},
		{[]any{math.MinInt32 - 1}, "argument 0: int -2147483649 does not fit int32"},
		{[]any{uint64(1)}, "unsupported type uint64"},
		{[]any{DevicePtr(1), nil}, "argument 1: unsupported type <nil>"},
		{[]any{[]float32{1}}, "unsupported type []float32"},
	} {
		_, err := packArgs(tc.args)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("packArgs(%v) err %v, want %q", tc.args, err, tc.want)
		}
	}
	if s, err := packArgs(nil); err != nil || len(s) != 0 {
		t.Errorf("no args: %v %v", s, err)
	}
	if _, err := packArgs([]any{math.MaxInt32, math.MinInt32}); err != nil {
		t.Errorf("int32 limits refused: %v", err)
	}
}
