package data

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func encode(t testing.TB, dims []int, b []byte, gz bool) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := EncodeIDX(&buf, dims, b, gz); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestIDXRoundTrip(t *testing.T) {
	payload := []byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}
	for _, gz := range []bool{false, true} {
		raw := encode(t, []int{2, 2, 3}, payload, gz)
		got, err := DecodeIDX(bytes.NewReader(raw), "x")
		if err != nil {
			t.Fatalf("gz=%v: %v", gz, err)
		}
		if !slices.Equal(got.Dims, []int{2, 2, 3}) || !slices.Equal(got.Data, payload) {
			t.Fatalf("gz=%v: got %v %v", gz, got.Dims, got.Data)
		}
	}
	// The raw header is the documented one: 0 0 8 ndims, big-endian dims.
	raw := encode(t, []int{3}, []byte{7, 8, 9}, false)
	if want := []byte{0, 0, 8, 1, 0, 0, 0, 3, 7, 8, 9}; !bytes.Equal(raw, want) {
		t.Fatalf("encoding %v, want %v", raw, want)
	}
}

func TestIDXErrors(t *testing.T) {
	good := encode(t, []int{2, 3}, []byte{1, 2, 3, 4, 5, 6}, false)
	gzGood := encode(t, []int{2, 3}, []byte{1, 2, 3, 4, 5, 6}, true)
	corruptGz := slices.Clone(gzGood)
	corruptGz[len(corruptGz)-6] ^= 0xff // inside the CRC/size trailer
	cases := []struct {
		name  string
		in    []byte
		want  string // substring of the error
		atOff int64
	}{
		{"empty", nil, "truncated in the header", 0},
		{"bad magic", append([]byte{0x50, 0x4b, 8, 1}, good[4:]...), "bad magic", 0},
		{"float type", append([]byte{0, 0, 0x0d, 2}, good[4:]...), "element type 0x0d", 2},
		{"zero dims", []byte{0, 0, 8, 0}, "0 dimensions", 3},
		{"short dims", good[:6], "truncated in the dimension sizes", 6},
		{"truncated data", good[:len(good)-2], "truncated: dimensions [2 3] need 6 data bytes, file has 4", 16},
		{"trailing", append(slices.Clone(good), 0), "trailing data", 18},
		{"huge", []byte{0, 0, 8, 2, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, "more than", 8},
		{"truncated gzip", gzGood[:len(gzGood)-10], "", -2},
		{"corrupt gzip", corruptGz, "gzip", -2},
	}
	for _, c := range cases {
		_, err := DecodeIDX(bytes.NewReader(c.in), "data/f.idx")
		var fe *FormatError
		if !errors.As(err, &fe) || !errors.Is(err, ErrFormat) {
			t.Errorf("%s: got %v, want a *FormatError", c.name, err)
			continue
		}
		if !strings.Contains(err.Error(), "data/f.idx") || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %q should name the file and say %q", c.name, err, c.want)
		}
		if c.atOff != -2 && fe.Offset != c.atOff {
			t.Errorf("%s: offset %d, want %d (%v)", c.name, fe.Offset, c.atOff, err)
		}
	}
}

// writeSet writes a small dataset's four files into dir.
func writeSet(t *testing.T, dir string, nTrain, nTest int, labelsFor func(i int) byte, gz bool) {
	t.Helper()
	for _, s := range []struct {
		img, lab string
		n        int
	}{{TrainImages, TrainLabels, nTrain}, {TestImages, TestLabels, nTest}} {
		img := make([]byte, s.n*4*5)
		for i := range img {
			img[i] = byte(i)
		}
		lab := make([]byte, s.n)
		for i := range lab {
			lab[i] = labelsFor(i)
		}
		name := func(n string) string {
			if gz {
				return n
			}
			return strings.TrimSuffix(n, ".gz")
		}
		if err := os.WriteFile(filepath.Join(dir, name(s.img)), encode(t, []int{s.n, 4, 5}, img, gz), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name(s.lab)), encode(t, []int{s.n}, lab, gz), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func TestLoadDirectory(t *testing.T) {
	for _, gz := range []bool{true, false} {
		dir := t.TempDir()
		writeSet(t, dir, 6, 3, func(i int) byte { return byte(i % 10) }, gz)
		ds, err := Load(dir)
		if err != nil {
			t.Fatalf("gz=%v: %v", gz, err)
		}
		if ds.Train.Len() != 6 || ds.Test.Len() != 3 || ds.Source != dir {
			t.Fatalf("gz=%v: got %d/%d from %q", gz, ds.Train.Len(), ds.Test.Len(), ds.Source)
		}
		if !slices.Equal(ds.Train.SampleShape(), []int{1, 4, 5}) {
			t.Fatalf("sample shape %v", ds.Train.SampleShape())
		}
		x, labels, err := ds.Train.Gather([]int{1, 0})
		if err != nil {
			t.Fatal(err)
		}
		// Pixel k of sample 1 is byte (20+k) mod 256, scaled by 1/255.
		if x.Data[0] != float32(20)/255 || x.Data[20] != 0 || !slices.Equal(labels, []int{1, 0}) {
			t.Fatalf("gathered %v… labels %v", x.Data[:2], labels)
		}
	}
}

func TestLoadErrors(t *testing.T) {
	dir := t.TempDir()
	if _, err := Load(dir); !errors.Is(err, ErrNotFound) {
		t.Fatalf("empty dir: got %v, want ErrNotFound", err)
	}
	if _, err := Open(dir); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Open of an explicit empty dir must fail, got %v", err)
	}
	writeSet(t, dir, 4, 2, func(i int) byte { return 12 }, true)
	if _, err := Load(dir); !errors.Is(err, ErrFormat) || !strings.Contains(err.Error(), "label 12") {
		t.Fatalf("bad label: got %v", err)
	}
	// Label count differing from image count.
	writeSet(t, dir, 4, 2, func(i int) byte { return 1 }, true)
	if err := os.WriteFile(filepath.Join(dir, TestLabels), encode(t, []int{3}, []byte{1, 2, 3}, true), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(dir); !errors.Is(err, ErrFormat) || !strings.Contains(err.Error(), "3 labels for 2 images") {
		t.Fatalf("count mismatch: got %v", err)
	}
	// A truncated image file names the file.
	writeSet(t, dir, 4, 2, func(i int) byte { return 1 }, false)
	os.Remove(filepath.Join(dir, TrainImages))
	raw := filepath.Join(dir, strings.TrimSuffix(TrainImages, ".gz"))
	b, _ := os.ReadFile(raw)
	os.WriteFile(raw, b[:len(b)-7], 0o644)
	if _, err := Load(dir); !errors.Is(err, ErrFormat) || !strings.Contains(err.Error(), "train-images-idx3-ubyte") || !strings.Contains(err.Error(), "truncated") {
		t.Fatalf("truncated file: got %v", err)
	}
}

func TestEmbeddedSubset(t *testing.T) {
	ds, err := Embedded()
	if err != nil {
		t.Fatal(err)
	}
	if ds.Train.Len() < 10000 || ds.Test.Len() < 2000 {
		t.Fatalf("embedded subset has %d/%d images, want ≥ 10000/2000", ds.Train.Len(), ds.Test.Len())
	}
	for _, sp := range []*Split{ds.Train, ds.Test} {
		count := make([]int, NumClasses)
		for _, l := range sp.Labels() {
			count[l]++
		}
		for c, n := range count {
			if n != sp.Len()/NumClasses {
				t.Errorf("class %d has %d of %d samples: not balanced", c, n, sp.Len())
			}
		}
		x, _ := sp.All()
		var lo, hi float32 = 1, 0
		for _, v := range x.Data {
			lo, hi = min(lo, v), max(hi, v)
		}
		if lo != 0 || hi != 1 {
			t.Errorf("pixel range [%g, %g], want [0, 1]", lo, hi)
		}
	}
	var size int64
	entries, _ := embedded.ReadDir("embedded")
	for _, e := range entries {
		info, _ := e.Info()
		size += info.Size()
	}
	if size > 10<<20 {
		t.Errorf("embedded files total %d bytes, limit 10 MB", size)
	}
}

// TestEmbeddedMatchesDebian checks the subset is what the generator
// documents: the first 1,000 (200) per class of the full files, in order.
func TestEmbeddedMatchesDebian(t *testing.T) {
	if raceEnabled {
		t.Skip("single-goroutine decoding of 70,000 images: nothing for -race to find")
	}
	full, err := Load(DefaultDir)
	if errors.Is(err, ErrNotFound) {
		t.Skipf("%s not installed (Debian package dataset-fashion-mnist)", DefaultDir)
	}
	if err != nil {
		t.Fatal(err)
	}
	if full.Train.Len() != 60000 || full.Test.Len() != 10000 {
		t.Fatalf("full set has %d/%d images", full.Train.Len(), full.Test.Len())
	}
	sub, _ := Embedded()
	for _, pair := range []struct {
		full, sub *Split
		per       int
	}{{full.Train, sub.Train, 1000}, {full.Test, sub.Test, 200}} {
		count := make([]int, NumClasses)
		var pick []int
		for i, l := range pair.full.labels {
			if count[l] < pair.per {
				count[l]++
				pick = append(pick, i)
			}
		}
		want, wantLabels, _ := pair.full.Gather(pick)
		got, gotLabels := pair.sub.All()
		if !slices.Equal(got.Data, want.Data) || !slices.Equal(gotLabels, wantLabels) {
			t.Fatal("embedded subset differs from the documented selection")
		}
	}
	ds, src, err := Default()
	if err != nil || src != DefaultDir || ds.Train.Len() != 60000 {
		t.Fatalf("Default: %v %q", err, src)
	}
}

func FuzzDecodeIDX(f *testing.F) {
	f.Add(encode(f, []int{2, 3}, []byte{1, 2, 3, 4, 5, 6}, false))
	f.Add(encode(f, []int{4}, []byte{1, 2, 3, 4}, true))
	f.Add([]byte{0, 0, 8, 3, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1, 9})
	f.Add([]byte{0x1f, 0x8b, 8, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		idx, err := DecodeIDX(bytes.NewReader(b), "fuzz")
		if err != nil {
			if !errors.Is(err, ErrFormat) {
				t.Fatalf("error is not a FormatError: %v", err)
			}
			return
		}
		n := 1
		for _, d := range idx.Dims {
			n *= d
		}
		if n != len(idx.Data) {
			t.Fatalf("dims %v but %d bytes", idx.Dims, len(idx.Data))
		}
		// Re-encoding raw and decoding again gives the same array.
		var buf bytes.Buffer
		if err := EncodeIDX(&buf, idx.Dims, idx.Data, false); err != nil {
			t.Fatal(err)
		}
		again, err := DecodeIDX(&buf, "again")
		if err != nil || !slices.Equal(again.Dims, idx.Dims) || !bytes.Equal(again.Data, idx.Data) {
			t.Fatalf("re-decoding differs: %v", err)
		}
	})
}
