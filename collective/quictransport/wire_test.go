package quictransport

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/quic-go/quic-go"
)

func TestWireRoundTrips(t *testing.T) {
	e := peerEntry{Addr: "10.0.0.7:41234", Fingerprint: [32]byte{1, 2, 3, 31: 9}}
	b, err := encodeEntry(e)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := decodeEntry(b); err != nil || got != e {
		t.Fatalf("entry round trip: %+v, %v", got, err)
	}
	for i := 0; i < len(b); i++ {
		if _, err := decodeEntry(b[:i]); !errors.Is(err, errWire) {
			t.Fatalf("entry truncated to %d bytes: %v", i, err)
		}
	}

	proof := bytes.Repeat([]byte{5}, proofLen)
	r, p, err := readHello(bytes.NewReader(encodeHello(12, proof)))
	if err != nil || r != 12 || !bytes.Equal(p, proof) {
		t.Fatalf("hello round trip: %d %x %v", r, p, err)
	}
	if p, err := readHelloOK(bytes.NewReader(encodeHelloOK(proof))); err != nil || !bytes.Equal(p, proof) {
		t.Fatalf("hello-ok round trip: %x %v", p, err)
	}
	if _, _, err := readHello(bytes.NewReader(encodeHelloOK(proof))); err == nil {
		t.Fatal("hello-ok accepted as hello")
	}
	ch := strings.Repeat("c", MaxChannelLen)
	if got, err := readOpen(bytes.NewReader(encodeOpen(ch))); err != nil || got != ch {
		t.Fatalf("open round trip: %v", err)
	}
	if _, err := readOpen(bytes.NewReader(encodeOpen(ch + "c"))); !errors.Is(err, errWire) {
		t.Fatalf("oversized channel name: %v", err)
	}

	reason := encodeAbortReason(3, 2, "no packets for 2s: idle timeout")
	g, by, msg, err := parseAbortReason(reason)
	if err != nil || g != 3 || by != 2 || msg != "no packets for 2s: idle timeout" {
		t.Fatalf("abort reason round trip: %d %d %q %v", g, by, msg, err)
	}
	for _, bad := range []string{"", "hello", abortPrefix + "guilty=1 by=2", abortPrefix + "guilty=-1 by=2: x",
		abortPrefix + "guilty=01 by=2: x", abortPrefix + "guilty=1 by=99999999999999999999: x", abortPrefix + "by=1 guilty=2: x"} {
		if _, _, _, err := parseAbortReason(bad); err == nil {
			t.Errorf("parseAbortReason(%q) accepted", bad)
		}
	}
	if long := encodeAbortReason(1, 1, strings.Repeat("x", 4000)); len(long) > maxReasonLen {
		t.Fatalf("abort reason of %d bytes", len(long))
	}
}

func FuzzDecodeEntry(f *testing.F) {
	b, _ := encodeEntry(peerEntry{Addr: "127.0.0.1:5000"})
	f.Add(b)
	f.Add([]byte{wireVersion})
	f.Fuzz(func(t *testing.T, b []byte) {
		e, err := decodeEntry(b)
		if err != nil {
			return
		}
		out, err := encodeEntry(e)
		if err != nil || !bytes.Equal(out, b) {
			t.Fatalf("accepted entry does not re-encode: %v", err)
		}
	})
}

func FuzzReadHello(f *testing.F) {
	f.Add(encodeHello(1, make([]byte, proofLen)))
	f.Add(encodeHelloOK(make([]byte, proofLen)))
	f.Add([]byte{wireVersion, frameHello, 0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		if r, p, err := readHello(bytes.NewReader(b)); err == nil {
			if r < 0 || r >= maxRank || !bytes.Equal(encodeHello(r, p), b[:38]) {
				t.Fatalf("accepted hello rank %d does not re-encode", r)
			}
		}
		if p, err := readHelloOK(bytes.NewReader(b)); err == nil {
			if !bytes.Equal(encodeHelloOK(p), b[:34]) {
				t.Fatal("accepted hello-ok does not re-encode")
			}
		}
	})
}

func FuzzReadOpen(f *testing.F) {
	f.Add(encodeOpen("grad/0"))
	f.Add([]byte{wireVersion, frameOpen, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		ch, err := readOpen(bytes.NewReader(b))
		if err != nil {
			return
		}
		if len(ch) == 0 || len(ch) > MaxChannelLen || !bytes.Equal(encodeOpen(ch), b[:4+len(ch)]) {
			t.Fatalf("accepted channel %q does not re-encode", ch)
		}
	})
}

func FuzzParseAbortReason(f *testing.F) {
	f.Add(encodeAbortReason(3, 2, "idle timeout"))
	f.Add(abortPrefix + "guilty=1 by=2: ")
	f.Add("ringtrain-abort/1 guilty= by=: ")
	f.Fuzz(func(t *testing.T, s string) {
		g, by, msg, err := parseAbortReason(s)
		if err != nil {
			return
		}
		if g < 0 || by < 0 || g >= maxRank || by >= maxRank {
			t.Fatalf("accepted ranks %d, %d", g, by)
		}
		if len(msg) <= maxMessageLen && encodeAbortReason(g, by, msg) != s {
			t.Fatalf("accepted reason %q does not re-encode", s)
		}
	})
}

func TestAbortStreamCode(t *testing.T) {
	for _, r := range []int{0, 1, 7, maxRank - 1} {
		if g, ok := parseAbortStreamCode(abortStreamCode(r), maxRank); !ok || g != r {
			t.Fatalf("abort stream code of rank %d parses as %d, %v", r, g, ok)
		}
	}
	for _, c := range []quic.StreamErrorCode{0, streamCodeLinkClosed, streamCodeRefused, abortStreamCodeBase - 1, abortStreamCodeBase + maxRank, abortStreamCode(4)} {
		if g, ok := parseAbortStreamCode(c, 4); ok {
			t.Errorf("code %#x accepted as an abort naming rank %d in a job of 4", uint64(c), g)
		}
	}
}

func FuzzParseAbortStreamCode(f *testing.F) {
	f.Add(uint64(abortStreamCode(3)), 4)
	f.Add(uint64(streamCodeLinkClosed), 2)
	f.Add(uint64(1<<62-1), maxRank)
	f.Fuzz(func(t *testing.T, code uint64, size int) {
		g, ok := parseAbortStreamCode(quic.StreamErrorCode(code), size)
		if !ok {
			return
		}
		if g < 0 || g >= size || g >= maxRank || abortStreamCode(g) != quic.StreamErrorCode(code) {
			t.Fatalf("code %#x accepted as rank %d of %d", code, g, size)
		}
	})
}

func TestControlRoundTrips(t *testing.T) {
	f, err := readControl(bytes.NewReader(encodeDrain(7, 12, 1<<40)))
	if err != nil || f != (controlFrame{typ: frameDrain, id: 7, stream: 12, count: 1 << 40}) {
		t.Fatalf("drain round trip: %+v, %v", f, err)
	}
	f, err = readControl(bytes.NewReader(encodeDrained(9, drainedDiscarded, 5)))
	if err != nil || f != (controlFrame{typ: frameDrained, id: 9, status: drainedDiscarded, count: 5}) {
		t.Fatalf("drained round trip: %+v, %v", f, err)
	}
	for _, bad := range [][]byte{encodeOpen("x"), encodeDrained(1, 2, 0), encodeDrain(1, maxQUICInt+1, 0), {9, frameDrain}} {
		if _, err := readControl(bytes.NewReader(bad)); !errors.Is(err, errWire) {
			t.Errorf("readControl(%x) = %v, want a wire error", bad, err)
		}
	}
}

func FuzzReadControl(f *testing.F) {
	f.Add(encodeDrain(1, 4, 1000))
	f.Add(encodeDrained(1, drainedOK, 1000))
	f.Add(append(encodeDrained(2, drainedDiscarded, 3), encodeDrain(3, 8, 9)...))
	f.Fuzz(func(t *testing.T, b []byte) {
		r := bytes.NewReader(b)
		for {
			off := len(b) - r.Len()
			c, err := readControl(r)
			if err != nil {
				return
			}
			var again []byte
			switch c.typ {
			case frameDrain:
				again = encodeDrain(c.id, c.stream, c.count)
			case frameDrained:
				again = encodeDrained(c.id, c.status, c.count)
			default:
				t.Fatalf("accepted frame type %d", c.typ)
			}
			if !bytes.Equal(again, b[off:off+len(again)]) {
				t.Fatalf("accepted control frame %+v does not re-encode", c)
			}
		}
	})
}
