package ddp

import (
	"context"
	"fmt"
	"strings"

	"github.com/ringtrain/ringtrain/collective"
	"github.com/ringtrain/ringtrain/models"
)

// CommHook is the step that averages one gradient bucket across the ranks (PyTorch DDP's
// register_comm_hook). The default, AllReduceHook, runs one float32 AllReduce (Avg);
// CompressHook sends fp16 or bf16 with optional error feedback; a user can write others,
// such as a low-rank (PowerSGD) hook: see package ddp/powersgd, written against this
// interface alone.
//
// A DDP owns its hook: give each Wrap its own value (Setup is called once per DDP).
type CommHook interface {
	// Name identifies the hook and every setting that changes what travels (e.g. "bf16+ef",
	// "powersgd(rank=4)"). Wrap checks that all ranks' names are equal and fails on every
	// rank with a *MismatchError naming the first rank whose hook differs (Option
	// "CommHook"), so two ranks never run different protocols.
	Name() string
	// Setup is called once by Wrap, on every rank, after the ranks agreed, with the buckets
	// in launch order (the same on every rank). It allocates the hook's per-bucket state.
	// Training alone (no group, or one rank) Wrap calls neither Setup nor Reduce: there
	// is nothing to average.
	Setup(g *collective.Group, buckets []Bucket) error
	// Reduce replaces b.Grads, in place, by the average over all ranks of the ranks'
	// b.Grads (or the hook's approximation of it). DDP calls it on the training goroutine
	// as soon as the bucket's gradients are complete, in bucket order, the same order on
	// every rank. It may issue collectives on g (the same ones on every rank, in the same
	// order) and return the Work of the last one, which DDP waits for before the optimizer
	// steps (the group runs ops in the order issued, so the last one's completion implies
	// the others'); or it may finish the reduction itself and return a nil Work. Time spent
	// inside Reduce delays the backward of earlier layers, so a hook that must wait for a
	// result (PowerSGD's two rounds) gives up that bucket's overlap.
	//
	// b.Grads and the Work belong to the reduction until the Work completes. An error fails
	// the DDP (ErrFailed): this rank's collectives no longer match its peers'.
	Reduce(ctx context.Context, g *collective.Group, b Bucket) (*collective.Work, error)
}

// FinishingHook is a CommHook with work to do once the Work its Reduce returned has
// completed (PyTorch's future.then): PowerSGD multiplies its reduced factors back into the
// gradients there. Wait calls Finish for every bucket, in bucket order, on the training
// goroutine, after every bucket's reduction completed and before it returns.
type FinishingHook interface {
	CommHook
	Finish(ctx context.Context, b Bucket) error
}

// StatefulHook is a CommHook that carries state from step to step (error-feedback
// residuals, PowerSGD's warm-started factors). SaveCheckpoint stores every rank's State and
// LoadCheckpoint hands it back, so a resumed run continues exactly.
type StatefulHook interface {
	CommHook
	// State returns this rank's state as named float32 slices (they may be views of the
	// hook's buffers: DDP copies them before the next step). Every rank must return the same
	// names and sizes.
	State() []models.NamedSlice
	// LoadState restores the state from a checkpoint: saved[r] is what rank r's State
	// returned when it was written (len(saved) is the world size of that run, which may
	// differ from this one's), restoring rank rank of this run. A checkpoint written with
	// another hook (or none) gives saved == nil: the hook resets to its initial state.
	LoadState(rank int, saved [][]models.NamedSlice) error
}

// Bucket is one gradient bucket as a CommHook sees it.
type Bucket struct {
	Index  int           // launch order: 0 is reduced first
	Grads  []float32     // the flat gradients, every parameter's Grad being a view into it
	Params []BucketParam // the parameters, in their order in Grads
}

// BucketParam is one parameter's place in a Bucket.
type BucketParam struct {
	Name   string
	Shape  []int
	Offset int // first element in Bucket.Grads
	Size   int // elements
}

// Grad returns the parameter's gradient, a view into the bucket.
func (p BucketParam) Grad(b Bucket) []float32 { return b.Grads[p.Offset : p.Offset+p.Size] }

// hookBucket is the CommHook view of b.
func (b *bucket) hookBucket() Bucket {
	hb := Bucket{Index: b.index, Grads: b.flat}
	off := 0
	for _, pr := range b.params {
		sz := pr.p.Size()
		hb.Params = append(hb.Params, BucketParam{Name: pr.p.Name, Shape: append([]int(nil), pr.p.Shape...), Offset: off, Size: sz})
		off += sz
	}
	return hb
}

// AllReduceHook returns the default hook: one float32 AllReduce (Avg) per bucket.
func AllReduceHook() CommHook { return allReduceHook{} }

type allReduceHook struct{}

func (allReduceHook) Name() string                            { return "fp32" }
func (allReduceHook) Setup(*collective.Group, []Bucket) error { return nil }
func (allReduceHook) Reduce(ctx context.Context, g *collective.Group, b Bucket) (*collective.Work, error) {
	return g.AllReduceAsync(ctx, b.Grads, collective.Avg), nil
}

// CompressHook returns the hook that averages buckets with AllReduce compressed as c
// (collective.FP16 or collective.BF16; collective.NoCompression gives AllReduceHook), with
// error feedback if errorFeedback: every rounding this rank's encodings make is carried into
// the same position next step (collective.Feedback; see Options.ErrorFeedback), the
// residuals being the hook's state, saved in checkpoints. Residuals saved by an fp16 hook
// load into a bf16 one and back: both hold what rounding withheld.
func CompressHook(c collective.Compression, errorFeedback bool) (CommHook, error) {
	switch {
	case c == collective.NoCompression && !errorFeedback:
		return AllReduceHook(), nil
	case c != collective.FP16 && c != collective.BF16:
		return nil, fmt.Errorf("ddp: CompressHook: compression %v: want fp16 or bf16 (error feedback corrects their rounding)", c)
	}
	return &compressHook{c: c, feedback: errorFeedback}, nil
}

type compressHook struct {
	c        collective.Compression
	feedback bool
	buckets  []Bucket
	n        int         // ranks (Setup)
	residual [][]float32 // per bucket, with feedback
}

func (h *compressHook) Name() string {
	if h.feedback {
		return h.c.String() + "+ef"
	}
	return h.c.String()
}

func (h *compressHook) Setup(g *collective.Group, buckets []Bucket) error {
	if h.buckets != nil {
		return fmt.Errorf("ddp: hook %s is already set up for another DDP: give each Wrap its own", h.Name())
	}
	h.buckets, h.n = buckets, g.Size()
	if h.feedback {
		h.residual = make([][]float32, len(buckets))
		for i, b := range buckets {
			h.residual[i] = make([]float32, len(b.Grads))
		}
	}
	return nil
}

func (h *compressHook) Reduce(ctx context.Context, g *collective.Group, b Bucket) (*collective.Work, error) {
	if !h.feedback {
		return g.AllReduceAsync(ctx, b.Grads, collective.Avg, h.c), nil
	}
	return g.AllReduceAsync(ctx, b.Grads, collective.Avg, h.c, collective.Feedback(h.residual[b.Index])), nil
}

// State names each residual by its parameter (the checkpoint format of the residuals since
// before hooks: old checkpoints load).
func (h *compressHook) State() []models.NamedSlice {
	if !h.feedback {
		return nil
	}
	var out []models.NamedSlice
	for i, b := range h.buckets {
		for _, p := range b.Params {
			out = append(out, models.NamedSlice{Name: p.Name, Shape: p.Shape, Data: h.residual[i][p.Offset : p.Offset+p.Size]})
		}
	}
	return out
}

// LoadState restores this rank's residuals when the checkpoint was written by as many ranks;
// otherwise every rank starts from their mean over the writing ranks, which keeps the
// averaged correction still owed (their sum divided by the ranks).
func (h *compressHook) LoadState(rank int, saved [][]models.NamedSlice) error {
	for _, r := range h.residual {
		clear(r)
	}
	if !h.feedback || saved == nil {
		return nil
	}
	byName := make([]map[string][]float32, len(saved))
	for r, s := range saved {
		byName[r] = make(map[string][]float32, len(s))
		for _, ns := range s {
			byName[r][ns.Name] = ns.Data
		}
	}
	from := func(r int, p BucketParam) ([]float32, error) {
		src, ok := byName[r][p.Name]
		if !ok || len(src) != p.Size {
			return nil, fmt.Errorf("error-feedback residual of %s for rank %d missing or of the wrong size", p.Name, r)
		}
		return src, nil
	}
	for i, b := range h.buckets {
		for _, p := range b.Params {
			dst := h.residual[i][p.Offset : p.Offset+p.Size]
			if len(saved) == h.n {
				src, err := from(rank, p)
				if err != nil {
					return err
				}
				copy(dst, src)
				continue
			}
			for r := range saved {
				src, err := from(r, p)
				if err != nil {
					return err
				}
				for j, v := range src {
					dst[j] += v / float32(len(saved))
				}
			}
		}
	}
	return nil
}

// hookStateKind is the kind of the checkpoint section that holds a hook's state.
func hookStateKind(h CommHook) string { return "ddp-hook/" + h.Name() }

// sameHookState reports whether state saved under kind can be loaded by h. Residuals are
// residuals whichever 16-bit format made them; "ddp-residuals" is the kind checkpoints
// written before hooks existed give them (fp16 error feedback).
func sameHookState(h CommHook, kind string) bool {
	if kind == hookStateKind(h) {
		return true
	}
	if _, ok := h.(*compressHook); ok {
		return kind == "ddp-residuals" || strings.HasPrefix(kind, "ddp-hook/") && strings.HasSuffix(kind, "16+ef")
	}
	return false
}

// setupHook hands the buckets to the hook (Wrap, more than one rank). Every rank learns
// whether every rank's Setup succeeded, so a failure on one does not leave the others
// waiting in their first reduction for the group's timeout.
func (d *DDP) setupHook(ctx context.Context) error {
	bs := make([]Bucket, len(d.buckets))
	for i, b := range d.buckets {
		b.hb = b.hookBucket()
		bs[i] = b.hb
	}
	err := d.opts.hook.Setup(d.g, bs)
	if err != nil {
		err = fmt.Errorf("ddp: Wrap: CommHook %s: Setup: %w", d.opts.hook.Name(), err)
	}
	if aerr := d.g.AgreeErr(ctx, err); aerr != nil {
		return fmt.Errorf("ddp: Wrap: setting up the CommHook: %w", aerr)
	}
	return nil
}

// reduce runs the hook on bucket b (launch).
func (d *DDP) reduce(ctx context.Context, b *bucket) *collective.Work {
	w, err := d.opts.hook.Reduce(ctx, d.g, b.hb)
	b.hookErr = err
	if err != nil {
		b.hookErr = fmt.Errorf("CommHook %s on bucket %d: %w", d.opts.hook.Name(), b.index, err)
		return nil
	}
	return w
}

// wait waits for the bucket's reduction.
func (b *bucket) wait(ctx context.Context) error {
	if b.hookErr != nil || b.work == nil {
		return b.hookErr
	}
	return b.work.Wait(ctx)
}

// finish runs the hook's Finish on every launched bucket (Wait, after the reductions).
func (d *DDP) finish(ctx context.Context) error {
	fh, ok := d.opts.hook.(FinishingHook)
	if !ok {
		return nil
	}
	for _, b := range d.launched {
		if err := fh.Finish(ctx, b.hb); err != nil {
			return fmt.Errorf("CommHook %s: Finish of bucket %d: %w", d.opts.hook.Name(), b.index, err)
		}
	}
	return nil
}
