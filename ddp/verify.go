package ddp

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"

	"github.com/ringtrain/ringtrain/collective"
)

// ErrMismatch is matched (errors.Is) by *MismatchError.
var ErrMismatch = errors.New("ddp: ranks disagree")

// MismatchError reports that a rank's model or options differ from rank 0's, found by
// Wrap before any parameter is overwritten. Every rank returns the same error.
type MismatchError struct {
	Rank   int    // the lowest rank that differs from rank 0
	Ranks  []int  // every rank that differs from rank 0
	Param  string // the first parameter that differs (a name, or "#i" by position); "" if an option differs
	Option string // the option that differs; "" if a parameter does
	Got    string // the parameter or option on Rank
	Want   string // the same on rank 0
}

func (e *MismatchError) Error() string {
	what := "option " + e.Option
	if e.Option == "" {
		what = "parameter " + e.Param
	}
	s := fmt.Sprintf("ddp: rank %d differs from rank 0: %s is %s on rank %d but %s on rank 0", e.Rank, what, e.Got, e.Rank, e.Want)
	if len(e.Ranks) > 1 {
		s += fmt.Sprintf(" (ranks differing from rank 0: %v)", e.Ranks)
	}
	return s
}

// Is makes errors.Is(err, ErrMismatch) true.
func (e *MismatchError) Is(target error) bool { return target == ErrMismatch }

// shapeEntry is one parameter's name and shape.
type shapeEntry struct {
	Name  string
	Shape []int
}

func (s shapeEntry) String() string { return fmt.Sprintf("%q %v", s.Name, s.Shape) }

// Limits of the shape description exchanged by Wrap.
const (
	maxDescBytes = 1 << 20
	maxNameBytes = 1 << 10
	maxDims      = 16
)

// encodeShapes describes parameters as bytes: u32 count, then per parameter u16 name
// length, the name, u8 rank, rank × u32 dimensions (little endian).
func encodeShapes(refs []paramRef) []byte {
	b := binary.LittleEndian.AppendUint32(nil, uint32(len(refs)))
	for _, pr := range refs {
		name := pr.p.Name
		if len(name) > maxNameBytes {
			name = name[:maxNameBytes]
		}
		b = binary.LittleEndian.AppendUint16(b, uint16(len(name)))
		b = append(b, name...)
		dims := pr.p.Shape
		if len(dims) > maxDims {
			dims = dims[:maxDims]
		}
		b = append(b, byte(len(dims)))
		for _, d := range dims {
			b = binary.LittleEndian.AppendUint32(b, uint32(d))
		}
	}
	return b
}

var errDesc = errors.New("malformed shape description")

// decodeShapes parses encodeShapes' output (which comes off the network: any input must
// give entries or an error, never a panic or a huge allocation).
func decodeShapes(b []byte) ([]shapeEntry, error) {
	if len(b) < 4 {
		return nil, errDesc
	}
	n := binary.LittleEndian.Uint32(b)
	b = b[4:]
	if uint64(n) > uint64(len(b))/3 { // every entry takes at least 3 bytes
		return nil, fmt.Errorf("%w: %d entries in %d bytes", errDesc, n, len(b))
	}
	out := make([]shapeEntry, 0, n)
	for i := uint32(0); i < n; i++ {
		if len(b) < 2 {
			return nil, fmt.Errorf("%w: entry %d truncated", errDesc, i)
		}
		l := int(binary.LittleEndian.Uint16(b))
		b = b[2:]
		if l > maxNameBytes || len(b) < l+1 {
			return nil, fmt.Errorf("%w: entry %d name truncated", errDesc, i)
		}
		e := shapeEntry{Name: string(b[:l])}
		nd := int(b[l])
		b = b[l+1:]
		if nd > maxDims || len(b) < 4*nd {
			return nil, fmt.Errorf("%w: entry %d dimensions truncated", errDesc, i)
		}
		e.Shape = make([]int, nd)
		for j := range e.Shape {
			e.Shape[j] = int(binary.LittleEndian.Uint32(b[4*j:]))
		}
		b = b[4*nd:]
		out = append(out, e)
	}
	if len(b) != 0 {
		return nil, fmt.Errorf("%w: %d trailing bytes", errDesc, len(b))
	}
	return out, nil
}

// The fingerprint block every rank contributes to Wrap's AllGather. Integers travel as
// float32 pieces of 16 bits, which float32 represents exactly.
const (
	fpParams        = iota * 4 // number of parameters
	fpHash                     // first 8 bytes of SHA-256 of the shape description
	fpDescLen                  // length of the shape description in bytes
	fpFirstCap                 // first bucket cap in bytes
	fpCap                      // bucket cap in bytes
	fpBuckets                  // number of buckets
	fpCompression              // compression (one value)
	fpErrorFeedback            // 0 or 1 (one value)
	fpBlock
)

func putU64(dst []float32, v uint64) {
	for i := range 4 {
		dst[i] = float32(v >> (16 * i) & 0xffff)
	}
}

func getU64(src []float32) (uint64, bool) {
	var v uint64
	for i := range 4 {
		x := src[i]
		if x < 0 || x > 0xffff || x != float32(math.Trunc(float64(x))) {
			return 0, false
		}
		v |= uint64(x) << (16 * i)
	}
	return v, true
}

// verifyRanks checks, before Wrap changes anything, that every rank has the same
// parameters and bucket options as rank 0; every rank returns the same *MismatchError.
func verifyRanks(ctx context.Context, g *collective.Group, refs []paramRef, plan [][]paramRef, ro resolved) error {
	desc := encodeShapes(refs)
	sum := sha256.Sum256(desc)
	n := g.Size()
	all := make([]float32, fpBlock*n)
	mine := all[g.Rank()*fpBlock : (g.Rank()+1)*fpBlock]
	putU64(mine[fpParams:], uint64(len(refs)))
	putU64(mine[fpHash:], binary.LittleEndian.Uint64(sum[:8]))
	putU64(mine[fpDescLen:], uint64(len(desc)))
	putU64(mine[fpFirstCap:], uint64(ro.firstCapBytes))
	putU64(mine[fpCap:], uint64(ro.capBytes))
	putU64(mine[fpBuckets:], uint64(len(plan)))
	putU64(mine[fpCompression:], uint64(ro.compression))
	if ro.errorFeedback {
		putU64(mine[fpErrorFeedback:], 1)
	}
	if err := g.AllGather(ctx, all); err != nil {
		return fmt.Errorf("ddp: comparing parameter shapes across ranks: %w", err)
	}
	field := func(r, f int) uint64 {
		v, ok := getU64(all[r*fpBlock+f:])
		if !ok {
			return math.MaxUint64 // garbage differs from anything a real rank sends
		}
		return v
	}
	var shapeRanks, optRanks []int
	maxLen := uint64(0)
	for r := 1; r < n; r++ {
		if field(r, fpParams) != field(0, fpParams) || field(r, fpHash) != field(0, fpHash) || field(r, fpDescLen) != field(0, fpDescLen) {
			shapeRanks = append(shapeRanks, r)
		}
		for _, f := range []int{fpFirstCap, fpCap, fpBuckets, fpCompression, fpErrorFeedback} {
			if field(r, f) != field(0, f) {
				optRanks = append(optRanks, r)
				break
			}
		}
	}
	for r := 0; r < n; r++ {
		maxLen = max(maxLen, field(r, fpDescLen))
	}
	if len(shapeRanks) > 0 {
		e := &MismatchError{Rank: shapeRanks[0], Ranks: shapeRanks}
		// Every rank saw the same blocks, so all take this branch together.
		if maxLen > maxDescBytes {
			e.Param, e.Got, e.Want = "list", fmt.Sprintf("%d bytes of description", field(e.Rank, fpDescLen)), fmt.Sprintf("%d bytes", field(0, fpDescLen))
			return e
		}
		descs, err := gatherBytes(ctx, g, desc, int(maxLen))
		if err != nil {
			return fmt.Errorf("ddp: parameter shapes differ across ranks (ranks %v differ from rank 0), and exchanging them failed: %w", shapeRanks, err)
		}
		root, rerr := decodeShapes(descs[0])
		other, oerr := decodeShapes(descs[e.Rank])
		if rerr != nil || oerr != nil {
			e.Param, e.Got, e.Want = "list", "unreadable", "unreadable"
			return e
		}
		e.Param, e.Got, e.Want = firstShapeDiff(other, root)
		return e
	}
	if len(optRanks) > 0 {
		r := optRanks[0]
		e := &MismatchError{Rank: r, Ranks: optRanks}
		switch {
		case field(r, fpCompression) != field(0, fpCompression):
			e.Option = "Compression"
			e.Got, e.Want = collective.Compression(field(r, fpCompression)).String(), collective.Compression(field(0, fpCompression)).String()
		case field(r, fpErrorFeedback) != field(0, fpErrorFeedback):
			e.Option = "ErrorFeedback"
			e.Got, e.Want = fmt.Sprint(field(r, fpErrorFeedback) == 1), fmt.Sprint(field(0, fpErrorFeedback) == 1)
		case field(r, fpCap) != field(0, fpCap):
			e.Option = "BucketCapMB"
			e.Got, e.Want = mbString(field(r, fpCap)), mbString(field(0, fpCap))
		case field(r, fpFirstCap) != field(0, fpFirstCap):
			e.Option = "FirstBucketCapMB"
			e.Got, e.Want = mbString(field(r, fpFirstCap)), mbString(field(0, fpFirstCap))
		default:
			e.Option = "bucket layout"
			e.Got, e.Want = fmt.Sprintf("%d buckets", field(r, fpBuckets)), fmt.Sprintf("%d buckets", field(0, fpBuckets))
		}
		return e
	}
	return nil
}

func mbString(bytes uint64) string {
	return fmt.Sprintf("%g MiB", float64(bytes)/(1<<20))
}

// gatherBytes AllGathers every rank's byte string (at most maxLen bytes), one float32 per
// byte, and returns them by rank.
func gatherBytes(ctx context.Context, g *collective.Group, mine []byte, maxLen int) ([][]byte, error) {
	n := g.Size()
	stride := 1 + maxLen
	buf := make([]float32, stride*n)
	base := g.Rank() * stride
	buf[base] = float32(len(mine)) // ≤ maxDescBytes < 2^24: exact
	for i, c := range mine {
		buf[base+1+i] = float32(c)
	}
	if err := g.AllGather(ctx, buf); err != nil {
		return nil, err
	}
	out := make([][]byte, n)
	for r := range n {
		row := buf[r*stride : (r+1)*stride]
		l := int(row[0])
		if row[0] < 0 || float32(l) != row[0] || l > maxLen {
			continue // unreadable: decodeShapes reports it
		}
		b := make([]byte, l)
		for i := range b {
			v := row[1+i]
			if v < 0 || v > 255 || float32(byte(v)) != v {
				b = nil
				break
			}
			b[i] = byte(v)
		}
		out[r] = b
	}
	return out, nil
}

// firstShapeDiff names the first parameter where other differs from root.
func firstShapeDiff(other, root []shapeEntry) (param, got, want string) {
	for i := 0; i < min(len(other), len(root)); i++ {
		o, r := other[i], root[i]
		switch {
		case o.Name != r.Name:
			return fmt.Sprintf("#%d", i), fmt.Sprintf("%q", o.Name), fmt.Sprintf("%q", r.Name)
		case !slices.Equal(o.Shape, r.Shape):
			return fmt.Sprintf("%q", r.Name), "shape " + dimsString(o.Shape), "shape " + dimsString(r.Shape)
		}
	}
	switch {
	case len(other) > len(root):
		return fmt.Sprintf("#%d", len(root)), fmt.Sprintf("%s (an extra parameter: %d in all)", other[len(root)], len(other)), fmt.Sprintf("absent (%d parameters in all)", len(root))
	case len(other) < len(root):
		return fmt.Sprintf("#%d", len(other)), fmt.Sprintf("absent (%d parameters in all)", len(other)), fmt.Sprintf("%s (%d parameters in all)", root[len(other)], len(root))
	}
	return "list", "different", "different (same names and shapes, yet the fingerprints differ)"
}

func dimsString(d []int) string {
	parts := make([]string, len(d))
	for i, x := range d {
		parts[i] = fmt.Sprint(x)
	}
	return "[" + strings.Join(parts, " ") + "]"
}
