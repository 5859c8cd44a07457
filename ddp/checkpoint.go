package ddp

import (
	"cmp"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"

	"github.com/ringtrain/ringtrain/models"
)

// TrainState is where training stands: what a resumed run needs besides the tensors.
type TrainState struct {
	// Step is the number of optimizer steps completed.
	Step int64 `json:"step"`
	// Epoch is the sampler epoch in progress (data.DistributedSampler.SetEpoch), and Batch
	// the number of its batches already trained: a resumed run sets the sampler to Epoch
	// and continues with batch Batch. Batch may equal the epoch's batch count (the epoch is
	// done; the next one starts).
	Epoch int `json:"epoch"`
	Batch int `json:"batch"`
	// GlobalBatch is the number of samples per step over all ranks. The sampler's order
	// depends on it (not on how it is split between ranks), so a resumed run with the same
	// GlobalBatch and Seed sees the same samples in the same steps even on another number
	// of ranks.
	GlobalBatch int `json:"global_batch"`
	// Seed is the seed of the sampler's shuffling.
	Seed int64 `json:"seed"`
	// Sample is the position reached in epoch Epoch's permutation: how many of its samples
	// are trained (at most the dataset size). A run resumed at another world size or global
	// batch continues from it (data.DistributedSampler.SetEpochFrom), so that no sample of
	// the epoch is trained twice or skipped. Absent (0) in checkpoints of programs that do
	// not keep it: Batch × GlobalBatch is the same position when the global batch never
	// changed.
	Sample int64 `json:"sample,omitempty"`
	// Meta is free-form information (model name, flags) kept for the user.
	Meta map[string]string `json:"meta,omitempty"`
}

// LayerRNG is the random-stream position of one seeded layer (models.Dropout).
type LayerRNG struct {
	Layer string `json:"layer"`
	Seed  uint64 `json:"seed"`
	Calls uint64 `json:"calls"`
}

// Checkpoint is everything a run needs to continue exactly where it stood.
type Checkpoint struct {
	State     TrainState
	WorldSize int             // ranks of the run that wrote it
	Params    models.Snapshot // kind "params", in model order
	Optimizer models.Snapshot // the optimizer's State(); Kind "" when none was saved
	// Residuals is the CommHook state of every rank (StatefulHook: error-feedback
	// residuals, PowerSGD's factors), kind "ddp-hook/<hook name>" ("ddp-residuals" in
	// checkpoints written before hooks), slices "rank<r>/<name>" (a CompressHook names its
	// residuals by parameter); Kind "" when the hook keeps no state.
	Residuals models.Snapshot
	RNG       []LayerRNG // seeded layers' stream positions
}

// ErrCorrupt is matched (errors.Is) by the error of a checkpoint file that is truncated,
// damaged or not a checkpoint.
var ErrCorrupt = errors.New("checkpoint corrupt or truncated")

// ErrNoCheckpoint is matched (errors.Is) when a directory holds no checkpoint.
var ErrNoCheckpoint = errors.New("no checkpoint")

// CheckpointError is an error reading or writing one checkpoint file.
type CheckpointError struct {
	Path string
	Err  error
}

func (e *CheckpointError) Error() string { return fmt.Sprintf("ddp: checkpoint %s: %v", e.Path, e.Err) }
func (e *CheckpointError) Unwrap() error { return e.Err }

// File format, version 1 (little endian):
//
//	 0  "RTCK"
//	 4  u32 version (1)
//	 8  u64 total file length, trailer included
//	16  u32 H; H bytes of JSON header {state, world_size, rng}
//	    u64 P; P bytes: parameters (models.Snapshot binary form)
//	    u64 O; O bytes: optimizer state (models.Snapshot; 0 bytes when none)
//	    u64 R; R bytes: CommHook state, e.g. error-feedback residuals (models.Snapshot; 0 bytes when none)
//	    u32 CRC-32C (Castagnoli) of every byte before it
//	    "KCTR"
//
// The length up front and the trailer at the end let Latest reject a truncated file
// without reading it whole; the checksum catches any other damage.
const (
	ckptMagic     = "RTCK"
	ckptEnd       = "KCTR"
	ckptVersion   = 1
	ckptFixed     = 16 + 4 + 3*8 + 4 + 4 // smallest possible file
	maxHeaderJSON = 1 << 20
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

type ckptHeader struct {
	State     TrainState `json:"state"`
	WorldSize int        `json:"world_size"`
	RNG       []LayerRNG `json:"rng,omitempty"`
}

func corrupt(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrCorrupt, fmt.Sprintf(format, args...))
}

// MarshalBinary encodes the checkpoint in the versioned, checksummed file format.
func (c *Checkpoint) MarshalBinary() ([]byte, error) {
	hdr, err := json.Marshal(ckptHeader{State: c.State, WorldSize: c.WorldSize, RNG: c.RNG})
	if err != nil {
		return nil, fmt.Errorf("ddp: encoding checkpoint header: %w", err)
	}
	if len(hdr) > maxHeaderJSON {
		return nil, fmt.Errorf("ddp: checkpoint header of %d bytes exceeds %d (too much Meta?)", len(hdr), maxHeaderJSON)
	}
	params, err := c.Params.MarshalBinary()
	if err != nil {
		return nil, fmt.Errorf("ddp: encoding parameters: %w", err)
	}
	var sections [3][]byte
	sections[0] = params
	for i, s := range []models.Snapshot{c.Optimizer, c.Residuals} {
		if s.Kind == "" {
			continue
		}
		if sections[i+1], err = s.MarshalBinary(); err != nil {
			return nil, fmt.Errorf("ddp: encoding checkpoint section %d: %w", i+1, err)
		}
	}
	total := ckptFixed + len(hdr) + len(sections[0]) + len(sections[1]) + len(sections[2])
	b := make([]byte, 0, total)
	b = append(b, ckptMagic...)
	b = binary.LittleEndian.AppendUint32(b, ckptVersion)
	b = binary.LittleEndian.AppendUint64(b, uint64(total))
	b = binary.LittleEndian.AppendUint32(b, uint32(len(hdr)))
	b = append(b, hdr...)
	for _, s := range sections {
		b = binary.LittleEndian.AppendUint64(b, uint64(len(s)))
		b = append(b, s...)
	}
	b = binary.LittleEndian.AppendUint32(b, crc32.Checksum(b, castagnoli))
	return append(b, ckptEnd...), nil
}

// checkFrame validates what can be seen without the body: magic, version, announced
// length against the actual size, trailer magic.
func checkFrame(head []byte, tail []byte, size int64) error {
	if size < ckptFixed {
		return corrupt("%d bytes is too short for a checkpoint (at least %d)", size, ckptFixed)
	}
	if string(head[:4]) != ckptMagic {
		return corrupt("bad magic %q, want %q: not a ringtrain checkpoint", head[:4], ckptMagic)
	}
	if v := binary.LittleEndian.Uint32(head[4:]); v != ckptVersion {
		return corrupt("format version %d, this build reads version %d (written by another ringtrain version?)", v, ckptVersion)
	}
	if n := binary.LittleEndian.Uint64(head[8:]); n != uint64(size) {
		if n > uint64(size) {
			return corrupt("truncated: the header announces %d bytes, the file has %d", n, size)
		}
		return corrupt("the header announces %d bytes, the file has %d (trailing data)", n, size)
	}
	if string(tail) != ckptEnd {
		return corrupt("missing end marker %q (torn write?)", ckptEnd)
	}
	return nil
}

// UnmarshalBinary decodes and verifies a checkpoint. Any truncation, damage or
// inconsistency is an error matching ErrCorrupt; it never allocates much more than the
// input's size.
func (c *Checkpoint) UnmarshalBinary(b []byte) error {
	if len(b) < ckptFixed {
		return corrupt("%d bytes is too short for a checkpoint (at least %d)", len(b), ckptFixed)
	}
	if err := checkFrame(b[:16], b[len(b)-4:], int64(len(b))); err != nil {
		return err
	}
	body := b[:len(b)-8]
	if got, want := crc32.Checksum(body, castagnoli), binary.LittleEndian.Uint32(b[len(b)-8:]); got != want {
		return corrupt("checksum mismatch (stored %08x, computed %08x): the file is damaged", want, got)
	}
	r := body[16:]
	hl := binary.LittleEndian.Uint32(r)
	r = r[4:]
	if hl > maxHeaderJSON || uint64(hl) > uint64(len(r)) {
		return corrupt("header length %d out of range", hl)
	}
	var hdr ckptHeader
	if err := json.Unmarshal(r[:hl], &hdr); err != nil {
		return corrupt("header: %v", err)
	}
	r = r[hl:]
	var sections [3][]byte
	for i := range sections {
		if len(r) < 8 {
			return corrupt("section %d: length truncated", i)
		}
		n := binary.LittleEndian.Uint64(r)
		r = r[8:]
		if n > uint64(len(r)) {
			return corrupt("section %d announces %d bytes, %d left", i, n, len(r))
		}
		sections[i], r = r[:n], r[n:]
	}
	if len(r) != 0 {
		return corrupt("%d unexplained bytes before the checksum", len(r))
	}
	out := Checkpoint{State: hdr.State, WorldSize: hdr.WorldSize, RNG: hdr.RNG}
	if err := out.Params.UnmarshalBinary(sections[0]); err != nil {
		return corrupt("parameters: %v", err)
	}
	if out.Params.Kind != "params" {
		return corrupt("parameter section of kind %q", out.Params.Kind)
	}
	if len(sections[1]) > 0 {
		if err := out.Optimizer.UnmarshalBinary(sections[1]); err != nil {
			return corrupt("optimizer state: %v", err)
		}
	}
	if len(sections[2]) > 0 {
		if err := out.Residuals.UnmarshalBinary(sections[2]); err != nil {
			return corrupt("error-feedback residuals: %v", err)
		}
	}
	if out.State.Step < 0 || out.State.Epoch < 0 || out.State.Batch < 0 || out.State.GlobalBatch < 0 || out.WorldSize < 0 {
		return corrupt("negative training position %+v", out.State)
	}
	*c = out
	return nil
}

// checkpointName matches the files SaveCheckpoint writes; nothing else in the directory
// is ever taken for a checkpoint (temporary files start with a dot).
var checkpointName = regexp.MustCompile(`^ckpt-([0-9]{1,18})\.rtck$`)

// CheckpointPath is the file SaveCheckpoint writes for step in dir.
func CheckpointPath(dir string, step int64) string {
	return filepath.Join(dir, fmt.Sprintf("ckpt-%012d.rtck", step))
}

// WriteCheckpoint writes c to path atomically: to a temporary file in the same directory,
// flushed to disk, then renamed over path, and the directory flushed so that the rename
// itself survives a crash. A reader sees the old file or the new one, never a mix.
func WriteCheckpoint(path string, c *Checkpoint) error {
	b, err := c.MarshalBinary()
	if err != nil {
		return err
	}
	if err := writeAtomic(path, b); err != nil {
		return &CheckpointError{Path: path, Err: err}
	}
	return nil
}

func writeAtomic(path string, b []byte) (err error) {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, ".ckpt-*.tmp")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(tmp)
		}
	}()
	if _, err = f.Write(b); err != nil {
		return err
	}
	if err = f.Sync(); err != nil {
		return err
	}
	if err = f.Close(); err != nil {
		return err
	}
	if err = os.Rename(tmp, path); err != nil {
		return err
	}
	return syncDir(dir)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil && !errors.Is(err, os.ErrInvalid) {
		return fmt.Errorf("flushing directory %s: %w", dir, err)
	}
	return nil
}

// ReadCheckpoint reads and verifies one checkpoint file. A damaged file gives a
// *CheckpointError naming it and wrapping ErrCorrupt.
func ReadCheckpoint(path string) (*Checkpoint, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, &CheckpointError{Path: path, Err: err}
	}
	c := new(Checkpoint)
	if err := c.UnmarshalBinary(b); err != nil {
		return nil, &CheckpointError{Path: path, Err: err}
	}
	return c, nil
}

// Latest returns the path of the newest checkpoint in dir (the highest step among the
// files named as CheckpointPath names them; temporary files of unfinished writes are
// ignored). It checks the file's frame (magic, version, announced length, end marker)
// without reading it all; ReadCheckpoint verifies the checksum. A newest checkpoint that
// fails the check is an error wrapping ErrCorrupt, not silently skipped: since files are
// renamed into place only when complete, a damaged one means something outside training
// went wrong, and resuming from an older one would silently redo work. A directory that
// does not exist or holds no checkpoint gives an error wrapping ErrNoCheckpoint.
func Latest(dir string) (string, error) {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("ddp: %w in %s (the directory does not exist)", ErrNoCheckpoint, dir)
	}
	if err != nil {
		return "", fmt.Errorf("ddp: looking for checkpoints: %w", err)
	}
	best, bestStep := "", int64(-1)
	for _, e := range entries {
		m := checkpointName.FindStringSubmatch(e.Name())
		if m == nil || !e.Type().IsRegular() {
			continue
		}
		step, err := strconv.ParseInt(m[1], 10, 64)
		if err == nil && step > bestStep {
			best, bestStep = e.Name(), step
		}
	}
	if best == "" {
		return "", fmt.Errorf("ddp: %w in %s", ErrNoCheckpoint, dir)
	}
	path := filepath.Join(dir, best)
	if err := checkFile(path); err != nil {
		return "", &CheckpointError{Path: path, Err: fmt.Errorf("%w (remove it to resume from an older checkpoint)", err)}
	}
	return path, nil
}

// checkFile validates a file's frame by reading its first 16 and last 4 bytes.
func checkFile(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return err
	}
	size := st.Size()
	if size < ckptFixed {
		return corrupt("%d bytes is too short for a checkpoint (at least %d)", size, ckptFixed)
	}
	var head [16]byte
	var tail [4]byte
	if _, err := io.ReadFull(f, head[:]); err != nil {
		return err
	}
	if _, err := f.ReadAt(tail[:], size-4); err != nil {
		return err
	}
	return checkFrame(head[:], tail[:], size)
}

// pruneCheckpoints removes all but the newest keep checkpoints of dir (keep < 0: none),
// and temporary files left by writes that were killed.
func pruneCheckpoints(dir string, keep int) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	type ck struct {
		name string
		step int64
	}
	var cks []ck
	var errs []error
	for _, e := range entries {
		name := e.Name()
		if m := checkpointName.FindStringSubmatch(name); m != nil {
			if step, err := strconv.ParseInt(m[1], 10, 64); err == nil {
				cks = append(cks, ck{name, step})
			}
		} else if len(name) > 10 && name[:6] == ".ckpt-" && filepath.Ext(name) == ".tmp" {
			errs = append(errs, os.Remove(filepath.Join(dir, name)))
		}
	}
	if keep >= 0 && len(cks) > keep {
		slices.SortFunc(cks, func(a, b ck) int { return cmp.Compare(a.step, b.step) })
		for _, c := range cks[:len(cks)-keep] {
			errs = append(errs, os.Remove(filepath.Join(dir, c.name)))
		}
	}
	return errors.Join(errs...)
}

// crcOf is the checksum of the file format (for tests).
func crcOf(b []byte) uint32 { return crc32.Checksum(b, castagnoli) }
