package collective

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

// TestSendRecvOutOfOrderTags: rank 0 sends tag 6 before tag 5; rank 1 receives tag 5 first.
// Several messages per tag arrive in order, and messages bigger than the transport's window
// work when the sender runs in its own goroutine.
func TestSendRecvOutOfOrderTags(t *testing.T) {
	noLeaks(t)
	for _, f := range fabrics() {
		t.Run(f.name, func(t *testing.T) {
			j := startJob(t, f, 3, Options{})
			msg := func(tag, k, n int) []float32 {
				v := make([]float32, n)
				for i := range v {
					v[i] = float32(tag*1000000 + k*1000 + i%1000)
				}
				return v
			}
			j.mustEach(func(r int, g *Group) error {
				ctx := ctxT(t)
				switch r {
				case 0:
					for k := range 3 {
						if err := g.Send(ctx, msg(6, k, 7), 1, 6); err != nil {
							return err
						}
					}
					for k := range 3 {
						if err := g.Send(ctx, msg(5, k, 5), 1, 5); err != nil {
							return err
						}
					}
					// A large message concurrently with a collective on another goroutine.
					errc := make(chan error, 1)
					go func() { errc <- g.Send(ctx, msg(7, 0, 300000), 2, 7) }()
					if err := g.AllReduce(ctx, make([]float32, 1000), Sum); err != nil {
						return err
					}
					return <-errc
				case 1:
					for _, tag := range []int{5, 6} {
						for k := range 3 {
							n := map[int]int{5: 5, 6: 7}[tag]
							buf := make([]float32, n)
							if err := g.Recv(ctx, buf, 0, tag); err != nil {
								return err
							}
							want := msg(tag, k, n)
							for i := range buf {
								if buf[i] != want[i] {
									return fmt.Errorf("tag %d message %d: element %d = %g, want %g", tag, k, i, buf[i], want[i])
								}
							}
						}
					}
					return g.AllReduce(ctx, make([]float32, 1000), Sum)
				default:
					if err := g.AllReduce(ctx, make([]float32, 1000), Sum); err != nil {
						return err
					}
					buf := make([]float32, 300000)
					if err := g.Recv(ctx, buf, 0, 7); err != nil {
						return err
					}
					want := msg(7, 0, 300000)
					for i := range buf {
						if buf[i] != want[i] {
							return fmt.Errorf("large message: element %d = %g, want %g", i, buf[i], want[i])
						}
					}
				}
				return nil
			})
		})
	}
}

// TestRecvSizeMismatch: a Recv whose size differs from the Send fails with a MismatchError
// naming both calls, and the sender's side fails too.
func TestRecvSizeMismatch(t *testing.T) {
	noLeaks(t)
	for _, f := range fabrics() {
		t.Run(f.name, func(t *testing.T) {
			j := startJob(t, f, 2, Options{})
			errs := j.each(func(r int, g *Group) error {
				if r == 0 {
					if err := g.Send(ctxT(t), make([]float32, 12), 1, 5); err != nil {
						return err
					}
					// The receiver aborts: the next op here must fail.
					return g.Barrier(ctxT(t))
				}
				return g.Recv(ctxT(t), make([]float32, 10), 0, 5)
			})
			want := "op mismatch: rank 1 called Recv(peer=0, tag=5, count=10) but rank 0 called Send(peer=1, tag=5, count=12)"
			if errs[1] == nil || !strings.Contains(errs[1].Error(), want) {
				t.Fatalf("receiver: %v; want %q", errs[1], want)
			}
			var me *MismatchError
			if !errors.As(errs[1], &me) {
				t.Fatalf("receiver: %v is not a *MismatchError", errs[1])
			}
			if errs[0] == nil || !strings.Contains(errs[0].Error(), want) {
				t.Fatalf("sender: %v; want its later op to fail with %q", errs[0], want)
			}
		})
	}
}

// TestRecvCancelKeepsLink: a Recv cancelled before any byte arrived returns the context's
// error without failing the group, and the link still works afterwards.
func TestRecvCancelKeepsLink(t *testing.T) {
	noLeaks(t)
	j := startJob(t, memFabric, 2, Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
	defer cancel()
	buf := make([]float32, 4)
	if err := j.groups[1].Recv(ctx, buf, 0, 1); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("cancelled Recv: %v", err)
	}
	if err := j.groups[1].Err(); err != nil {
		t.Fatalf("group failed after a clean cancellation: %v", err)
	}
	j.mustEach(func(r int, g *Group) error {
		if r == 0 {
			return g.Send(ctxT(t), []float32{1, 2, 3, 4}, 1, 1)
		}
		if err := g.Recv(ctxT(t), buf, 0, 1); err != nil {
			return err
		}
		if buf[3] != 4 {
			return fmt.Errorf("got %v", buf)
		}
		return nil
	})
}

func TestSendRecvBadPeer(t *testing.T) {
	j := startJob(t, memFabric, 2, Options{})
	for _, peer := range []int{-1, 2, 0} {
		if err := j.groups[0].Send(ctxT(t), nil, peer, 0); err == nil {
			t.Fatalf("Send to peer %d accepted", peer)
		}
		if err := j.groups[0].Recv(ctxT(t), nil, peer, 0); err == nil {
			t.Fatalf("Recv from peer %d accepted", peer)
		}
	}
}
