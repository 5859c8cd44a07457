package collective

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
)

// startJobWith is startJob with options that may differ by rank: the tests of this file
// give one rank another wire geometry, as a rank started with other flags would have.
func startJobWith(t testing.TB, f fabric, n int, optsFor func(r int) Options) *job {
	t.Helper()
	ts, kill := f.start(t, n)
	j := &job{t: t, ts: ts, groups: make([]*Group, n), kill: kill}
	ctx := ctxT(t)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for r := range n {
		wg.Go(func() { j.groups[r], errs[r] = New(ctx, ts[r], optsFor(r)) })
	}
	wg.Wait()
	for r, err := range errs {
		if err != nil {
			t.Fatalf("New on rank %d: %v", r, err)
		}
	}
	t.Cleanup(j.closeAll)
	return j
}

// sparse returns rank r's input of the chunk-mismatch tests: mostly zeros with a few values,
// the data with which a mis-framed fp16 stream used to decode "successfully" (zeros read as
// a chunk's exponent are a valid exponent).
func sparse(r, count int) []float32 {
	v := make([]float32, count)
	for i := r; i < count; i += 97 {
		v[i] = float32(i%13) - 6
	}
	return v
}

// TestChunkBytesMismatchFP16 is issue 11's reproduction: one rank has another
// Options.ChunkBytes, so its fp16 chunks are framed differently. Before the op header carried
// the chunk size, at 2 ranks one rank returned success while the other failed with
// "unexpected EOF", and at 4 ranks every rank failed with "fp16 chunk exponent ... out of
// range: corrupt stream". Now every rank fails with the MismatchError naming both chunk sizes.
func TestChunkBytesMismatchFP16(t *testing.T) {
	noLeaks(t)
	for _, f := range fabrics() {
		for _, n := range fabricSizes(f, []int{2, 4}) {
			t.Run(name(f, n), func(t *testing.T) {
				odd := n - 1
				j := startJobWith(t, f, n, func(r int) Options {
					if r == odd {
						return Options{ChunkBytes: 4 << 10}
					}
					return Options{ChunkBytes: 16 << 10}
				})
				const count = 40000
				errs := j.each(func(r int, g *Group) error {
					return g.AllReduce(ctxT(t), sparse(r, count), Sum, FP16)
				})
				checkAllFail(t, f, errs, "op mismatch: rank ", "chunk=4096 B", "chunk=16384 B")
				if f.name != "mem" {
					return
				}
				for r, err := range errs {
					var me *MismatchError
					if !errors.As(err, &me) {
						t.Fatalf("rank %d: %v is not a *MismatchError", r, err)
					}
					if me.Rank != odd && me.PeerRank != odd {
						t.Fatalf("rank %d: %v does not name rank %d, the odd one", r, err, odd)
					}
					if !strings.Contains(me.Error(), "chunk") {
						t.Fatalf("rank %d: %v does not name the chunk sizes", r, me)
					}
				}
			})
		}
	}
}

// TestMismatchFailsEveryRank: a mismatch that only ranks far from the root can see used to
// let the Broadcast's root (and ops whose last step did not depend on the detecting rank)
// return success while the others failed. Every rank must fail.
func TestMismatchFailsEveryRank(t *testing.T) {
	noLeaks(t)
	cases := []struct {
		name string
		call func(ctx context.Context, g *Group, r int) error
		want string
	}{
		{"broadcast-count", func(ctx context.Context, g *Group, r int) error {
			count := 64
			if r == 2 {
				count = 63
			}
			return g.Broadcast(ctx, make([]float32, count), 0)
		}, "Broadcast(count=63, fp32, root=0)"},
		{"broadcast-chunk", func(ctx context.Context, g *Group, r int) error {
			return g.Broadcast(ctx, make([]float32, 5000), 0)
		}, "chunk="},
		{"allgather-count", func(ctx context.Context, g *Group, r int) error {
			count := 64
			if r == 2 {
				count = 68
			}
			return g.AllGather(ctx, make([]float32, count))
		}, "AllGather(count=68, fp32)"},
	}
	for _, f := range fabrics() {
		for _, c := range cases {
			t.Run(f.name+"/"+c.name, func(t *testing.T) {
				j := startJobWith(t, f, 4, func(r int) Options {
					if c.name == "broadcast-chunk" && r == 2 {
						return Options{ChunkBytes: 1 << 10}
					}
					return Options{ChunkBytes: 4 << 10}
				})
				errs := j.each(func(r int, g *Group) error { return c.call(ctxT(t), g, r) })
				checkAllFail(t, f, errs, "op mismatch: rank ", c.want)
			})
		}
	}
}
