package launcher

import (
	"bytes"
	"io"
	"strconv"
	"sync"
)

// DefaultMaxLine is the longest line the launcher forwards in one piece. A longer line (a
// program dumping a huge array without a newline) is cut into several prefixed lines rather
// than buffered without bound.
const DefaultMaxLine = 1 << 20

// tailLines and tailLineBytes bound the stderr lines kept per rank for the failure summary.
const (
	tailLines     = 10
	tailLineBytes = 1024
)

// lineSink serialises writes onto one destination. Every write it receives holds whole lines
// only, so lines from different ranks never interleave mid-line on the terminal or in a log.
type lineSink struct {
	mu sync.Mutex
	w  io.Writer
}

func newLineSink(w io.Writer) *lineSink { return &lineSink{w: w} }

// write writes b in one call. Errors are dropped on purpose: a closed terminal or a full disk
// must not block or kill the ranks, whose output then is lost but whose work goes on.
func (s *lineSink) write(b []byte) {
	s.mu.Lock()
	_, _ = s.w.Write(b)
	s.mu.Unlock()
}

// lineRing keeps the last few lines written to it.
type lineRing struct {
	mu    sync.Mutex
	lines []string
	next  int
	n     int
}

func newLineRing(n int) *lineRing { return &lineRing{lines: make([]string, n)} }

func (r *lineRing) add(line []byte) {
	if len(line) > tailLineBytes {
		line = append(line[:tailLineBytes:tailLineBytes], "..."...)
	}
	r.mu.Lock()
	r.lines[r.next] = string(line)
	r.next = (r.next + 1) % len(r.lines)
	if r.n < len(r.lines) {
		r.n++
	}
	r.mu.Unlock()
}

// last returns the kept lines, oldest first.
func (r *lineRing) last() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]string, 0, r.n)
	for i := 0; i < r.n; i++ {
		out = append(out, r.lines[(r.next-r.n+i+len(r.lines))%len(r.lines)])
	}
	return out
}

// rankPrefix is the "[3] " put before each line of rank 3.
func rankPrefix(rank int) []byte {
	return []byte("[" + strconv.Itoa(rank) + "] ")
}

// linePump copies one output stream of one rank, line by line, to its destinations.
type linePump struct {
	prefix  []byte
	term    *lineSink // prefixed copy (the launcher's stdout or stderr)
	log     *lineSink // unprefixed copy (the rank's log file); may be nil
	tail    *lineRing // last lines, for the failure summary; may be nil
	maxLine int       // zero means DefaultMaxLine

	out []byte // reused buffer for the prefixed block
}

// run reads r until EOF or an error and forwards whole lines. A final line without a newline
// is forwarded with one added, and a line longer than maxLine is cut.
func (p *linePump) run(r io.Reader) {
	maxLine := p.maxLine
	if maxLine <= 0 {
		maxLine = DefaultMaxLine
	}
	pending := make([]byte, 0, min(64<<10, maxLine))
	for {
		if len(pending) == cap(pending) {
			grown := make([]byte, len(pending), min(2*cap(pending), maxLine))
			copy(grown, pending)
			pending = grown
		}
		n, err := r.Read(pending[len(pending):cap(pending)])
		pending = pending[:len(pending)+n]
		if last := bytes.LastIndexByte(pending, '\n'); last >= 0 {
			p.emit(pending[:last+1])
			pending = pending[:copy(pending, pending[last+1:])]
		}
		if len(pending) >= maxLine {
			p.emit(append(pending, '\n'))
			pending = pending[:0]
		}
		if err != nil {
			if len(pending) > 0 {
				p.emit(append(pending, '\n'))
			}
			return
		}
	}
}

// emit forwards block, which is one or more complete lines each ending in '\n'.
func (p *linePump) emit(block []byte) {
	whole := block
	p.out = p.out[:0]
	for len(block) > 0 {
		i := bytes.IndexByte(block, '\n')
		line := block[:i+1]
		p.out = append(p.out, p.prefix...)
		p.out = append(p.out, line...)
		if p.tail != nil {
			p.tail.add(line[:i])
		}
		block = block[i+1:]
	}
	if p.log != nil {
		p.log.write(whole)
	}
	p.term.write(p.out)
}
