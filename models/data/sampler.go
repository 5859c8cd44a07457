package data

import (
	"fmt"
	"math/rand/v2"
	"sync"

	"github.com/ringtrain/ringtrain/models"
)

// SamplerConfig configures a DistributedSampler. Every rank must use the same
// N, World, Batch, Seed, NoShuffle and DropLast (only Rank differs).
type SamplerConfig struct {
	N     int   // samples in the dataset; must be > 0
	Rank  int   // this rank, in [0, World)
	World int   // number of ranks; 0 means 1
	Batch int   // per-rank batch size; must be > 0
	Seed  int64 // shuffle seed shared by all ranks; 0 is a valid seed

	// NoShuffle keeps the dataset order every epoch; false (default)
	// reshuffles every epoch from (Seed, epoch).
	NoShuffle bool
	// DropLast drops the samples that do not fill a whole global batch
	// (World·Batch). False (default) pads instead: the last global batch is
	// completed by wrapping around to the start of the epoch's order, so a
	// few samples are seen twice in that epoch. Either way every batch on
	// every rank is full and every rank has the same number of batches.
	DropLast bool
}

// DistributedSampler splits each epoch's order of N samples into disjoint
// per-rank shards, as PyTorch's DistributedSampler does: the epoch order is
// a permutation drawn from (Seed, epoch), cut into global batches of
// World·Batch, and rank r takes positions r, r+World, r+2·World, … of each
// global batch. So the union of all ranks' k-th batches is exactly the k-th
// batch of a single process with batch World·Batch and the same seed — data
// parallel training sees the very samples of the equivalent large-batch run.
//
// Methods are safe for concurrent use.
type DistributedSampler struct {
	cfg     SamplerConfig
	batches int

	mu    sync.Mutex
	epoch int
	order []int // this epoch's global order (padded), built lazily
}

// NewDistributedSampler validates cfg and returns a sampler at epoch 0.
func NewDistributedSampler(cfg SamplerConfig) (*DistributedSampler, error) {
	if cfg.World == 0 {
		cfg.World = 1
	}
	switch {
	case cfg.N <= 0:
		return nil, fmt.Errorf("sampler: dataset size must be positive, got %d", cfg.N)
	case cfg.World < 0:
		return nil, fmt.Errorf("sampler: world size must be positive, got %d", cfg.World)
	case cfg.Rank < 0 || cfg.Rank >= cfg.World:
		return nil, fmt.Errorf("sampler: rank %d out of range [0, %d)", cfg.Rank, cfg.World)
	case cfg.Batch <= 0:
		return nil, fmt.Errorf("sampler: batch size must be positive, got %d", cfg.Batch)
	}
	global := cfg.World * cfg.Batch
	batches := (cfg.N + global - 1) / global
	if cfg.DropLast {
		batches = cfg.N / global
		if batches == 0 {
			return nil, fmt.Errorf("sampler: %d samples do not fill one global batch of %d ranks × %d with DropLast", cfg.N, cfg.World, cfg.Batch)
		}
	}
	return &DistributedSampler{cfg: cfg, batches: batches}, nil
}

// Config returns the configuration (World defaulted).
func (s *DistributedSampler) Config() SamplerConfig { return s.cfg }

// NumBatches is the number of batches per epoch, the same on every rank.
func (s *DistributedSampler) NumBatches() int { return s.batches }

// SetEpoch selects the epoch whose order the sampler serves. All ranks must
// call it with the same value before each epoch (and after resuming from a
// checkpoint), as with PyTorch.
func (s *DistributedSampler) SetEpoch(epoch int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if epoch != s.epoch {
		s.epoch, s.order = epoch, nil
	}
}

// Epoch is the epoch set by SetEpoch (0 initially).
func (s *DistributedSampler) Epoch() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.epoch
}

// globalOrder returns the epoch's padded global order (caller holds mu).
func (s *DistributedSampler) globalOrder() []int {
	if s.order != nil {
		return s.order
	}
	n := s.cfg.N
	var perm []int
	if s.cfg.NoShuffle {
		perm = make([]int, n)
		for i := range perm {
			perm[i] = i
		}
	} else {
		rng := rand.New(rand.NewPCG(uint64(s.cfg.Seed), uint64(s.epoch)))
		perm = rng.Perm(n)
	}
	total := s.batches * s.cfg.World * s.cfg.Batch
	order := make([]int, total)
	for i := range order {
		order[i] = perm[i%n] // i ≥ n only when padding
	}
	s.order = order
	return order
}

// BatchIndices returns the sample indices of this rank's batch k (0 ≤ k <
// NumBatches) in the current epoch.
func (s *DistributedSampler) BatchIndices(k int) ([]int, error) {
	if k < 0 || k >= s.batches {
		return nil, fmt.Errorf("sampler: batch %d out of range [0, %d)", k, s.batches)
	}
	s.mu.Lock()
	order := s.globalOrder()
	s.mu.Unlock()
	w, b := s.cfg.World, s.cfg.Batch
	global := order[k*w*b : (k+1)*w*b]
	idx := make([]int, b)
	for j := range idx {
		idx[j] = global[j*w+s.cfg.Rank]
	}
	return idx, nil
}

// Indices returns this rank's whole shard for the current epoch, batch after
// batch.
func (s *DistributedSampler) Indices() []int {
	out := make([]int, 0, s.batches*s.cfg.Batch)
	for k := 0; k < s.batches; k++ {
		idx, _ := s.BatchIndices(k)
		out = append(out, idx...)
	}
	return out
}

// Batch gathers this rank's batch k of the current epoch from src, whose
// Len must equal the sampler's N.
func (s *DistributedSampler) Batch(src Source, k int) (models.Tensor, []int, error) {
	if src.Len() != s.cfg.N {
		return models.Tensor{}, nil, fmt.Errorf("sampler: built for %d samples, source has %d", s.cfg.N, src.Len())
	}
	idx, err := s.BatchIndices(k)
	if err != nil {
		return models.Tensor{}, nil, err
	}
	return src.Gather(idx)
}
