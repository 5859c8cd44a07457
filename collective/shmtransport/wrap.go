package shmtransport

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/ringtrain/ringtrain/collective/transport"
)

// ErrShmUnavailable is wrapped by the error a link returns when ModeShm was asked for (by
// either end) and the two ranks cannot share memory; the error names the peer and the reason.
var ErrShmUnavailable = errors.New("shmtransport: shared memory unavailable")

// Transport is a transport.Transport that moves the data of links between ranks on the same
// host through shared memory and leaves the other links on the base transport. Rank, Size,
// Done and Err are the base transport's.
type Transport struct {
	base transport.Transport
	opts Options
	cfg  linkConfig
	self identity

	mu     sync.Mutex
	links  map[linkKey]*linkEntry
	shm    []*shmLink
	closed bool
	warned map[int]bool // peers already warned about (warnFallback)

	life      context.Context // ends at Close: bounds the link setups running in the background
	endLife   context.CancelFunc
	setups    sync.WaitGroup
	stop      chan struct{}
	watchDone chan struct{}
	closeOnce sync.Once
	closeErr  error
}

type linkKey struct {
	peer    int
	channel string
}

func (k linkKey) PeerOf() int { return k.peer }

type linkEntry struct {
	ready chan struct{}   // closed when link/kind/err are set
	lazy  *transport.Lazy // what Link hands out
	link  transport.Link
	kind  string
	err   error
}

// SettledKind implements transport.Settled.
func (e *linkEntry) SettledKind() (string, bool) {
	select {
	case <-e.ready:
		return e.kind, e.err == nil
	default:
		return "", false
	}
}

var _ transport.Transport = (*Transport)(nil)

// Wrap returns a transport whose links to peers on the same host use shared memory (as
// opts.Mode and opts.PeerMode allow) and whose other links are base's. The returned transport
// owns base: closing it closes base. Unless opts.KeepStale is set, Wrap first removes stale
// files left in opts.Dir by killed jobs (see CleanStale).
//
// Off Linux, ModeAuto keeps every link on base and ModeShm is an error.
func Wrap(base transport.Transport, opts Options) (*Transport, error) {
	if base == nil {
		return nil, errors.New("shmtransport: Wrap needs a base transport")
	}
	o, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	if o.Mode == ModeShm && !shmSupported {
		return nil, fmt.Errorf("%w: mode shm needs Linux", ErrShmUnavailable)
	}
	t := &Transport{
		base: base,
		opts: o,
		cfg: linkConfig{
			futex:   o.SleepOnFutex,
			wait:    o.Wait,
			spin:    o.SpinTime,
			poll:    o.LivenessInterval,
			publish: uint64(o.PublishBytes),
		},
		links:     make(map[linkKey]*linkEntry),
		stop:      make(chan struct{}),
		watchDone: make(chan struct{}),
	}
	t.cfg.abortCause = t.abortCause
	if shmSupported {
		id, err := localIdentity(o.Dir)
		if err != nil {
			if o.Mode == ModeShm {
				return nil, fmt.Errorf("%w: %v", ErrShmUnavailable, err)
			}
			id = identity{} // auto: every link stays on the base transport
		}
		t.self = id
		if !o.KeepStale {
			CleanStaleIn(o.Dir) // best effort: a failure here must not stop the job
		}
	}
	t.life, t.endLife = context.WithCancel(context.Background())
	go t.watchBase()
	return t, nil
}

// Base returns the wrapped transport.
func (t *Transport) Base() transport.Transport { return t.base }

// Rank is this process's world rank.
func (t *Transport) Rank() int { return t.base.Rank() }

// Size is the number of ranks in the job.
func (t *Transport) Size() int { return t.base.Size() }

// Done is closed once the base transport has failed or been closed.
func (t *Transport) Done() <-chan struct{} { return t.base.Done() }

// Err says why Done was closed.
func (t *Transport) Err() error { return t.base.Err() }

// modeFor is the mode this rank uses for links to peer.
func (t *Transport) modeFor(peer int) Mode {
	if t.opts.PeerMode != nil {
		if m := t.opts.PeerMode(peer); m >= ModeAuto && m <= ModeShm {
			return m
		}
	}
	return t.opts.Mode
}

// Link returns this rank's end of channel to peer: a shared-memory link when both ranks
// share a host and their modes allow it, otherwise the base transport's link. The choice is
// made once per (peer, channel) by a short exchange over the base link, so both ends always
// agree; asking again returns the same link.
//
// Link does not wait for the peer: the exchange runs on its own, bound to the transport's
// life, and the link's first Read or Write waits for it (within the link's deadline). So a
// cancelled caller never leaves the two ends out of step, and code that opens links one after
// another cannot deadlock on the exchange. Link returns the exchange's error if it is already
// known; otherwise it surfaces on the link.
func (t *Transport) Link(ctx context.Context, peer int, channel string) (transport.Link, error) {
	if peer == t.Rank() {
		return t.base.Link(ctx, peer, channel) // let the base transport say what it thinks
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("shmtransport: link to rank %d channel %q: %w", peer, channel, err)
	}
	key := linkKey{peer, channel}
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return nil, transport.ErrClosed
	}
	e, ok := t.links[key]
	if !ok {
		e = &linkEntry{ready: make(chan struct{})}
		e.lazy = transport.NewLazy(peer)
		t.links[key] = e
		t.setups.Add(1)
		go t.establish(e, peer, channel)
	}
	t.mu.Unlock()
	select {
	case <-e.ready:
		if e.err != nil {
			return nil, e.err
		}
	default:
	}
	return e.lazy, nil
}

// establish runs the setup of one link and publishes its outcome in e.
func (t *Transport) establish(e *linkEntry, peer int, channel string) {
	defer t.setups.Done()
	link, kind, err := t.setup(t.life, peer, channel)
	t.mu.Lock()
	if err == nil && t.closed {
		link.Close()
		link, err = nil, transport.ErrClosed
	}
	if sl, ok := link.(*shmLink); ok && err == nil {
		t.shm = append(t.shm, sl)
	} else if err == nil {
		link = wrapBaseForRace(link) // only under -race: see race_on.go
	}
	e.link, e.kind, e.err = link, kind, err
	e.lazy.Settle(link, err)
	close(e.ready)
	t.mu.Unlock()
}

// Kind says which transport the links to peer use: "shm", the base's name (Options.BaseKind,
// "quic" by default), both joined by "+" when channels differ, or "" before any link to peer
// exists. Benchmarks report it per ring edge.
func (t *Transport) Kind(peer int) string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return transport.PeerKind(t.links, peer)
}

// Kinds returns Kind for every peer this rank has a set-up link to.
func (t *Transport) Kinds() map[int]string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return transport.PeerKinds(t.links)
}

// Abort fails every shared-memory link with cause, tells the peers through the mappings, and
// aborts the base transport (which tells every connected peer).
func (t *Transport) Abort(cause error) {
	t.mu.Lock()
	links := append([]*shmLink(nil), t.shm...)
	t.mu.Unlock()
	for _, l := range links {
		l.abort(cause, t.Rank())
	}
	t.base.Abort(cause)
}

var _ transport.Shutdowner = (*Transport)(nil)

// Shutdown waits until every peer has read every byte this rank wrote so far, on every
// shared-memory link (or has closed its end in order) and then, if the base transport is a
// transport.Shutdowner, on the base transport's links (those that stayed there and the
// setup links under the shared-memory ones), or until ctx ends. It is the flush half of an
// orderly end (NCCL's Finalize): Shutdown, then Close, and no data of a completed exchange
// is lost. It closes nothing. It returns nil when everything was consumed, ErrClosed after
// Close, a link's failure (wrapping a *transport.PeerError) if one failed, and an error
// wrapping context.Cause(ctx) if ctx ended first.
func (t *Transport) Shutdown(ctx context.Context) error {
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return transport.ErrClosed
	}
	links := append([]*shmLink(nil), t.shm...)
	t.mu.Unlock()
	var errs []error
	for _, l := range links {
		errs = append(errs, l.drain(ctx))
	}
	if sd, ok := t.base.(transport.Shutdowner); ok {
		errs = append(errs, sd.Shutdown(ctx))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("shmtransport: rank %d: Shutdown: %w", t.Rank(), err)
	}
	return nil
}

// Close closes every shared-memory link (the peers' reads see io.EOF), then the base
// transport, and stops the goroutines this transport started.
func (t *Transport) Close() error {
	t.closeOnce.Do(func() {
		t.mu.Lock()
		t.closed = true
		t.mu.Unlock()
		t.endLife() // setups in flight give up (their base links get an expired deadline)
		t.setups.Wait()
		t.mu.Lock()
		links := append([]*shmLink(nil), t.shm...)
		t.mu.Unlock()
		// Shared-memory links first, so that the peers see an orderly end (flags in the
		// mapping) before the base links they watch go away; marked first, so that a peer
		// still reading learns that this rank left (not merely closed the link).
		for _, l := range links {
			l.markTransportClosed()
		}
		var errs []error
		for _, l := range links {
			errs = append(errs, l.Close())
		}
		errs = append(errs, t.base.Close())
		close(t.stop)
		<-t.watchDone
		t.closeErr = errors.Join(errs...)
	})
	return t.closeErr
}

// watchBase fails every shared-memory link once the base transport fails: the base transport
// watches the peers' health (heartbeats, connection loss) and its error names the culprit.
func (t *Transport) watchBase() {
	defer close(t.watchDone)
	select {
	case <-t.stop:
		return
	case <-t.base.Done():
	}
	err := t.base.Err()
	if err == nil {
		err = transport.ErrClosed
	}
	t.mu.Lock()
	links := append([]*shmLink(nil), t.shm...)
	t.mu.Unlock()
	for _, l := range links {
		if l.enter() {
			if !l.peerClosed() {
				l.fail(err)
			}
			l.leave()
		}
	}
}

// setup obtains the base link for (peer, channel) and runs the handshake over it, bounded by
// ctx.
func (t *Transport) setup(ctx context.Context, peer int, channel string) (transport.Link, string, error) {
	bl, err := t.base.Link(ctx, peer, channel)
	if err != nil {
		return nil, "", err
	}
	if dl, ok := ctx.Deadline(); ok {
		bl.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { bl.SetDeadline(time.Unix(1, 0)) })
	link, kind, err := t.handshake(bl, peer)
	if !stop() {
		// ctx ended during the handshake; the deadline it set may land at any moment, so
		// the link cannot be handed out.
		if err == nil {
			link.Close()
			if link != bl {
				bl.Close()
			}
		}
		err = ctx.Err()
	}
	if err != nil {
		bl.Close()
		// A setup that fails while the job is being aborted (the peer gave up its side: the
		// file is gone, its sockets closed) is a symptom: report the base transport's
		// failure, which names the culprit and the reason, if it comes.
		if cause := t.abortCause(); cause != nil {
			err = cause
		}
		return nil, "", fmt.Errorf("shmtransport: link to rank %d channel %q: %w", peer, channel, err)
	}
	bl.SetDeadline(time.Time{})
	return link, kind, nil
}

// abortCauseGrace bounds how long a link that found a peer's abort word waits for the base
// transport's notice with the reason (it normally follows within milliseconds; a peer killed
// right after aborting sends none).
const abortCauseGrace = time.Second

// abortCause waits up to abortCauseGrace for the base transport to fail and returns its
// error (which names the culprit and the reason), or nil.
func (t *Transport) abortCause() error {
	timer := time.NewTimer(abortCauseGrace)
	defer timer.Stop()
	select {
	case <-t.base.Done():
		return t.base.Err()
	case <-t.stop:
	case <-timer.C:
	}
	return nil
}
