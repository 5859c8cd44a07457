// Package ranklines reads the output of a job started by gorun, where every line a rank
// prints arrives prefixed with its rank ("[3] text"), and picks out the JSON objects the
// ranks printed (the --json output of the trainer and of the AllReduce benchmark), keeping
// which rank printed each.
package ranklines

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
)

// Line is one JSON object printed by one rank.
type Line struct {
	// Rank is the rank from the "[N] " prefix, or -1 for a line that had none (gorun's
	// own messages, or a program run without gorun).
	Rank int
	// JSON is the object's text, exactly as printed.
	JSON json.RawMessage
}

// Decode unmarshals the line's object into v.
func (l Line) Decode(v any) error { return json.Unmarshal(l.JSON, v) }

// Split returns the rank and the rest of a line printed through gorun. A line without a
// well-formed "[N] " prefix (N a non-negative decimal) comes back whole with rank -1.
func Split(line []byte) (rank int, rest []byte) {
	if len(line) < 3 || line[0] != '[' {
		return -1, line
	}
	end := bytes.IndexByte(line, ']')
	if end < 2 || end > 11 {
		return -1, line
	}
	n, err := strconv.Atoi(string(line[1:end]))
	if err != nil || n < 0 || line[1] == '+' || line[1] == '-' {
		return -1, line
	}
	rest = line[end+1:]
	if len(rest) > 0 && rest[0] == ' ' {
		rest = rest[1:]
	}
	return n, rest
}

// Parse returns the JSON objects in a line, if it holds one: after an optional rank
// prefix, the text (trimmed of spaces and a carriage return) must start with '{' and be
// one valid JSON value. Other lines (logs, progress) give ok = false.
func Parse(line []byte) (l Line, ok bool) {
	rank, rest := Split(line)
	rest = bytes.TrimSpace(rest)
	if len(rest) < 2 || rest[0] != '{' || !json.Valid(rest) {
		return Line{}, false
	}
	return Line{Rank: rank, JSON: json.RawMessage(append([]byte(nil), rest...))}, true
}

// MaxLine is the longest line ReadAll accepts; gorun itself cuts lines at 1 MiB.
const MaxLine = 4 << 20

// ReadAll returns every JSON line in r, in order. Non-JSON lines are skipped; if keep is
// not nil, each of them is passed to it (for progress or error messages).
func ReadAll(r io.Reader, keep func(rank int, text []byte)) ([]Line, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), MaxLine)
	var out []Line
	for sc.Scan() {
		if l, ok := Parse(sc.Bytes()); ok {
			out = append(out, l)
		} else if keep != nil {
			rank, rest := Split(sc.Bytes())
			keep(rank, rest)
		}
	}
	if err := sc.Err(); err != nil {
		return out, fmt.Errorf("reading rank output: %w", err)
	}
	return out, nil
}
