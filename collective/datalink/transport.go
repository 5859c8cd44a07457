package datalink

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/ringtrain/ringtrain/collective/transport"
)

// Transport is a transport.Transport whose links between ranks move their bytes over TCP
// (TLS 1.3, or plaintext after an authenticated handshake) while the base transport (QUIC)
// keeps forming the job, authenticating the ranks, carrying each link's setup and control
// messages, and watching the peers' health. Rank, Size, Done and Err are the base's.
type Transport struct {
	base  transport.Transport
	opts  Options
	id    Identity
	token string
	log   *slog.Logger

	ln       net.Listener // nil when nothing accepts (ModeQUIC, or the listen failed)
	lnAddr   string
	dialFrom net.Addr // local address dials bind, or nil

	mu      sync.Mutex
	links   map[linkKey]*entry
	data    []*dataLink
	pending map[[nonceLen]byte]*pending
	logged  map[int]string // kind last logged per peer
	// local marks peers on this host whose links are left to the shared-memory layer
	// above (Options.Shm), so the log does not claim their bytes take the base.
	local  map[int]bool
	closed bool

	life      context.Context // ends at Close
	endLife   context.CancelFunc
	setups    sync.WaitGroup
	wg        sync.WaitGroup
	stop      chan struct{}
	closeOnce sync.Once
	closeErr  error
}

type linkKey struct {
	peer    int
	channel string
}

func (k linkKey) PeerOf() int { return k.peer }

// entry is one (peer, channel) link: being set up, or settled.
type entry struct {
	ready chan struct{} // closed when link/kind/err are set
	lazy  *lazyLink
	link  transport.Link
	kind  string
	err   error
}

// SettledKind implements transport.Settled.
func (e *entry) SettledKind() (string, bool) {
	select {
	case <-e.ready:
		return e.kind, e.err == nil
	default:
		return "", false
	}
}

var _ transport.Transport = (*Transport)(nil)
var _ transport.Shutdowner = (*Transport)(nil)

// Wrap returns a transport whose links take TCP or TLS data links as opts says, set up
// lazily over base's links. The returned transport owns base: closing it closes base.
// Unless opts.Mode is ModeQUIC it listens on a TCP port of opts.ListenHost at once (where
// that fails, links this rank would accept stay on QUIC, with a warning).
func Wrap(base transport.Transport, opts Options) (*Transport, error) {
	if base == nil {
		return nil, errors.New("datalink: Wrap needs a base transport")
	}
	o, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	t := &Transport{
		base:    base,
		opts:    o,
		log:     o.Logger.With("rank", base.Rank()),
		links:   make(map[linkKey]*entry),
		pending: make(map[[nonceLen]byte]*pending),
		logged:  make(map[int]string),
		local:   make(map[int]bool),
		stop:    make(chan struct{}),
	}
	t.id = o.Identity
	if t.id == nil {
		t.id, _ = base.(Identity)
	}
	t.token = o.Token
	if tk, ok := base.(interface{ Token() string }); ok && t.token == "" {
		t.token = tk.Token()
	}
	needTCP := o.Mode != ModeQUIC || o.PeerMode != nil
	if needTCP && base.Size() > 1 {
		switch {
		case t.id == nil:
			return nil, errors.New("datalink: the base transport publishes no identities (Options.Identity)")
		case t.token == "":
			return nil, errors.New("datalink: no job token (Options.Token)")
		}
		if err := t.listen(); err != nil {
			t.log.Warn("datalink: cannot listen for TCP data links; links this rank accepts stay on "+o.BaseKind, "err", err.Error())
		}
	}
	t.life, t.endLife = context.WithCancel(context.Background())
	t.wg.Add(1)
	go t.watchBase()
	if t.ln != nil {
		t.wg.Add(1)
		go t.acceptLoop()
	}
	return t, nil
}

// listen opens the TCP listener on ListenHost, else on the host of this rank's published
// base address.
func (t *Transport) listen() error {
	host := t.opts.ListenHost
	if host == "" {
		h, _, err := net.SplitHostPort(t.id.PeerAddr(t.base.Rank()))
		if err != nil {
			return fmt.Errorf("this rank's published address %q: %w", t.id.PeerAddr(t.base.Rank()), err)
		}
		host = h
	}
	ln, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		return err
	}
	t.ln = ln
	t.lnAddr = ln.Addr().String()
	if ip := net.ParseIP(host); ip != nil && !ip.IsUnspecified() {
		t.dialFrom = &net.TCPAddr{IP: ip}
	}
	return nil
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

// ListenAddr is the TCP address this rank accepts data links on ("" when none).
func (t *Transport) ListenAddr() string { return t.lnAddr }

func (t *Transport) modeFor(peer int) Mode {
	if t.opts.PeerMode != nil {
		if m := t.opts.PeerMode(peer); m >= ModeTLS && m <= ModeQUIC {
			return m
		}
	}
	return t.opts.Mode
}

// Link returns this rank's end of channel to peer. It does not wait for the peer: the setup
// (the exchange over the base link that picks TLS, TCP or the base link, and the TCP
// connections) runs on its own, bound to the transport's life, and the link's first Read or
// Write waits for it within the link's deadline. Asking again returns the same link.
func (t *Transport) Link(ctx context.Context, peer int, channel string) (transport.Link, error) {
	if peer == t.Rank() || peer < 0 || peer >= t.Size() {
		return t.base.Link(ctx, peer, channel) // let the base transport say what it thinks
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("datalink: link to rank %d channel %q: %w", peer, channel, err)
	}
	key := linkKey{peer, channel}
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return nil, transport.ErrClosed
	}
	e, ok := t.links[key]
	if !ok {
		e = &entry{ready: make(chan struct{})}
		e.lazy = newLazyLink(peer, e)
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

func (t *Transport) establish(e *entry, peer int, channel string) {
	defer t.setups.Done()
	link, kind, err := t.setup(t.life, peer, channel)
	t.mu.Lock()
	if err == nil && t.closed {
		link.Close()
		link, err = nil, transport.ErrClosed
	}
	if dl, ok := link.(*dataLink); ok && err == nil {
		t.data = append(t.data, dl)
		dl.start()
	}
	e.link, e.kind, e.err = link, kind, err
	e.lazy.Settle(link, err)
	close(e.ready)
	first := err == nil && t.logged[peer] != kind
	if first {
		t.logged[peer] = kind
	}
	local := t.local[peer]
	t.mu.Unlock()
	if first && local {
		t.log.Info(fmt.Sprintf("datalink: rank %d is on this host: its links are left to the shared-memory layer (the base, %s, carries its setup)", peer, kind), "peer", peer)
	} else if first {
		attrs := []any{"peer", peer, "link", kind}
		if dl, ok := link.(*dataLink); ok {
			attrs = append(attrs, "streams", len(dl.conns), "local", dl.conns[0].LocalAddr().String(), "remote", dl.conns[0].RemoteAddr().String())
		}
		t.log.Info(fmt.Sprintf("datalink: links to rank %d use %s", peer, kind), attrs...)
	}
}

// Kind says what carries the links to peer: "tls", "tcp", the base's name ("quic"; also
// for same-host links left to a shared-memory layer above), several joined by "+" when
// channels differ, or "" before any link to peer is set up.
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

// Abort fails every data link with cause and aborts the base transport, which tells every
// connected peer.
func (t *Transport) Abort(cause error) {
	t.base.Abort(cause)
	t.failLinks(t.base.Err())
}

// Shutdown waits until every peer has read every byte this rank wrote so far on every data
// link (or closed its end in order), then drains the base transport if it can, or until ctx
// ends. It closes nothing.
func (t *Transport) Shutdown(ctx context.Context) error {
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return transport.ErrClosed
	}
	links := append([]*dataLink(nil), t.data...)
	t.mu.Unlock()
	var errs []error
	for _, l := range links {
		errs = append(errs, l.drain(ctx))
	}
	if sd, ok := t.base.(transport.Shutdowner); ok {
		errs = append(errs, sd.Shutdown(ctx))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("datalink: rank %d: Shutdown: %w", t.Rank(), err)
	}
	return nil
}

// Close closes every data link (peers see an orderly end), the listener, then the base.
func (t *Transport) Close() error {
	t.closeOnce.Do(func() {
		t.mu.Lock()
		t.closed = true
		t.mu.Unlock()
		t.endLife()
		if t.ln != nil {
			t.ln.Close()
		}
		t.setups.Wait()
		t.mu.Lock()
		links := append([]*dataLink(nil), t.data...)
		for n, p := range t.pending {
			p.closeConns()
			delete(t.pending, n)
		}
		t.mu.Unlock()
		var errs []error
		for _, l := range links {
			errs = append(errs, l.Close())
		}
		errs = append(errs, t.base.Close())
		close(t.stop)
		t.wg.Wait()
		t.closeErr = errors.Join(errs...)
	})
	return t.closeErr
}

// watchBase fails every data link once the base transport fails: the base watches the
// peers' health and its error names the culprit.
func (t *Transport) watchBase() {
	defer t.wg.Done()
	select {
	case <-t.stop:
		return
	case <-t.base.Done():
	}
	err := t.base.Err()
	if err == nil {
		err = transport.ErrClosed
	}
	t.failLinks(err)
}

func (t *Transport) failLinks(err error) {
	if err == nil {
		return
	}
	t.mu.Lock()
	links := append([]*dataLink(nil), t.data...)
	t.mu.Unlock()
	for _, l := range links {
		l.fail(err)
	}
}

func newNonce() ([nonceLen]byte, error) {
	var n [nonceLen]byte
	_, err := rand.Read(n[:])
	return n, err
}

// setup obtains the base link for (peer, channel) and runs the exchange over it, bounded by
// ctx.
func (t *Transport) setup(ctx context.Context, peer int, channel string) (transport.Link, string, error) {
	bl, err := t.base.Link(ctx, peer, channel)
	if err != nil {
		return nil, "", err
	}
	stop := context.AfterFunc(ctx, func() { bl.SetDeadline(time.Unix(1, 0)) })
	link, kind, err := t.handshake(ctx, bl, peer, channel)
	if !stop() {
		if err == nil && link != bl {
			link.Close()
		}
		err = ctx.Err()
	}
	if err != nil {
		bl.Close()
		return nil, "", fmt.Errorf("datalink: link to rank %d channel %q: %w", peer, channel, err)
	}
	bl.SetDeadline(time.Time{})
	return link, kind, nil
}

// decide is the choice both ends compute from the two hellos (lo from the lower rank).
func decide(lo, hi *hello) Mode {
	if lo.shm && hi.shm && lo.host != "" && lo.host == hi.host {
		return ModeQUIC // the shared-memory layer above takes it
	}
	switch {
	case lo.mode == ModeQUIC || hi.mode == ModeQUIC:
		return ModeQUIC
	case lo.mode == ModeTLS || hi.mode == ModeTLS:
		return ModeTLS
	}
	return ModeTCP
}
