package ddp

import (
	"fmt"
	"math"
	"time"

	"github.com/ringtrain/ringtrain/collective"
	"github.com/ringtrain/ringtrain/models"
	"github.com/ringtrain/ringtrain/timeline"
)

// Defaults for the zero values of Options.
const (
	// DefaultBucketCapMB is PyTorch DDP's default bucket size: large enough that per-op
	// costs (a header round trip, a pipeline fill) vanish, small enough to overlap.
	DefaultBucketCapMB = 25
	// DefaultFirstBucketCapMB is the cap of the first bucket (the output layers), as
	// PyTorch's first bucket: small, so that the first AllReduce starts as early as possible
	// in backward instead of waiting for 25 MiB of gradients.
	DefaultFirstBucketCapMB = 1
	// DefaultKeepCheckpoints is how many checkpoints SaveCheckpoint keeps.
	DefaultKeepCheckpoints = 2
)

// Options configures a DDP. The zero value is ready to use: 25 MiB buckets after a 1 MiB
// first bucket, float32 gradients on the wire, softmax cross-entropy, no tracing. Every
// rank must use the same bucket and compression settings (Wrap checks it) and the same
// Loss (which Wrap cannot check: functions do not compare).
type Options struct {
	// BucketCapMB is the size, in MiB of float32 gradients, at which a bucket is closed:
	// parameters are added in reverse layer order until the bucket reaches the cap, so a
	// bucket exceeds it by at most its last parameter, and a parameter larger than the cap
	// gets a bucket of its own. Zero means DefaultBucketCapMB (25). Smaller buckets start
	// communicating earlier but pay the per-op cost more often.
	BucketCapMB float64
	// FirstBucketCapMB is the cap of the first bucket (the last layers' gradients, ready
	// first). Zero means DefaultFirstBucketCapMB (1 MiB) or BucketCapMB if that is
	// smaller; a negative value means the same as BucketCapMB.
	FirstBucketCapMB float64
	// Compression is how gradients travel: collective.NoCompression (the zero value,
	// float32), collective.FP16 (binary16 with a power-of-two scale per chunk: half the
	// bytes; see FP16Bound) or collective.BF16 (bfloat16, no scale: half the bytes, 2^-8
	// relative per rounding; see BF16Bound). It is shorthand for CommHook =
	// CompressHook(Compression, ErrorFeedback); leave it zero when setting CommHook.
	Compression collective.Compression
	// ErrorFeedback, with FP16 or BF16 compression, carries every rounding error this
	// rank's encodings make into the next step (collective.Feedback): the partial sums it encodes
	// at each reduce-scatter hop, and the averaged chunks it owns when it starts the
	// all-gather. Each bucket keeps one residual per element (a rank encodes each element of
	// a bucket once per step), added into the value at the same point of the next step
	// before it is encoded again. Over T steps the averaged gradients the ranks received sum
	// to the exact sum of the averages minus the last step's residuals: within one step's
	// FP16Bound (BF16Bound), however long the run, instead of T steps' worth of rounding. Components
	// too small to survive one step's rounding are not lost but delivered later. The
	// residuals travel in checkpoints. False (default) sends gradients as they are.
	// Requires Compression FP16 or BF16.
	ErrorFeedback bool
	// CommHook, when not nil, is the step that averages each bucket across the ranks (see
	// CommHook): a hook of CompressHook, or one of the user's (ddp/powersgd). Nil means
	// CompressHook(Compression, ErrorFeedback), which is AllReduceHook for the zero
	// values. Every rank must use a hook of the same Name (Wrap checks it); give every
	// Wrap its own hook value.
	CommHook CommHook
	// KeepCheckpoints is how many checkpoints SaveCheckpoint keeps in its directory (older
	// ones are removed after a newer one is safely written). Zero means
	// DefaultKeepCheckpoints (2); a negative value keeps all.
	KeepCheckpoints int
	// Loss is the loss TrainStep computes from the model's outputs and the labels, and
	// whose gradient it runs backward. Nil means models.SoftmaxCrossEntropy. Every rank
	// must use the same loss; Wrap does not (cannot) check it.
	Loss models.Loss
	// Trace, when not nil, receives an Event for each step of the gradient pipeline (layer
	// done, bucket launched, bucket reduced, backward done, wait done), for timelines and
	// tests. It is called from the training goroutine and, for EventBucketDone, from a
	// goroutine of the DDP: it must be safe for concurrent use and fast. Nil means none.
	Trace func(Event)
	// Timeline, when not nil, records the phases of every step (forward, backward per
	// layer, bucket launches and waits, optimizer) into a Chrome trace; see stepTrace. Nil
	// means the group's timeline (collective.Group.Timeline: GORUN_TIMELINE under gorun),
	// or none.
	Timeline *timeline.Recorder
}

// resolved is Options with defaults applied, in bytes.
type resolved struct {
	capBytes, firstCapBytes int64
	compression             collective.Compression
	errorFeedback           bool
	hook                    CommHook
	keep                    int
	loss                    models.Loss
	trace                   func(Event)
}

func mib(x float64) int64 { return int64(math.Round(x * (1 << 20))) }

func (o Options) resolve() (resolved, error) {
	r := resolved{compression: o.Compression, errorFeedback: o.ErrorFeedback, trace: o.Trace, keep: o.KeepCheckpoints, loss: o.Loss}
	if r.loss == nil {
		r.loss = models.SoftmaxCrossEntropy
	}
	switch {
	case math.IsNaN(o.BucketCapMB) || math.IsInf(o.BucketCapMB, 0) || o.BucketCapMB < 0:
		return r, fmt.Errorf("ddp: Options.BucketCapMB must be a finite number ≥ 0 (0 means %d), got %g", DefaultBucketCapMB, o.BucketCapMB)
	case math.IsNaN(o.FirstBucketCapMB) || math.IsInf(o.FirstBucketCapMB, 0):
		return r, fmt.Errorf("ddp: Options.FirstBucketCapMB must be finite, got %g", o.FirstBucketCapMB)
	case o.Compression != collective.NoCompression && o.Compression != collective.FP16 && o.Compression != collective.BF16:
		return r, fmt.Errorf("ddp: Options.Compression: unknown compression %v", o.Compression)
	case o.ErrorFeedback && o.Compression == collective.NoCompression:
		return r, fmt.Errorf("ddp: Options.ErrorFeedback needs Compression = collective.FP16 or collective.BF16 (it corrects their rounding), got %v", o.Compression)
	case o.CommHook != nil && (o.Compression != collective.NoCompression || o.ErrorFeedback):
		return r, fmt.Errorf("ddp: Options.CommHook (%s) and Options.Compression/ErrorFeedback exclude each other: use CompressHook(%v, %v) as the hook, or leave CommHook nil", o.CommHook.Name(), o.Compression, o.ErrorFeedback)
	}
	r.hook = o.CommHook
	if r.hook == nil {
		h, err := CompressHook(o.Compression, o.ErrorFeedback)
		if err != nil {
			return r, err
		}
		r.hook = h
	}
	capMB := o.BucketCapMB
	if capMB == 0 {
		capMB = DefaultBucketCapMB
	}
	r.capBytes = max(4, mib(capMB))
	switch {
	case o.FirstBucketCapMB < 0:
		r.firstCapBytes = r.capBytes
	case o.FirstBucketCapMB == 0:
		r.firstCapBytes = min(r.capBytes, mib(DefaultFirstBucketCapMB))
	default:
		r.firstCapBytes = max(4, mib(o.FirstBucketCapMB))
	}
	if r.keep == 0 {
		r.keep = DefaultKeepCheckpoints
	}
	return r, nil
}

// EventKind says what an Event reports.
type EventKind uint8

const (
	// EventLayerDone: backward of layer Event.Layer has produced its parameter gradients.
	EventLayerDone EventKind = iota + 1
	// EventBucketLaunched: the AllReduce of bucket Event.Bucket was issued.
	EventBucketLaunched
	// EventBucketDone: the AllReduce of bucket Event.Bucket completed (seen by the DDP's
	// watcher goroutine, so Time may trail the real completion a little).
	EventBucketDone
	// EventBackwardDone: Backward returned (every bucket launched).
	EventBackwardDone
	// EventWaitDone: Wait returned: the reduced gradients are in Param.Grad.
	EventWaitDone
)

func (k EventKind) String() string {
	switch k {
	case EventLayerDone:
		return "layer-done"
	case EventBucketLaunched:
		return "bucket-launched"
	case EventBucketDone:
		return "bucket-done"
	case EventBackwardDone:
		return "backward-done"
	case EventWaitDone:
		return "wait-done"
	}
	return fmt.Sprintf("EventKind(%d)", uint8(k))
}

// Event is one point of the gradient pipeline, for Options.Trace.
type Event struct {
	Kind   EventKind
	Step   int64 // synchronised steps completed before this one (0 for the first)
	Layer  int   // EventLayerDone: the layer index; otherwise -1
	Bucket int   // EventBucketLaunched, EventBucketDone: the bucket index; otherwise -1
	Time   time.Time
}
