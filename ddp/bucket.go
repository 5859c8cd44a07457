package ddp

import (
	"github.com/ringtrain/ringtrain/collective"
	"github.com/ringtrain/ringtrain/models"
)

// BucketInfo describes one gradient bucket, for logs and tests.
type BucketInfo struct {
	Index  int      // launch order: 0 is reduced first
	Params []string // parameter names, in their order in the flat buffer
	Elems  int      // float32 elements
	Layers [2]int   // the lowest and highest layer index with a parameter in the bucket
}

// Bytes is the bucket's size in bytes of float32 gradients.
func (b BucketInfo) Bytes() int64 { return 4 * int64(b.Elems) }

// paramRef is a parameter with the index of the layer that owns it.
type paramRef struct {
	p     *models.Param
	layer int
}

// planBuckets assigns parameters to buckets in reverse order of their position in the
// model (reverse layer order, and reverse order within a layer, as PyTorch), which is the
// order in which backward completes them. A bucket is closed once it holds at least its
// cap in bytes (firstCap for the first bucket). It returns the buckets' parameters in
// flat-buffer order.
func planBuckets(params []paramRef, firstCap, capBytes int64) [][]paramRef {
	var out [][]paramRef
	var cur []paramRef
	var size int64
	limit := firstCap
	for i := len(params) - 1; i >= 0; i-- {
		cur = append(cur, params[i])
		size += 4 * int64(params[i].p.Size())
		if size >= limit {
			out = append(out, cur)
			cur, size, limit = nil, 0, capBytes
		}
	}
	if len(cur) > 0 {
		out = append(out, cur)
	}
	return out
}

// bucket is one flat gradient buffer and the parameters whose Grad are views into it.
type bucket struct {
	index    int
	params   []paramRef
	flat     []float32
	minLayer int // the bucket is ready once this layer's backward is done
	maxLayer int
	hb       Bucket // the CommHook's view (setupHook)

	// Per step, owned by the training goroutine until launched, then by the watcher.
	work     *collective.Work // nil when the hook reduced the bucket inside Reduce
	hookErr  error            // the hook's Reduce failed
	launched bool
	launchAt int64 // nanoseconds since the step's time base
	doneAt   int64 // written by the watcher goroutine before it signals
}

func (b *bucket) info() BucketInfo {
	bi := BucketInfo{Index: b.index, Elems: len(b.flat), Layers: [2]int{b.minLayer, b.maxLayer}}
	for _, pr := range b.params {
		bi.Params = append(bi.Params, pr.p.Name)
	}
	return bi
}

// newBuckets builds the buckets of a plan and re-points every parameter's Grad into its
// bucket's flat buffer, keeping the gradient values it held.
func newBuckets(plan [][]paramRef) []*bucket {
	bs := make([]*bucket, len(plan))
	for i, ps := range plan {
		n := 0
		for _, pr := range ps {
			n += pr.p.Size()
		}
		b := &bucket{index: i, params: ps, flat: make([]float32, n), minLayer: ps[0].layer, maxLayer: ps[0].layer}
		off := 0
		for _, pr := range ps {
			sz := pr.p.Size()
			view := b.flat[off : off+sz : off+sz]
			copy(view, pr.p.Grad)
			pr.p.Grad = view
			off += sz
			b.minLayer = min(b.minLayer, pr.layer)
			b.maxLayer = max(b.maxLayer, pr.layer)
		}
		bs[i] = b
	}
	return bs
}
