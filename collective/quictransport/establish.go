package quictransport

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/ringtrain/ringtrain/collective/rendezvous"
)

// storeLinger is how long rank 0 keeps serving the store after its own join timed out.
const storeLinger = 3 * time.Second

// Store keys. Versioned so that a future layout cannot be misread.
func peerKey(r int) string  { return "quictransport/v1/peer/" + strconv.Itoa(r) }
func readyKey(r int) string { return "quictransport/v1/ready/" + strconv.Itoa(r) }

// abortKey holds the abort notice (an abort reason, see encodeAbortReason) of the first rank
// that failed; every rank waits on it, so a failure reaches ranks with no connection to the
// failing one. Each rank's last will writes it should the rank vanish.
const abortKey = "quictransport/v1/abort"

// JoinTimeoutError reports the ranks that had not joined when the join timeout passed.
type JoinTimeoutError struct {
	Missing []int         // ranks that never published their endpoint, ascending
	Size    int           // world size
	Timeout time.Duration // the join timeout
	Err     error         // underlying cause (store error or context error)
}

func (e *JoinTimeoutError) Error() string {
	s := fmt.Sprintf("rendezvous: ranks %v of %d did not join within %v", e.Missing, e.Size, e.Timeout)
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

func (e *JoinTimeoutError) Unwrap() error { return e.Err }

// Establish joins the job described by cfg: rank 0 serves the rendezvous store on
// MasterAddr:MasterPort; every rank makes an ephemeral certificate, binds its data endpoint,
// publishes {address, certificate fingerprint} in the store and reads every other rank's.
// Connections to peers are made later, on first use. If some ranks do not publish within
// cfg.JoinTimeout, the error is a *JoinTimeoutError naming them (rank 0 is named when its
// store cannot be reached; rank 0 also names ranks that published but never confirmed they
// had read the others'). After its own join timeout rank 0 keeps the store up for a few more
// seconds so that the other ranks, whose timeouts end about then, get the same exact answer.
// ctx bounds the whole call as well; a cancelled ctx is reported as such.
//
// Each rank also leaves a last will in the store and watches it for abort notices, so that
// failures reach every rank (see the package documentation).
func Establish(ctx context.Context, cfg Config) (*Transport, error) {
	return establish(ctx, cfg, nil)
}

// establish is Establish where rank 0 may be handed an already running store server.
func establish(ctx context.Context, cfg Config, server *rendezvous.Server) (_ *Transport, err error) {
	start := time.Now()
	cfg, err = cfg.withDefaults()
	if err != nil {
		if server != nil {
			server.Close()
		}
		return nil, err
	}
	if cfg.Rank != 0 && server != nil {
		server.Close()
		return nil, errors.New("quictransport: only rank 0 serves the store")
	}
	tctx, cancel := context.WithCancel(context.Background())
	t := &Transport{
		cfg:    cfg,
		log:    cfg.Logger.With("rank", cfg.Rank),
		ctx:    tctx,
		cancel: cancel,
		done:   make(chan struct{}),
		server: server,
	}
	defer func() {
		if err == nil {
			return
		}
		var je *JoinTimeoutError
		if srv := t.server; srv != nil && errors.As(err, &je) {
			// The other ranks' waits end at about the same time as ours; keep the store up a
			// little longer so that they too learn exactly which ranks are missing, rather
			// than just that the store went away.
			t.server = nil
			time.AfterFunc(storeLinger, func() { srv.Close() })
		}
		t.Close()
	}()
	jctx, jcancel := context.WithDeadline(ctx, start.Add(cfg.JoinTimeout))
	defer jcancel()

	loop := loopbackIP(cfg.MasterAddr)
	masterHostPort := net.JoinHostPort(cfg.MasterAddr, strconv.Itoa(cfg.MasterPort))
	if cfg.Rank == 0 && t.server == nil {
		bind := net.JoinHostPort("", strconv.Itoa(cfg.MasterPort))
		if loop != nil {
			bind = net.JoinHostPort(loop.String(), strconv.Itoa(cfg.MasterPort))
		}
		t.server, err = rendezvous.Listen(bind, rendezvous.ServerConfig{
			Token:       cfg.Token,
			Logger:      t.log,
			IdleTimeout: cfg.PeerTimeout,
		})
		if err != nil {
			return nil, fmt.Errorf("quictransport: rank 0 cannot serve the rendezvous store: %w", err)
		}
	}

	if t.cert, err = rendezvous.EphemeralCertificate(); err != nil {
		return nil, err
	}
	if err = t.bind(loop); err != nil {
		return nil, err
	}
	self := peerEntry{Fingerprint: rendezvous.Fingerprint(t.cert.Certificate[0]), Host: localHostID()}
	if self.Addr, err = t.advertise(loop); err != nil {
		return nil, err
	}
	value, err := encodeEntry(self)
	if err != nil {
		return nil, err
	}

	t.store, err = rendezvous.Dial(jctx, masterHostPort, rendezvous.ClientConfig{
		Token:       cfg.Token,
		Logger:      t.log,
		IdleTimeout: cfg.PeerTimeout,
	})
	if err != nil {
		if errors.Is(err, rendezvous.ErrAuth) || ctx.Err() != nil {
			return nil, err
		}
		return nil, &JoinTimeoutError{Missing: []int{0}, Size: cfg.Size, Timeout: cfg.JoinTimeout, Err: err}
	}
	// Our last will: should this process die, the store (on rank 0) tells everyone.
	will := encodeAbortReason(cfg.Rank, 0, "presumed dead: lost its connection to the rendezvous store")
	if err = t.store.SetOnDisconnect(jctx, abortKey, []byte(will)); err != nil {
		return nil, err
	}
	if err = t.store.Set(jctx, peerKey(cfg.Rank), value); err != nil {
		return nil, err
	}
	t.entries = make([]peerEntry, cfg.Size)
	if err = t.readEntries(jctx, ctx); err != nil {
		return nil, err
	}
	t.entries[cfg.Rank] = self
	t.peers = make([]*peer, cfg.Size)
	for r := range t.peers {
		if r != cfg.Rank {
			t.peers[r] = &peer{rank: r, dead: make(chan struct{}), links: make(map[string]*linkSlot),
				byStream: make(map[quic.StreamID]*link), pending: make(map[uint64]chan controlFrame)}
		}
	}
	if err = t.start(); err != nil {
		return nil, err
	}
	t.wg.Add(1)
	go t.watchStore()
	// Rank 0 holds the store open at least until every rank has read the entries, so a fast
	// rank 0 that closes at once cannot cut a slower rank's last read short.
	if err = t.store.Set(jctx, readyKey(cfg.Rank), nil); err != nil {
		return nil, err
	}
	if cfg.Rank == 0 {
		keys := make([]string, cfg.Size)
		for r := range keys {
			keys[r] = readyKey(r)
		}
		if _, err = t.store.WaitKeys(jctx, keys); err != nil {
			return nil, t.joinErr(err, keys, ctx)
		}
	}
	t.log.Debug("quictransport: joined", "addr", self.Addr, "size", cfg.Size, "took", time.Since(start))
	return t, nil
}

// readEntries waits for every other rank's entry and decodes it.
func (t *Transport) readEntries(jctx, ctx context.Context) error {
	var keys []string
	var ranks []int
	for r := 0; r < t.cfg.Size; r++ {
		if r != t.cfg.Rank {
			keys = append(keys, peerKey(r))
			ranks = append(ranks, r)
		}
	}
	vals, err := t.store.WaitKeys(jctx, keys)
	if err != nil {
		return t.joinErr(err, keys, ctx)
	}
	for i, v := range vals {
		e, err := decodeEntry(v)
		if err != nil {
			return fmt.Errorf("quictransport: entry published by rank %d: %w", ranks[i], err)
		}
		t.entries[ranks[i]] = e
	}
	return nil
}

// joinErr turns a store wait that ended with keys missing into a JoinTimeoutError.
func (t *Transport) joinErr(err error, keys []string, ctx context.Context) error {
	var mk *rendezvous.MissingKeysError
	if !errors.As(err, &mk) || ctx.Err() != nil {
		return err
	}
	var missing []int
	for _, k := range mk.Keys {
		if !slices.Contains(keys, k) {
			continue
		}
		if r, err := strconv.Atoi(k[strings.LastIndexByte(k, '/')+1:]); err == nil {
			missing = append(missing, r)
		}
	}
	slices.Sort(missing)
	return &JoinTimeoutError{Missing: missing, Size: t.cfg.Size, Timeout: t.cfg.JoinTimeout, Err: mk.Err}
}

// bind opens the data endpoint's UDP socket.
func (t *Transport) bind(loop net.IP) error {
	addr := t.cfg.ListenAddr
	if addr == "" {
		addr = ":0"
		if loop != nil {
			addr = net.JoinHostPort(loop.String(), "0")
		}
	}
	ua, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		return fmt.Errorf("quictransport: listen address %q: %w", addr, err)
	}
	if t.udp, err = net.ListenUDP("udp", ua); err != nil {
		return fmt.Errorf("quictransport: listen on %q: %w", addr, err)
	}
	rcv, snd := growSocketBuffers(t.udp, t.cfg.SocketBuffer)
	t.log.Debug("quictransport: UDP socket", "addr", t.udp.LocalAddr().String(), "rcvbuf", rcv, "sndbuf", snd)
	return nil
}

// advertise decides the address the other ranks dial.
func (t *Transport) advertise(loop net.IP) (string, error) {
	port := t.udp.LocalAddr().(*net.UDPAddr).Port
	host := t.cfg.AdvertiseAddr
	if host != "" {
		h, p, err := net.SplitHostPort(host)
		if err != nil { // no port
			return net.JoinHostPort(host, strconv.Itoa(port)), nil
		}
		if p == "" || p == "0" {
			p = strconv.Itoa(port)
		}
		return net.JoinHostPort(h, p), nil
	}
	if ip := t.udp.LocalAddr().(*net.UDPAddr).IP; ip != nil && !ip.IsUnspecified() {
		return net.JoinHostPort(ip.String(), strconv.Itoa(port)), nil
	}
	if loop != nil {
		return net.JoinHostPort(loop.String(), strconv.Itoa(port)), nil
	}
	// The address this host uses to reach the master (a UDP "connect" sends nothing).
	c, err := net.Dial("udp", net.JoinHostPort(t.cfg.MasterAddr, strconv.Itoa(max(t.cfg.MasterPort, 1))))
	if err != nil {
		return "", fmt.Errorf("quictransport: finding the local address that reaches MASTER_ADDR %q (set AdvertiseAddr?): %w", t.cfg.MasterAddr, err)
	}
	defer c.Close()
	ip := c.LocalAddr().(*net.UDPAddr).IP
	return net.JoinHostPort(ip.String(), strconv.Itoa(port)), nil
}

// StartLocal starts an n-rank job inside this process on 127.0.0.1, for tests of the layers
// above: rank 0 serves the store on a free port, and the token is random unless cfg.Token is
// set. cfg supplies the other settings (timeouts, windows, logger); its Rank, Size,
// MasterAddr, MasterPort, ListenAddr and AdvertiseAddr are overridden. The transports are
// returned by rank; close each one (rank 0 last is not required).
func StartLocal(ctx context.Context, n int, cfg Config) ([]*Transport, error) {
	if n < 1 {
		return nil, fmt.Errorf("quictransport: StartLocal with %d ranks", n)
	}
	if cfg.Token == "" {
		b := make([]byte, 16)
		rand.Read(b)
		cfg.Token = hex.EncodeToString(b)
	}
	srv, err := rendezvous.Listen("127.0.0.1:0", rendezvous.ServerConfig{Token: cfg.Token, Logger: cfg.Logger, IdleTimeout: cfg.PeerTimeout})
	if err != nil {
		return nil, err
	}
	cfg.Size = n
	cfg.MasterAddr = "127.0.0.1"
	cfg.MasterPort = srv.Addr().(*net.UDPAddr).Port
	cfg.ListenAddr = ""
	cfg.AdvertiseAddr = ""
	ts := make([]*Transport, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for r := 0; r < n; r++ {
		c := cfg
		c.Rank = r
		c.LocalRank = r
		var s *rendezvous.Server
		if r == 0 {
			s = srv
		}
		wg.Go(func() { ts[r], errs[r] = establish(ctx, c, s) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		for _, t := range ts {
			if t != nil {
				t.Close()
			}
		}
		return nil, err
	}
	return ts, nil
}
