package datalink

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// The setup of a link runs over its base (QUIC) link, which is authenticated and encrypted:
//
//	lower rank  -> hello (rank, mode, streams, host identity, whether shared memory sits above)
//	higher rank -> hello (the same, plus its TCP address and a fresh nonce when it will accept)
//
// Both compute the same decision from the two hellos (see decide). For tls and tcp the lower
// rank then dials Streams TCP connections to the higher rank's address; each starts with a
// preamble byte ('T': a TLS 1.3 handshake follows, 'P': plaintext) and then carries a
// connHello naming the dialer, the stream and the nonce, with an HMAC of the job token over
// them (and, for TLS, over the session's exported keying material). The lower rank reports
// the outcome of its dials (result), the higher rank the outcome of its accepts (final);
// either failure leaves the link on QUIC, with a warning naming the edge.
//
// After the setup the base link stays open as the link's control channel: drain requests
// and answers (Shutdown), a closing frame (how many bytes the closing end read, so that a
// peer's Shutdown still learns it once the link is gone), and its orderly end tells an
// orderly close from a broken connection.

const (
	wireMagic   = "RTDL"
	wireVersion = 1

	msgHello  = 1
	msgResult = 2
	msgFinal  = 3

	ctlDrainReq = 5
	ctlDrainAck = 6
	ctlClosing  = 7 // the sender closes the link having read v bytes

	preambleTLS   = 'T'
	preamblePlain = 'P'

	nonceLen     = 16
	proofLen     = sha256.Size
	connHelloLen = 4 + 1 + 1 + 4 + 1 + 1 + nonceLen + proofLen
	maxMsgLen    = 1024
	ctlFrameLen  = 9

	exporterLabel = "EXPORTER-ringtrain-datalink"
)

var errWire = errors.New("datalink: malformed message")

func wireErr(format string, args ...any) error {
	return fmt.Errorf("%w: %s", errWire, fmt.Sprintf(format, args...))
}

// hello is the first message each side sends over the base link.
type hello struct {
	rank    uint32
	mode    Mode
	streams uint8
	shm     bool // shared memory sits above this transport (same-host links stay on base)
	nonce   [nonceLen]byte
	host    string // host identity (boot id and network namespace, or GORUN_HOST_ID)
	addr    string // TCP address to dial (higher rank only; empty: it will not accept)
}

// message is hello, result or final: [u16 length][body].
type message struct {
	kind  uint8
	hello hello
	ok    bool   // result, final
	text  string // result, final: why not
}

func encodeMessage(m *message) []byte {
	b := make([]byte, 2, 64)
	b = append(b, wireMagic...)
	b = append(b, wireVersion, m.kind)
	switch m.kind {
	case msgHello:
		h := &m.hello
		b = binary.BigEndian.AppendUint32(b, h.rank)
		b = append(b, byte(h.mode), h.streams, boolByte(h.shm))
		b = append(b, h.nonce[:]...)
		b = appendString(b, h.host)
		b = appendString(b, h.addr)
	default:
		b = append(b, boolByte(m.ok))
		b = appendString(b, m.text)
	}
	binary.BigEndian.PutUint16(b, uint16(len(b)-2))
	return b
}

func boolByte(v bool) byte {
	if v {
		return 1
	}
	return 0
}

// appendString appends a string of at most 255 bytes (longer ones are cut) with its length.
func appendString(b []byte, s string) []byte {
	if len(s) > 255 {
		s = s[:255]
	}
	b = append(b, byte(len(s)))
	return append(b, s...)
}

func readString(b []byte) (string, []byte, error) {
	if len(b) < 1 || len(b) < 1+int(b[0]) {
		return "", nil, wireErr("truncated string")
	}
	n := int(b[0])
	return string(b[1 : 1+n]), b[1+n:], nil
}

// decodeMessage decodes a message body (without its length prefix).
func decodeMessage(b []byte) (message, error) {
	var m message
	if len(b) < 6 || string(b[:4]) != wireMagic {
		return m, wireErr("bad magic")
	}
	if b[4] != wireVersion {
		return m, wireErr("version %d, want %d", b[4], wireVersion)
	}
	m.kind = b[5]
	b = b[6:]
	var err error
	switch m.kind {
	case msgHello:
		if len(b) < 4+3+nonceLen {
			return m, wireErr("hello of %d bytes", len(b))
		}
		h := &m.hello
		h.rank = binary.BigEndian.Uint32(b)
		h.mode, h.streams = Mode(b[4]), b[5]
		if h.mode < ModeTLS || h.mode > ModeQUIC {
			return m, wireErr("unknown mode %d", b[4])
		}
		if h.streams == 0 {
			return m, wireErr("zero streams")
		}
		if b[6] > 1 {
			return m, wireErr("bad flag %d", b[6])
		}
		h.shm = b[6] == 1
		copy(h.nonce[:], b[7:7+nonceLen])
		b = b[7+nonceLen:]
		if h.host, b, err = readString(b); err != nil {
			return m, err
		}
		if h.addr, b, err = readString(b); err != nil {
			return m, err
		}
	case msgResult, msgFinal:
		if len(b) < 1 || b[0] > 1 {
			return m, wireErr("bad outcome")
		}
		m.ok = b[0] == 1
		if m.text, b, err = readString(b[1:]); err != nil {
			return m, err
		}
	default:
		return m, wireErr("unknown message kind %d", m.kind)
	}
	if len(b) != 0 {
		return m, wireErr("%d trailing bytes", len(b))
	}
	return m, nil
}

func writeMessage(w io.Writer, m *message) error {
	_, err := w.Write(encodeMessage(m))
	return err
}

// readMessage reads one message and checks its kind.
func readMessage(r io.Reader, want uint8) (message, error) {
	var lb [2]byte
	if _, err := io.ReadFull(r, lb[:]); err != nil {
		return message{}, err
	}
	n := int(binary.BigEndian.Uint16(lb[:]))
	if n > maxMsgLen {
		return message{}, wireErr("message of %d bytes", n)
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(r, b); err != nil {
		return message{}, err
	}
	m, err := decodeMessage(b)
	if err != nil {
		return m, err
	}
	if m.kind != want {
		return m, wireErr("message kind %d, want %d", m.kind, want)
	}
	return m, nil
}

// connHello is what a dialer sends first on each TCP connection (inside TLS for ModeTLS).
type connHello struct {
	mode    Mode
	rank    uint32 // the dialer's world rank
	stream  uint8
	streams uint8
	nonce   [nonceLen]byte
	proof   [proofLen]byte
}

func encodeConnHello(c *connHello) []byte {
	b := make([]byte, 0, connHelloLen)
	b = append(b, wireMagic...)
	b = append(b, wireVersion, byte(c.mode))
	b = binary.BigEndian.AppendUint32(b, c.rank)
	b = append(b, c.stream, c.streams)
	b = append(b, c.nonce[:]...)
	return append(b, c.proof[:]...)
}

func decodeConnHello(b []byte) (connHello, error) {
	var c connHello
	if len(b) != connHelloLen {
		return c, wireErr("connection hello of %d bytes, want %d", len(b), connHelloLen)
	}
	if string(b[:4]) != wireMagic {
		return c, wireErr("bad magic")
	}
	if b[4] != wireVersion {
		return c, wireErr("version %d, want %d", b[4], wireVersion)
	}
	c.mode = Mode(b[5])
	if c.mode != ModeTLS && c.mode != ModeTCP {
		return c, wireErr("mode %d", b[5])
	}
	c.rank = binary.BigEndian.Uint32(b[6:])
	c.stream, c.streams = b[10], b[11]
	if c.streams == 0 || c.stream >= c.streams {
		return c, wireErr("stream %d of %d", c.stream, c.streams)
	}
	copy(c.nonce[:], b[12:12+nonceLen])
	copy(c.proof[:], b[12+nonceLen:])
	return c, nil
}

// proof is HMAC-SHA256(token) over the claims of a connHello, the acceptor's rank and, for
// TLS, keying material exported from the session (so a proof cannot be replayed on another
// connection). For plaintext TCP the nonce, known only to the two ranks through the
// encrypted QUIC link and used once, plays that part.
func proof(token string, c *connHello, acceptor uint32, ekm []byte) [proofLen]byte {
	m := hmac.New(sha256.New, []byte(token))
	m.Write([]byte("ringtrain-datalink/1\x00"))
	var b [11]byte
	b[0] = byte(c.mode)
	binary.BigEndian.PutUint32(b[1:], c.rank)
	binary.BigEndian.PutUint32(b[5:], acceptor)
	b[9], b[10] = c.stream, c.streams
	m.Write(b[:])
	m.Write(c.nonce[:])
	m.Write(ekm)
	var out [proofLen]byte
	copy(out[:], m.Sum(nil))
	return out
}

// ctl frames on the base link after the setup: kind(1) value(8).
func encodeCtl(b *[ctlFrameLen]byte, kind byte, v uint64) []byte {
	b[0] = kind
	binary.BigEndian.PutUint64(b[1:], v)
	return b[:]
}

func decodeCtl(b []byte) (kind byte, v uint64, err error) {
	if len(b) != ctlFrameLen {
		return 0, 0, wireErr("control frame of %d bytes", len(b))
	}
	if b[0] != ctlDrainReq && b[0] != ctlDrainAck && b[0] != ctlClosing {
		return 0, 0, wireErr("control frame kind %d", b[0])
	}
	return b[0], binary.BigEndian.Uint64(b[1:]), nil
}
