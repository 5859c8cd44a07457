package launcher

import (
	"bytes"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"
)

// chunkReader returns its data in the given chunk sizes, to cut lines at awkward places.
type chunkReader struct {
	data   []byte
	chunks []int
	i      int
}

func (r *chunkReader) Read(p []byte) (int, error) {
	if len(r.data) == 0 {
		return 0, io.EOF
	}
	n := len(r.data)
	if len(r.chunks) > 0 {
		n = min(n, r.chunks[r.i%len(r.chunks)])
		r.i++
	}
	n = copy(p, r.data[:n])
	r.data = r.data[n:]
	return n, nil
}

func TestLinePump(t *testing.T) {
	cases := []struct {
		name    string
		in      string
		chunks  []int
		maxLine int
		term    string
		log     string
		tail    []string
	}{
		{"whole lines", "a\nbb\n", nil, 0, "[3] a\n[3] bb\n", "a\nbb\n", []string{"a", "bb"}},
		{"split reads", "hello\nworld\n", []int{1, 2, 3}, 0, "[3] hello\n[3] world\n", "hello\nworld\n", []string{"hello", "world"}},
		{"last line without newline", "a\nno newline", []int{4}, 0, "[3] a\n[3] no newline\n", "a\nno newline\n", []string{"a", "no newline"}},
		{"empty lines", "\n\nx\n", nil, 0, "[3] \n[3] \n[3] x\n", "\n\nx\n", []string{"", "", "x"}},
		{"long line is cut", "abcdefghij\nxy\n", []int{3}, 4, "[3] abcd\n[3] efgh\n[3] ij\n[3] xy\n", "abcd\nefgh\nij\nxy\n",
			[]string{"abcd", "efgh", "ij", "xy"}},
		{"nothing", "", nil, 0, "", "", []string{}},
	}
	for _, tc := range cases {
		var term, log bytes.Buffer
		tail := newLineRing(tailLines)
		p := &linePump{prefix: rankPrefix(3), term: newLineSink(&term), log: newLineSink(&log), tail: tail, maxLine: tc.maxLine}
		p.run(&chunkReader{data: []byte(tc.in), chunks: tc.chunks})
		if term.String() != tc.term || log.String() != tc.log {
			t.Errorf("%s: term %q log %q; want %q and %q", tc.name, term.String(), log.String(), tc.term, tc.log)
		}
		if got := tail.last(); strings.Join(got, "|") != strings.Join(tc.tail, "|") {
			t.Errorf("%s: tail %q, want %q", tc.name, got, tc.tail)
		}
	}
}

func TestLineRingKeepsLast(t *testing.T) {
	r := newLineRing(3)
	for i := 0; i < 7; i++ {
		r.add([]byte(fmt.Sprint(i)))
	}
	if got := strings.Join(r.last(), ","); got != "4,5,6" {
		t.Errorf("last = %s, want 4,5,6", got)
	}
	r.add(bytes.Repeat([]byte("x"), 5000))
	if l := r.last()[2]; len(l) != tailLineBytes+3 || !strings.HasSuffix(l, "...") {
		t.Errorf("a long line is kept as %d bytes", len(l))
	}
}

// countingWriter records each Write, to check that every write holds whole lines.
type countingWriter struct {
	mu     sync.Mutex
	writes [][]byte
}

func (w *countingWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	w.writes = append(w.writes, append([]byte(nil), p...))
	w.mu.Unlock()
	return len(p), nil
}

// TestLinePumpsShareSink: many pumps fed in tiny pieces write to one sink; every write to the
// destination is whole prefixed lines, and every line arrives intact (run with -race).
func TestLinePumpsShareSink(t *testing.T) {
	w := &countingWriter{}
	sink := newLineSink(w)
	const ranks, lines = 8, 100
	var wg sync.WaitGroup
	for r := 0; r < ranks; r++ {
		pr, pw := io.Pipe()
		wg.Add(2)
		go func() {
			defer wg.Done()
			(&linePump{prefix: rankPrefix(r), term: sink}).run(pr)
		}()
		go func(r int) {
			defer wg.Done()
			for i := 0; i < lines; i++ {
				line := []byte(Line(r, i, 50+i*3) + "\n")
				for len(line) > 0 {
					k := min(len(line), 13)
					pw.Write(line[:k])
					line = line[k:]
				}
			}
			pw.Close()
		}(r)
	}
	wg.Wait()
	seen := map[string]bool{}
	for _, b := range w.writes {
		if len(b) == 0 || b[len(b)-1] != '\n' {
			t.Fatalf("a write does not end a line: %.60q", b)
		}
		for _, line := range strings.Split(strings.TrimSuffix(string(b), "\n"), "\n") {
			var r, i int
			if _, err := fmt.Sscanf(line, "[%d] r%d:%d:", &r, &r, &i); err != nil {
				t.Fatalf("bad line %.60q", line)
			}
			body := line[strings.Index(line, "] ")+2:]
			if body != Line(r, i, 50+i*3) || !strings.HasPrefix(line, fmt.Sprintf("[%d] ", r)) {
				t.Fatalf("corrupted line %.60q", line)
			}
			seen[line] = true
		}
	}
	if len(seen) != ranks*lines {
		t.Errorf("saw %d distinct lines, want %d", len(seen), ranks*lines)
	}
}

// Line mirrors rankprog's Line.
func Line(r, i, length int) string {
	head := fmt.Sprintf("r%d:%d:", r, i)
	var b strings.Builder
	b.WriteString(head)
	for b.Len() < length {
		b.WriteByte(byte('a' + (r*7+i+b.Len())%26))
	}
	return b.String()
}
