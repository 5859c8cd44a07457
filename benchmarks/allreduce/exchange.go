package main

import (
	"context"
	"errors"
	"io"
	"sync"

	"github.com/ringtrain/ringtrain/collective/transport"
)

// exchanger measures the ceiling of a ring over a transport: every rank streams bytes to its
// right neighbour while receiving as many from its left, with no reduction and no copy, in
// writes of the collective's chunk size, on a channel of its own.
type exchanger struct {
	left, right transport.Link
	send, recv  []byte
	chunk       int
}

func newExchanger(ctx context.Context, t transport.Transport, chunk, maxBytes int) (*exchanger, error) {
	n, r := t.Size(), t.Rank()
	x := &exchanger{send: make([]byte, maxBytes), recv: make([]byte, maxBytes), chunk: chunk}
	for i := range x.send {
		x.send[i] = byte(i)
	}
	const ch = "bench.ring-exchange"
	var lerr, rerr error
	var wg sync.WaitGroup
	// Both links at once: a transport may wait for the peer to ask for a link too.
	wg.Go(func() { x.right, rerr = t.Link(ctx, (r+1)%n, ch) })
	if n > 2 {
		wg.Go(func() { x.left, lerr = t.Link(ctx, (r+n-1)%n, ch) })
	}
	wg.Wait()
	if n == 2 {
		x.left = x.right
	}
	if err := errors.Join(rerr, lerr); err != nil {
		x.close()
		return nil, err
	}
	return x, nil
}

// exchange sends size bytes right while receiving size bytes from the left.
func (x *exchanger) exchange(size int) error {
	errc := make(chan error, 1)
	go func() {
		for off := 0; off < size; off += x.chunk {
			if _, err := x.right.Write(x.send[off:min(off+x.chunk, size)]); err != nil {
				errc <- err
				return
			}
		}
		errc <- nil
	}()
	_, rerr := io.ReadFull(x.left, x.recv[:size])
	if rerr != nil {
		// The sender may be blocked on a neighbour that will never read: close to free it.
		x.close()
	}
	return errors.Join(rerr, <-errc)
}

func (x *exchanger) close() {
	if x.right != nil {
		x.right.Close()
	}
	if x.left != nil && x.left != x.right {
		x.left.Close()
	}
}
