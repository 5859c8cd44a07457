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
// An epoch may also start part-way through its permutation ([SetEpochFrom]): a run resumed
// from a checkpoint written at another world size or global batch continues at the first
// sample not yet trained, so that within the epoch every position of the permutation is
// trained exactly once, whatever the world did in between (plus, as always, the padding of
// the epoch's last global batch).
//
// Methods are safe for concurrent use.
type DistributedSampler struct {
	cfg SamplerConfig

	mu      sync.Mutex
	epoch   int
	start   int   // position of the epoch's permutation where batch 0 begins
	batches int   // batches of this epoch from start
	order   []int // this epoch's global order from start (padded), built lazily
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
	if cfg.DropLast && cfg.N < cfg.World*cfg.Batch {
		return nil, fmt.Errorf("sampler: %d samples do not fill one global batch of %d ranks × %d with DropLast", cfg.N, cfg.World, cfg.Batch)
	}
	s := &DistributedSampler{cfg: cfg}
	s.batches = s.batchesFrom(0)
	return s, nil
}

// batchesFrom is the number of global batches that cover the positions [start, N).
func (s *DistributedSampler) batchesFrom(start int) int {
	global, rest := s.cfg.World*s.cfg.Batch, s.cfg.N-start
	if s.cfg.DropLast {
		return rest / global
	}
	return (rest + global - 1) / global
}

// Config returns the configuration (World defaulted).
func (s *DistributedSampler) Config() SamplerConfig { return s.cfg }

// NumBatches is the number of batches of the current epoch, the same on every rank:
// counted from the epoch's start position (0 unless set by SetEpochFrom).
func (s *DistributedSampler) NumBatches() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.batches
}

// SetEpoch selects the epoch whose order the sampler serves, from its first
// sample. All ranks must call it with the same value before each epoch (and
// after resuming from a checkpoint), as with PyTorch.
func (s *DistributedSampler) SetEpoch(epoch int) {
	_ = s.SetEpochFrom(epoch, 0) // 0 is always a valid start
}

// SetEpochFrom selects the epoch and the position of its permutation where
// batch 0 begins: start samples of the epoch were trained already (by a run
// whose world size or batch may have differed; its checkpoint says how many).
// Batch k then covers positions start + k·World·Batch onwards, NumBatches
// counts the batches left, and the last one is padded as usual (DropLast:
// dropped). start must be in [0, N]; N leaves no batch in the epoch.
func (s *DistributedSampler) SetEpochFrom(epoch, start int) error {
	if start < 0 || start > s.cfg.N {
		return fmt.Errorf("sampler: epoch start %d out of range [0, %d]", start, s.cfg.N)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if epoch != s.epoch || start != s.start {
		s.epoch, s.start, s.order = epoch, start, nil
		s.batches = s.batchesFrom(start)
	}
	return nil
}

// Start is the permutation position where the current epoch's batch 0 begins.
func (s *DistributedSampler) Start() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.start
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
		order[i] = perm[(s.start+i)%n] // ≥ n only when padding: wraps to the epoch's first samples
	}
	s.order = order
	return order
}

// BatchIndices returns the sample indices of this rank's batch k (0 ≤ k <
// NumBatches) in the current epoch.
func (s *DistributedSampler) BatchIndices(k int) ([]int, error) {
	s.mu.Lock()
	if k < 0 || k >= s.batches {
		n := s.batches
		s.mu.Unlock()
		return nil, fmt.Errorf("sampler: batch %d out of range [0, %d)", k, n)
	}
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
	nb := s.NumBatches()
	out := make([]int, 0, nb*s.cfg.Batch)
	for k := 0; k < nb; k++ {
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
