package shmtransport

import (
	"bytes"
	"testing"
)

func validHeaderBytes() ([]byte, int64) {
	h := header{ringBytes: 1 << 16, creatorPID: 1234, creatorRank: 1, openerRank: 2, creatorStart: 99, pidNS: 4026531836}
	copy(h.nonce[:], "0123456789abcdef")
	b := make([]byte, headerBytes)
	h.encode(b)
	return b, headerBytes + 2<<16
}

// FuzzDecodeHeader feeds arbitrary bytes (what a broken or hostile peer could leave in the
// mapping) to the header decoder: it must never panic, must accept only sane sizes, and what
// it accepts must survive a round trip.
func FuzzDecodeHeader(f *testing.F) {
	b, size := validHeaderBytes()
	f.Add(b[:headerUsed], size)
	f.Add(b[:10], size)
	f.Add(b[:headerUsed], size+1)
	bad := bytes.Clone(b[:headerUsed])
	bad[16] = 3 // ring size not a power of two
	f.Add(bad, size)
	f.Fuzz(func(t *testing.T, data []byte, fileBytes int64) {
		h, err := decodeHeader(data, fileBytes)
		if err != nil {
			return
		}
		if checkRingBytes(h.ringBytes) != nil || fileBytes != headerBytes+2*int64(h.ringBytes) {
			t.Fatalf("accepted ring size %d for a file of %d bytes", h.ringBytes, fileBytes)
		}
		out := make([]byte, headerBytes)
		h.encode(out)
		h2, err := decodeHeader(out, fileBytes)
		if err != nil || h2 != h {
			t.Fatalf("round trip: %+v -> %+v, %v", h, h2, err)
		}
	})
}

// FuzzDecodeCtl feeds arbitrary frames (what comes off the base link during setup) to the
// control-frame decoder: no panic, only printable text, only names of this package in offers,
// and a faithful round trip for what it accepts.
func FuzzDecodeCtl(f *testing.F) {
	seed := func(m ctlMsg) []byte {
		b := make([]byte, ctlSize)
		m.encode(b)
		return b
	}
	var id identity
	copy(id.bootID[:], "bootbootbootboot")
	id.netNS, id.pidNS, id.shmDev, id.pid, id.start = 1, 2, 3, 4, 5
	f.Add(seed(ctlMsg{kind: kindHello, rank: 3, mode: ModeShm, id: id}))
	f.Add(seed(ctlMsg{kind: kindOffer, rank: 1, ringBytes: 1 << 20, text: shmName("job", 77, [16]byte{1})}))
	f.Add(seed(ctlMsg{kind: kindOffer, rank: 1, ringBytes: 1 << 20, text: "../../etc/passwd"}))
	f.Add(seed(ctlMsg{kind: kindAck, failed: true, text: "no such file"}))
	f.Add(seed(ctlMsg{kind: kindDone}))
	f.Add([]byte("RTSM"))
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := decodeCtl(data)
		if err != nil {
			return
		}
		for _, c := range []byte(m.text) {
			if c < 0x20 || c > 0x7e {
				t.Fatalf("accepted non-printable text %q", m.text)
			}
		}
		if m.kind == kindOffer && !m.failed {
			if !validShmName(m.text) || bytes.ContainsAny([]byte(m.text), "/\\") || checkRingBytes(m.ringBytes) != nil {
				t.Fatalf("accepted offer of %q with ring %d", m.text, m.ringBytes)
			}
		}
		out := make([]byte, ctlSize)
		m.encode(out)
		m2, err := decodeCtl(out)
		if err != nil || m2 != m {
			t.Fatalf("round trip: %+v -> %+v, %v", m, m2, err)
		}
	})
}
