package ddp

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
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

// rankConfig is what every rank contributes to Wrap's agreement: its bucket options, its
// CommHook's name and the description of its parameters (encodeShapes). It travels as bytes
// through collective.Group.Agree: five little-endian u64 (first bucket cap, bucket cap,
// buckets, compression, error feedback 0/1), a u16 length and the hook's name (at most
// maxNameBytes), then the description.
type rankConfig struct {
	firstCap, cap, buckets, compression, errorFeedback uint64
	hook                                               string
	desc                                               []byte
}

const configFixed = 5*8 + 2

func (c *rankConfig) encode() []byte {
	hook := c.hook
	if len(hook) > maxNameBytes {
		hook = hook[:maxNameBytes]
	}
	b := make([]byte, 0, configFixed+len(hook)+len(c.desc))
	for _, v := range []uint64{c.firstCap, c.cap, c.buckets, c.compression, c.errorFeedback} {
		b = binary.LittleEndian.AppendUint64(b, v)
	}
	b = binary.LittleEndian.AppendUint16(b, uint16(len(hook)))
	b = append(b, hook...)
	return append(b, c.desc...)
}

// decodeConfig parses rankConfig.encode's output; ok is false for bytes it cannot have made.
func decodeConfig(b []byte) (c rankConfig, ok bool) {
	if len(b) < configFixed {
		return c, false
	}
	v := make([]uint64, 5)
	for i := range v {
		v[i] = binary.LittleEndian.Uint64(b[8*i:])
	}
	l := int(binary.LittleEndian.Uint16(b[5*8:]))
	if l > maxNameBytes || len(b) < configFixed+l {
		return c, false
	}
	c = rankConfig{firstCap: v[0], cap: v[1], buckets: v[2], compression: v[3], errorFeedback: v[4],
		hook: string(b[configFixed : configFixed+l]), desc: b[configFixed+l:]}
	return c, c.errorFeedback <= 1
}

func (c *rankConfig) optionsEqual(o *rankConfig) bool {
	return c.firstCap == o.firstCap && c.cap == o.cap && c.buckets == o.buckets && c.compression == o.compression && c.errorFeedback == o.errorFeedback && c.hook == o.hook
}

// verifyRanks checks, before Wrap changes anything, that every rank has the same
// parameters and bucket options as rank 0; every rank returns the same *MismatchError.
// lerr is this rank's own failure to prepare (bad options, a malformed model): it goes
// through the same exchange, so that every rank fails at once naming it, instead of the
// others waiting in their first collective for the group's timeout.
func verifyRanks(ctx context.Context, g *collective.Group, refs []paramRef, plan [][]paramRef, ro resolved, lerr error) error {
	var mine []byte
	if lerr == nil {
		c := rankConfig{
			firstCap:    uint64(ro.firstCapBytes),
			cap:         uint64(ro.capBytes),
			buckets:     uint64(len(plan)),
			compression: uint64(ro.compression),
			hook:        ro.hook.Name(),
			desc:        encodeShapes(refs),
		}
		if ro.errorFeedback {
			c.errorFeedback = 1
		}
		mine = c.encode()
	}
	all, err := g.Agree(ctx, mine, lerr)
	if err != nil {
		var ae *collective.AgreementError
		if errors.As(err, &ae) {
			return fmt.Errorf("ddp: Wrap: %w", err)
		}
		return fmt.Errorf("ddp: comparing parameter shapes and options across ranks: %w", err)
	}
	n := g.Size()
	cfgs := make([]rankConfig, n)
	readable := make([]bool, n)
	for r := range n {
		cfgs[r], readable[r] = decodeConfig(all[r])
	}
	var shapeRanks, optRanks []int
	for r := 1; r < n; r++ {
		switch {
		case !readable[r] || !readable[0]:
			shapeRanks = append(shapeRanks, r)
		case !bytes.Equal(cfgs[r].desc, cfgs[0].desc):
			shapeRanks = append(shapeRanks, r)
		case !cfgs[r].optionsEqual(&cfgs[0]):
			optRanks = append(optRanks, r)
		}
	}
	// Every rank saw the same messages, so all take the same branch with the same values.
	if len(shapeRanks) > 0 {
		e := &MismatchError{Rank: shapeRanks[0], Ranks: shapeRanks}
		root, rerr := decodeShapes(cfgs[0].desc)
		other, oerr := decodeShapes(cfgs[e.Rank].desc)
		if !readable[0] || !readable[e.Rank] || rerr != nil || oerr != nil {
			e.Param, e.Got, e.Want = "list", "unreadable", "unreadable"
			return e
		}
		e.Param, e.Got, e.Want = firstShapeDiff(other, root)
		return e
	}
	if len(optRanks) > 0 {
		r := optRanks[0]
		e := &MismatchError{Rank: r, Ranks: optRanks}
		got, want := &cfgs[r], &cfgs[0]
		switch {
		case got.compression != want.compression:
			e.Option = "Compression"
			e.Got, e.Want = collective.Compression(got.compression).String(), collective.Compression(want.compression).String()
		case got.errorFeedback != want.errorFeedback:
			e.Option = "ErrorFeedback"
			e.Got, e.Want = fmt.Sprint(got.errorFeedback == 1), fmt.Sprint(want.errorFeedback == 1)
		case got.hook != want.hook:
			e.Option = "CommHook"
			e.Got, e.Want = fmt.Sprintf("%q", got.hook), fmt.Sprintf("%q", want.hook)
		case got.cap != want.cap:
			e.Option = "BucketCapMB"
			e.Got, e.Want = mbString(got.cap), mbString(want.cap)
		case got.firstCap != want.firstCap:
			e.Option = "FirstBucketCapMB"
			e.Got, e.Want = mbString(got.firstCap), mbString(want.firstCap)
		default:
			e.Option = "bucket layout"
			e.Got, e.Want = fmt.Sprintf("%d buckets", got.buckets), fmt.Sprintf("%d buckets", want.buckets)
		}
		return e
	}
	return nil
}

func mbString(bytes uint64) string {
	return fmt.Sprintf("%g MiB", float64(bytes)/(1<<20))
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
