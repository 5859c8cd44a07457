package models

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"math"
)

// NamedSlice is one named float32 array with its shape.
type NamedSlice struct {
	Name  string
	Shape []int
	Data  []float32
}

// Snapshot is a set of named float32 arrays with a kind and a step counter:
// the checkpointable form of optimizer state (Optimizer.State) and of model
// parameters (ParamSnapshot). MarshalBinary gives a self-checking binary form.
type Snapshot struct {
	Kind   string // "sgd", "adam", "params", …
	Step   int64  // optimizer steps taken (or the training step of a parameter snapshot)
	Slices []NamedSlice
}

// ErrSnapshot is matched (errors.Is) by every error decoding or applying a
// Snapshot.
var ErrSnapshot = errors.New("bad snapshot")

func snapErr(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrSnapshot, fmt.Sprintf(format, args...))
}

// ParamSnapshot copies the parameters' values into a Snapshot of kind "params".
func ParamSnapshot(params []*Param, step int64) Snapshot {
	s := Snapshot{Kind: "params", Step: step}
	for _, p := range params {
		s.Slices = append(s.Slices, NamedSlice{Name: p.Name, Shape: append([]int(nil), p.Shape...), Data: append([]float32(nil), p.Value...)})
	}
	return s
}

// LoadParams copies a parameter snapshot into params (in place, so graphs and
// optimizers keep working). Names, order and shapes must match exactly.
func (s Snapshot) LoadParams(params []*Param) error {
	if s.Kind != "params" {
		return snapErr("kind %q, want \"params\"", s.Kind)
	}
	if len(s.Slices) != len(params) {
		return snapErr("%d parameters in snapshot, model has %d", len(s.Slices), len(params))
	}
	for i, p := range params {
		ns := s.Slices[i]
		if ns.Name != p.Name || !sameShape(ns.Shape, p.Shape) || len(ns.Data) != len(p.Value) {
			return snapErr("entry %d is %s %v, model has %s %v", i, ns.Name, ns.Shape, p.Name, p.Shape)
		}
	}
	for i, p := range params {
		copy(p.Value, s.Slices[i].Data)
	}
	return nil
}

// Binary form (little endian):
//
//	"RTSN" u32 version=1
//	u32 len, kind bytes; i64 step; u32 count
//	count × { u32 len, name bytes; u32 ndims; ndims × u32 dim; n × f32 data }
//	u32 CRC-32 (IEEE) of everything before it
const (
	snapMagic    = "RTSN"
	snapVersion  = 1
	maxNameLen   = 1 << 12
	maxSnapDims  = 8
	maxSnapCount = 1 << 20
)

// MarshalBinary implements encoding.BinaryMarshaler.
func (s Snapshot) MarshalBinary() ([]byte, error) {
	size := 4 + 4 + 4 + len(s.Kind) + 8 + 4 + 4
	for _, ns := range s.Slices {
		if len(ns.Name) > maxNameLen || len(ns.Shape) > maxSnapDims {
			return nil, snapErr("entry %q: name or rank too large", ns.Name)
		}
		if numElems(ns.Shape) != len(ns.Data) {
			return nil, snapErr("entry %q: shape %v does not match %d values", ns.Name, ns.Shape, len(ns.Data))
		}
		size += 4 + len(ns.Name) + 4 + 4*len(ns.Shape) + 4*len(ns.Data)
	}
	if len(s.Kind) > maxNameLen || len(s.Slices) > maxSnapCount {
		return nil, snapErr("kind or entry count too large")
	}
	b := make([]byte, 0, size)
	b = append(b, snapMagic...)
	b = binary.LittleEndian.AppendUint32(b, snapVersion)
	b = binary.LittleEndian.AppendUint32(b, uint32(len(s.Kind)))
	b = append(b, s.Kind...)
	b = binary.LittleEndian.AppendUint64(b, uint64(s.Step))
	b = binary.LittleEndian.AppendUint32(b, uint32(len(s.Slices)))
	for _, ns := range s.Slices {
		b = binary.LittleEndian.AppendUint32(b, uint32(len(ns.Name)))
		b = append(b, ns.Name...)
		b = binary.LittleEndian.AppendUint32(b, uint32(len(ns.Shape)))
		for _, d := range ns.Shape {
			b = binary.LittleEndian.AppendUint32(b, uint32(d))
		}
		for _, v := range ns.Data {
			b = binary.LittleEndian.AppendUint32(b, math.Float32bits(v))
		}
	}
	return binary.LittleEndian.AppendUint32(b, crc32.ChecksumIEEE(b)), nil
}

// UnmarshalBinary implements encoding.BinaryUnmarshaler. Any truncation,
// corruption (checksum) or inconsistency is an error matching ErrSnapshot;
// it never allocates more than the input's size justifies.
func (s *Snapshot) UnmarshalBinary(b []byte) error {
	if len(b) < 4+4+4+8+4+4 {
		return snapErr("%d bytes is too short", len(b))
	}
	if string(b[:4]) != snapMagic {
		return snapErr("bad magic %q, want %q", b[:4], snapMagic)
	}
	body, sum := b[:len(b)-4], binary.LittleEndian.Uint32(b[len(b)-4:])
	if got := crc32.ChecksumIEEE(body); got != sum {
		return snapErr("checksum mismatch (stored %08x, computed %08x): file corrupt or truncated", sum, got)
	}
	r := snapReader{b: body, off: 4}
	if v := r.u32(); r.err == nil && v != snapVersion {
		return snapErr("version %d, this build reads %d", v, snapVersion)
	}
	kind := r.str()
	step := int64(r.u64())
	count := r.u32()
	if r.err != nil {
		return r.err
	}
	if count > maxSnapCount {
		return snapErr("%d entries exceeds the limit %d", count, maxSnapCount)
	}
	out := Snapshot{Kind: kind, Step: step}
	for i := uint32(0); i < count && r.err == nil; i++ {
		name := r.str()
		nd := r.u32()
		if r.err != nil {
			break
		}
		if nd > maxSnapDims {
			return snapErr("entry %d (%q): %d dimensions exceeds %d", i, name, nd, maxSnapDims)
		}
		shape := make([]int, nd)
		n := uint64(1)
		for j := range shape {
			d := r.u32()
			shape[j] = int(d)
			n *= uint64(d)
			if n > uint64(len(body)) { // cannot fit: stop before multiplying further
				return snapErr("entry %d (%q): shape %v larger than the input", i, name, shape[:j+1])
			}
		}
		if r.err != nil {
			break
		}
		if uint64(r.remaining()) < 4*n {
			return snapErr("entry %d (%q): %d values, only %d bytes left at offset %d", i, name, n, r.remaining(), r.off)
		}
		data := make([]float32, n)
		for j := range data {
			data[j] = math.Float32frombits(binary.LittleEndian.Uint32(r.b[r.off:]))
			r.off += 4
		}
		out.Slices = append(out.Slices, NamedSlice{Name: name, Shape: shape, Data: data})
	}
	if r.err != nil {
		return r.err
	}
	if r.remaining() != 0 {
		return snapErr("%d trailing bytes after the last entry", r.remaining())
	}
	*s = out
	return nil
}

type snapReader struct {
	b   []byte
	off int
	err error
}

func (r *snapReader) remaining() int { return len(r.b) - r.off }

func (r *snapReader) need(n int) bool {
	if r.err != nil {
		return false
	}
	if r.remaining() < n {
		r.err = snapErr("truncated at byte %d (need %d more)", r.off, n)
		return false
	}
	return true
}

func (r *snapReader) u32() uint32 {
	if !r.need(4) {
		return 0
	}
	v := binary.LittleEndian.Uint32(r.b[r.off:])
	r.off += 4
	return v
}

func (r *snapReader) u64() uint64 {
	if !r.need(8) {
		return 0
	}
	v := binary.LittleEndian.Uint64(r.b[r.off:])
	r.off += 8
	return v
}

func (r *snapReader) str() string {
	n := r.u32()
	if r.err != nil {
		return ""
	}
	if n > maxNameLen {
		r.err = snapErr("string of %d bytes at offset %d exceeds %d", n, r.off-4, maxNameLen)
		return ""
	}
	if !r.need(int(n)) {
		return ""
	}
	s := string(r.b[r.off : r.off+int(n)])
	r.off += int(n)
	return s
}
