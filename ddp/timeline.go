package ddp

import (
	"fmt"

	"github.com/ringtrain/ringtrain/models"
	"github.com/ringtrain/ringtrain/timeline"
)

// stepTrace records the phases of the DDP's steps on the "ddp train" row of the timeline
// (Options.Timeline, else the group's): a "step" slice (B/E) per TrainStep around "forward",
// "loss", "backward" (holding one slice per layer, named after it, and one per bucket
// launch), "wait" (holding one "wait bucket i" per bucket: the exposed communication) and
// "optimizer". The buckets' AllReduces themselves are on the group's row ("collective
// world"), recorded by package collective: that row beside this one shows the overlap.
//
// Options.Trace is the older, programmatic view of the same points (a callback per point,
// for tests and custom tools); the timeline is its file form, with intervals. Both are fed
// from the same places.
//
// With no timeline r is nil and every method returns at once, allocating nothing.
type stepTrace struct {
	r      *timeline.Recorder
	tid    int
	layers []string // "backward <i> <layer name>", by layer index: named once, not per step
	launch []string // "launch bucket <i>", by bucket index
	wait   []string // "wait bucket <i>"
	last   int64    // backward: when the previous layer's slice (or its launches) ended
}

func (t *stepTrace) init(r *timeline.Recorder, m models.Model, buckets int) {
	if r == nil {
		return
	}
	t.r, t.tid = r, r.Thread("ddp train")
	for i, l := range m.Layers() {
		t.layers = append(t.layers, fmt.Sprintf("backward %d %s", i, l.Name()))
	}
	for i := range buckets {
		t.launch = append(t.launch, fmt.Sprintf("launch bucket %d", i))
		t.wait = append(t.wait, fmt.Sprintf("wait bucket %d", i))
	}
}

// beginStep opens the "step" slice of a TrainStep (a B event: the step encloses the
// others, and an E on every way out closes it); endStep closes it.
func (t *stepTrace) beginStep(step int64) {
	if t.r != nil {
		t.r.Begin(t.tid, "step", "ddp", timeline.Int("step", step))
	}
}

func (t *stepTrace) endStep() { t.r.End(t.tid) }

// span records name from start (r's clock) to now.
func (t *stepTrace) span(name string, start int64, step int64) {
	if t.r == nil {
		return
	}
	t.r.Complete(t.tid, name, "ddp", start, t.r.Now(), timeline.Int("step", step))
}

// layerDone ends layer i's backward slice (begun when the previous one, or backward,
// ended).
func (t *stepTrace) layerDone(i int, step int64) {
	if t.r == nil || i < 0 || i >= len(t.layers) {
		return
	}
	now := t.r.Now()
	t.r.Complete(t.tid, t.layers[i], "ddp", t.last, now, timeline.Int("step", step), timeline.Int("layer", int64(i)))
	t.last = now
}

// launched records bucket b's launch, begun at start.
func (t *stepTrace) launched(b *bucket, start int64, step int64) {
	if t.r == nil {
		return
	}
	t.last = t.r.Now()
	t.r.Complete(t.tid, t.launch[b.index], "ddp", start, t.last, timeline.Int("step", step),
		timeline.Int("bucket", int64(b.index)), timeline.Int("bytes", 4*int64(len(b.flat))))
}

// waited records the wait for bucket b, begun at start.
func (t *stepTrace) waited(b *bucket, start int64, step int64) {
	if t.r == nil {
		return
	}
	t.r.Complete(t.tid, t.wait[b.index], "ddp", start, t.r.Now(), timeline.Int("step", step), timeline.Int("bucket", int64(b.index)))
}
