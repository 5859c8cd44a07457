package shmtransport

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Layout of the mapped file. The first page is the header and the control words; then come
// the two rings' data areas:
//
//	0      header: magic, version, sizes, creator, nonce (written once by the creator)
//	1024   direction 0 control (creator -> opener)
//	2048   direction 1 control (opener -> creator)
//	3072   abort words, one per side
//	4096   direction 0 data, ringBytes
//	4096+ringBytes  direction 1 data, ringBytes
//
// In each direction's control block, the words written by the producer and those written by
// the consumer sit on different 128-byte blocks (two cache lines, because the adjacent-line
// prefetcher pulls pairs), so that the producer publishing head and the consumer publishing
// tail never fight over one line.
const (
	hdrMagic    = "RTSHMRNG"
	hdrVersion  = 1
	headerBytes = 4096

	minRingBytes = 4096
	maxRingBytes = 1 << 30

	dirCtlOff  = 1024 // + d*dirCtlSize
	dirCtlSize = 1024

	offHead          = 0   // uint64, producer: bytes ever published
	offWriterBusy    = 8   // uint32, producer: 1 while inside a Write (more bytes are coming)
	offTail          = 128 // uint64, consumer: bytes ever consumed
	offDataSeq       = 256 // uint32 futex word the consumer sleeps on; producer bumps it
	offReaderWaiting = 260 // uint32, consumer: 1 while it may be asleep on dataSeq
	offReaderWant    = 264 // uint64, consumer: bytes it waits for before it wants a wake-up
	offSpaceSeq      = 384 // uint32 futex word the producer sleeps on; consumer bumps it
	offWriterWaiting = 388 // uint32, producer: 1 while it may be asleep on spaceSeq
	offWriterWant    = 392 // uint64, producer: free bytes it waits for before it wants a wake-up
	offWriterClosed  = 512 // uint32, producer: no more bytes will come (EOF after draining)
	offReaderClosed  = 640 // uint32, consumer: nobody reads any more; writes fail

	abortOff = 3072 // uint32 per side: creator at +0, opener at +128
)

// header is the first part of the mapping, checked by the side that maps an existing file.
type header struct {
	ringBytes    uint64
	creatorPID   uint32
	creatorRank  uint32
	openerRank   uint32
	creatorStart uint64 // creator's start time, so stale cleanup survives pid reuse
	pidNS        uint64 // creator's pid namespace
	nonce        [16]byte
}

const headerUsed = 72

func (h *header) encode(b []byte) {
	copy(b[0:8], hdrMagic)
	binary.LittleEndian.PutUint32(b[8:], hdrVersion)
	binary.LittleEndian.PutUint32(b[12:], headerBytes)
	binary.LittleEndian.PutUint64(b[16:], h.ringBytes)
	binary.LittleEndian.PutUint32(b[24:], h.creatorPID)
	binary.LittleEndian.PutUint32(b[28:], h.creatorRank)
	binary.LittleEndian.PutUint32(b[32:], h.openerRank)
	binary.LittleEndian.PutUint64(b[40:], h.creatorStart)
	binary.LittleEndian.PutUint64(b[48:], h.pidNS)
	copy(b[56:72], h.nonce[:])
}

// errHeader marks a mapping whose header is not what this build writes.
var errHeader = errors.New("shmtransport: bad shared-memory header")

// decodeHeader parses and checks the header at the start of a mapping of fileBytes bytes.
func decodeHeader(b []byte, fileBytes int64) (header, error) {
	var h header
	if len(b) < headerUsed {
		return h, fmt.Errorf("%w: %d bytes, want at least %d", errHeader, len(b), headerUsed)
	}
	if string(b[0:8]) != hdrMagic {
		return h, fmt.Errorf("%w: bad magic %q", errHeader, b[0:8])
	}
	if v := binary.LittleEndian.Uint32(b[8:]); v != hdrVersion {
		return h, fmt.Errorf("%w: version %d, this build speaks %d", errHeader, v, hdrVersion)
	}
	if hb := binary.LittleEndian.Uint32(b[12:]); hb != headerBytes {
		return h, fmt.Errorf("%w: header size %d, want %d", errHeader, hb, headerBytes)
	}
	h.ringBytes = binary.LittleEndian.Uint64(b[16:])
	if err := checkRingBytes(h.ringBytes); err != nil {
		return h, fmt.Errorf("%w: %v", errHeader, err)
	}
	if want := int64(headerBytes) + 2*int64(h.ringBytes); fileBytes != want {
		return h, fmt.Errorf("%w: file holds %d bytes, rings of %d need %d", errHeader, fileBytes, h.ringBytes, want)
	}
	h.creatorPID = binary.LittleEndian.Uint32(b[24:])
	h.creatorRank = binary.LittleEndian.Uint32(b[28:])
	h.openerRank = binary.LittleEndian.Uint32(b[32:])
	h.creatorStart = binary.LittleEndian.Uint64(b[40:])
	h.pidNS = binary.LittleEndian.Uint64(b[48:])
	copy(h.nonce[:], b[56:72])
	return h, nil
}

// checkRingBytes accepts powers of two from 4 KiB to 1 GiB, so that positions wrap with a mask.
func checkRingBytes(n uint64) error {
	if n < minRingBytes || n > maxRingBytes || n&(n-1) != 0 {
		return fmt.Errorf("ring size %d is not a power of two in [%d, %d]", n, minRingBytes, maxRingBytes)
	}
	return nil
}
