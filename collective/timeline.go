package collective

import (
	"slices"
	"strings"
	"sync"

	"github.com/ringtrain/ringtrain/timeline"
)

// groupTrace records the group's ops into Options.Timeline: one thread row per group
// ("collective world"), an instant when an op is queued (issue), and a complete event from
// the moment the worker starts it to the moment it finishes, with what it moved and how.
// With no Timeline every hook is a nil check (timeline.Recorder's methods on nil).
type groupTrace struct {
	once  sync.Once
	tid   int
	mu    sync.Mutex
	links map[algorithm]string // kinds of the links an algorithm uses, once all are known
	queue map[opKind]string    // "queued AllReduce"...: built once, not per op
}

// queuedName is the name of kind's queued instant.
func (t *groupTrace) queuedName(kind opKind) string {
	t.mu.Lock()
	defer t.mu.Unlock()
	s, ok := t.queue[kind]
	if !ok {
		if t.queue == nil {
			t.queue = make(map[opKind]string)
		}
		s = "queued " + kind.String()
		t.queue[kind] = s
	}
	return s
}

// traceQueued records that op w was issued, at once: an op that never completes (a hung
// peer) still shows where it was queued. Called by issue, outside g.mu.
func (g *Group) traceQueued(w *Work) {
	r := g.opts.Timeline
	if r == nil {
		return
	}
	t := &g.tl
	t.once.Do(func() { t.tid = r.Thread("collective " + g.name) })
	r.Instant(t.tid, t.queuedName(w.h.kind), "collective", w.queuedAt, timeline.Int("seq", int64(w.h.seq)))
}

// traceOp records op w, started at start (the recorder's clock), ending now with err.
// Called on the worker goroutine before w completes.
func (g *Group) traceOp(w *Work, start int64, err error) {
	r := g.opts.Timeline
	if r == nil {
		return
	}
	end := r.Now()
	t := &g.tl
	t.once.Do(func() { t.tid = r.Thread("collective " + g.name) })
	name := w.h.kind.String()
	algo := w.h.algo.String()
	if w.h.kind == kindBroadcast || w.h.kind == kindBroadcastBytes {
		algo = "chain"
	}
	status := "ok"
	if err != nil {
		status = "failed"
	}
	r.Complete(t.tid, name, "collective", start, end,
		timeline.Int("seq", int64(w.h.seq)),
		timeline.Int("bytes", opBytes(w)),
		timeline.Str("dtype", w.h.dtype.String()),
		timeline.Str("algorithm", algo),
		timeline.Str("links", g.linkKinds(w.h.algo)),
		timeline.Str("compression", w.h.compression.String()),
		timeline.Int("queued_us", (start-w.queuedAt)/1000),
		timeline.Str("status", status))
}

// opBytes is the size of the caller's buffer of op w, in bytes.
func opBytes(w *Work) int64 {
	if w.h.dtype == dtBytes { // variable-length messages: the header's count is 0
		n := len(w.data)
		for _, p := range w.parts {
			n += len(p)
		}
		return int64(n)
	}
	return int64(w.h.dtype.size()) * int64(w.h.count)
}

// linkKinds says what carries the links algorithm a uses ("shm", "tls", "shm+tls"): the
// ring's two neighbours, or every other member for the other algorithms. It is cached once
// every link's kind is known (links may be settled lazily, on first use).
func (g *Group) linkKinds(a algorithm) string {
	t := &g.tl
	t.mu.Lock()
	defer t.mu.Unlock()
	if s, ok := t.links[a]; ok {
		return s
	}
	kinds := g.LinkKinds()
	if kinds == nil {
		return "unknown"
	}
	n := len(g.ranks)
	peers := []int{g.ranks[(g.rank+1)%n], g.ranks[(g.rank+n-1)%n]}
	if a != algoRing {
		peers = g.ranks
	}
	var set []string
	known := true
	for _, p := range peers {
		if p == g.worldRank {
			continue
		}
		k, ok := kinds[p]
		if !ok || k == "" {
			known = false
			k = "pending"
		}
		if !slices.Contains(set, k) {
			set = append(set, k)
		}
	}
	slices.Sort(set)
	s := strings.Join(set, "+")
	if s == "" {
		s = "none"
	}
	if known {
		if t.links == nil {
			t.links = make(map[algorithm]string)
		}
		t.links[a] = s
	}
	return s
}

// Timeline returns the recorder the group records its ops into (Options.Timeline; for a
// group made by InitFromEnv, the job's GORUN_TIMELINE recorder), or nil. Packages built on
// the group (ddp, pipeline) record into it too, so one rank's events share one file.
func (g *Group) Timeline() *timeline.Recorder { return g.opts.Timeline }
