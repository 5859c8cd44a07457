package datalink

import (
	"bytes"
	"testing"
)

func FuzzDecodeMessage(f *testing.F) {
	for _, m := range []message{
		{kind: msgHello, hello: hello{rank: 3, mode: ModeTCP, streams: 2, shm: true, host: "boot:x", addr: "10.0.0.1:4000"}},
		{kind: msgResult, ok: true},
		{kind: msgFinal, text: "no"},
	} {
		f.Add(encodeMessage(&m)[2:])
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := decodeMessage(b)
		if err != nil {
			return
		}
		again := encodeMessage(&m)[2:]
		m2, err := decodeMessage(again)
		if err != nil || m2 != m {
			t.Fatalf("round trip: %+v -> %+v, %v", m, m2, err)
		}
	})
}

func FuzzDecodeConnHello(f *testing.F) {
	c := connHello{mode: ModeTLS, rank: 1, stream: 1, streams: 2}
	f.Add(encodeConnHello(&c))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := decodeConnHello(b)
		if err != nil {
			return
		}
		if !bytes.Equal(encodeConnHello(&c), b) {
			t.Fatal("round trip differs")
		}
	})
}

func FuzzDecodeCtl(f *testing.F) {
	var b [ctlFrameLen]byte
	f.Add(encodeCtl(&b, ctlDrainReq, 42))
	f.Add(encodeCtl(&b, ctlClosing, 1<<40))
	f.Fuzz(func(t *testing.T, b []byte) {
		k, v, err := decodeCtl(b)
		if err != nil {
			return
		}
		var out [ctlFrameLen]byte
		if !bytes.Equal(encodeCtl(&out, k, v), b) {
			t.Fatal("round trip differs")
		}
	})
}
