package collective

import (
	"bytes"
	"errors"
	"testing"
)

func TestHeaderRoundTrip(t *testing.T) {
	for _, h := range []header{
		{kind: kindAllReduce, dtype: dtF32, reduce: Sum, seq: 1, count: 100},
		{kind: kindReduceScatter, dtype: dtF16, reduce: Min, seq: 1 << 60, count: 1 << 40},
		{kind: kindBroadcast, dtype: dtF32, seq: 7, count: 3, arg: 4},
		{kind: kindBarrier, dtype: dtNone},
		{kind: kindSend, dtype: dtF32, count: 5, arg: -9},
	} {
		var b [headerSize]byte
		h.encode(&b)
		var got header
		if err := got.decode(b[:]); err != nil {
			t.Fatalf("decode(encode(%+v)): %v", h, err)
		}
		if got != h {
			t.Fatalf("round trip: %+v became %+v", h, got)
		}
	}
}

func TestHeaderRejects(t *testing.T) {
	var good [headerSize]byte
	(&header{kind: kindAllReduce, dtype: dtF32, reduce: Sum}).encode(&good)
	for name, mut := range map[string]func(b []byte) []byte{
		"short":    func(b []byte) []byte { return b[:10] },
		"magic":    func(b []byte) []byte { b[0] ^= 1; return b },
		"version":  func(b []byte) []byte { b[2] = 9; return b },
		"kind":     func(b []byte) []byte { b[3] = 0; return b },
		"kind-big": func(b []byte) []byte { b[3] = byte(kindMax + 1); return b },
		"dtype":    func(b []byte) []byte { b[4] = 7; return b },
		"reduce":   func(b []byte) []byte { b[5] = 9; return b },
		"reserved": func(b []byte) []byte { b[7] = 1; return b },
	} {
		b := mut(append([]byte(nil), good[:]...))
		var h header
		if err := h.decode(b); !errors.Is(err, ErrBadHeader) {
			t.Errorf("%s: decode = %v, want ErrBadHeader", name, err)
		}
	}
}

func TestHeaderDescribe(t *testing.T) {
	for h, want := range map[header]string{
		{kind: kindAllReduce, dtype: dtF32, reduce: Sum, count: 100}: "AllReduce(count=100, fp32, sum)",
		{kind: kindAllGather, dtype: dtF32, count: 8}:                "AllGather(count=8, fp32)",
		{kind: kindBroadcast, dtype: dtF32, count: 8, arg: 2}:        "Broadcast(count=8, fp32, root=2)",
		{kind: kindBarrier}: "Barrier()",
		{kind: kindReduceScatter, dtype: dtF16, reduce: Avg, count: 4, seq: 3}: "ReduceScatter(count=4, fp16, avg)",
	} {
		if got := h.describe(false); got != want {
			t.Errorf("describe = %q, want %q", got, want)
		}
	}
}

// FuzzHeaderDecode: decoding arbitrary bytes never panics, and whatever decodes re-encodes to
// the same bytes (no two encodings of one header, no ignored bits).
func FuzzHeaderDecode(f *testing.F) {
	var b [headerSize]byte
	(&header{kind: kindAllReduce, dtype: dtF32, reduce: Sum, seq: 3, count: 100}).encode(&b)
	f.Add(b[:])
	(&header{kind: kindSend, dtype: dtF32, count: 1, arg: -1}).encode(&b)
	f.Add(b[:])
	f.Add([]byte{})
	f.Add(bytes.Repeat([]byte{0xff}, headerSize))
	f.Fuzz(func(t *testing.T, in []byte) {
		var h header
		if err := h.decode(in); err != nil {
			return
		}
		var out [headerSize]byte
		h.encode(&out)
		if !bytes.Equal(out[:], in) {
			t.Fatalf("decode/encode changed %x into %x", in, out)
		}
		_ = h.describe(true)
	})
}

// FuzzFP16Decode: a chunk of arbitrary bytes either decodes (finite exponent) or fails
// cleanly, never panics.
func FuzzFP16Decode(f *testing.F) {
	wire := make([]byte, fp16WireBytes(4))
	encodeFP16(wire, []float32{1, -2, 1e30, 0})
	f.Add(wire)
	f.Add([]byte{0xff, 0xff, 0xff, 0x7f, 1, 2})
	f.Fuzz(func(t *testing.T, in []byte) {
		if len(in) < 4 || len(in)%2 != 0 {
			return
		}
		// Copy to a 4-byte aligned buffer, as the ring's scratch is.
		buf := f32Bytes(make([]float32, (len(in)+3)/4))[:len(in)]
		copy(buf, in)
		dst := make([]float32, (len(in)-4)/2)
		_ = decodeFP16(Sum, true, dst, buf)
	})
}
