// Package errorfile reads and writes torchrun's error file, so that a rank's failure reaches
// gorun (and tools built for torchrun) as a structured record rather than a line lost in
// stderr.
//
// gorun gives every rank its own path in TORCHELASTIC_ERROR_FILE (a fresh one per attempt).
// A rank that fails calls [Record] with its error before exiting; gorun reads the file of the
// first rank that failed, prints its message in the failure summary, and, when gorun itself
// was started with TORCHELASTIC_ERROR_FILE (as torchrun's own launcher may be, by a scheduler
// that collects error files), writes the root cause there with errorCode set to the rank's
// exit status, as torchrun's agent does.
//
// The layout is torchrun's (torch.distributed.elastic.multiprocessing.errors):
//
//	{"message": {"message": "...",
//	             "extraInfo": {"py_callstack": "...", "timestamp": "<unix seconds>"},
//	             "errorCode": 1}}
//
// errorCode only in the launcher's own file. The call stack keeps torchrun's key name
// (py_callstack) so that tools that read it find it; here it holds a Go stack. Readers also
// accept the older form whose "message" is a plain string.
//
// The package imports nothing of the module.
package errorfile

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"strings"
	"time"
)

// Env is the variable that holds the path (torchrun's name).
const Env = "TORCHELASTIC_ERROR_FILE"

// MaxSize bounds what Read accepts: a record is a message and a stack, never megabytes.
const MaxSize = 1 << 20

// Report is one recorded failure.
type Report struct {
	Message   string
	CallStack string    // the stack where the error was recorded ("" when unknown)
	Time      time.Time // when it was recorded, to the second
	// ErrorCode is the exit status the launcher saw; nil in a rank's own file.
	ErrorCode *int
}

type extraInfo struct {
	PyCallstack string `json:"py_callstack"`
	Timestamp   string `json:"timestamp"`
}

type message struct {
	Message   string    `json:"message"`
	ExtraInfo extraInfo `json:"extraInfo"`
	ErrorCode *int      `json:"errorCode,omitempty"`
}

type file struct {
	Message message `json:"message"`
}

// Marshal encodes r in torchrun's layout.
func (r Report) Marshal() ([]byte, error) {
	ts := r.Time
	if ts.IsZero() {
		ts = time.Now()
	}
	return json.Marshal(file{Message: message{Message: r.Message, ErrorCode: r.ErrorCode,
		ExtraInfo: extraInfo{PyCallstack: r.CallStack, Timestamp: strconv.FormatInt(ts.Unix(), 10)}}})
}

// Parse decodes an error file. It accepts torchrun's layout and its older form with a plain
// string message; anything else is an error naming what is wrong.
func Parse(b []byte) (Report, error) {
	if len(b) > MaxSize {
		return Report{}, fmt.Errorf("error file of %d bytes exceeds %d", len(b), MaxSize)
	}
	var top map[string]json.RawMessage
	if err := json.Unmarshal(b, &top); err != nil {
		return Report{}, fmt.Errorf("error file: not a JSON object: %w", err)
	}
	raw, ok := top["message"]
	if !ok {
		return Report{}, errors.New(`error file: no "message" field`)
	}
	var plain string
	if json.Unmarshal(raw, &plain) == nil {
		return Report{Message: plain}, nil
	}
	var m message
	if err := json.Unmarshal(raw, &m); err != nil {
		return Report{}, fmt.Errorf(`error file: "message" is neither a string nor torchrun's object: %w`, err)
	}
	r := Report{Message: m.Message, CallStack: m.ExtraInfo.PyCallstack, ErrorCode: m.ErrorCode}
	if m.ExtraInfo.Timestamp != "" {
		sec, err := strconv.ParseInt(m.ExtraInfo.Timestamp, 10, 64)
		if err != nil {
			return Report{}, fmt.Errorf("error file: timestamp %q is not a number of seconds", m.ExtraInfo.Timestamp)
		}
		r.Time = time.Unix(sec, 0)
	}
	return r, nil
}

// Read reads and parses the error file at path. A missing file matches fs.ErrNotExist (the
// rank recorded nothing: it was killed, or does not use this package).
func Read(path string) (Report, error) {
	f, err := os.Open(path)
	if err != nil {
		return Report{}, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, MaxSize+1))
	if err != nil {
		return Report{}, err
	}
	r, perr := Parse(b)
	if perr != nil {
		return Report{}, fmt.Errorf("%s: %w", path, perr)
	}
	return r, nil
}

// Write writes r to path atomically (a temporary file renamed over it), creating the
// directory if needed, so that a reader never sees half a record.
func Write(path string, r Report) error {
	b, err := r.Marshal()
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".error-*.json")
	if err != nil {
		return err
	}
	_, werr := tmp.Write(b)
	if cerr := tmp.Close(); werr == nil {
		werr = cerr
	}
	if werr == nil {
		werr = os.Rename(tmp.Name(), path)
	}
	if werr != nil {
		os.Remove(tmp.Name())
	}
	return werr
}

// Record writes err to the file named by TORCHELASTIC_ERROR_FILE, with the calling
// goroutine's stack, and returns the path written ("" when the variable is unset or err is
// nil: then it does nothing). A rank calls it just before exiting non-zero:
//
//	if err := run(); err != nil {
//		errorfile.Record(err)
//		fmt.Fprintln(os.Stderr, err)
//		os.Exit(1)
//	}
func Record(err error) (string, error) {
	path := strings.TrimSpace(os.Getenv(Env))
	if path == "" || err == nil {
		return "", nil
	}
	if werr := Write(path, Report{Message: err.Error(), CallStack: string(debug.Stack()), Time: time.Now()}); werr != nil {
		return "", fmt.Errorf("%s=%s: %w", Env, path, werr)
	}
	return path, nil
}
