package quictransport

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/quic-go/quic-go"
)

// Wire formats of the data plane. All are versioned, length-prefixed and bounded; every
// decoder here has a fuzz target in wire_test.go.
const (
	wireVersion = 1

	frameHello   = 1 // dialer -> acceptor on a connection's first stream: rank, proof
	frameHelloOK = 2 // acceptor -> dialer: proof
	frameOpen    = 3 // opener -> peer, first bytes of every link stream: channel name
	frameDrain   = 4 // either way on the control stream: tell me when you have read count bytes of stream
	frameDrained = 5 // the answer: whether they were read, and how many were

	// MaxChannelLen is the longest channel name Link accepts, in bytes.
	MaxChannelLen = 1024
	maxAddrLen    = 255
	proofLen      = 32
	maxRank       = 1 << 24 // sanity bound for rank numbers read off the wire
)

// errWire is wrapped by every decoding failure.
var errWire = errors.New("quictransport: malformed message")

func wireErr(format string, args ...any) error {
	return fmt.Errorf("%w: %s", errWire, fmt.Sprintf(format, args...))
}

// peerEntry is what a rank publishes in the store: where to reach it and the SHA-256 of its
// certificate, which dialers pin.
type peerEntry struct {
	Addr        string
	Fingerprint [32]byte
	// Host identifies the machine (boot and network namespace) the rank runs on, so that
	// every rank knows every rank's host whatever carries the links (see HostIDs); empty
	// from a build that did not publish it.
	Host string
}

// Entry layout: version(1) fingerprint(32) addrLen(1) addr [hostLen(1) host]; the host
// part is present only when Host is not empty.
func encodeEntry(e peerEntry) ([]byte, error) {
	if len(e.Addr) == 0 || len(e.Addr) > maxAddrLen {
		return nil, fmt.Errorf("quictransport: address %q must be 1..%d bytes", e.Addr, maxAddrLen)
	}
	if len(e.Host) > maxAddrLen {
		return nil, fmt.Errorf("quictransport: host identity %q longer than %d bytes", e.Host, maxAddrLen)
	}
	b := make([]byte, 0, 35+len(e.Addr)+len(e.Host))
	b = append(b, wireVersion)
	b = append(b, e.Fingerprint[:]...)
	b = append(b, byte(len(e.Addr)))
	b = append(b, e.Addr...)
	if e.Host != "" {
		b = append(b, byte(len(e.Host)))
		b = append(b, e.Host...)
	}
	return b, nil
}

func decodeEntry(b []byte) (peerEntry, error) {
	var e peerEntry
	if len(b) < 34 {
		return e, wireErr("peer entry of %d bytes, want at least 34", len(b))
	}
	if b[0] != wireVersion {
		return e, wireErr("peer entry version %d, want %d", b[0], wireVersion)
	}
	copy(e.Fingerprint[:], b[1:33])
	n := int(b[33])
	if n == 0 || len(b) < 34+n {
		return e, wireErr("peer entry address length %d does not match %d remaining bytes", n, len(b)-34)
	}
	e.Addr = string(b[34 : 34+n])
	if rest := b[34+n:]; len(rest) > 0 {
		if m := int(rest[0]); m == 0 || len(rest) != 1+m {
			return e, wireErr("peer entry host length %d does not match %d remaining bytes", m, len(rest)-1)
		}
		e.Host = string(rest[1:])
	}
	return e, nil
}

// Hello layout: version(1) type(1) rank(4) proof(32). HelloOK: version(1) type(1) proof(32).
func encodeHello(rank int, proof []byte) []byte {
	b := make([]byte, 0, 38)
	b = append(b, wireVersion, frameHello)
	b = binary.BigEndian.AppendUint32(b, uint32(rank))
	return append(b, proof...)
}

func readHello(r io.Reader) (rank int, proof []byte, err error) {
	var b [38]byte
	if _, err := io.ReadFull(r, b[:]); err != nil {
		return 0, nil, fmt.Errorf("reading hello: %w", err)
	}
	if b[0] != wireVersion || b[1] != frameHello {
		return 0, nil, wireErr("hello starts with version %d type %d, want %d %d", b[0], b[1], wireVersion, frameHello)
	}
	r32 := binary.BigEndian.Uint32(b[2:6])
	if r32 >= maxRank {
		return 0, nil, wireErr("hello claims rank %d", r32)
	}
	return int(r32), append([]byte(nil), b[6:]...), nil
}

func encodeHelloOK(proof []byte) []byte {
	return append([]byte{wireVersion, frameHelloOK}, proof...)
}

func readHelloOK(r io.Reader) ([]byte, error) {
	var b [34]byte
	if _, err := io.ReadFull(r, b[:]); err != nil {
		return nil, fmt.Errorf("reading hello answer: %w", err)
	}
	if b[0] != wireVersion || b[1] != frameHelloOK {
		return nil, wireErr("hello answer starts with version %d type %d, want %d %d", b[0], b[1], wireVersion, frameHelloOK)
	}
	return append([]byte(nil), b[2:]...), nil
}

// Open layout: version(1) type(1) channelLen(2) channel.
func encodeOpen(channel string) []byte {
	b := make([]byte, 0, 4+len(channel))
	b = append(b, wireVersion, frameOpen)
	b = binary.BigEndian.AppendUint16(b, uint16(len(channel)))
	return append(b, channel...)
}

func readOpen(r io.Reader) (string, error) {
	var h [4]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return "", fmt.Errorf("reading stream header: %w", err)
	}
	if h[0] != wireVersion || h[1] != frameOpen {
		return "", wireErr("stream header starts with version %d type %d, want %d %d", h[0], h[1], wireVersion, frameOpen)
	}
	n := int(binary.BigEndian.Uint16(h[2:]))
	if n == 0 || n > MaxChannelLen {
		return "", wireErr("channel name of %d bytes, want 1..%d", n, MaxChannelLen)
	}
	name := make([]byte, n)
	if _, err := io.ReadFull(r, name); err != nil {
		return "", fmt.Errorf("reading channel name: %w", err)
	}
	return string(name), nil
}

// Abort reasons travel in QUIC CONNECTION_CLOSE frames as text:
//
//	ringtrain-abort/1 guilty=<rank> by=<rank>: <message>
//
// guilty is the rank at fault, by the rank that first noticed; receivers report a PeerError
// naming guilty, not the messenger.
const (
	abortPrefix   = "ringtrain-abort/1 "
	maxReasonLen  = 512
	maxMessageLen = maxReasonLen - 64
)

func encodeAbortReason(guilty, by int, msg string) string {
	if len(msg) > maxMessageLen {
		msg = msg[:maxMessageLen]
	}
	return abortPrefix + "guilty=" + strconv.Itoa(guilty) + " by=" + strconv.Itoa(by) + ": " + msg
}

func parseAbortReason(s string) (guilty, by int, msg string, err error) {
	if len(s) > maxReasonLen+64 {
		return 0, 0, "", wireErr("abort reason of %d bytes", len(s))
	}
	rest, ok := strings.CutPrefix(s, abortPrefix)
	if !ok {
		return 0, 0, "", wireErr("abort reason lacks prefix %q", abortPrefix)
	}
	head, msg, ok := strings.Cut(rest, ": ")
	if !ok {
		return 0, 0, "", wireErr("abort reason lacks message")
	}
	g, b, ok := strings.Cut(head, " ")
	if !ok {
		return 0, 0, "", wireErr("abort reason lacks by=")
	}
	if guilty, err = parseRankField(g, "guilty="); err != nil {
		return 0, 0, "", err
	}
	if by, err = parseRankField(b, "by="); err != nil {
		return 0, 0, "", err
	}
	return guilty, by, msg, nil
}

func parseRankField(s, prefix string) (int, error) {
	v, ok := strings.CutPrefix(s, prefix)
	if !ok {
		return 0, wireErr("abort reason field %q lacks %q", s, prefix)
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 || n >= maxRank || strconv.Itoa(n) != v {
		return 0, wireErr("abort reason field %q is not a rank", s)
	}
	return n, nil
}

// A link whose transport failed is reset (RESET_STREAM and STOP_SENDING) with the stream
// error code abortStreamCodeBase + guilty, so that the peer learns the guilty rank from the
// stream itself, even before the connection's abort reason arrives. Codes outside
// [abortStreamCodeBase, abortStreamCodeBase+maxRank) are not abort codes.
const abortStreamCodeBase = 0x52_0000_0000 // "R" << 32

func abortStreamCode(guilty int) quic.StreamErrorCode {
	return quic.StreamErrorCode(abortStreamCodeBase + uint64(guilty))
}

// parseAbortStreamCode returns the guilty rank an abort code names, if code is one and the
// rank is in a job of size ranks.
func parseAbortStreamCode(code quic.StreamErrorCode, size int) (guilty int, ok bool) {
	c := uint64(code)
	if c < abortStreamCodeBase || c-abortStreamCodeBase >= maxRank {
		return 0, false
	}
	if g := int(c - abortStreamCodeBase); g < size {
		return g, true
	}
	return 0, false
}

// The control stream of a connection is the stream its hello ran on, kept open both ways.
// It carries drain requests (Transport.Shutdown) and their answers:
//
//	Drain:   version(1) type(1) id(8) stream(8) count(8)
//	Drained: version(1) type(1) id(8) status(1) consumed(8)
const (
	drainLen   = 26
	drainedLen = 19

	drainedOK        = 0 // the peer read at least count bytes
	drainedDiscarded = 1 // the peer closed its end of the link having read fewer
)

// controlFrame is a decoded control-stream frame.
type controlFrame struct {
	typ    byte
	id     uint64
	stream uint64 // frameDrain: the QUIC stream ID of the link
	count  uint64 // frameDrain: bytes written; frameDrained: bytes consumed
	status byte   // frameDrained
}

func encodeDrain(id, stream, count uint64) []byte {
	b := make([]byte, 0, drainLen)
	b = append(b, wireVersion, frameDrain)
	b = binary.BigEndian.AppendUint64(b, id)
	b = binary.BigEndian.AppendUint64(b, stream)
	return binary.BigEndian.AppendUint64(b, count)
}

func encodeDrained(id uint64, status byte, consumed uint64) []byte {
	b := make([]byte, 0, drainedLen)
	b = append(b, wireVersion, frameDrained)
	b = binary.BigEndian.AppendUint64(b, id)
	b = append(b, status)
	return binary.BigEndian.AppendUint64(b, consumed)
}

// maxStreamID and maxCount bound the varint-sized QUIC quantities a frame may carry.
const maxQUICInt = 1<<62 - 1

func readControl(r io.Reader) (controlFrame, error) {
	var f controlFrame
	var b [drainLen]byte
	if _, err := io.ReadFull(r, b[:2]); err != nil {
		return f, fmt.Errorf("reading control frame: %w", err)
	}
	if b[0] != wireVersion {
		return f, wireErr("control frame version %d, want %d", b[0], wireVersion)
	}
	f.typ = b[1]
	var n int
	switch f.typ {
	case frameDrain:
		n = drainLen
	case frameDrained:
		n = drainedLen
	default:
		return f, wireErr("control frame of type %d", f.typ)
	}
	if _, err := io.ReadFull(r, b[2:n]); err != nil {
		return f, fmt.Errorf("reading control frame: %w", err)
	}
	f.id = binary.BigEndian.Uint64(b[2:10])
	if f.typ == frameDrain {
		f.stream = binary.BigEndian.Uint64(b[10:18])
		f.count = binary.BigEndian.Uint64(b[18:26])
		if f.stream > maxQUICInt || f.count > maxQUICInt {
			return f, wireErr("drain of stream %d, count %d: beyond QUIC's range", f.stream, f.count)
		}
		return f, nil
	}
	f.status = b[10]
	f.count = binary.BigEndian.Uint64(b[11:19])
	if f.status != drainedOK && f.status != drainedDiscarded {
		return f, wireErr("drain answer with status %d", f.status)
	}
	if f.count > maxQUICInt {
		return f, wireErr("drain answer with count %d", f.count)
	}
	return f, nil
}
