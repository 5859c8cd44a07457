package collective

import (
	"bytes"
	"errors"
	"math"
	"strings"
	"testing"
)

func TestHeaderRoundTrip(t *testing.T) {
	for _, h := range []header{
		{kind: kindAllReduce, dtype: dtF32, reduce: Sum, seq: 1, count: 100},
		{kind: kindReduceScatter, compression: FP16, dtype: dtF32, reduce: Min, seq: 1 << 60, count: 1 << 40},
		{kind: kindBroadcast, dtype: dtF32, seq: 7, count: 3, arg: 4},
		{kind: kindBarrier, dtype: dtNone},
		{kind: kindSend, dtype: dtF32, count: 5, arg: -9},
		{kind: kindAllReduce, dtype: dtF32, compression: FP16, reduce: Avg, seq: 9, count: 1 << 20, chunk: 1 << 30},
		{kind: kindBroadcastBytes, dtype: dtBytes, arg: 3},
		{kind: kindAllGatherBytes, dtype: dtBytes, seq: 2},
		{kind: kindReduce, dtype: dtI64, reduce: Max, seq: 3, count: 7, arg: 2, chunk: 32768},
		{kind: kindGather, dtype: dtF64, seq: 4, count: 9, arg: 1},
		{kind: kindScatter, dtype: dtI32, seq: 5, count: 9, arg: 0},
		{kind: kindAllToAll, dtype: dtF32, seq: 6, count: 12},
		{kind: kindAllToAllV, dtype: dtI64, seq: 7},
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
		"short":       func(b []byte) []byte { return b[:10] },
		"magic":       func(b []byte) []byte { b[0] ^= 1; return b },
		"version":     func(b []byte) []byte { b[2] = 9; return b },
		"kind":        func(b []byte) []byte { b[3] = 0; return b },
		"kind-big":    func(b []byte) []byte { b[3] = byte(kindMax + 1); return b },
		"dtype":       func(b []byte) []byte { b[4] = 7; return b },
		"reduce":      func(b []byte) []byte { b[5] = 9; return b },
		"reserved":    func(b []byte) []byte { b[39] = 1; return b },
		"compression": func(b []byte) []byte { b[6] = byte(compressionMax + 1); return b },
		"algorithm":   func(b []byte) []byte { b[7] = byte(algoMax + 1); return b },
		"v1-size":     func(b []byte) []byte { return b[:32] },
		"v1":          func(b []byte) []byte { b[2] = 1; return b },
		"long":        func(b []byte) []byte { return append(b, 0) },
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
		{kind: kindReduceScatter, compression: FP16, dtype: dtF32, reduce: Avg, count: 4, seq: 3}: "ReduceScatter(count=4, fp16, avg)",
	} {
		if got := h.describe(0); got != want {
			t.Errorf("describe = %q, want %q", got, want)
		}
	}
}

// TestHeaderMismatchNamesGeometry: two calls that differ only in wire geometry are told apart
// in the error, with both ranks and both values.
func TestHeaderMismatchNamesGeometry(t *testing.T) {
	a := header{kind: kindAllReduce, dtype: dtF32, compression: FP16, reduce: Sum, count: 100, chunk: 1024}
	b := a
	b.chunk = 4096
	err := mismatch(1, &a, 0, &b)
	var me *MismatchError
	if !errors.As(err, &me) {
		t.Fatalf("mismatch = %v, want a *MismatchError", err)
	}
	want := "collective: op mismatch: rank 1 called AllReduce(count=100, fp16, sum, chunk=4096 B) but rank 0 called AllReduce(count=100, fp16, sum, chunk=16384 B): the ranks differ in chunk size (Options.ChunkBytes)"
	if err.Error() != want {
		t.Fatalf("mismatch:\n got %s\nwant %s", err, want)
	}
	c := a
	c.algo = 7
	if err := mismatch(1, &a, 0, &c); err == nil || !strings.Contains(err.Error(), "algorithm=ring") || !strings.Contains(err.Error(), "algorithm=algorithm(7)") {
		t.Fatalf("algorithm mismatch: %v", err)
	}
	if err := mismatch(1, &a, 0, &a); err != nil {
		t.Fatalf("equal headers: %v", err)
	}
}

// FuzzHeaderDecode: decoding arbitrary bytes never panics, whatever decodes re-encodes to
// the same bytes (no two encodings of one header, no ignored bits), and comparing it with
// a valid header yields nil exactly when the two are equal, with an error naming both
// ranks otherwise.
func FuzzHeaderDecode(f *testing.F) {
	var b [headerSize]byte
	(&header{kind: kindAllReduce, dtype: dtF32, reduce: Sum, seq: 3, count: 100}).encode(&b)
	f.Add(b[:])
	(&header{kind: kindSend, dtype: dtF32, count: 1, arg: -1}).encode(&b)
	f.Add(b[:])
	(&header{kind: kindAllReduce, dtype: dtF32, compression: FP16, reduce: Avg, seq: 5, count: 40000, chunk: 4096}).encode(&b)
	f.Add(b[:])
	(&header{kind: kindAllGatherBytes, dtype: dtBytes, seq: 1}).encode(&b)
	f.Add(b[:])
	(&header{kind: kindReduce, dtype: dtI64, reduce: Min, seq: 2, count: 10, arg: 3, chunk: 32768}).encode(&b)
	f.Add(b[:])
	(&header{kind: kindAllToAllV, dtype: dtF64, seq: 2, count: 10}).encode(&b)
	f.Add(b[:])
	f.Add(b[:32]) // a version-1 sized header
	ref := header{kind: kindAllReduce, dtype: dtF32, compression: FP16, reduce: Avg, seq: 5, count: 40000, chunk: 4096}
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
		_ = h.describe(showSeq | showChunk | showAlgo)
		err := mismatch(3, &ref, 7, &h)
		if (err == nil) != (h == ref) {
			t.Fatalf("mismatch(%+v, %+v) = %v", ref, h, err)
		}
		if err != nil && (!strings.Contains(err.Error(), "rank 3 called") || !strings.Contains(err.Error(), "rank 7 called")) {
			t.Fatalf("mismatch error %q does not name both ranks", err)
		}
	})
}

// FuzzFP16Decode: a chunk of arbitrary bytes either decodes or fails cleanly, never panics;
// what decodes has a plausible scale.
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
		if err := decodeFP16(Sum, true, dst, buf); err != nil {
			if !errors.Is(err, ErrCorruptChunk) {
				t.Fatalf("decode error %v does not wrap ErrCorruptChunk", err)
			}
			return
		}
		e, _ := wireExp(buf)
		if checkScale(e, maxAbsFiniteF16(u16View(buf[4:]))) != nil {
			t.Fatalf("accepted a chunk with an implausible scale")
		}
	})
}

// FuzzFP16RoundTrip: whatever float32 values a chunk holds, the decoder accepts what the
// encoder wrote (the scale checks must not reject real data: clamped exponents, subnormals,
// Inf, NaN, all zeros).
func FuzzFP16RoundTrip(f *testing.F) {
	f.Add([]byte{})
	f.Add(f32Bytes([]float32{0, 0, 0}))
	f.Add(f32Bytes([]float32{1e-45, -1e-44}))
	f.Add(f32Bytes([]float32{3.4e38, -1, float32(math.Inf(1))}))
	f.Add(f32Bytes([]float32{float32(math.NaN()), 0}))
	f.Add(f32Bytes([]float32{16384, 32768, 1e-30}))
	f.Fuzz(func(t *testing.T, in []byte) {
		v := make([]float32, len(in)/4)
		copy(f32Bytes(v), in)
		wire := f32Bytes(make([]float32, (fp16WireBytes(len(v))+3)/4))[:fp16WireBytes(len(v))]
		encodeFP16(wire, v)
		if err := decodeFP16(Sum, true, make([]float32, len(v)), wire); err != nil {
			t.Fatalf("decoding what the encoder wrote for %v: %v", v, err)
		}
	})
}

// FuzzPeerHeader: the header ahead of a Gather, Scatter or AllToAll[V] message, checked by
// its receiver (peerops.go), is accepted exactly when it equals what the receiver expects;
// otherwise the error names both ranks, and for AllToAllV calls that differ only in this
// message's count, says the split sizes differ.
func FuzzPeerHeader(f *testing.F) {
	want := header{kind: kindAllToAllV, dtype: dtI32, seq: 9, count: 5}
	for _, h := range []header{want, {kind: kindAllToAllV, dtype: dtI32, seq: 9, count: 6}, {kind: kindGather, dtype: dtF32, seq: 1, count: 3, arg: 2}} {
		var b [headerSize]byte
		h.encode(&b)
		f.Add(b[:], uint64(5))
	}
	f.Fuzz(func(t *testing.T, in []byte, count uint64) {
		w := want
		w.count = count
		err := checkPeerHeader(1, &w, 4, in)
		var h header
		derr := h.decode(in)
		if (err == nil) != (derr == nil && h == w) {
			t.Fatalf("checkPeerHeader(%x) = %v; decoded %+v (%v), want %+v", in, err, h, derr, w)
		}
		if err != nil && derr == nil {
			if !strings.Contains(err.Error(), "rank 1") || !strings.Contains(err.Error(), "rank 4") {
				t.Fatalf("%q does not name both ranks", err)
			}
			same := h
			same.count = w.count
			if same == w && !strings.Contains(err.Error(), "split sizes") {
				t.Fatalf("%q: a count-only difference does not name the split sizes", err)
			}
		}
	})
}
