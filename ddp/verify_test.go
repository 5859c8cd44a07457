package ddp

import (
	"bytes"
	"errors"
	"reflect"
	"testing"
)

func TestShapeDescriptionRoundTrip(t *testing.T) {
	m := smallModel(t, 40, 1)
	var refs []paramRef
	var want []shapeEntry
	for _, p := range m.Params() {
		refs = append(refs, paramRef{p: p})
		want = append(want, shapeEntry{Name: p.Name, Shape: p.Shape})
	}
	got, err := decodeShapes(encodeShapes(refs))
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Fatalf("round trip: %v %v", got, err)
	}
	for _, bad := range [][]byte{nil, {1, 0, 0}, {1, 0, 0, 0, 5, 0}, append(encodeShapes(refs), 0)} {
		if _, err := decodeShapes(bad); !errors.Is(err, errDesc) {
			t.Errorf("decodeShapes(%v): %v", bad, err)
		}
	}
	c := rankConfig{firstCap: 1 << 20, cap: 25 << 20, buckets: 3, compression: 1, errorFeedback: 1, hook: "powersgd(rank=2)", desc: encodeShapes(refs)}
	if got, ok := decodeConfig(c.encode()); !ok || !got.optionsEqual(&c) || !reflect.DeepEqual(got.desc, c.desc) {
		t.Fatalf("config round trip: %+v, %v", got, ok)
	}
	for _, n := range []int{39, configFixed + 3} {
		if _, ok := decodeConfig(c.encode()[:n]); ok {
			t.Fatalf("a config truncated to %d bytes must not decode", n)
		}
	}
}

func TestFirstShapeDiff(t *testing.T) {
	a := []shapeEntry{{"w", []int{2, 3}}, {"b", []int{3}}}
	for _, c := range []struct {
		other             []shapeEntry
		param, got, wantS string
	}{
		{[]shapeEntry{{"w", []int{2, 4}}, {"b", []int{3}}}, `"w"`, "shape [2 4]", "shape [2 3]"},
		{[]shapeEntry{{"v", []int{2, 3}}, {"b", []int{3}}}, "#0", `"v"`, `"w"`},
		{a[:1], "#1", "absent (1 parameters in all)", `"b" [3] (2 parameters in all)`},
	} {
		p, g, w := firstShapeDiff(c.other, a)
		if p != c.param || g != c.got || w != c.wantS {
			t.Errorf("got (%s, %s, %s), want (%s, %s, %s)", p, g, w, c.param, c.got, c.wantS)
		}
	}
}

// FuzzDecodeShapes: the shape descriptions come off the network (Wrap's AllGather).
func FuzzDecodeShapes(f *testing.F) {
	m := smallModel(f, 8, 1)
	var refs []paramRef
	for _, p := range m.Params() {
		refs = append(refs, paramRef{p: p})
	}
	f.Add(encodeShapes(refs))
	f.Add([]byte{0, 0, 0, 0})
	f.Add([]byte{255, 255, 255, 255, 1})
	f.Fuzz(func(t *testing.T, b []byte) {
		es, err := decodeShapes(b)
		if err != nil {
			if !errors.Is(err, errDesc) {
				t.Fatalf("error does not wrap errDesc: %v", err)
			}
			return
		}
		for _, e := range es {
			if len(e.Name) > maxNameBytes || len(e.Shape) > maxDims {
				t.Fatalf("entry beyond the limits: %v", e)
			}
		}
	})
}

// FuzzDecodeConfig: Wrap's configurations come off the network (Agree): any bytes decode
// or are refused, never panic, and what decodes re-encodes to the same bytes.
func FuzzDecodeConfig(f *testing.F) {
	m := smallModel(f, 8, 1)
	var refs []paramRef
	for _, p := range m.Params() {
		refs = append(refs, paramRef{p: p})
	}
	f.Add((&rankConfig{firstCap: 1, cap: 2, buckets: 3, compression: 2, errorFeedback: 1, hook: "bf16+ef", desc: encodeShapes(refs)}).encode())
	f.Add(make([]byte, configFixed))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, ok := decodeConfig(b)
		if !ok {
			return
		}
		if len(c.hook) > maxNameBytes {
			t.Fatalf("hook name of %d bytes accepted", len(c.hook))
		}
		if again := c.encode(); !bytes.Equal(again, b) {
			t.Fatalf("decoded %+v re-encodes differently", c)
		}
	})
}
