package data

import (
	"slices"
	"sort"
	"testing"
)

func samplers(t *testing.T, cfg SamplerConfig) []*DistributedSampler {
	t.Helper()
	var out []*DistributedSampler
	for r := 0; r < cfg.World; r++ {
		c := cfg
		c.Rank = r
		s, err := NewDistributedSampler(c)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, s)
	}
	return out
}

func TestSamplerShardsDisjointCoveringEqual(t *testing.T) {
	for _, c := range []struct {
		n, world, batch int
		drop            bool
	}{
		{100, 4, 5, false}, // exact: 100 = 5 global batches of 20
		{103, 4, 5, false}, // pad 17
		{103, 4, 5, true},  // drop 3
		{10, 3, 4, false},  // pad more than half
		{7, 1, 3, true},
		{60000, 2, 64, false},
	} {
		ss := samplers(t, SamplerConfig{N: c.n, World: c.world, Batch: c.batch, Seed: 5, DropLast: c.drop})
		global := c.world * c.batch
		wantBatches := (c.n + global - 1) / global
		if c.drop {
			wantBatches = c.n / global
		}
		seen := make(map[int]int)
		for r, s := range ss {
			if s.NumBatches() != wantBatches {
				t.Fatalf("%+v rank %d: %d batches, want %d", c, r, s.NumBatches(), wantBatches)
			}
			for k := 0; k < s.NumBatches(); k++ {
				idx, err := s.BatchIndices(k)
				if err != nil {
					t.Fatal(err)
				}
				if len(idx) != c.batch {
					t.Fatalf("%+v: batch of %d, want %d", c, len(idx), c.batch)
				}
				for _, i := range idx {
					if i < 0 || i >= c.n {
						t.Fatalf("index %d out of range", i)
					}
					seen[i]++
				}
			}
		}
		used := wantBatches * global
		switch {
		case c.drop:
			// Disjoint: every sample at most once, exactly `used` samples.
			for i, k := range seen {
				if k != 1 {
					t.Fatalf("%+v: sample %d seen %d times", c, i, k)
				}
			}
			if len(seen) != used {
				t.Fatalf("%+v: %d distinct samples, want %d", c, len(seen), used)
			}
		default:
			// Padded: every sample at least once; the used-n extra are
			// duplicates from wrapping around.
			if len(seen) != c.n {
				t.Fatalf("%+v: %d distinct samples, want all %d", c, len(seen), c.n)
			}
			extra := 0
			for _, k := range seen {
				extra += k - 1
			}
			if extra != used-c.n {
				t.Fatalf("%+v: %d duplicates, want %d", c, extra, used-c.n)
			}
		}
	}
}

func TestSamplerDisjointWithinEpochWhenExact(t *testing.T) {
	ss := samplers(t, SamplerConfig{N: 96, World: 3, Batch: 8, Seed: 1})
	var all []int
	for _, s := range ss {
		all = append(all, s.Indices()...)
	}
	sort.Ints(all)
	for i, v := range all {
		if v != i {
			t.Fatalf("shards are not a partition of [0, 96)")
		}
	}
}

// TestSamplerUnionIsLargeBatch: the union of the ranks' k-th batches is the
// k-th batch of one rank with batch World·Batch and the same seed.
func TestSamplerUnionIsLargeBatch(t *testing.T) {
	const n, world, b = 200, 4, 6
	ss := samplers(t, SamplerConfig{N: n, World: world, Batch: b, Seed: 3})
	one, _ := NewDistributedSampler(SamplerConfig{N: n, Batch: world * b, Seed: 3})
	for epoch := 0; epoch < 3; epoch++ {
		one.SetEpoch(epoch)
		for _, s := range ss {
			s.SetEpoch(epoch)
		}
		if one.NumBatches() != ss[0].NumBatches() {
			t.Fatalf("batch counts differ")
		}
		for k := 0; k < one.NumBatches(); k++ {
			want, _ := one.BatchIndices(k)
			var got []int
			for _, s := range ss {
				idx, _ := s.BatchIndices(k)
				got = append(got, idx...)
			}
			sort.Ints(want)
			sort.Ints(got)
			if !slices.Equal(got, want) {
				t.Fatalf("epoch %d batch %d: union %v, large batch %v", epoch, k, got, want)
			}
		}
	}
}

func TestSamplerEpochReshuffle(t *testing.T) {
	s, _ := NewDistributedSampler(SamplerConfig{N: 1000, World: 2, Rank: 1, Batch: 10, Seed: 9})
	e0 := s.Indices()
	s.SetEpoch(1)
	e1 := s.Indices()
	if slices.Equal(e0, e1) {
		t.Fatal("epoch 1 has the same order as epoch 0")
	}
	s.SetEpoch(0)
	if !slices.Equal(s.Indices(), e0) {
		t.Fatal("returning to epoch 0 does not reproduce its order")
	}
	// Another sampler (another process) with the same seed agrees.
	s2, _ := NewDistributedSampler(SamplerConfig{N: 1000, World: 2, Rank: 1, Batch: 10, Seed: 9})
	s2.SetEpoch(1)
	if !slices.Equal(s2.Indices(), e1) || s2.Epoch() != 1 {
		t.Fatal("same seed and epoch gave another order")
	}
	// A different seed gives a different order; NoShuffle gives the identity.
	s3, _ := NewDistributedSampler(SamplerConfig{N: 1000, World: 2, Rank: 1, Batch: 10, Seed: 10})
	if slices.Equal(s3.Indices(), e0) {
		t.Fatal("different seeds gave the same order")
	}
	s4, _ := NewDistributedSampler(SamplerConfig{N: 10, World: 2, Rank: 1, Batch: 5, NoShuffle: true})
	s4.SetEpoch(3)
	if got := s4.Indices(); !slices.Equal(got, []int{1, 3, 5, 7, 9}) {
		t.Fatalf("NoShuffle rank 1: %v", got)
	}
}

func TestSamplerConfigErrors(t *testing.T) {
	for _, c := range []SamplerConfig{
		{N: 0, Batch: 1},
		{N: 10, Batch: 0},
		{N: 10, Batch: 1, World: 2, Rank: 2},
		{N: 10, Batch: 1, Rank: -1},
		{N: 10, Batch: 6, World: 2, DropLast: true},
	} {
		if _, err := NewDistributedSampler(c); err == nil {
			t.Errorf("%+v accepted", c)
		}
	}
	s, _ := NewDistributedSampler(SamplerConfig{N: 10, Batch: 5})
	if _, err := s.BatchIndices(2); err == nil {
		t.Error("batch out of range accepted")
	}
	syn, _ := NewSynthetic(11, []int{1, 2, 2}, 3, 1)
	if _, _, err := s.Batch(syn, 0); err == nil {
		t.Error("source of another size accepted")
	}
}

func TestSyntheticDeterministic(t *testing.T) {
	a, err := NewSynthetic(1000, []int{1, 28, 28}, 10, 4)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := NewSynthetic(1000, []int{1, 28, 28}, 10, 4)
	xa, la, err := a.Gather([]int{5, 999, 0})
	if err != nil {
		t.Fatal(err)
	}
	xb, lb, _ := b.Gather([]int{5, 999, 0})
	if !slices.Equal(xa.Data, xb.Data) || !slices.Equal(la, lb) {
		t.Fatal("same seed gave different samples")
	}
	if !slices.Equal(xa.Shape, []int{3, 1, 28, 28}) {
		t.Fatalf("shape %v", xa.Shape)
	}
	// Sample identity does not depend on the batch it is gathered in.
	x5, l5, _ := a.Gather([]int{5})
	if !slices.Equal(x5.Data, xa.Data[:784]) || l5[0] != la[0] {
		t.Fatal("sample 5 differs between batches")
	}
	count := make([]int, 10)
	idx := make([]int, 1000)
	for i := range idx {
		idx[i] = i
	}
	x, labels, _ := a.Gather(idx)
	for _, l := range labels {
		count[l]++
	}
	for c, n := range count {
		if n < 50 {
			t.Errorf("class %d has %d of 1000 samples", c, n)
		}
	}
	for _, v := range x.Data {
		if v < 0 || v > 1 {
			t.Fatalf("pixel %g outside [0, 1]", v)
		}
	}
	if _, _, err := a.Gather([]int{1000}); err == nil {
		t.Fatal("index out of range accepted")
	}
}

func BenchmarkSyntheticGather64(b *testing.B) {
	s, _ := NewSynthetic(1<<20, []int{1, 28, 28}, 10, 1)
	idx := make([]int, 64)
	for i := 0; i < b.N; i++ {
		for j := range idx {
			idx[j] = (i*64 + j) % s.Len()
		}
		s.Gather(idx)
	}
}
