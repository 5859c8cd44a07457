// Package powersgd is a low-rank gradient compression hook for ddp (PowerSGD, Vogels,
// Karimireddy and Jaggi, NeurIPS 2019; PyTorch's powerSGD_hook), written as a user of
// ddp.CommHook would write one: it uses only ddp's and collective's exported API.
//
// For each bucket, every parameter gradient with two or more dimensions is viewed as an
// n×m matrix M (n = the first dimension, m = the product of the others). Where rank-r
// factors are at least MinCompression times smaller than M (r·(n+m)·MinCompression ≤ n·m),
// the matrix travels as two thin factors instead of n·m values:
//
//  1. M += e (this rank's error from the last step: error feedback);
//  2. P = M·Q (n×r, Q the m×r factor kept from the last step: warm start), AllReduce(P, Sum);
//  3. P ← orthonormalise the columns of P (Gram–Schmidt, in float64);
//  4. Q = M^T·P (m×r), AllReduce(Q, Avg);
//  5. M̂ = P·Q^T, the projection of the ranks' mean gradient onto span(P); e = M − M̂ on this
//     rank; the gradient becomes M̂.
//
// Steps 1–3 run inside Reduce (the orthogonalisation needs the reduced P, so Reduce waits
// for it: that bucket's communication does not overlap backward); step 4's AllReduce is the
// Work handed back to ddp, and step 5 runs in Finish (ddp.FinishingHook). The other
// parameters (biases, matrices too small to gain) are averaged in float32, in one AllReduce
// per bucket issued first, so that it travels while P is computed.
//
// Every rank ends with bit-identical gradients: P and Q are the results of AllReduce,
// identical everywhere, and everything after them is deterministic. The state (errors and
// Q per bucket, and the step count for StartStep) is a ddp.StatefulHook's, saved in ddp's
// checkpoints, so a resumed run continues exactly.
//
// Bytes per step for a compressed n×m matrix: r·(n+m) float32 instead of n·m (784×512 at
// rank 4: 5,184 instead of 401,408, 77× fewer).
package powersgd

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"

	"github.com/ringtrain/ringtrain/collective"
	"github.com/ringtrain/ringtrain/ddp"
	"github.com/ringtrain/ringtrain/models"
)

// Config configures a Hook. The zero value is not valid: Rank must be at least 1.
type Config struct {
	// Rank is r, the number of columns of the factors (PyTorch's
	// matrix_approximation_rank). Higher is more accurate and sends more.
	Rank int
	// MinCompression is the smallest ratio n·m / (r·(n+m)) for which a matrix is compressed;
	// others are averaged in float32. Zero means 2 (PyTorch's min_compression_rate).
	MinCompression float64
	// StartStep is the number of steps averaged in float32 before compression starts
	// (PyTorch's start_powerSGD_iter): early gradients change fast and the warm-started Q
	// needs a few steps to track them. The errors start accumulating only then. Zero
	// starts at once.
	StartStep int
	// Seed makes the initial Q (standard normal), the same on every rank.
	Seed uint64
	// NoWarmStart draws a fresh Q every step instead of reusing the last one (slower to
	// converge; for comparison).
	NoWarmStart bool
}

// New returns a PowerSGD hook; give each ddp.Wrap its own (ddp.Options.CommHook).
func New(c Config) (*Hook, error) {
	if c.Rank < 1 {
		return nil, fmt.Errorf("powersgd: Config.Rank must be at least 1, got %d", c.Rank)
	}
	if c.MinCompression == 0 {
		c.MinCompression = 2
	}
	if !(c.MinCompression >= 1) || math.IsInf(c.MinCompression, 0) {
		return nil, fmt.Errorf("powersgd: Config.MinCompression must be a finite number ≥ 1, got %g", c.MinCompression)
	}
	if c.StartStep < 0 || c.StartStep >= 1<<24 {
		return nil, fmt.Errorf("powersgd: Config.StartStep must be in [0, 2^24), got %d", c.StartStep)
	}
	return &Hook{cfg: c}, nil
}

// Hook is the PowerSGD ddp.CommHook; it implements ddp.FinishingHook and ddp.StatefulHook.
type Hook struct {
	cfg     Config
	set     bool
	n       int // ranks (Setup)
	buckets []*bucketState
	step    int // steps started (counted on bucket 0), up to StartStep
}

// matrix is one compressed parameter of a bucket.
type matrix struct {
	off, n, m  int // first element in the bucket's Grads; rows, columns
	pOff, qOff int // its factors' places in the bucket's P and Q buffers
}

type bucketState struct {
	mats    []matrix
	plain   []ddp.BucketParam // averaged in float32
	flat    []float32         // the plain parameters' gradients, gathered for one AllReduce
	p, q    []float32         // all matrices' factors, each matrix's r columns row-major
	err     []float32         // error feedback, len(Grads) (zero off the matrices)
	plainW  *collective.Work
	compact bool // this step compresses (past StartStep)
}

// Name says every setting the ranks must share.
func (h *Hook) Name() string {
	return fmt.Sprintf("powersgd(rank=%d,min=%g,start=%d,seed=%d,warm=%v)", h.cfg.Rank, h.cfg.MinCompression, h.cfg.StartStep, h.cfg.Seed, !h.cfg.NoWarmStart)
}

// Setup plans, per bucket, which parameters are compressed.
func (h *Hook) Setup(g *collective.Group, buckets []ddp.Bucket) error {
	if h.set {
		return errors.New("powersgd: this Hook is already set up for another DDP: give each Wrap its own")
	}
	h.set, h.n = true, g.Size()
	r := h.cfg.Rank
	for _, b := range buckets {
		bs := &bucketState{err: make([]float32, len(b.Grads))}
		np, nq := 0, 0
		for _, p := range b.Params {
			n, m := dims(p.Shape)
			if len(p.Shape) >= 2 && float64(n)*float64(m) >= h.cfg.MinCompression*float64(r)*float64(n+m) {
				bs.mats = append(bs.mats, matrix{off: p.Offset, n: n, m: m, pOff: np, qOff: nq})
				np += n * r
				nq += m * r
				continue
			}
			bs.plain = append(bs.plain, p)
		}
		nflat := 0
		for _, p := range bs.plain {
			nflat += p.Size
		}
		bs.flat = make([]float32, nflat)
		bs.p, bs.q = make([]float32, np), make([]float32, nq)
		h.initQ(b.Index, bs)
		h.buckets = append(h.buckets, bs)
	}
	return nil
}

// dims views a shape as rows × columns.
func dims(shape []int) (n, m int) {
	if len(shape) == 0 {
		return 1, 1
	}
	n, m = shape[0], 1
	for _, d := range shape[1:] {
		m *= d
	}
	return n, m
}

// initQ draws bucket i's Q from the seed: the same on every rank.
func (h *Hook) initQ(i int, bs *bucketState) {
	rng := rand.New(rand.NewPCG(h.cfg.Seed, uint64(i)))
	for j := range bs.q {
		bs.q[j] = float32(rng.NormFloat64())
	}
}

// Reduce averages the plain parameters (async) and, past StartStep, runs steps 1–4.
func (h *Hook) Reduce(ctx context.Context, g *collective.Group, b ddp.Bucket) (*collective.Work, error) {
	if b.Index < 0 || b.Index >= len(h.buckets) {
		return nil, fmt.Errorf("powersgd: bucket %d of %d", b.Index, len(h.buckets))
	}
	bs := h.buckets[b.Index]
	if b.Index == 0 && h.step <= h.cfg.StartStep {
		h.step++ // saturates at StartStep+1: only "past StartStep" matters
	}
	bs.compact = h.step > h.cfg.StartStep && len(bs.mats) > 0
	if !bs.compact {
		bs.plainW = nil
		return g.AllReduceAsync(ctx, b.Grads, collective.Avg), nil
	}
	off := 0
	for _, p := range bs.plain {
		off += copy(bs.flat[off:], p.Grad(b))
	}
	bs.plainW = nil
	if len(bs.flat) > 0 {
		bs.plainW = g.AllReduceAsync(ctx, bs.flat, collective.Avg)
	}
	r := h.cfg.Rank
	if h.cfg.NoWarmStart {
		h.initQ(b.Index, bs)
	}
	clear(bs.p)
	for _, mt := range bs.mats {
		M := b.Grads[mt.off : mt.off+mt.n*mt.m]
		e := bs.err[mt.off : mt.off+mt.n*mt.m]
		for i := range M {
			M[i] += e[i]
		}
		matMul(bs.p[mt.pOff:mt.pOff+mt.n*r], M, bs.q[mt.qOff:mt.qOff+mt.m*r], mt.n, mt.m, r)
	}
	if err := g.AllReduce(ctx, bs.p, collective.Sum); err != nil {
		return nil, err
	}
	clear(bs.q)
	for _, mt := range bs.mats {
		P := bs.p[mt.pOff : mt.pOff+mt.n*r]
		orthonormalize(P, mt.n, r)
		matTMul(bs.q[mt.qOff:mt.qOff+mt.m*r], b.Grads[mt.off:mt.off+mt.n*mt.m], P, mt.n, mt.m, r)
	}
	return g.AllReduceAsync(ctx, bs.q, collective.Avg), nil
}

// Finish (step 5) writes P·Q^T into the compressed gradients, keeps this rank's error, and
// puts the averaged plain gradients back.
func (h *Hook) Finish(ctx context.Context, b ddp.Bucket) error {
	bs := h.buckets[b.Index]
	if !bs.compact {
		return nil
	}
	if bs.plainW != nil {
		if err := bs.plainW.Wait(ctx); err != nil {
			return err
		}
		off := 0
		for _, p := range bs.plain {
			off += copy(p.Grad(b), bs.flat[off:off+p.Size])
		}
	}
	r := h.cfg.Rank
	for _, mt := range bs.mats {
		M := b.Grads[mt.off : mt.off+mt.n*mt.m]
		e := bs.err[mt.off : mt.off+mt.n*mt.m]
		P := bs.p[mt.pOff : mt.pOff+mt.n*r]
		Q := bs.q[mt.qOff : mt.qOff+mt.m*r]
		for i := range mt.n {
			pi := P[i*r : i*r+r]
			row := M[i*mt.m : (i+1)*mt.m]
			erow := e[i*mt.m : (i+1)*mt.m]
			for k := range row {
				qk := Q[k*r : k*r+r]
				var s float32
				for j, pv := range pi {
					s += pv * qk[j]
				}
				erow[k] = row[k] - s
				row[k] = s
			}
		}
	}
	return nil
}

// matMul sets P (n×r) = M (n×m) · Q (m×r), all row-major.
func matMul(P, M, Q []float32, n, m, r int) {
	for i := range n {
		pi := P[i*r : i*r+r]
		for k, x := range M[i*m : (i+1)*m] {
			if x == 0 {
				continue
			}
			for j, q := range Q[k*r : k*r+r] {
				pi[j] += x * q
			}
		}
	}
}

// matTMul sets Q (m×r) = M^T (m×n) · P (n×r).
func matTMul(Q, M, P []float32, n, m, r int) {
	for i := range n {
		pi := P[i*r : i*r+r]
		for k, x := range M[i*m : (i+1)*m] {
			if x == 0 {
				continue
			}
			qk := Q[k*r : k*r+r]
			for j, p := range pi {
				qk[j] += x * p
			}
		}
	}
}

// orthonormalize makes the r columns of P (n×r, row-major) orthonormal by modified
// Gram–Schmidt, accumulating in float64. A column that vanishes (linearly dependent, or all
// zeros) becomes zero rather than NaN: its direction carries nothing this step.
func orthonormalize(P []float32, n, r int) {
	for j := range r {
		for k := range j {
			var dot float64
			for i := range n {
				dot += float64(P[i*r+j]) * float64(P[i*r+k])
			}
			for i := range n {
				P[i*r+j] -= float32(dot * float64(P[i*r+k]))
			}
		}
		var norm float64
		for i := range n {
			norm += float64(P[i*r+j]) * float64(P[i*r+j])
		}
		norm = math.Sqrt(norm)
		inv := 0.0
		if norm > 1e-30 {
			inv = 1 / norm
		}
		for i := range n {
			P[i*r+j] = float32(float64(P[i*r+j]) * inv)
		}
	}
}

// State: per bucket the error and Q, and the steps counted towards StartStep.
func (h *Hook) State() []models.NamedSlice {
	out := []models.NamedSlice{{Name: "step", Shape: []int{1}, Data: []float32{float32(h.step)}}}
	for i, bs := range h.buckets {
		out = append(out,
			models.NamedSlice{Name: fmt.Sprintf("bucket%d/error", i), Shape: []int{len(bs.err)}, Data: bs.err},
			models.NamedSlice{Name: fmt.Sprintf("bucket%d/q", i), Shape: []int{len(bs.q)}, Data: bs.q})
	}
	return out
}

// LoadState restores this rank's error and Q when the checkpoint was written by as many
// ranks; otherwise every rank takes the mean error over the writing ranks and their Q
// (identical on every rank). Without saved state (another hook wrote the checkpoint) the
// hook starts afresh.
func (h *Hook) LoadState(rank int, saved [][]models.NamedSlice) error {
	h.step = 0
	for i, bs := range h.buckets {
		clear(bs.err)
		h.initQ(i, bs)
	}
	if saved == nil {
		return nil
	}
	get := func(r int, name string, size int) ([]float32, error) {
		for _, s := range saved[r] {
			if s.Name == name {
				if len(s.Data) != size {
					return nil, fmt.Errorf("powersgd: saved %s of rank %d has %d values, want %d", name, r, len(s.Data), size)
				}
				return s.Data, nil
			}
		}
		return nil, fmt.Errorf("powersgd: checkpoint lacks %s of rank %d", name, r)
	}
	src := rank
	if rank >= len(saved) {
		src = 0
	}
	st, err := get(src, "step", 1)
	if err != nil {
		return err
	}
	h.step = int(st[0])
	for i, bs := range h.buckets {
		q, err := get(src, fmt.Sprintf("bucket%d/q", i), len(bs.q))
		if err != nil {
			return err
		}
		copy(bs.q, q)
		name := fmt.Sprintf("bucket%d/error", i)
		if len(saved) == h.n {
			e, err := get(rank, name, len(bs.err))
			if err != nil {
				return err
			}
			copy(bs.err, e)
			continue
		}
		for r := range saved {
			e, err := get(r, name, len(bs.err))
			if err != nil {
				return err
			}
			for j, v := range e {
				bs.err[j] += v / float32(len(saved))
			}
		}
	}
	return nil
}
