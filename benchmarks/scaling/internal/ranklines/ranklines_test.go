package ranklines

import (
	"bytes"
	"strings"
	"testing"
)

func TestSplit(t *testing.T) {
	for _, c := range []struct {
		in   string
		rank int
		rest string
	}{
		{"[0] hello", 0, "hello"},
		{"[12] {\"a\":1}", 12, "{\"a\":1}"},
		{"[3]x", 3, "x"},
		{"[3] ", 3, ""},
		{"no prefix", -1, "no prefix"},
		{"[] x", -1, "[] x"},
		{"[-1] x", -1, "[-1] x"},
		{"[+1] x", -1, "[+1] x"},
		{"[a] x", -1, "[a] x"},
		{"[1", -1, "[1"},
		{"[99999999999] x", -1, "[99999999999] x"},
	} {
		rank, rest := Split([]byte(c.in))
		if rank != c.rank || string(rest) != c.rest {
			t.Errorf("Split(%q) = %d, %q; want %d, %q", c.in, rank, rest, c.rank, c.rest)
		}
	}
}

func TestParse(t *testing.T) {
	type epoch struct {
		Epoch       int     `json:"epoch"`
		SamplesPerS float64 `json:"samples_per_s"`
	}
	l, ok := Parse([]byte("[1] {\"epoch\":2,\"samples_per_s\":123.5}\r"))
	if !ok {
		t.Fatal("prefixed JSON line not recognised")
	}
	var e epoch
	if err := l.Decode(&e); err != nil {
		t.Fatal(err)
	}
	if l.Rank != 1 || e.Epoch != 2 || e.SamplesPerS != 123.5 {
		t.Fatalf("got rank %d %+v", l.Rank, e)
	}
	if l, ok := Parse([]byte(`{"op":"allreduce"}`)); !ok || l.Rank != -1 {
		t.Fatalf("unprefixed JSON: %v %+v", ok, l)
	}
	for _, bad := range []string{"[0] epoch 1 loss 0.3", "[0] {\"epoch\":", "[0] [1,2]", "[0] {}x", "", "[0]"} {
		if _, ok := Parse([]byte(bad)); ok {
			t.Errorf("Parse(%q) accepted a non-object line", bad)
		}
	}
}

func TestReadAll(t *testing.T) {
	in := strings.Join([]string{
		"gorun: building train",
		"[0] {\"epoch\":1}",
		"[1] warning: slow",
		"[1] {\"epoch\":1}",
		"[0] {\"epoch\":2}",
		"",
	}, "\n")
	var others []string
	lines, err := ReadAll(strings.NewReader(in), func(rank int, text []byte) {
		others = append(others, string(text))
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(lines) != 3 || lines[0].Rank != 0 || lines[1].Rank != 1 || string(lines[2].JSON) != `{"epoch":2}` {
		t.Fatalf("lines = %+v", lines)
	}
	if len(others) != 2 || others[1] != "warning: slow" {
		t.Fatalf("others = %q", others)
	}
	// A line longer than MaxLine is an error, not a silent truncation.
	long := "[0] " + strings.Repeat("x", MaxLine+1) + "\n"
	if _, err := ReadAll(strings.NewReader(long), nil); err == nil {
		t.Fatal("overlong line accepted")
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{"[0] {\"a\":1}", "[1] text", "{\"b\":[1,2]}", "[", "[7]", "[1]{}"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		rank, rest := Split(b)
		if rank < -1 || len(rest) > len(b) {
			t.Fatalf("Split(%q) = %d, %q", b, rank, rest)
		}
		if rank == -1 && !bytes.Equal(rest, b) {
			t.Fatalf("unprefixed line changed: %q -> %q", b, rest)
		}
		if l, ok := Parse(b); ok {
			if l.Rank != rank || l.JSON[0] != '{' {
				t.Fatalf("Parse(%q) = %+v", b, l)
			}
			var v map[string]any
			if err := l.Decode(&v); err != nil {
				t.Fatalf("accepted %q but it does not decode: %v", b, err)
			}
		}
	})
}
