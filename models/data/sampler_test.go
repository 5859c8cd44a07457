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

// TestSamplerReshardFromPosition: 3 global batches on 4 ranks × 4, then the rest of the
// epoch on 3 ranks × 5 from position 48 (SetEpochFrom): every sample of the epoch is trained
// exactly once, except the padding of the last global batch, which repeats the epoch's first
// samples (as without resharding). The resumed batches are those of one rank with batch 15
// started at the same position: the order depends on positions, not on the split.
func TestSamplerReshardFromPosition(t *testing.T) {
	const n, epoch = 100, 2
	before := samplers(t, SamplerConfig{N: n, World: 4, Batch: 4, Seed: 7})
	count := map[int]int{}
	var seenOrder []int
	for k := 0; k < 3; k++ {
		for _, s := range before {
			s.SetEpoch(epoch)
			idx, err := s.BatchIndices(k)
			if err != nil {
				t.Fatal(err)
			}
			for _, i := range idx {
				count[i]++
			}
		}
	}
	after := samplers(t, SamplerConfig{N: n, World: 3, Batch: 5, Seed: 7})
	one := samplers(t, SamplerConfig{N: n, World: 1, Batch: 15, Seed: 7})[0]
	if err := one.SetEpochFrom(epoch, 48); err != nil {
		t.Fatal(err)
	}
	for _, s := range after {
		if err := s.SetEpochFrom(epoch, 48); err != nil {
			t.Fatal(err)
		}
		if s.NumBatches() != 4 || s.Start() != 48 { // 52 samples left, 15 per global batch
			t.Fatalf("NumBatches %d, Start %d", s.NumBatches(), s.Start())
		}
	}
	for k := 0; k < 4; k++ {
		var union []int
		for _, s := range after {
			idx, _ := s.BatchIndices(k)
			union = append(union, idx...)
		}
		want, _ := one.BatchIndices(k)
		if !slices.Equal(sorted(union), sorted(want)) {
			t.Fatalf("batch %d after resharding: %v, one rank: %v", k, union, want)
		}
		for _, i := range union {
			count[i]++
		}
		seenOrder = append(seenOrder, want...)
	}
	// The 60 samples from position 48 are 52 new ones and 8 of padding.
	first := samplers(t, SamplerConfig{N: n, World: 1, Batch: n, Seed: 7})[0]
	first.SetEpoch(epoch)
	perm, _ := first.BatchIndices(0)
	if !slices.Equal(seenOrder[:52], perm[48:]) || !slices.Equal(seenOrder[52:], perm[:8]) {
		t.Fatalf("order after position 48 is not the permutation's: %v", seenOrder)
	}
	for i := 0; i < n; i++ {
		want := 1
		if slices.Contains(perm[:8], i) {
			want = 2 // the padding
		}
		if count[i] != want {
			t.Errorf("sample %d trained %d times in the epoch, want %d", i, count[i], want)
		}
	}
	if err := one.SetEpochFrom(epoch, n+1); err == nil {
		t.Error("start past N accepted")
	}
	if err := one.SetEpochFrom(epoch, n); err != nil || one.NumBatches() != 0 {
		t.Errorf("start N: %v, %d batches", err, one.NumBatches())
	}
}

func sorted(s []int) []int {
	c := slices.Clone(s)
	slices.Sort(c)
	return c
}
