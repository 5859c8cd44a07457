package ddp

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/ringtrain/ringtrain/collective"
	"github.com/ringtrain/ringtrain/models"
)

func testCheckpoint(t testing.TB) *Checkpoint {
	m := smallModel(t, 8, 3)
	opt, err := models.NewAdam(m.Params(), models.AdamConfig{})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range m.Params() {
		for i := range p.Grad {
			p.Grad[i] = float32(i%7) - 3
		}
	}
	if err := opt.Step(); err != nil {
		t.Fatal(err)
	}
	return &Checkpoint{
		State:     TrainState{Step: 42, Epoch: 3, Batch: 7, GlobalBatch: 128, Seed: -5, Meta: map[string]string{"model": "mlp"}},
		WorldSize: 2,
		Params:    models.ParamSnapshot(m.Params(), 42),
		Optimizer: opt.State(),
		Residuals: models.Snapshot{Kind: "ddp-residuals", Slices: []models.NamedSlice{{Name: "rank0/fc1.bias", Shape: []int{2}, Data: []float32{1e-9, -2}}}},
		RNG:       []LayerRNG{{Layer: "drop", Seed: 1<<64 - 1, Calls: 9}},
	}
}

func TestCheckpointRoundTrip(t *testing.T) {
	ck := testCheckpoint(t)
	b, err := ck.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	var got Checkpoint
	if err := got.UnmarshalBinary(b); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(&got, ck) {
		t.Fatalf("round trip changed the checkpoint:\n got %+v\nwant %+v", got, *ck)
	}
	// Without optimizer state and residuals the sections are empty and stay absent.
	ck.Optimizer, ck.Residuals, ck.RNG = models.Snapshot{}, models.Snapshot{}, nil
	b, _ = ck.MarshalBinary()
	got = Checkpoint{}
	if err := got.UnmarshalBinary(b); err != nil || got.Optimizer.Kind != "" || got.Residuals.Kind != "" {
		t.Fatalf("sparse checkpoint: %v %+v", err, got)
	}
}

func TestCheckpointCorruption(t *testing.T) {
	b, err := testCheckpoint(t).MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	check := func(what string, in []byte, want string) {
		t.Helper()
		var c Checkpoint
		err := c.UnmarshalBinary(in)
		if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: got %v, want ErrCorrupt saying %q", what, err, want)
		}
	}
	for _, n := range []int{0, 10, 16, 100, len(b) / 2, len(b) - 9, len(b) - 1} {
		check(fmt.Sprintf("truncated to %d bytes", n), b[:n], map[bool]string{true: "too short", false: "truncated"}[n < ckptFixed])
	}
	for _, off := range []int{20, 100, len(b) / 2, len(b) - 9} {
		c := append([]byte(nil), b...)
		c[off] ^= 0x10
		check(fmt.Sprintf("bit flipped at %d", off), c, "checksum mismatch")
	}
	c := append([]byte(nil), b...)
	copy(c, "PK\x03\x04")
	check("zip file", c, "not a ringtrain checkpoint")
	c = append([]byte(nil), b...)
	c[4] = 9
	check("future version", c, "format version 9")
	check("trailing data", append(append([]byte(nil), b...), 0), "trailing data")
}

func writeFile(t *testing.T, path string, b []byte) {
	t.Helper()
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestLatestAndFiles(t *testing.T) {
	dir := t.TempDir()
	if _, err := Latest(filepath.Join(dir, "missing")); !errors.Is(err, ErrNoCheckpoint) {
		t.Fatalf("missing dir: %v", err)
	}
	if _, err := Latest(dir); !errors.Is(err, ErrNoCheckpoint) {
		t.Fatalf("empty dir: %v", err)
	}
	ck := testCheckpoint(t)
	for _, step := range []int64{5, 12, 3} {
		ck.State.Step = step
		if err := WriteCheckpoint(CheckpointPath(dir, step), ck); err != nil {
			t.Fatal(err)
		}
	}
	// A killed writer's temporary file and unrelated files are not checkpoints.
	writeFile(t, filepath.Join(dir, ".ckpt-123.tmp"), []byte("RTCK partial"))
	writeFile(t, filepath.Join(dir, "ckpt-99.rtck.bak"), []byte("junk"))
	writeFile(t, filepath.Join(dir, "notes.txt"), []byte("junk"))
	path, err := Latest(dir)
	if err != nil || path != CheckpointPath(dir, 12) {
		t.Fatalf("Latest = %q, %v; want step 12", path, err)
	}
	got, err := ReadCheckpoint(path)
	if err != nil || got.State.Step != 12 || !reflect.DeepEqual(got.Params, ck.Params) {
		t.Fatalf("ReadCheckpoint: %v %+v", err, got)
	}
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".ckpt-") && e.Name() != ".ckpt-123.tmp" {
			t.Fatalf("WriteCheckpoint left %s behind", e.Name())
		}
	}
	// A newest checkpoint cut short (as by a copy that failed) is reported, naming it.
	b, _ := os.ReadFile(path)
	writeFile(t, CheckpointPath(dir, 20), b[:len(b)-100])
	_, err = Latest(dir)
	if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "ckpt-000000000020.rtck") || !strings.Contains(err.Error(), "truncated") {
		t.Fatalf("truncated newest: %v", err)
	}
	// Same length, damaged inside: the frame passes, the checksum does not.
	bad := append([]byte(nil), b...)
	bad[len(bad)/2] ^= 1
	writeFile(t, CheckpointPath(dir, 20), bad)
	if _, err := Latest(dir); err != nil {
		t.Fatalf("Latest checks only the frame: %v", err)
	}
	if _, err := ReadCheckpoint(CheckpointPath(dir, 20)); !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "checksum") {
		t.Fatalf("damaged newest: %v", err)
	}
	// Pruning keeps the newest and removes temporary files.
	if err := pruneCheckpoints(dir, 2); err != nil {
		t.Fatal(err)
	}
	var names []string
	entries, _ = os.ReadDir(dir)
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if want := "ckpt-000000000012.rtck ckpt-000000000020.rtck ckpt-99.rtck.bak notes.txt"; strings.Join(names, " ") != want {
		t.Fatalf("after pruning: %v, want %s", names, want)
	}
}

// resumeRun trains n ranks for total steps, saving a checkpoint after step saveAt, and
// returns the final parameters (rank 0's; all ranks are checked identical). With resume,
// the models start from other seeds and load the checkpoint first instead of training the
// first saveAt steps.
func resumeRun(t *testing.T, n int, dir string, saveAt, total int, opts Options, resume bool) [][]float32 {
	t.Helper()
	gs := startJob(t, n)
	final := make([][][]float32, n)
	mustRanks(t, n, func(ctx context.Context, r int) error {
		seed := int64(1)
		if resume {
			seed = 77 + int64(r)
		}
		m := smallModel(t, 40, seed)
		d, err := Wrap(ctx, m, gs[r], opts)
		if err != nil {
			return err
		}
		opt, err := models.NewAdam(m.Params(), models.AdamConfig{LR: 0.01})
		if err != nil {
			return err
		}
		start := 0
		if resume {
			st, path, err := d.LoadCheckpoint(ctx, dir, opt)
			if err != nil {
				return err
			}
			if path == "" || st.Step != int64(saveAt) || st.Meta["note"] != "hi" {
				return fmt.Errorf("loaded %q %+v", path, st)
			}
			start = int(st.Step)
		}
		for s := start; s < total; s++ {
			x, labels := sample(shard(globalBatch(s, 8*n), r, n))
			if _, err := d.TrainStep(ctx, opt, Batch{X: x, Labels: labels}); err != nil {
				return err
			}
			if s+1 == saveAt && !resume {
				path, err := d.SaveCheckpoint(ctx, dir, TrainState{Step: int64(s + 1), GlobalBatch: 8 * n, Meta: map[string]string{"note": "hi"}}, opt)
				if err != nil {
					return err
				}
				if _, err := os.Stat(path); err != nil {
					return fmt.Errorf("after SaveCheckpoint returned: %v", err)
				}
			}
		}
		final[r] = paramsOf(m)
		return nil
	})
	for r := 1; r < n; r++ {
		if err := sameBits(final[0], final[r]); err != nil {
			t.Fatalf("rank %d differs from rank 0: %v", r, err)
		}
	}
	return final[0]
}

// TestResumeIsExact: training 8 steps straight and training 3, checkpointing, and
// resuming in a new job for the other 5 give bit-identical parameters (Adam state and,
// with fp16, every rank's error-feedback residuals travel in the checkpoint).
func TestResumeIsExact(t *testing.T) {
	for _, c := range []struct {
		name string
		opts Options
		old  bool // rewrite the checkpoint's hook state as before hooks ("ddp-residuals")
	}{
		{"fp32", tinyCaps, false},
		{"fp16-ef-pre-hooks-checkpoint", Options{Compression: collective.FP16, ErrorFeedback: true, BucketCapMB: tinyCaps.BucketCapMB}, true},
		{"fp16-ef", Options{Compression: collective.FP16, ErrorFeedback: true, BucketCapMB: tinyCaps.BucketCapMB}, false},
		{"bf16-ef", Options{Compression: collective.BF16, ErrorFeedback: true, BucketCapMB: tinyCaps.BucketCapMB}, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			straight := resumeRun(t, 2, dir, 3, 8, c.opts, false)
			if c.old {
				path := CheckpointPath(dir, 3)
				ck, err := ReadCheckpoint(path)
				if err != nil {
					t.Fatal(err)
				}
				if ck.Residuals.Kind != "ddp-hook/fp16+ef" || len(ck.Residuals.Slices) == 0 {
					t.Fatalf("hook state saved as %q with %d slices", ck.Residuals.Kind, len(ck.Residuals.Slices))
				}
				ck.Residuals.Kind = "ddp-residuals"
				if err := WriteCheckpoint(path, ck); err != nil {
					t.Fatal(err)
				}
			}
			resumed := resumeRun(t, 2, dir, 3, 8, c.opts, true)
			if err := sameBits(straight, resumed); err != nil {
				t.Fatalf("resumed run differs from the uninterrupted one: %v", err)
			}
			if path, _ := Latest(dir); path != CheckpointPath(dir, 3) {
				t.Fatalf("Latest = %s", path)
			}
		})
	}
}

// TestLoadErrorsReachEveryRank: a damaged checkpoint, a checkpoint of another model and
// a missing optimizer state give clear errors on every rank (only rank 0 reads the file).
func TestLoadErrorsReachEveryRank(t *testing.T) {
	const n = 2
	dir := t.TempDir()
	ck := testCheckpoint(t) // a model with 8 hidden units, not 40
	if err := WriteCheckpoint(CheckpointPath(dir, 42), ck); err != nil {
		t.Fatal(err)
	}
	gs := startJob(t, n)
	ds := make([]*DDP, n)
	mustRanks(t, n, func(ctx context.Context, r int) error {
		var err error
		ds[r], err = Wrap(ctx, smallModel(t, 40, 1), gs[r], Options{})
		return err
	})
	expect := func(want ...string) {
		t.Helper()
		for r, err := range onRanks(t, n, func(ctx context.Context, r int) error {
			_, _, err := ds[r].LoadCheckpoint(ctx, dir, nil)
			return err
		}) {
			for _, w := range want {
				if err == nil || !strings.Contains(err.Error(), w) {
					t.Fatalf("rank %d: got %v, want an error saying %q", r, err, w)
				}
			}
		}
	}
	expect("ckpt-000000000042.rtck", "written for another model", "fc1.weight")
	b, _ := os.ReadFile(CheckpointPath(dir, 42))
	b[len(b)/2] ^= 4
	writeFile(t, CheckpointPath(dir, 42), b)
	expect("ckpt-000000000042.rtck", "checksum mismatch")
	writeFile(t, CheckpointPath(dir, 50), b[:len(b)/3])
	expect("ckpt-000000000050.rtck", "truncated")
	// A fresh directory is a fresh start on every rank.
	for r, err := range onRanks(t, n, func(ctx context.Context, r int) error {
		st, path, err := ds[r].LoadCheckpoint(ctx, t.TempDir()+"/none", nil)
		if err == nil && (path != "" || st.Step != 0) {
			err = fmt.Errorf("found %q", path)
		}
		return err
	}) {
		if err != nil {
			t.Fatalf("rank %d: %v", r, err)
		}
	}
}

func FuzzCheckpoint(f *testing.F) {
	b, err := testCheckpoint(f).MarshalBinary()
	if err != nil {
		f.Fatal(err)
	}
	f.Add(b)
	f.Add(b[:len(b)/2])
	f.Add([]byte("RTCK"))
	f.Fuzz(func(t *testing.T, in []byte) {
		var c Checkpoint
		if err := c.UnmarshalBinary(in); err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("error does not match ErrCorrupt: %v", err)
			}
			return
		}
		// Whatever decodes re-encodes to something that decodes to the same.
		out, err := c.MarshalBinary()
		if err != nil {
			t.Fatalf("decoded checkpoint does not re-encode: %v", err)
		}
		var c2 Checkpoint
		if err := c2.UnmarshalBinary(out); err != nil || !reflect.DeepEqual(c, c2) {
			t.Fatalf("re-encoding changed the checkpoint: %v", err)
		}
	})
}

// The fuzzer cannot find inputs past the CRC; this one mutates the body and fixes the
// checksum, so the section parsing is exercised too.
func FuzzCheckpointBody(f *testing.F) {
	b, err := testCheckpoint(f).MarshalBinary()
	if err != nil {
		f.Fatal(err)
	}
	f.Add(b[16:len(b)-8], uint64(0))
	f.Fuzz(func(t *testing.T, body []byte, _ uint64) {
		in := make([]byte, 0, len(body)+24)
		in = append(in, b[:8]...)
		in = append(in, make([]byte, 8)...)
		in = append(in, body...)
		total := uint64(len(in) + 8)
		for i := range 8 {
			in[8+i] = byte(total >> (8 * i))
		}
		sum := crcOf(in)
		in = append(in, byte(sum), byte(sum>>8), byte(sum>>16), byte(sum>>24))
		in = append(in, ckptEnd...)
		var c Checkpoint
		if err := c.UnmarshalBinary(in); err != nil && !errors.Is(err, ErrCorrupt) {
			t.Fatalf("error does not match ErrCorrupt: %v", err)
		}
	})
}
