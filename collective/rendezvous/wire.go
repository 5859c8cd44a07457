package rendezvous

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// Limits on everything that crosses the wire. A frame that breaks one is refused before any
// memory is allocated for it.
const (
	// WireVersion is the version byte of every frame.
	WireVersion = 1
	// MaxKeyLen is the longest key in bytes.
	MaxKeyLen = 512
	// MaxValueLen is the largest value in bytes.
	MaxValueLen = 1 << 20
	// MaxKeys is the most keys one WaitKeys request may name.
	MaxKeys = 4096
	// MaxErrorLen is the longest error message a server sends.
	MaxErrorLen = 1024
	// maxFrame bounds a frame's payload. A values response for MaxKeys keys may hold up to
	// this much in total; the server answers "response too large" beyond it.
	maxFrame = 8 << 20
	// frameHeaderLen is version(1) + type(1) + length(4).
	frameHeaderLen = 6
	// Forever, as a wait in milliseconds, waits until the request is cancelled.
	waitForever = ^uint32(0)
)

type msgType byte

const (
	msgAuth   msgType = 1  // client -> server: proof
	msgAuthOK msgType = 2  // server -> client: proof
	msgSet    msgType = 3  // key, value
	msgWait   msgType = 4  // wait ms, keys
	msgAdd    msgType = 5  // key, delta
	msgOK     msgType = 6  // empty
	msgValues msgType = 7  // presence and values, in request order
	msgInt    msgType = 8  // int64
	msgError  msgType = 9  // message
	msgWill   msgType = 10 // key, value: set on this connection's abnormal end
)

func (t msgType) String() string {
	switch t {
	case msgAuth:
		return "auth"
	case msgAuthOK:
		return "auth-ok"
	case msgSet:
		return "set"
	case msgWait:
		return "wait"
	case msgAdd:
		return "add"
	case msgOK:
		return "ok"
	case msgValues:
		return "values"
	case msgInt:
		return "int"
	case msgError:
		return "error"
	case msgWill:
		return "will"
	}
	return fmt.Sprintf("type(%d)", byte(t))
}

// message is the decoded form of every frame; which fields mean something depends on typ.
type message struct {
	typ    msgType
	proof  []byte   // auth, auth-ok
	key    string   // set, will, add
	value  []byte   // set, will
	waitMS uint32   // wait
	keys   []string // wait
	values [][]byte // values: nil means absent (a present empty value is non-nil)
	n      int64    // add (delta), int
	text   string   // error
}

// WireError reports a malformed frame.
type WireError struct{ Reason string }

func (e *WireError) Error() string { return "rendezvous: malformed message: " + e.Reason }

func wireErr(format string, args ...any) error {
	return &WireError{Reason: fmt.Sprintf(format, args...)}
}

// encode appends m as one frame to b.
func (m *message) encode(b []byte) ([]byte, error) {
	start := len(b)
	b = append(b, WireVersion, byte(m.typ), 0, 0, 0, 0)
	switch m.typ {
	case msgAuth, msgAuthOK:
		if len(m.proof) != ProofLen {
			return nil, fmt.Errorf("rendezvous: proof of %d bytes, want %d", len(m.proof), ProofLen)
		}
		b = append(b, m.proof...)
	case msgSet, msgWill:
		var err error
		if b, err = appendKey(b, m.key); err != nil {
			return nil, err
		}
		if len(m.value) > MaxValueLen {
			return nil, fmt.Errorf("rendezvous: value for key %q is %d bytes, limit %d", m.key, len(m.value), MaxValueLen)
		}
		b = binary.BigEndian.AppendUint32(b, uint32(len(m.value)))
		b = append(b, m.value...)
	case msgWait:
		if len(m.keys) > MaxKeys {
			return nil, fmt.Errorf("rendezvous: %d keys in one request, limit %d", len(m.keys), MaxKeys)
		}
		b = binary.BigEndian.AppendUint32(b, m.waitMS)
		b = binary.BigEndian.AppendUint16(b, uint16(len(m.keys)))
		for _, k := range m.keys {
			var err error
			if b, err = appendKey(b, k); err != nil {
				return nil, err
			}
		}
	case msgAdd:
		var err error
		if b, err = appendKey(b, m.key); err != nil {
			return nil, err
		}
		b = binary.BigEndian.AppendUint64(b, uint64(m.n))
	case msgOK:
	case msgValues:
		if len(m.values) > MaxKeys {
			return nil, fmt.Errorf("rendezvous: %d values in one response, limit %d", len(m.values), MaxKeys)
		}
		b = binary.BigEndian.AppendUint16(b, uint16(len(m.values)))
		for _, v := range m.values {
			if v == nil {
				b = append(b, 0)
				continue
			}
			if len(v) > MaxValueLen {
				return nil, fmt.Errorf("rendezvous: value of %d bytes, limit %d", len(v), MaxValueLen)
			}
			b = append(b, 1)
			b = binary.BigEndian.AppendUint32(b, uint32(len(v)))
			b = append(b, v...)
		}
	case msgInt:
		b = binary.BigEndian.AppendUint64(b, uint64(m.n))
	case msgError:
		text := m.text
		if len(text) > MaxErrorLen {
			text = text[:MaxErrorLen]
		}
		b = binary.BigEndian.AppendUint16(b, uint16(len(text)))
		b = append(b, text...)
	default:
		return nil, fmt.Errorf("rendezvous: cannot encode message type %v", m.typ)
	}
	n := len(b) - start - frameHeaderLen
	if n > maxFrame {
		return nil, fmt.Errorf("rendezvous: %v message of %d bytes exceeds the %d-byte frame limit", m.typ, n, maxFrame)
	}
	binary.BigEndian.PutUint32(b[start+2:], uint32(n))
	return b, nil
}

func appendKey(b []byte, k string) ([]byte, error) {
	if len(k) == 0 || len(k) > MaxKeyLen {
		return nil, fmt.Errorf("rendezvous: key of %d bytes, want 1..%d", len(k), MaxKeyLen)
	}
	b = binary.BigEndian.AppendUint16(b, uint16(len(k)))
	return append(b, k...), nil
}

// readMessage reads one frame from r and decodes it. It never allocates more than the
// header's length field, which it checks against maxFrame first.
func readMessage(r io.Reader) (*message, error) {
	var h [frameHeaderLen]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, wireErr("truncated frame header")
		}
		return nil, err
	}
	if h[0] != WireVersion {
		return nil, wireErr("version %d, want %d", h[0], WireVersion)
	}
	n := binary.BigEndian.Uint32(h[2:])
	if n > maxFrame {
		return nil, wireErr("frame of %d bytes exceeds limit %d", n, maxFrame)
	}
	payload := make([]byte, n)
	if _, err := io.ReadFull(r, payload); err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, wireErr("truncated %v frame: want %d payload bytes", msgType(h[1]), n)
		}
		return nil, err
	}
	return decodePayload(msgType(h[1]), payload)
}

// decodeFrame decodes one complete frame held in b (used by the fuzz target and tests).
func decodeFrame(b []byte) (*message, error) {
	if len(b) < frameHeaderLen {
		return nil, wireErr("truncated frame header")
	}
	if b[0] != WireVersion {
		return nil, wireErr("version %d, want %d", b[0], WireVersion)
	}
	n := binary.BigEndian.Uint32(b[2:])
	if n > maxFrame {
		return nil, wireErr("frame of %d bytes exceeds limit %d", n, maxFrame)
	}
	if uint64(len(b)-frameHeaderLen) != uint64(n) {
		return nil, wireErr("frame length %d but %d payload bytes", n, len(b)-frameHeaderLen)
	}
	return decodePayload(msgType(b[1]), b[frameHeaderLen:])
}

// decoder walks a payload; the first failure sticks, so callers check err once at the end.
type decoder struct {
	b   []byte
	err error
}

func (d *decoder) take(n int, what string) []byte {
	if d.err != nil {
		return nil
	}
	if n < 0 || n > len(d.b) {
		d.err = wireErr("truncated %s: want %d bytes, have %d", what, n, len(d.b))
		return nil
	}
	p := d.b[:n:n]
	d.b = d.b[n:]
	return p
}

func (d *decoder) u8(what string) byte {
	p := d.take(1, what)
	if p == nil {
		return 0
	}
	return p[0]
}

func (d *decoder) u16(what string) int {
	p := d.take(2, what)
	if p == nil {
		return 0
	}
	return int(binary.BigEndian.Uint16(p))
}

func (d *decoder) u32(what string) uint32 {
	p := d.take(4, what)
	if p == nil {
		return 0
	}
	return binary.BigEndian.Uint32(p)
}

func (d *decoder) u64(what string) uint64 {
	p := d.take(8, what)
	if p == nil {
		return 0
	}
	return binary.BigEndian.Uint64(p)
}

func (d *decoder) key() string {
	n := d.u16("key length")
	if d.err == nil && (n == 0 || n > MaxKeyLen) {
		d.err = wireErr("key of %d bytes, want 1..%d", n, MaxKeyLen)
	}
	return string(d.take(n, "key"))
}

func (d *decoder) value() []byte {
	n := d.u32("value length")
	if d.err == nil && n > MaxValueLen {
		d.err = wireErr("value of %d bytes exceeds limit %d", n, MaxValueLen)
	}
	p := d.take(int(n), "value")
	if d.err != nil {
		return nil
	}
	return append(make([]byte, 0, len(p)), p...)
}

func decodePayload(t msgType, p []byte) (*message, error) {
	d := &decoder{b: p}
	m := &message{typ: t}
	switch t {
	case msgAuth, msgAuthOK:
		m.proof = append([]byte(nil), d.take(ProofLen, "proof")...)
	case msgSet, msgWill:
		m.key = d.key()
		m.value = d.value()
	case msgWait:
		m.waitMS = d.u32("wait")
		n := d.u16("key count")
		if d.err == nil && n > MaxKeys {
			d.err = wireErr("%d keys, limit %d", n, MaxKeys)
		}
		for i := 0; i < n && d.err == nil; i++ {
			m.keys = append(m.keys, d.key())
		}
	case msgAdd:
		m.key = d.key()
		m.n = int64(d.u64("delta"))
	case msgOK:
	case msgValues:
		n := d.u16("value count")
		if d.err == nil && n > MaxKeys {
			d.err = wireErr("%d values, limit %d", n, MaxKeys)
		}
		for i := 0; i < n && d.err == nil; i++ {
			switch d.u8("presence") {
			case 0:
				m.values = append(m.values, nil)
			case 1:
				m.values = append(m.values, d.value())
			default:
				if d.err == nil {
					d.err = wireErr("presence byte must be 0 or 1")
				}
			}
		}
	case msgInt:
		m.n = int64(d.u64("integer"))
	case msgError:
		n := d.u16("error length")
		if d.err == nil && n > MaxErrorLen {
			d.err = wireErr("error text of %d bytes, limit %d", n, MaxErrorLen)
		}
		m.text = string(d.take(n, "error text"))
	default:
		return nil, wireErr("unknown message type %d", byte(t))
	}
	if d.err != nil {
		return nil, d.err
	}
	if len(d.b) != 0 {
		return nil, wireErr("%d trailing bytes after %v message", len(d.b), t)
	}
	return m, nil
}
