package collective

import "context"

// Work is the handle of an op issued asynchronously. The op's buffer belongs to the group
// until Done is closed: do not read or write it before.
type Work struct {
	g          *Group
	ctx        context.Context
	h          header
	buf        []float32 // the caller's buffer when the dtype is fp32 (fp16 and the algorithms of algo.go use it)
	raw        []byte    // the caller's buffer (the send side of Gather, Scatter, AllToAll[V]) as bytes, any dtype; nil means buf's bytes
	out        []byte    // Gather, Scatter, AllToAll[V]: the receive buffer as bytes
	counts     [2][]int  // AllToAllV: elements sent to and received from each member, by group rank
	residual   []float32 // error feedback (Feedback), or nil
	data       []byte    // BroadcastBytes: the root's message; the received one on the others
	parts      [][]byte  // AllGatherBytes: every member's message, by group rank
	done       chan struct{}
	err        error
	finished   bool        // guarded by g.mu: the op completed, a late cancellation is moot
	stopCancel func() bool // stops the context watcher registered at issue
	queuedAt   int64       // Options.Timeline's clock at issue (0 without a timeline)
}

// bytes returns the op's buffer as bytes, whatever its dtype.
func (w *Work) bytes() []byte {
	if w.raw == nil {
		return f32Bytes(w.buf)
	}
	return w.raw
}

// failedWork returns a Work that failed before being issued.
func failedWork(err error) *Work {
	w := &Work{done: make(chan struct{})}
	w.complete(err)
	return w
}

func (w *Work) complete(err error) {
	w.err = err
	close(w.done)
}

// finish completes an issued op.
func (w *Work) finish(err error) {
	w.g.mu.Lock()
	w.finished = true
	w.g.mu.Unlock()
	if w.stopCancel != nil {
		w.stopCancel()
	}
	w.complete(err)
}

// Wait blocks until the op completes and returns its error, or returns ctx's error if ctx
// ends first. Only the waiting stops then: the op itself is governed by the context it was
// issued with.
func (w *Work) Wait(ctx context.Context) error {
	select {
	case <-w.done:
		return w.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// wait blocks until the op completes. Synchronous calls use it: their buffer must not be
// handed back to the caller while the op may still touch it, and cancellation of their
// context fails the op promptly (see Group), so this cannot hang.
func (w *Work) wait() error {
	<-w.done
	return w.err
}

// Done is closed when the op has completed, successfully or not.
func (w *Work) Done() <-chan struct{} { return w.done }

// Err returns the op's error once Done is closed, and nil before.
func (w *Work) Err() error {
	select {
	case <-w.done:
		return w.err
	default:
		return nil
	}
}
