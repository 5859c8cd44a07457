package rendezvous

import (
	"bytes"
	"reflect"
	"testing"
)

func sampleMessages() []*message {
	proof := bytes.Repeat([]byte{3}, ProofLen)
	return []*message{
		{typ: msgAuth, proof: proof},
		{typ: msgAuthOK, proof: proof},
		{typ: msgSet, key: "quictransport/v1/peer/3", value: []byte("127.0.0.1:4000")},
		{typ: msgSet, key: "k", value: []byte{}},
		{typ: msgWill, key: "abort", value: []byte("rank 3 died")},
		{typ: msgWait, waitMS: 1500, keys: []string{"a", "bb"}},
		{typ: msgWait, waitMS: waitForever, keys: []string{"x"}},
		{typ: msgAdd, key: "n", n: -7},
		{typ: msgOK},
		{typ: msgValues, values: [][]byte{nil, []byte("v"), {}}},
		{typ: msgInt, n: 1 << 40},
		{typ: msgError, text: "no such thing"},
	}
}

func TestMessageRoundTrip(t *testing.T) {
	for _, m := range sampleMessages() {
		b, err := m.encode(nil)
		if err != nil {
			t.Fatalf("encode %v: %v", m.typ, err)
		}
		got, err := decodeFrame(b)
		if err != nil {
			t.Fatalf("decode %v: %v", m.typ, err)
		}
		if !reflect.DeepEqual(got, m) {
			t.Fatalf("round trip of %v: got %+v, want %+v", m.typ, got, m)
		}
		got2, err := readMessage(bytes.NewReader(b))
		if err != nil || !reflect.DeepEqual(got2, m) {
			t.Fatalf("readMessage of %v: %+v, %v", m.typ, got2, err)
		}
		// Every strict prefix is refused.
		for i := 0; i < len(b); i++ {
			if _, err := decodeFrame(b[:i]); err == nil {
				t.Fatalf("%v truncated to %d bytes decoded", m.typ, i)
			}
		}
	}
}

func TestDecodeRefusesBadFrames(t *testing.T) {
	for name, b := range map[string][]byte{
		"version":        {9, byte(msgOK), 0, 0, 0, 0},
		"type":           {WireVersion, 200, 0, 0, 0, 0},
		"huge":           {WireVersion, byte(msgSet), 0x7f, 0xff, 0xff, 0xff},
		"trailing":       {WireVersion, byte(msgOK), 0, 0, 0, 1, 0},
		"empty key":      {WireVersion, byte(msgAdd), 0, 0, 0, 10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0},
		"bad presence":   {WireVersion, byte(msgValues), 0, 0, 0, 3, 0, 1, 2},
		"too many keys":  {WireVersion, byte(msgWait), 0, 0, 0, 6, 0, 0, 0, 0, 0xff, 0xff},
		"value too long": {WireVersion, byte(msgSet), 0, 0, 0, 7, 0, 1, 'k', 0x10, 0, 0, 1},
	} {
		if m, err := decodeFrame(b); err == nil {
			t.Errorf("%s: decoded %+v", name, m)
		}
	}
}

// FuzzDecodeFrame feeds arbitrary bytes to the frame decoders: they must never panic, and
// whatever they accept must re-encode to the same bytes.
func FuzzDecodeFrame(f *testing.F) {
	for _, m := range sampleMessages() {
		b, _ := m.encode(nil)
		f.Add(b)
	}
	f.Add([]byte{WireVersion, byte(msgWait), 0, 0, 0, 6, 0, 0, 0, 0, 0xff, 0xff})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := decodeFrame(b)
		m2, err2 := readMessage(bytes.NewReader(b))
		if err == nil {
			if err2 != nil || !reflect.DeepEqual(m, m2) {
				t.Fatalf("decodeFrame accepted what readMessage did not: %v", err2)
			}
			out, err := m.encode(nil)
			if err != nil {
				t.Fatalf("re-encode of accepted %v: %v", m.typ, err)
			}
			if !bytes.Equal(out, b) {
				t.Fatalf("re-encode differs:\n in %x\nout %x", b, out)
			}
		}
	})
}
