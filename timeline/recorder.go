package timeline

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"
)

// DefaultMaxEvents is Config.MaxEvents when zero: 27 MiB of events at most (an event with
// its inline arguments is 440 bytes on 64-bit machines), which holds about 3,000 DDP steps of
// the example mlp (some 22 events per step).
const DefaultMaxEvents = 1 << 16

// MaxArgs is how many arguments one event keeps; further ones are ignored. Arguments are
// stored inline in the event so that recording allocates nothing.
const MaxArgs = 8

// Config configures a Recorder. The zero value is ready to use (but writes nowhere: give
// Path to have Flush write a file).
type Config struct {
	// Path is the file Flush and Close write, replacing it whole each time. Empty means
	// Flush writes nothing (WriteTo still works).
	Path string
	// Rank is the process id (pid) of every event: one process row per rank in a viewer.
	Rank int
	// Label names the process row; empty means "rank <Rank>".
	Label string
	// MaxEvents bounds the events kept: once full, each new event replaces the oldest
	// (a ring), and the file says how many were dropped. Zero means DefaultMaxEvents.
	MaxEvents int
}

// Arg is one argument of an event: a string or an integer.
type Arg struct {
	Key   string
	Str   string
	Int   int64
	isStr bool
}

// Str is a string argument.
func Str(key, v string) Arg { return Arg{Key: key, Str: v, isStr: true} }

// Int is an integer argument.
func Int(key string, v int64) Arg { return Arg{Key: key, Int: v} }

// event is one recorded trace event; times are nanoseconds since the recorder's start.
type event struct {
	ph    byte
	nargs uint8
	tid   int32
	ts    int64
	dur   int64
	name  string
	cat   string
	args  [MaxArgs]Arg
}

// Recorder collects the trace events of one process (one rank) in memory and writes them as
// a Chrome trace-event JSON file. A nil *Recorder is valid and records nothing: every method
// is then a nil check and returns, so instrumented code needs no other condition and
// allocates nothing when tracing is off. The methods are safe for concurrent use.
type Recorder struct {
	cfg   Config
	start time.Time // the time base: Now counts from here (monotonic clock)
	host  string

	mu      sync.Mutex
	events  []event // ring of at most cfg.MaxEvents
	next    int     // where the next event goes once the ring is full
	dropped uint64
	threads []string // tid-1 → name
	closed  bool
}

// New returns a recorder; nothing is written until Flush or Close.
func New(cfg Config) *Recorder {
	if cfg.MaxEvents <= 0 {
		cfg.MaxEvents = DefaultMaxEvents
	}
	if cfg.Label == "" {
		cfg.Label = "rank " + strconv.Itoa(cfg.Rank)
	}
	host, _ := os.Hostname()
	return &Recorder{cfg: cfg, start: time.Now(), host: host}
}

// Enabled reports whether r records (r is not nil). Callers use it to skip computing
// arguments that cost something.
func (r *Recorder) Enabled() bool { return r != nil }

// Now is the current time on r's clock, in nanoseconds since r was made; 0 when r is nil.
func (r *Recorder) Now() int64 {
	if r == nil {
		return 0
	}
	return int64(time.Since(r.start))
}

// Thread returns the thread id (tid) of the row named name, making it on first use: one row
// per goroutine role ("collective world", "ddp train"). 0 when r is nil.
func (r *Recorder) Thread(name string) int {
	if r == nil {
		return 0
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for i, n := range r.threads {
		if n == name {
			return i + 1
		}
	}
	r.threads = append(r.threads, name)
	return len(r.threads)
}

// Complete records an interval [start, end] (times from Now) on row tid: a Chrome "X" event.
func (r *Recorder) Complete(tid int, name, cat string, start, end int64, args ...Arg) {
	if r == nil {
		return
	}
	r.add('X', tid, name, cat, start, max(0, end-start), args)
}

// Instant records a point in time on row tid: a Chrome "i" event (thread scope).
func (r *Recorder) Instant(tid int, name, cat string, at int64, args ...Arg) {
	if r == nil {
		return
	}
	r.add('i', tid, name, cat, at, 0, args)
}

// Begin opens a slice on row tid now (a Chrome "B" event); End closes the innermost open
// one. Slices of one row must nest. Prefer Complete where the start time can be kept: a
// ring that drops the oldest events may drop a Begin and keep its End (the writer drops
// such orphans).
func (r *Recorder) Begin(tid int, name, cat string, args ...Arg) {
	if r == nil {
		return
	}
	r.add('B', tid, name, cat, r.Now(), 0, args)
}

// End closes the innermost slice opened by Begin on row tid.
func (r *Recorder) End(tid int) {
	if r == nil {
		return
	}
	r.add('E', tid, "", "", r.Now(), 0, nil)
}

func (r *Recorder) add(ph byte, tid int, name, cat string, ts, dur int64, args []Arg) {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return
	}
	var e *event
	if len(r.events) < r.cfg.MaxEvents {
		r.events = append(r.events, event{})
		e = &r.events[len(r.events)-1]
	} else {
		e = &r.events[r.next]
		r.next = (r.next + 1) % len(r.events)
		r.dropped++
	}
	e.ph, e.tid, e.ts, e.dur, e.name, e.cat = ph, int32(tid), ts, dur, name, cat
	e.nargs = uint8(copy(e.args[:], args))
	r.mu.Unlock()
}

// Dropped is how many events the ring dropped (the oldest ones) so far.
func (r *Recorder) Dropped() uint64 {
	if r == nil {
		return 0
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.dropped
}

// Path is the file Flush writes ("" when none, or r is nil).
func (r *Recorder) Path() string {
	if r == nil {
		return ""
	}
	return r.cfg.Path
}

// Flush writes every event kept so far to Config.Path (through a temporary file renamed
// over it, so a reader never sees half a file). Recording goes on; a later Flush writes
// the file again with the newer events. Nil r, or no Path: nothing to do.
func (r *Recorder) Flush() error {
	if r == nil || r.cfg.Path == "" {
		return nil
	}
	dir, base := filepath.Split(r.cfg.Path)
	f, err := os.CreateTemp(dir, "."+base+".tmp*")
	if err != nil {
		return fmt.Errorf("timeline: writing %s: %w", r.cfg.Path, err)
	}
	f.Chmod(0o644) // CreateTemp makes it private; a trace is an ordinary output file
	_, werr := r.WriteTo(f)
	cerr := f.Close()
	if werr == nil {
		werr = cerr
	}
	if werr == nil {
		werr = os.Rename(f.Name(), r.cfg.Path)
	}
	if werr != nil {
		os.Remove(f.Name())
		return fmt.Errorf("timeline: writing %s: %w", r.cfg.Path, werr)
	}
	return nil
}

// Close flushes and stops recording: later events are ignored. It is idempotent.
func (r *Recorder) Close() error {
	if r == nil {
		return nil
	}
	err := r.Flush()
	r.mu.Lock()
	r.closed = true
	r.mu.Unlock()
	return err
}

// snapshot copies the kept events, oldest first, and the thread names.
func (r *Recorder) snapshot() ([]event, []string, uint64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	evs := make([]event, 0, len(r.events))
	evs = append(evs, r.events[r.next:]...)
	evs = append(evs, r.events[:r.next]...)
	return evs, append([]string(nil), r.threads...), r.dropped
}

// countWriter counts the bytes written through it.
type countWriter struct {
	w *bufio.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// WriteTo writes the trace as Chrome trace-event JSON: {"traceEvents": [...],
// "displayTimeUnit": "ms", "otherData": {...}}. Timestamps are microseconds since the
// recorder's start; otherData.start_unix_ns is that start on the wall clock, which Merge
// uses to line ranks up.
func (r *Recorder) WriteTo(w interface{ Write([]byte) (int, error) }) (int64, error) {
	evs, threads, dropped := r.snapshot()
	cw := &countWriter{w: bufio.NewWriterSize(w, 64<<10)}
	b := make([]byte, 0, 512)
	b = append(b, `{"traceEvents":[`...)
	pid := strconv.Itoa(r.cfg.Rank)
	b = append(b, "\n"...)
	b = append(b, `{"ph":"M","pid":`+pid+`,"tid":0,"name":"process_name","args":{"name":`...)
	b = appendString(b, r.cfg.Label)
	b = append(b, "}},\n"...)
	b = append(b, `{"ph":"M","pid":`+pid+`,"tid":0,"name":"process_sort_index","args":{"sort_index":`+pid+`}}`...)
	for i, name := range threads {
		tid := strconv.Itoa(i + 1)
		b = append(b, ",\n"...)
		b = append(b, `{"ph":"M","pid":`+pid+`,"tid":`+tid+`,"name":"thread_name","args":{"name":`...)
		b = appendString(b, name)
		b = append(b, "}},\n"...)
		b = append(b, `{"ph":"M","pid":`+pid+`,"tid":`+tid+`,"name":"thread_sort_index","args":{"sort_index":`+tid+`}}`...)
	}
	if dropped > 0 && len(evs) > 0 {
		// Said where a viewer shows it: a global instant at the oldest event kept.
		b = append(b, ",\n"...)
		b = append(b, `{"ph":"i","s":"g","pid":`+pid+`,"tid":0,"name":"timeline: older events dropped","cat":"timeline","ts":`...)
		b = appendMicros(b, evs[0].ts)
		b = append(b, `,"args":{"dropped":`...)
		b = strconv.AppendUint(b, dropped, 10)
		b = append(b, `,"max_events":`...)
		b = strconv.AppendInt(b, int64(r.cfg.MaxEvents), 10)
		b = append(b, "}}"...)
	}
	open := make(map[int32]int) // per tid: B events written and not yet ended
	for i := range evs {
		e := &evs[i]
		switch e.ph {
		case 'B':
			open[e.tid]++
		case 'E':
			if open[e.tid] == 0 {
				continue // its Begin was dropped by the ring
			}
			open[e.tid]--
		}
		b = append(b, ",\n"...)
		b = appendEvent(b, pid, e)
		if len(b) > 32<<10 {
			if _, err := cw.Write(b); err != nil {
				return cw.n, err
			}
			b = b[:0]
		}
	}
	b = append(b, "\n],\n"...)
	b = append(b, `"displayTimeUnit":"ms","otherData":{"format":"ringtrain timeline 1","rank":`+pid+`,"label":`...)
	b = appendString(b, r.cfg.Label)
	b = append(b, `,"host":`...)
	b = appendString(b, r.host)
	b = append(b, `,"start_unix_ns":`...)
	b = strconv.AppendInt(b, r.start.UnixNano(), 10)
	b = append(b, `,"events":`...)
	b = strconv.AppendInt(b, int64(len(evs)), 10)
	b = append(b, `,"dropped_events":`...)
	b = strconv.AppendUint(b, dropped, 10)
	b = append(b, `,"max_events":`...)
	b = strconv.AppendInt(b, int64(r.cfg.MaxEvents), 10)
	b = append(b, "}}\n"...)
	if _, err := cw.Write(b); err != nil {
		return cw.n, err
	}
	return cw.n, cw.w.Flush()
}

func appendEvent(b []byte, pid string, e *event) []byte {
	b = append(b, `{"ph":"`...)
	b = append(b, e.ph)
	b = append(b, `","pid":`+pid+`,"tid":`...)
	b = strconv.AppendInt(b, int64(e.tid), 10)
	b = append(b, `,"ts":`...)
	b = appendMicros(b, e.ts)
	if e.ph == 'X' {
		b = append(b, `,"dur":`...)
		b = appendMicros(b, e.dur)
	}
	if e.ph == 'i' {
		b = append(b, `,"s":"t"`...)
	}
	if e.ph != 'E' {
		b = append(b, `,"name":`...)
		b = appendString(b, e.name)
		if e.cat != "" {
			b = append(b, `,"cat":`...)
			b = appendString(b, e.cat)
		}
	}
	if e.nargs > 0 {
		b = append(b, `,"args":{`...)
		for i, a := range e.args[:e.nargs] {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendString(b, a.Key)
			b = append(b, ':')
			if a.isStr {
				b = appendString(b, a.Str)
			} else {
				b = strconv.AppendInt(b, a.Int, 10)
			}
		}
		b = append(b, '}')
	}
	return append(b, '}')
}

// appendMicros writes ns as microseconds with three decimals (the format's unit is µs).
func appendMicros(b []byte, ns int64) []byte {
	if ns < 0 {
		b = append(b, '-')
		ns = -ns
	}
	b = strconv.AppendInt(b, ns/1000, 10)
	frac := ns % 1000
	b = append(b, '.', byte('0'+frac/100), byte('0'+frac/10%10), byte('0'+frac%10))
	return b
}

// appendString writes s as a JSON string (encoding/json's escaping).
func appendString(b []byte, s string) []byte {
	q, err := json.Marshal(s)
	if err != nil {
		return append(b, `""`...)
	}
	return append(b, q...)
}
