package launcher

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strings"
	"unicode/utf8"
)

// The node agents speak a small framed protocol over TCP:
//
//	frame = type (1 byte) | payload length (4 bytes, big endian) | payload | tag (32 bytes)
//
// The tag is present on every frame after the handshake: HMAC-SHA256 under the session key
// over (direction, sequence number, type, length, payload), so a frame cannot be forged,
// replayed, reordered or reflected back by anyone who lacks the job token. The two handshake
// frames (hello, challenge) and authFailed carry no tag. The token itself never travels.

// agentVersion is bumped on any incompatible change of the protocol.
const agentVersion = 1

// agentMagic opens a hello frame, so that a stray client (an HTTP probe, a rank's QUIC
// packet sent to the wrong protocol) is told apart from an old gorun.
var agentMagic = [4]byte{'G', 'R', 'U', 'N'}

const (
	maxPayload = 16 << 10 // every message is small; a larger length is an error, not a read
	maxText    = 8 << 10  // strings inside messages
	tagSize    = sha256.Size
	nonceSize  = 32
)

// msgType identifies a frame.
type msgType uint8

const (
	msgHello      msgType = 1  // client → server, untagged: magic, version, client nonce
	msgChallenge  msgType = 2  // server → client, untagged: server nonce, server proof
	msgAuthFailed msgType = 3  // server → client, untagged: reason
	msgJoin       msgType = 10 // client → server: node rank, nnodes, nproc, host name
	msgWelcome    msgType = 11 // server → client: accepted
	msgReject     msgType = 12 // server → client: reason; the connection then closes
	msgReady      msgType = 13 // client → server: built TARGET, can start ranks
	msgStart      msgType = 14 // server → client: attempt, run id
	msgFailed     msgType = 15 // client → server: attempt, fatal, description
	msgExited     msgType = 16 // client → server: attempt, ok (the node's ranks have all ended)
	msgStop       msgType = 17 // server → client: attempt, reason
	msgFinish     msgType = 18 // server → client: exit code, reason; the job is over
	msgPing       msgType = 19 // either way: liveness
)

func (t msgType) String() string {
	names := map[msgType]string{
		msgHello: "hello", msgChallenge: "challenge", msgAuthFailed: "auth-failed", msgJoin: "join",
		msgWelcome: "welcome", msgReject: "reject", msgReady: "ready", msgStart: "start",
		msgFailed: "failed", msgExited: "exited", msgStop: "stop", msgFinish: "finish", msgPing: "ping",
	}
	if n, ok := names[t]; ok {
		return n
	}
	return fmt.Sprintf("type-%d", uint8(t))
}

// message is every agent message; which fields are meaningful depends on typ.
type message struct {
	typ msgType

	version uint16          // hello
	nonce   [nonceSize]byte // hello, challenge
	proof   [tagSize]byte   // challenge

	nodeRank, nnodes, nproc uint32 // join
	attempt                 uint32 // start, failed, exited, stop
	ok                      bool   // exited
	fatal                   bool   // failed: no restart can help (interrupt, build error)
	code                    uint8  // finish
	text                    string // auth-failed, join (host), reject, start (run id), failed, stop, finish
}

// errBadMessage wraps every decoding error, so callers can tell a protocol violation from a
// network error.
var errBadMessage = errors.New("malformed agent message")

func badf(format string, args ...any) error {
	return fmt.Errorf("%w: %s", errBadMessage, fmt.Sprintf(format, args...))
}

// encode returns the payload of m.
func (m *message) encode() []byte {
	var b []byte
	switch m.typ {
	case msgHello:
		b = append(b, agentMagic[:]...)
		b = binary.BigEndian.AppendUint16(b, m.version)
		b = append(b, m.nonce[:]...)
	case msgChallenge:
		b = append(b, m.nonce[:]...)
		b = append(b, m.proof[:]...)
	case msgJoin:
		b = binary.BigEndian.AppendUint32(b, m.nodeRank)
		b = binary.BigEndian.AppendUint32(b, m.nnodes)
		b = binary.BigEndian.AppendUint32(b, m.nproc)
		b = appendText(b, m.text)
	case msgAuthFailed, msgReject:
		b = appendText(b, m.text)
	case msgStart, msgStop:
		b = binary.BigEndian.AppendUint32(b, m.attempt)
		b = appendText(b, m.text)
	case msgFailed:
		b = binary.BigEndian.AppendUint32(b, m.attempt)
		b = append(b, boolByte(m.fatal))
		b = appendText(b, m.text)
	case msgExited:
		b = binary.BigEndian.AppendUint32(b, m.attempt)
		b = append(b, boolByte(m.ok))
	case msgFinish:
		b = append(b, m.code)
		b = appendText(b, m.text)
	}
	return b
}

func boolByte(v bool) byte {
	if v {
		return 1
	}
	return 0
}

// appendText appends a length-prefixed string, cut to maxText bytes on a rune boundary.
func appendText(b []byte, s string) []byte {
	if len(s) > maxText {
		s = s[:maxText]
		for len(s) > 0 && !utf8.ValidString(s) {
			s = s[:len(s)-1]
		}
	}
	b = binary.BigEndian.AppendUint16(b, uint16(len(s)))
	return append(b, s...)
}

// decoder reads fields from a payload, remembering the first error.
type decoder struct {
	b   []byte
	err error
}

func (d *decoder) take(n int) []byte {
	if d.err != nil {
		return nil
	}
	if len(d.b) < n {
		d.err = badf("payload too short")
		return nil
	}
	v := d.b[:n]
	d.b = d.b[n:]
	return v
}

func (d *decoder) u32() uint32 {
	if v := d.take(4); v != nil {
		return binary.BigEndian.Uint32(v)
	}
	return 0
}

func (d *decoder) u16() uint16 {
	if v := d.take(2); v != nil {
		return binary.BigEndian.Uint16(v)
	}
	return 0
}

func (d *decoder) byte1() byte {
	if v := d.take(1); v != nil {
		return v[0]
	}
	return 0
}

func (d *decoder) flag() bool {
	v := d.byte1()
	if v > 1 && d.err == nil {
		d.err = badf("boolean byte %d", v)
	}
	return v == 1
}

func (d *decoder) text() string {
	n := int(d.u16())
	if n > maxText && d.err == nil {
		d.err = badf("text of %d bytes", n)
		return ""
	}
	v := d.take(n)
	if d.err == nil && !utf8.Valid(v) {
		d.err = badf("text is not UTF-8")
	}
	return string(v)
}

// decodeMessage parses the payload of a frame of type typ. Unknown types, short payloads and
// trailing bytes are errors wrapping errBadMessage.
func decodeMessage(typ msgType, payload []byte) (*message, error) {
	if len(payload) > maxPayload {
		return nil, badf("%s payload of %d bytes", typ, len(payload))
	}
	m := &message{typ: typ}
	d := &decoder{b: payload}
	switch typ {
	case msgHello:
		if magic := d.take(4); d.err == nil && string(magic) != string(agentMagic[:]) {
			return nil, badf("not a gorun agent (bad magic)")
		}
		m.version = d.u16()
		copy(m.nonce[:], d.take(nonceSize))
	case msgChallenge:
		copy(m.nonce[:], d.take(nonceSize))
		copy(m.proof[:], d.take(tagSize))
	case msgJoin:
		m.nodeRank, m.nnodes, m.nproc = d.u32(), d.u32(), d.u32()
		m.text = d.text()
	case msgAuthFailed, msgReject:
		m.text = d.text()
	case msgStart, msgStop:
		m.attempt = d.u32()
		m.text = d.text()
	case msgFailed:
		m.attempt = d.u32()
		m.fatal = d.flag()
		m.text = d.text()
	case msgExited:
		m.attempt = d.u32()
		m.ok = d.flag()
	case msgFinish:
		m.code = d.byte1()
		m.text = d.text()
	case msgWelcome, msgReady, msgPing:
	default:
		return nil, badf("unknown message type %d", uint8(typ))
	}
	if d.err != nil {
		return nil, fmt.Errorf("%s: %w", typ, d.err)
	}
	if len(d.b) != 0 {
		return nil, badf("%s has %d trailing bytes", typ, len(d.b))
	}
	return m, nil
}

// macState tags or checks the frames of one direction of a connection.
type macState struct {
	key []byte // nil before the handshake: frames are untagged
	dir byte   // 'c' for client → server, 's' for server → client
	seq uint64
}

func (s *macState) tag(typ msgType, payload []byte) []byte {
	h := hmac.New(sha256.New, s.key)
	var hdr [14]byte
	hdr[0] = s.dir
	binary.BigEndian.PutUint64(hdr[1:], s.seq)
	hdr[9] = byte(typ)
	binary.BigEndian.PutUint32(hdr[10:], uint32(len(payload)))
	h.Write(hdr[:])
	h.Write(payload)
	return h.Sum(nil)
}

// appendFrame appends m as a frame, tagged when mac has a key.
func appendFrame(b []byte, m *message, mac *macState) []byte {
	payload := m.encode()
	b = append(b, byte(m.typ))
	b = binary.BigEndian.AppendUint32(b, uint32(len(payload)))
	b = append(b, payload...)
	if mac != nil && mac.key != nil {
		b = append(b, mac.tag(m.typ, payload)...)
		mac.seq++
	}
	return b
}

// errBadTag means a frame's tag did not verify: the peer does not hold the token, or the
// bytes were altered in transit.
var errBadTag = errors.New("agent message failed authentication")

// readFrame reads one frame from r and decodes it, checking its tag when mac has a key.
func readFrame(r io.Reader, mac *macState) (*message, error) {
	var hdr [5]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return nil, err
	}
	typ := msgType(hdr[0])
	n := binary.BigEndian.Uint32(hdr[1:])
	if n > maxPayload {
		return nil, badf("frame of %d bytes (limit %d)", n, maxPayload)
	}
	buf := make([]byte, int(n)+tagSize)
	body := buf[:n]
	if mac != nil && mac.key != nil {
		body = buf
	}
	if _, err := io.ReadFull(r, body); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
	payload := body[:n]
	if mac != nil && mac.key != nil {
		want := mac.tag(typ, payload)
		if !hmac.Equal(want, body[n:]) {
			return nil, errBadTag
		}
		mac.seq++
	}
	return decodeMessage(typ, payload)
}

// printable makes text from another node safe to print: no control characters other than
// newline and tab, so a hostile or corrupted message cannot drive the terminal.
func printable(s string) string {
	return strings.Map(func(r rune) rune {
		if r == '\n' || r == '\t' || (r >= 0x20 && r != 0x7f && !(r >= 0x80 && r < 0xa0)) {
			return r
		}
		return '?'
	}, s)
}
