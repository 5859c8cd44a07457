package data

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
)

// IDX is the format of the MNIST family of datasets (LeCun et al.):
//
//	u8 0, u8 0, u8 type (0x08 = unsigned byte), u8 ndims
//	ndims × u32 big-endian dimension sizes
//	the values, row-major
//
// Files are often gzip-compressed; the decoder detects gzip by its magic
// bytes, not by the file name.

// ErrFormat is matched (errors.Is) by every *FormatError.
var ErrFormat = errors.New("bad IDX file")

// FormatError describes a corrupt, truncated or unexpected IDX file.
type FormatError struct {
	File   string // file name (or a description of the input)
	Offset int64  // byte offset in the decompressed stream where the problem is; -1 if not positional
	Msg    string
}

func (e *FormatError) Error() string {
	if e.Offset >= 0 {
		return fmt.Sprintf("%s: %s (at byte %d)", e.File, e.Msg, e.Offset)
	}
	return fmt.Sprintf("%s: %s", e.File, e.Msg)
}

// Is makes errors.Is(err, ErrFormat) true.
func (e *FormatError) Is(target error) bool { return target == ErrFormat }

// IDX is a decoded unsigned-byte IDX array.
type IDX struct {
	Dims []int
	Data []byte
}

// maxIDXDims bounds the number of dimensions (the format allows 255).
const maxIDXDims = 8

// maxIDXElems bounds the element count a header may announce (4 GiB of
// bytes): beyond any dataset this package is for, and it keeps a corrupt
// header from overflowing the size arithmetic.
const maxIDXElems = 1 << 32

// DecodeIDX reads one unsigned-byte IDX array from r, gunzipping it when it
// starts with the gzip magic. name is used in errors. The whole stream must
// be exactly one array: trailing bytes are an error. Memory grows with the
// bytes actually read, never with what a corrupt header announces.
func DecodeIDX(r io.Reader, name string) (*IDX, error) {
	br := bufio.NewReader(r)
	if magic, err := br.Peek(2); err == nil && magic[0] == 0x1f && magic[1] == 0x8b {
		zr, err := gzip.NewReader(br)
		if err != nil {
			return nil, &FormatError{File: name, Offset: -1, Msg: "bad gzip header: " + err.Error()}
		}
		defer zr.Close()
		return decodeRaw(zr, name)
	}
	return decodeRaw(br, name)
}

func decodeRaw(r io.Reader, name string) (*IDX, error) {
	var head [4]byte
	if n, err := io.ReadFull(r, head[:]); err != nil {
		return nil, readErr(name, int64(n), "header", err)
	}
	if head[0] != 0 || head[1] != 0 {
		return nil, &FormatError{File: name, Offset: 0, Msg: fmt.Sprintf("bad magic %02x %02x %02x %02x: not an IDX file", head[0], head[1], head[2], head[3])}
	}
	if head[2] != 0x08 {
		return nil, &FormatError{File: name, Offset: 2, Msg: fmt.Sprintf("element type 0x%02x, want 0x08 (unsigned byte)", head[2])}
	}
	nd := int(head[3])
	if nd == 0 || nd > maxIDXDims {
		return nil, &FormatError{File: name, Offset: 3, Msg: fmt.Sprintf("%d dimensions, want 1 to %d", nd, maxIDXDims)}
	}
	dimBytes := make([]byte, 4*nd)
	if n, err := io.ReadFull(r, dimBytes); err != nil {
		return nil, readErr(name, 4+int64(n), "dimension sizes", err)
	}
	dims := make([]int, nd)
	total := uint64(1)
	for i := range dims {
		d := binary.BigEndian.Uint32(dimBytes[4*i:])
		dims[i] = int(d)
		total *= uint64(d)
		if total > maxIDXElems {
			return nil, &FormatError{File: name, Offset: 4 + 4*int64(i), Msg: fmt.Sprintf("dimensions %v announce more than %d elements", dims[:i+1], uint64(maxIDXElems))}
		}
	}
	header := int64(4 + 4*nd)
	// Read at most one byte more than announced, to detect trailing data.
	data, err := io.ReadAll(io.LimitReader(r, int64(total)+1))
	if err != nil {
		return nil, readErr(name, header+int64(len(data)), "data", err)
	}
	switch {
	case uint64(len(data)) < total:
		return nil, &FormatError{File: name, Offset: header + int64(len(data)),
			Msg: fmt.Sprintf("truncated: dimensions %v need %d data bytes, file has %d", dims, total, len(data))}
	case uint64(len(data)) > total:
		return nil, &FormatError{File: name, Offset: header + int64(total),
			Msg: fmt.Sprintf("trailing data after the %d bytes of dimensions %v", total, dims)}
	}
	return &IDX{Dims: dims, Data: data}, nil
}

// readErr turns a read failure into a FormatError (truncation, corrupt
// gzip) naming the file and offset.
func readErr(name string, off int64, what string, err error) error {
	switch {
	case errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF):
		return &FormatError{File: name, Offset: off, Msg: "truncated in the " + what}
	case errors.Is(err, gzip.ErrChecksum) || errors.Is(err, gzip.ErrHeader):
		return &FormatError{File: name, Offset: off, Msg: "corrupt gzip stream: " + err.Error()}
	default:
		var fe *FormatError
		if errors.As(err, &fe) {
			return err
		}
		// flate.CorruptInputError and friends: still the file's fault.
		return &FormatError{File: name, Offset: off, Msg: fmt.Sprintf("reading the %s: %v", what, err)}
	}
}

// ReadIDXFile decodes an IDX file (gzip or raw).
func ReadIDXFile(path string) (*IDX, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return DecodeIDX(f, path)
}

// EncodeIDX writes an unsigned-byte IDX array, gzip-compressed (best
// compression, no timestamp: the output is reproducible) when gz is true.
func EncodeIDX(w io.Writer, dims []int, data []byte, gz bool) error {
	if len(dims) == 0 || len(dims) > maxIDXDims {
		return fmt.Errorf("idx: %d dimensions, want 1 to %d", len(dims), maxIDXDims)
	}
	n := 1
	for _, d := range dims {
		if d < 0 || uint64(d) > 1<<32-1 {
			return fmt.Errorf("idx: dimension %d out of range", d)
		}
		n *= d
	}
	if n != len(data) {
		return fmt.Errorf("idx: dimensions %v need %d bytes, got %d", dims, n, len(data))
	}
	var buf bytes.Buffer
	buf.Write([]byte{0, 0, 0x08, byte(len(dims))})
	for _, d := range dims {
		buf.Write(binary.BigEndian.AppendUint32(nil, uint32(d)))
	}
	buf.Write(data)
	if !gz {
		_, err := w.Write(buf.Bytes())
		return err
	}
	zw, err := gzip.NewWriterLevel(w, gzip.BestCompression)
	if err != nil {
		return err
	}
	if _, err := zw.Write(buf.Bytes()); err != nil {
		return err
	}
	return zw.Close()
}
