package shmtransport

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// The setup of a link runs over the base transport's authenticated link for the same channel,
// as a short exchange of fixed-size control frames (fixed so that a reader never has to trust
// a length it read off the network):
//
//	lower rank                          higher rank
//	hello (identity, mode)      ──>
//	                            <──     hello (identity, mode)
//	   both decide: shared memory iff same host and neither side forces the base transport
//	offer (file name, nonce, size) ──>                 (or offer with status "failed")
//	                            <──     ack (mapped and checked, or failed: why)
//	unlink the file
//	done                        ──>
//
// After "done" (or after the hellos, when the link stays on the base transport) both sides
// hand out their link. On a shared-memory link the base link then carries nothing: its
// failure tells that the peer's process or connection is gone.

const (
	ctlMagic   = "RTSM"
	ctlVersion = 1
	ctlSize    = 256
	ctlTextMax = ctlSize - ctlTextOff
	ctlTextOff = 96
)

type ctlKind uint8

const (
	kindHello ctlKind = 1 + iota
	kindOffer
	kindAck
	kindDone
)

func (k ctlKind) String() string {
	switch k {
	case kindHello:
		return "hello"
	case kindOffer:
		return "offer"
	case kindAck:
		return "ack"
	case kindDone:
		return "done"
	}
	return fmt.Sprintf("kind %d", uint8(k))
}

// ctlMsg is one control frame. Which fields matter depends on kind.
type ctlMsg struct {
	kind      ctlKind
	failed    bool     // offer/ack/done: the sender could not do its part; text says why
	rank      uint32   // sender's world rank
	mode      Mode     // hello: the sender's mode for this peer
	id        identity // hello
	ringBytes uint64   // offer: bytes of each direction's ring
	nonce     [16]byte // offer: also written in the mapping's header
	text      string   // offer: file name; failed frames: the reason
}

// errCtl marks a malformed control frame.
var errCtl = errors.New("shmtransport: malformed control frame")

// encode writes m into b, which must hold ctlSize bytes. Text longer than fits is cut.
func (m *ctlMsg) encode(b []byte) {
	b = b[:ctlSize]
	clear(b)
	copy(b[0:4], ctlMagic)
	binary.LittleEndian.PutUint16(b[4:], ctlVersion)
	b[6] = byte(m.kind)
	if m.failed {
		b[7] = 1
	}
	binary.LittleEndian.PutUint32(b[8:], m.rank)
	b[12] = byte(m.mode)
	text := m.text
	if len(text) > ctlTextMax {
		text = text[:ctlTextMax]
	}
	b[13] = byte(len(text))
	copy(b[16:32], m.id.bootID[:])
	binary.LittleEndian.PutUint64(b[32:], m.id.netNS)
	binary.LittleEndian.PutUint64(b[40:], m.id.pidNS)
	binary.LittleEndian.PutUint64(b[48:], m.id.shmDev)
	binary.LittleEndian.PutUint32(b[56:], m.id.pid)
	binary.LittleEndian.PutUint64(b[64:], m.id.start)
	binary.LittleEndian.PutUint64(b[72:], m.ringBytes)
	copy(b[80:96], m.nonce[:])
	copy(b[ctlTextOff:], text)
}

// decodeCtl parses a control frame read off the network and checks every field's range.
func decodeCtl(b []byte) (ctlMsg, error) {
	var m ctlMsg
	if len(b) != ctlSize {
		return m, fmt.Errorf("%w: %d bytes, want %d", errCtl, len(b), ctlSize)
	}
	if string(b[0:4]) != ctlMagic {
		return m, fmt.Errorf("%w: bad magic %q (is the peer a ringtrain rank with shared-memory support?)", errCtl, b[0:4])
	}
	if v := binary.LittleEndian.Uint16(b[4:]); v != ctlVersion {
		return m, fmt.Errorf("%w: version %d, this build speaks %d", errCtl, v, ctlVersion)
	}
	m.kind = ctlKind(b[6])
	if m.kind < kindHello || m.kind > kindDone {
		return m, fmt.Errorf("%w: unknown kind %d", errCtl, b[6])
	}
	if b[7] > 1 {
		return m, fmt.Errorf("%w: bad status %d", errCtl, b[7])
	}
	m.failed = b[7] == 1
	m.rank = binary.LittleEndian.Uint32(b[8:])
	if b[12] > byte(ModeShm) {
		return m, fmt.Errorf("%w: unknown mode %d", errCtl, b[12])
	}
	m.mode = Mode(b[12])
	n := int(b[13])
	if n > ctlTextMax {
		return m, fmt.Errorf("%w: text length %d beyond %d", errCtl, n, ctlTextMax)
	}
	for _, c := range b[ctlTextOff : ctlTextOff+n] {
		if c < 0x20 || c > 0x7e {
			return m, fmt.Errorf("%w: non-printable text", errCtl)
		}
	}
	copy(m.id.bootID[:], b[16:32])
	m.id.netNS = binary.LittleEndian.Uint64(b[32:])
	m.id.pidNS = binary.LittleEndian.Uint64(b[40:])
	m.id.shmDev = binary.LittleEndian.Uint64(b[48:])
	m.id.pid = binary.LittleEndian.Uint32(b[56:])
	m.id.start = binary.LittleEndian.Uint64(b[64:])
	m.ringBytes = binary.LittleEndian.Uint64(b[72:])
	copy(m.nonce[:], b[80:96])
	m.text = string(b[ctlTextOff : ctlTextOff+n])
	if m.kind == kindOffer && !m.failed {
		if err := checkRingBytes(m.ringBytes); err != nil {
			return m, fmt.Errorf("%w: %v", errCtl, err)
		}
		if !validShmName(m.text) {
			return m, fmt.Errorf("%w: offered file name %q is not a ringtrain shared-memory name", errCtl, m.text)
		}
	}
	return m, nil
}
