package shmtransport

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/ringtrain/ringtrain/collective/transport"
	"github.com/ringtrain/ringtrain/collective/transport/memtransport"
)

// shmDir makes a private directory on /dev/shm (the real tmpfs) for one test, so that the
// test can check exactly which files exist, and removes it afterwards.
func shmDir(t testing.TB) string {
	t.Helper()
	dir, err := os.MkdirTemp(DefaultDir, "rtshm-test-")
	if err != nil {
		t.Skipf("no usable %s: %v", DefaultDir, err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// wrapAll wraps the in-process transports of an n-rank job; opts(i) gives rank i's options
// (Dir defaults to a fresh directory shared by all ranks).
func wrapAll(t testing.TB, n int, window int, opts func(rank int) Options) ([]*Transport, []*memtransport.Transport) {
	t.Helper()
	dir := shmDir(t)
	base := memtransport.NewWithOptions(n, memtransport.Options{Window: window})
	out := make([]*Transport, n)
	for i := range base {
		o := Options{}
		if opts != nil {
			o = opts(i)
		}
		if o.Dir == "" {
			o.Dir = dir
		}
		w, err := Wrap(base[i], o)
		if err != nil {
			t.Fatalf("Wrap rank %d: %v", i, err)
		}
		out[i] = w
	}
	t.Cleanup(func() {
		for _, w := range out {
			w.Close()
		}
	})
	return out, base
}

// linkPair opens channel ch between ranks a and b of ts concurrently (both sides must take
// part in the handshake) and returns a's end and b's end.
func linkPair(t testing.TB, ts []*Transport, a, b int, ch string) (transport.Link, transport.Link) {
	t.Helper()
	la, lb, err := tryLinkPair(ts, a, b, ch)
	if err != nil {
		t.Fatal(err)
	}
	return la, lb
}

func tryLinkPair(ts []*Transport, a, b int, ch string) (transport.Link, transport.Link, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	type res struct {
		l   transport.Link
		err error
	}
	rb := make(chan res, 1)
	go func() {
		l, err := ts[b].Link(ctx, a, ch)
		if err == nil {
			l, err = settled(l)
		}
		rb <- res{l, err}
	}()
	la, errA := ts[a].Link(ctx, b, ch)
	if errA == nil {
		la, errA = settled(la)
	}
	r := <-rb
	if errA != nil {
		return la, r.l, errA
	}
	return la, r.l, r.err
}

// settled waits (at most 20 s) for the setup of a link returned by Link and returns the
// link it settled on: a *shmLink or the base link.
func settled(l transport.Link) (transport.Link, error) {
	z, ok := l.(*transport.Lazy)
	if !ok {
		return l, nil
	}
	z.SetDeadline(time.Now().Add(20 * time.Second))
	r, err := z.Wait()
	z.SetDeadline(time.Time{})
	return r, err
}

// dirEntries lists the names in dir.
func dirEntries(t testing.TB, dir string) []string {
	t.Helper()
	es, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range es {
		names = append(names, e.Name())
	}
	return names
}
