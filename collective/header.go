package collective

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// header announces an op on a link before its payload. Every collective sends its header to the
// right neighbour of the ring and checks the one from the left against its own, so that ranks
// calling different ops, counts, dtypes, reductions or roots fail with a MismatchError instead
// of exchanging data that does not fit. Send prefixes each message with one as well.
//
// Wire format, 32 bytes, little-endian:
//
//	[0:2]   magic 0x5254 ("RT")
//	[2]     version (1)
//	[3]     kind    (opKind)
//	[4]     dtype   (element type on the wire)
//	[5]     reduce  (Op, 0 when the op does not reduce)
//	[6:8]   reserved, zero
//	[8:16]  seq     (per-group op sequence number; per (peer, tag) message number for Send)
//	[16:24] count   (number of elements of the caller's buffer)
//	[24:32] arg     (Broadcast root, Send tag; 0 otherwise), signed
type header struct {
	kind   opKind
	dtype  dtype
	reduce Op
	seq    uint64
	count  uint64
	arg    int64
}

const (
	headerSize    = 32
	headerMagic   = 0x5254
	headerVersion = 1
)

// ErrBadHeader is wrapped by errors about bytes that are not a valid op header: a peer
// speaking another protocol version, or a stream that lost its framing.
var ErrBadHeader = errors.New("collective: bad op header")

func (h *header) encode(b *[headerSize]byte) {
	binary.LittleEndian.PutUint16(b[0:], headerMagic)
	b[2] = headerVersion
	b[3] = byte(h.kind)
	b[4] = byte(h.dtype)
	b[5] = byte(h.reduce)
	b[6], b[7] = 0, 0
	binary.LittleEndian.PutUint64(b[8:], h.seq)
	binary.LittleEndian.PutUint64(b[16:], h.count)
	binary.LittleEndian.PutUint64(b[24:], uint64(h.arg))
}

func (h *header) decode(b []byte) error {
	if len(b) != headerSize {
		return fmt.Errorf("%w: %d bytes, want %d", ErrBadHeader, len(b), headerSize)
	}
	if m := binary.LittleEndian.Uint16(b[0:]); m != headerMagic {
		return fmt.Errorf("%w: magic %#04x, want %#04x", ErrBadHeader, m, headerMagic)
	}
	if b[2] != headerVersion {
		return fmt.Errorf("%w: version %d, this build speaks %d", ErrBadHeader, b[2], headerVersion)
	}
	kind, dt, red := opKind(b[3]), dtype(b[4]), Op(b[5])
	if kind < kindAllReduce || kind > kindMax {
		return fmt.Errorf("%w: unknown op kind %d", ErrBadHeader, b[3])
	}
	if dt > dtF16 {
		return fmt.Errorf("%w: unknown dtype %d", ErrBadHeader, b[4])
	}
	if red != 0 && !red.valid() {
		return fmt.Errorf("%w: unknown reduction %d", ErrBadHeader, b[5])
	}
	if b[6] != 0 || b[7] != 0 {
		return fmt.Errorf("%w: reserved bytes %#x %#x not zero", ErrBadHeader, b[6], b[7])
	}
	*h = header{
		kind:   kind,
		dtype:  dt,
		reduce: red,
		seq:    binary.LittleEndian.Uint64(b[8:]),
		count:  binary.LittleEndian.Uint64(b[16:]),
		arg:    int64(binary.LittleEndian.Uint64(b[24:])),
	}
	return nil
}

// describe renders the call a header announces, as the user wrote it, e.g.
// "AllReduce(count=100, fp32, sum)". withSeq adds the op's sequence number.
func (h *header) describe(withSeq bool) string {
	var s string
	switch h.kind {
	case kindAllReduce, kindReduceScatter:
		s = fmt.Sprintf("%v(count=%d, %v, %v)", h.kind, h.count, h.dtype, h.reduce)
	case kindAllGather:
		s = fmt.Sprintf("%v(count=%d, %v)", h.kind, h.count, h.dtype)
	case kindBroadcast:
		s = fmt.Sprintf("%v(count=%d, %v, root=%d)", h.kind, h.count, h.dtype, h.arg)
	case kindBarrier:
		s = fmt.Sprintf("%v()", h.kind)
	default:
		s = fmt.Sprintf("%v(count=%d, %v, tag=%d)", h.kind, h.count, h.dtype, h.arg)
	}
	if withSeq {
		s += fmt.Sprintf(" [op #%d]", h.seq)
	}
	return s
}

// MismatchError reports that two members of a group issued incompatible calls: different
// collectives, counts, dtypes (compression), reductions or roots at the same point of their
// sequence, or a Recv whose size or tag does not match the Send it received. The rank that
// detects it aborts the transport with it, so every member fails (over the in-process
// transport errors.As finds this type on every rank; over a network the others see its text).
type MismatchError struct {
	Rank     int    // world rank that detected the mismatch
	Call     string // what Rank called, e.g. "AllReduce(count=100, fp32, sum)"
	PeerRank int    // world rank whose header disagreed
	PeerCall string // what PeerRank called
}

func (e *MismatchError) Error() string {
	return fmt.Sprintf("collective: op mismatch: rank %d called %s but rank %d called %s",
		e.Rank, e.Call, e.PeerRank, e.PeerCall)
}

// mismatch compares the header a peer sent with the one this rank expects.
func mismatch(rank int, mine *header, peer int, theirs *header) error {
	if *mine == *theirs {
		return nil
	}
	withSeq := mine.seq != theirs.seq
	return &MismatchError{Rank: rank, Call: mine.describe(withSeq), PeerRank: peer, PeerCall: theirs.describe(withSeq)}
}
