package collective

import (
	"fmt"
	"slices"
	"sync"
	"testing"
)

// allReduceCheck runs a Sum AllReduce on the given members (group ranks of their own group)
// with fresh inputs and checks the result against the reference.
func subgroupSum(t *testing.T, label string, members []int, groups map[int]*Group, seed uint64, count int) error {
	inputs := make([][]float32, len(members))
	for i, w := range members {
		inputs[i] = randomInput(seed, w, count)
	}
	ref, abs := reference(inputs, Sum)
	var wg sync.WaitGroup
	errs := make([]error, len(members))
	for i, w := range members {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := clone(inputs[i])
			if err := groups[w].AllReduce(ctxT(t), buf, Sum); err != nil {
				errs[i] = fmt.Errorf("%s rank %d: %w", label, w, err)
				return
			}
			for k := range buf {
				if d := float64(buf[k]) - ref[k]; d > 1e-5*abs[k] || d < -1e-5*abs[k] {
					errs[i] = fmt.Errorf("%s rank %d: element %d = %g, want %g", label, w, k, buf[k], ref[k])
					return
				}
			}
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// TestSubgroups: disjoint subgroups running at once, overlapping subgroups used concurrently
// by their common members, two subgroups of the same ranks, and a non-sorted member order.
func TestSubgroups(t *testing.T) {
	noLeaks(t)
	for _, f := range fabrics() {
		t.Run(f.name, func(t *testing.T) {
			const n = 5
			j := startJob(t, f, n, chunkOpts)
			specs := [][]int{
				{0, 1, 2}, {3, 4}, // disjoint
				{1, 2, 3}, // overlaps both
				{3, 4},    // same ranks as an earlier one: must get its own channels
				{4, 0, 2}, // any order
				{0, 1, 2, 3, 4},
			}
			// subs[s][worldRank] is member worldRank's handle on subgroup s.
			subs := make([]map[int]*Group, len(specs))
			for s := range specs {
				subs[s] = map[int]*Group{}
			}
			var mu sync.Mutex
			j.mustEach(func(r int, g *Group) error {
				for s, spec := range specs {
					if !slices.Contains(spec, r) {
						continue
					}
					sg, err := g.Subgroup(ctxT(t), spec)
					if err != nil {
						return err
					}
					if sg.Size() != len(spec) || !slices.Equal(sg.Ranks(), spec) || spec[sg.Rank()] != r {
						return fmt.Errorf("subgroup %v: Size %d, Ranks %v, Rank %d", spec, sg.Size(), sg.Ranks(), sg.Rank())
					}
					mu.Lock()
					subs[s][r] = sg
					mu.Unlock()
				}
				return nil
			})
			// Every subgroup, and the world group, runs ops at the same time, several rounds.
			var wg sync.WaitGroup
			errs := make(chan error, 100)
			for s, spec := range specs {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for round := range 3 {
						if err := subgroupSum(t, fmt.Sprintf("subgroup %v", spec), spec, subs[s], uint64(s*10+round), 5000+s); err != nil {
							errs <- err
							return
						}
					}
				}()
			}
			world := map[int]*Group{}
			for r, g := range j.groups {
				world[r] = g
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := subgroupSum(t, "world", []int{0, 1, 2, 3, 4}, world, 99, 7000); err != nil {
					errs <- err
				}
			}()
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Fatal(err)
			}
			// Subgroup of a subgroup uses the parent's ranks.
			j.mustEach(func(r int, g *Group) error {
				if r != 1 && r != 2 {
					return nil
				}
				sub := subs[2][r] // {1, 2, 3}: world 1, 2 are its ranks 0, 1
				ss, err := sub.Subgroup(ctxT(t), []int{0, 1})
				if err != nil {
					return err
				}
				if !slices.Equal(ss.Ranks(), []int{1, 2}) {
					return fmt.Errorf("nested subgroup Ranks() = %v, want [1 2]", ss.Ranks())
				}
				buf := []float32{float32(r)}
				if err := ss.AllReduce(ctxT(t), buf, Sum); err != nil {
					return err
				}
				if buf[0] != 3 {
					return fmt.Errorf("nested subgroup sum = %g, want 3", buf[0])
				}
				return nil
			})
		})
	}
}

func TestSubgroupBadRanks(t *testing.T) {
	noLeaks(t)
	j := startJob(t, memFabric, 3, Options{})
	g := j.groups[0]
	for _, bad := range [][]int{nil, {0, 0}, {0, 3}, {1, 2}, {-1, 0}} {
		if _, err := g.Subgroup(ctxT(t), bad); err == nil {
			t.Fatalf("Subgroup(%v) accepted", bad)
		}
	}
}
