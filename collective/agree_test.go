package collective

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
)

// message returns rank r's test message of length l.
func message(r, l int) []byte {
	b := make([]byte, l)
	rng := rand.New(rand.NewPCG(uint64(r), uint64(l)))
	for i := range b {
		b[i] = byte(rng.Uint32())
	}
	return b
}

func TestBroadcastBytes(t *testing.T) {
	noLeaks(t)
	for _, f := range fabrics() {
		for _, n := range fabricSizes(f, []int{1, 2, 3, 4}) {
			t.Run(name(f, n), func(t *testing.T) {
				// Small chunks: a message of several chunks is forwarded chunk by chunk.
				j := startJob(t, f, n, Options{ChunkBytes: 1 << 10})
				for _, l := range []int{0, 1, 1000, 1 << 10, 5000} {
					for root := range n {
						want := message(root, l)
						got := make([][]byte, n)
						j.mustEach(func(r int, g *Group) error {
							var mine []byte
							if r == root {
								mine = clone8(want)
							}
							b, err := g.BroadcastBytes(ctxT(t), mine, root)
							got[r] = b
							return err
						})
						for r, b := range got {
							if !bytes.Equal(b, want) {
								t.Fatalf("len %d root %d: rank %d got %d bytes, want %d", l, root, r, len(b), len(want))
							}
						}
					}
				}
			})
		}
	}
}

func clone8(b []byte) []byte { return append([]byte(nil), b...) }

func TestAllGatherBytes(t *testing.T) {
	noLeaks(t)
	for _, f := range fabrics() {
		for _, n := range fabricSizes(f, []int{1, 2, 3, 5}) {
			t.Run(name(f, n), func(t *testing.T) {
				j := startJob(t, f, n, Options{})
				for round, lens := range [][]int{{0}, {3, 0, 70000, 1, 9}, {100, 100, 100, 100, 100}} {
					size := func(r int) int { return lens[r%len(lens)] }
					got := make([][][]byte, n)
					j.mustEach(func(r int, g *Group) error {
						var err error
						got[r], err = g.AllGatherBytes(ctxT(t), message(r, size(r)))
						return err
					})
					for r := range n {
						for q := range n {
							if !bytes.Equal(got[r][q], message(q, size(q))) {
								t.Fatalf("round %d: rank %d holds %d bytes for rank %d, want %d", round, r, len(got[r][q]), q, size(q))
							}
						}
					}
				}
				// The byte ops are ordered with the others: a float op after them still works.
				j.mustEach(func(r int, g *Group) error { return g.AllReduce(ctxT(t), make([]float32, 10), Sum) })
			})
		}
	}
}

var errLocal = errors.New("checkpoint step-7.ckpt: checksum mismatch")

func TestAgree(t *testing.T) {
	noLeaks(t)
	for _, f := range fabrics() {
		for _, n := range fabricSizes(f, []int{1, 2, 4}) {
			t.Run(name(f, n), func(t *testing.T) {
				j := startJob(t, f, n, Options{})
				// Everyone succeeds: everyone gets every value.
				vals := make([][][]byte, n)
				j.mustEach(func(r int, g *Group) error {
					var err error
					vals[r], err = g.Agree(ctxT(t), []byte(fmt.Sprintf("rank %d", r)), nil)
					return err
				})
				for r := range n {
					for q := range n {
						if string(vals[r][q]) != fmt.Sprintf("rank %d", q) {
							t.Fatalf("rank %d holds %q for rank %d", r, vals[r][q], q)
						}
					}
				}
				if n == 1 {
					return
				}
				// Ranks 1 and n-1 fail: everyone learns both, and the group stays usable.
				bad := map[int]bool{1: true, n - 1: true}
				errs := j.each(func(r int, g *Group) error {
					var err error
					if bad[r] {
						err = fmt.Errorf("rank %d: %w", r, errLocal)
					}
					return g.AgreeErr(ctxT(t), err)
				})
				for r, err := range errs {
					var ae *AgreementError
					if !errors.As(err, &ae) {
						t.Fatalf("rank %d: %v is not an *AgreementError", r, err)
					}
					for b := range bad {
						if !strings.Contains(err.Error(), fmt.Sprintf("rank %d: rank %d: %v", b, b, errLocal)) {
							t.Fatalf("rank %d: %q does not name rank %d's failure", r, err, b)
						}
					}
					if errors.Is(err, errLocal) != bad[r] {
						t.Fatalf("rank %d: errors.Is(err, its own cause) = %v", r, !bad[r])
					}
					if len(ae.FailedRanks()) != len(bad) {
						t.Fatalf("rank %d: FailedRanks = %v", r, ae.FailedRanks())
					}
				}
				j.mustEach(func(r int, g *Group) error { return g.AgreeErr(ctxT(t), nil) })
			})
		}
	}
}

// TestBytesOpMismatch: one rank calling AllGatherBytes where the others call BroadcastBytes
// fails every rank with a MismatchError, not a garbled length frame.
func TestBytesOpMismatch(t *testing.T) {
	noLeaks(t)
	for _, f := range fabrics() {
		t.Run(f.name, func(t *testing.T) {
			j := startJob(t, f, 4, Options{})
			errs := j.each(func(r int, g *Group) error {
				if r == 2 {
					_, err := g.AllGatherBytes(ctxT(t), []byte("x"))
					return err
				}
				_, err := g.BroadcastBytes(ctxT(t), []byte("hello"), 0)
				return err
			})
			checkAllFail(t, f, errs, "op mismatch: rank ", "BroadcastBytes(root=0)", "AllGatherBytes()")
		})
	}
}
