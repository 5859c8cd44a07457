package collective

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
)

// header announces an op on a link before its payload. Every collective sends its header to the
// right neighbour of the ring and checks the one from the left against its own, so that ranks
// calling different ops, counts, dtypes, reductions, roots or wire geometries fail with a
// MismatchError instead of exchanging data that does not fit. Send prefixes each message with
// one as well.
//
// The header carries everything that decides how the payload's bytes are framed: a receiver
// that framed them differently from the sender would read one chunk's values as the next
// chunk's scale, which no check on the data itself can reliably catch (issue 11: two ranks
// with different Options.ChunkBytes exchanged fp16 chunks of different lengths, and one of
// them returned success).
//
// Wire format, version 2, 40 bytes, little-endian:
//
//	[0:2]   magic 0x5254 ("RT")
//	[2]     version (2)
//	[3]     kind        (opKind)
//	[4]     dtype       (element type of the caller's buffer: none, fp32, bytes, fp64, int32, int64)
//	[5]     reduce      (Op, 0 when the op does not reduce)
//	[6]     compression (Compression: how values are encoded on the wire)
//	[7]     algorithm   (ring 0, rd 1, rhd 2, hier 3, oneshot 4, rdoneshot 5)
//	[8:16]  seq         (per-group op sequence number; per (peer, tag) message number for Send)
//	[16:24] count       (number of elements of the caller's buffer; 0 for variable-length bytes)
//	[24:32] arg         (Broadcast, Reduce, Gather, Scatter root; Send tag; 0 otherwise), signed
//	[32:36] chunk       (elements per pipelining chunk; 0 for ops whose framing does not use it)
//	[36:40] reserved, zero
//
// Version 1 (32 bytes, no compression, algorithm or chunk; fp16 as a dtype) is refused by
// the version check: a rank of an older build fails its first op with ErrBadHeader.
type header struct {
	kind        opKind
	dtype       dtype
	reduce      Op
	compression Compression
	algo        algorithm
	seq         uint64
	count       uint64
	arg         int64
	chunk       uint32
}

const (
	headerSize    = 40
	headerMagic   = 0x5254
	headerVersion = 2
)

// algorithm identifies how a collective moves its data. Ranks must agree on it as on the
// chunk size. Only AllReduce has algorithms other than the ring (see tuner.go, which picks
// one per call, rdouble.go, hier.go and oneshot.go).
type algorithm uint8

const (
	algoRing      algorithm = iota // ring.go: reduce-scatter + all-gather around the ring
	algoRD                         // rdouble.go: recursive doubling, whole buffer per step
	algoRHD                        // rdouble.go: Rabenseifner, recursive halving + doubling
	algoHier                       // hier.go: intra-host reduce-scatter, inter-host AllReduce, intra-host all-gather
	algoOneShot                    // oneshot.go: every rank sends its whole buffer to every other
	algoRDOneShot                  // oneshot.go: rd inside each host, then one-shot across hosts
	algoMax       = algoRDOneShot
)

func (a algorithm) String() string {
	switch a {
	case algoRing:
		return "ring"
	case algoRD:
		return "rd"
	case algoRHD:
		return "rhd"
	case algoHier:
		return "hier"
	case algoOneShot:
		return "oneshot"
	case algoRDOneShot:
		return "rdoneshot"
	}
	return fmt.Sprintf("algorithm(%d)", uint8(a))
}

// ErrBadHeader is wrapped by errors about bytes that are not a valid op header: a peer
// speaking another protocol version, or a stream that lost its framing.
var ErrBadHeader = errors.New("collective: bad op header")

func (h *header) encode(b *[headerSize]byte) {
	binary.LittleEndian.PutUint16(b[0:], headerMagic)
	b[2] = headerVersion
	b[3] = byte(h.kind)
	b[4] = byte(h.dtype)
	b[5] = byte(h.reduce)
	b[6] = byte(h.compression)
	b[7] = byte(h.algo)
	binary.LittleEndian.PutUint64(b[8:], h.seq)
	binary.LittleEndian.PutUint64(b[16:], h.count)
	binary.LittleEndian.PutUint64(b[24:], uint64(h.arg))
	binary.LittleEndian.PutUint32(b[32:], h.chunk)
	binary.LittleEndian.PutUint32(b[36:], 0)
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
	kind, dt, red, comp, algo := opKind(b[3]), dtype(b[4]), Op(b[5]), Compression(b[6]), algorithm(b[7])
	if kind < kindAllReduce || kind > kindMax {
		return fmt.Errorf("%w: unknown op kind %d", ErrBadHeader, b[3])
	}
	if dt > dtMax {
		return fmt.Errorf("%w: unknown dtype %d", ErrBadHeader, b[4])
	}
	if red != 0 && !red.valid() {
		return fmt.Errorf("%w: unknown reduction %d", ErrBadHeader, b[5])
	}
	if comp > compressionMax {
		return fmt.Errorf("%w: unknown compression %d", ErrBadHeader, b[6])
	}
	if algo > algoMax {
		return fmt.Errorf("%w: unknown algorithm %d", ErrBadHeader, b[7])
	}
	if r := binary.LittleEndian.Uint32(b[36:]); r != 0 {
		return fmt.Errorf("%w: reserved bytes %#x not zero", ErrBadHeader, r)
	}
	*h = header{
		kind:        kind,
		dtype:       dt,
		reduce:      red,
		compression: comp,
		algo:        algo,
		seq:         binary.LittleEndian.Uint64(b[8:]),
		count:       binary.LittleEndian.Uint64(b[16:]),
		arg:         int64(binary.LittleEndian.Uint64(b[24:])),
		chunk:       binary.LittleEndian.Uint32(b[32:]),
	}
	return nil
}

// Details describe adds to a call: the op's sequence number, its chunk size and its
// algorithm are shown only where they tell two calls apart.
const (
	showSeq = 1 << iota
	showChunk
	showAlgo
)

// describe renders the call a header announces, as the user wrote it, e.g.
// "AllReduce(count=100, fp32, sum)"; show adds the details named by its bits.
func (h *header) describe(show int) string {
	enc := h.dtype.String()
	if h.compression != NoCompression {
		enc = h.compression.String()
	}
	var args string
	switch h.kind {
	case kindAllReduce, kindReduceScatter:
		args = fmt.Sprintf("count=%d, %s, %v", h.count, enc, h.reduce)
	case kindAllGather:
		args = fmt.Sprintf("count=%d, %s", h.count, enc)
	case kindBroadcast, kindGather, kindScatter:
		args = fmt.Sprintf("count=%d, %s, root=%d", h.count, enc, h.arg)
	case kindReduce:
		args = fmt.Sprintf("count=%d, %s, %v, root=%d", h.count, enc, h.reduce, h.arg)
	case kindAllToAll:
		args = fmt.Sprintf("count=%d, %s", h.count, enc)
	case kindAllToAllV:
		args = enc // the counts differ per rank; each message's header carries its own
	case kindBroadcastBytes:
		args = fmt.Sprintf("root=%d", h.arg)
	case kindBarrier, kindAllGatherBytes, kindClose:
	default:
		args = fmt.Sprintf("count=%d, %s, tag=%d", h.count, enc, h.arg)
	}
	if show&showChunk != 0 {
		args += fmt.Sprintf(", chunk=%d B", uint64(max(4, h.dtype.size()))*uint64(h.chunk))
	}
	if show&showAlgo != 0 {
		args += fmt.Sprintf(", algorithm=%v", h.algo)
	}
	args = strings.TrimPrefix(args, ", ")
	s := fmt.Sprintf("%v(%s)", h.kind, args)
	if show&showSeq != 0 {
		s += fmt.Sprintf(" [op #%d]", h.seq)
	}
	return s
}

// MismatchError reports that two members of a group issued incompatible calls: different
// collectives, counts, dtypes (compression), reductions, roots or wire geometry (chunk size,
// algorithm) at the same point of their sequence, or a Recv whose size or tag does not match
// the Send it received. The rank that detects it aborts the transport with it, so every
// member of the op fails (over the in-process transport errors.As finds this type on every
// rank; over a network the others see its text, which names both ranks and both values).
type MismatchError struct {
	Rank     int    // world rank that detected the mismatch
	Call     string // what Rank called, e.g. "AllReduce(count=100, fp32, sum)"
	PeerRank int    // world rank whose header disagreed
	PeerCall string // what PeerRank called
	// Field names what differs when the calls look alike but their framing does not, e.g.
	// "chunk size (Options.ChunkBytes)"; empty when Call and PeerCall say it all.
	Field string
}

func (e *MismatchError) Error() string {
	s := fmt.Sprintf("collective: op mismatch: rank %d called %s but rank %d called %s",
		e.Rank, e.Call, e.PeerRank, e.PeerCall)
	if e.Field != "" {
		s += ": the ranks differ in " + e.Field
	}
	return s
}

// mismatch compares the header a peer sent with the one this rank expects.
func mismatch(rank int, mine *header, peer int, theirs *header) error {
	if *mine == *theirs {
		return nil
	}
	show := 0
	var field string
	if mine.seq != theirs.seq {
		show |= showSeq
	}
	// Geometry matters only between calls that otherwise agree: where the kinds, types,
	// counts, reductions, compressions or roots differ, those tell the calls apart, and a
	// different algorithm is only their consequence (the tuner chooses by type and size).
	sameCall := mine.kind == theirs.kind && mine.dtype == theirs.dtype && mine.count == theirs.count &&
		mine.reduce == theirs.reduce && mine.compression == theirs.compression && mine.arg == theirs.arg
	if sameCall && mine.chunk != theirs.chunk {
		show |= showChunk
		field = "chunk size (Options.ChunkBytes)"
	}
	if sameCall && mine.algo != theirs.algo {
		show |= showAlgo
		field = "algorithm"
	}
	return &MismatchError{Rank: rank, Call: mine.describe(show), PeerRank: peer, PeerCall: theirs.describe(show), Field: field}
}
