package collective

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/ringtrain/ringtrain/collective/transport"
	"github.com/ringtrain/ringtrain/timeline"
)

const (
	// DefaultChunkBytes is the pipelining unit when Options.ChunkBytes is zero. Large enough
	// that per-chunk costs (a Write, a goroutine wake-up) vanish next to the bytes; small
	// enough that a 25 MiB DDP bucket on 4 ranks still flows as ~25 chunks per segment, so
	// the ring's N-1 steps overlap. A sweep of 64 KiB to 4 MiB over QUIC on loopback
	// (benchmarks/allreduce --chunk) showed no difference beyond the noise of the shared
	// 2-core machine for 1 to 64 MiB buffers.
	DefaultChunkBytes = 256 << 10
	// DefaultTimeout is Options.Timeout when zero. It is long on purpose: it must not fire
	// while a live rank is merely late to an op (rank 0 writing a checkpoint while the
	// others wait in the next AllReduce). A dead or vanished peer is found much sooner by
	// the transport (quictransport: Config.PeerTimeout, 15 s by default), whose failure
	// fails the ops at once.
	DefaultTimeout = 5 * time.Minute
	// MaxCloseWait bounds how long Close of a group that owns its transport, and was not
	// shut down, waits for the bytes it wrote to be read (see Group.Close).
	MaxCloseWait = 10 * time.Second
	// DefaultName is Options.Name when empty.
	DefaultName = "world"
)

// Options configures a Group. The zero value is ready to use.
type Options struct {
	// ChunkBytes is the unit of pipelining, in bytes of the op's elements (float32: ChunkBytes/4
	// elements; 8-byte types: half as many): the ring splits each of its segments into chunks
	// of at most this size and overlaps receiving, reducing and
	// sending them, and Broadcast forwards chunks of this size along its chain. Zero means
	// DefaultChunkBytes (256 KiB). Values below 4 mean one element per chunk.
	ChunkBytes int
	// Timeout bounds how long a collective may make no progress (no chunk received or sent,
	// including while waiting for a late peer to join it) before the group gives up on it:
	// the op fails with a *transport.PeerError wrapping ErrTimeout that names the neighbour
	// it was waiting for, and the group aborts. It catches peers that are alive but stuck;
	// dead peers are the transport's to detect, sooner. It also bounds opening the ring's
	// links. It does not bound Send and Recv, which wait for their peer as long as their
	// context allows. Zero means DefaultTimeout (5 min); a negative value disables the
	// watchdog.
	Timeout time.Duration
	// Logger receives a Warn record when the group fails and Debug records on setup. Nil
	// means no logging.
	Logger *slog.Logger
	// Name distinguishes groups that share one transport: every transport channel the group
	// opens is prefixed with it, and subgroups derive theirs from it. All ranks must use the
	// same name. Empty means DefaultName ("world").
	Name string

	// Algorithm forces the AllReduce algorithm of the group and its subgroups: "ring",
	// "hier", "rd" (the recursive family: rd or rhd, whichever the tuner's model prefers),
	// "rhd", "oneshot", "rdoneshot", or "auto" (the tuner picks per call). Empty means
	// GORUN_ALGO, or "auto" when that is unset (see defaultMode in tuner.go). An algorithm that cannot run a call (see tuner.go) falls back to the
	// ring. All ranks must use the same setting; a mismatch fails the op (MismatchError).
	Algorithm string
	// Hosts, when not nil, gives the host identity of every world rank (by world rank),
	// replacing what the transport reports (HostIdentifier). Tests simulate several hosts
	// with it. All ranks must pass the same list.
	Hosts []string
	// Tuner is the α-β table the tuner models the algorithms with. Nil means the table
	// InitFromEnv agreed on (rank 0's), or GORUN_TUNER_FILE, or the committed defaults.
	Tuner *TunerTable
	// Timeline, when not nil, records every op of the group and its subgroups (queued,
	// started, finished; see timeline.go). Nil means none, at the cost of a nil check per
	// op. InitFromEnv sets it from GORUN_TIMELINE and its group's Close writes the file;
	// with New, writing it is the caller's (Recorder.Close or Flush).
	Timeline *timeline.Recorder
}

func (o Options) withDefaults() Options {
	if o.ChunkBytes == 0 {
		o.ChunkBytes = DefaultChunkBytes
	}
	if o.Timeout == 0 {
		o.Timeout = DefaultTimeout
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Name == "" {
		o.Name = DefaultName
	}
	return o
}

// ErrClosed is returned by ops on a group that was closed (and wrapped by the errors of ops
// that were queued or in flight when Close was called).
var ErrClosed = errors.New("collective: group closed")

// ErrTimeout is wrapped by the error of a collective that made no progress for
// Options.Timeout.
var ErrTimeout = errors.New("collective: no progress within the timeout")

// OpError is the error of a failed op: which rank saw it, in which call, and why. Once an op
// fails, every later op of the group (and of the groups sharing its transport) fails too.
type OpError struct {
	Rank int    // world rank that observed the failure
	Call string // the call that failed, e.g. "AllReduce(count=100, fp32, sum) [op #5]"
	Err  error  // the cause; often wraps a *transport.PeerError naming the guilty rank
}

func (e *OpError) Error() string {
	return fmt.Sprintf("collective: rank %d: %s: %v", e.Rank, e.Call, e.Err)
}

func (e *OpError) Unwrap() error { return e.Err }

// Group is a set of ranks that run collectives together over a ring: member i sends to member
// i+1 and receives from member i-1 (mod Size), each group over channels of its own.
//
// All members must issue the same collectives (AllReduce, ReduceScatter, AllGather,
// Broadcast, Reduce, Gather, Scatter, AllToAll[V], Barrier, of any element type) in the same
// order, as with NCCL or MPI. A group runs its collectives one
// at a time, in issue order, on a goroutine of its own, so any number of async ops may be
// outstanding without their data mixing. Every op is announced by a header that each rank
// checks against its left neighbour's: a rank that calls a different op, count, reduction,
// compression or root gets a *MismatchError naming both sides, and so do all others.
//
// Failure model (as NCCL's communicator abort): when an op fails — a peer dies or stops
// making progress for Options.Timeout, a mismatch is found, or the op's context ends before
// it completes — the positions of the ring's streams are no longer known, so the group aborts
// its transport, telling every peer, and that op and every later op of every group over that
// transport fail with the same error. Errors wrap *transport.PeerError where a peer is at
// fault; find it with errors.As. Build a new transport and group to continue.
//
// Send and Recv are point-to-point and do not take part in the issue order; see Send.
//
// The methods of a Group are safe for concurrent use.
type Group struct {
	t         transport.Transport
	ownsT     bool // Close closes t (groups made by InitFromEnv)
	opts      Options
	log       *slog.Logger
	name      string
	ranks     []int // world ranks of the members; index is the group rank
	rank      int   // this member's group rank
	worldRank int
	chunk     int // elements per chunk

	left, right transport.Link // ring neighbours; nil when Size() == 1

	mu       sync.Mutex
	queue    []*Work
	seq      uint64
	closed   bool
	err      error
	busy     bool // the worker is running an op
	closing  bool // Close has begun (closed is set once the subgroups are closed)
	shutdown bool // Shutdown has begun: new ops fail with ErrClosed
	subs     []*Group
	subCount map[string]int

	wake       chan struct{} // an op was queued or the group closed
	failed     chan struct{} // closed when err is set
	quit       chan struct{} // closed by Close
	workerDone chan struct{}
	closeDone  chan struct{} // closed when Close has finished
	senderDone chan struct{}
	sendGo     chan struct{}
	sendRes    chan error

	run ringRun // the op in flight; ops run one at a time
	wd  watchdog

	recvScratch []byte // receiving goroutine: one chunk off the wire
	sendScratch []byte // sending goroutine: one fp16-encoded chunk
	gather      []byte // fp16 all-gather store (ring.go, gatherSlot)

	p2pMu    sync.Mutex
	p2pLinks map[p2pKey]*p2pLink

	alg algoState // topology, tuner and the links of the algorithms other than the ring (algo.go)
	tl  groupTrace

	peers peerLinks // direct links of Gather, Scatter, AllToAll[V] (peerops.go)
}

// New makes the group of every rank of t (group rank = world rank), opening its ring links.
// It blocks until the links are open, ctx ends, or Options.Timeout passes. The group does not
// own t: close the group, then t.
func New(ctx context.Context, t transport.Transport, opts Options) (*Group, error) {
	if t == nil {
		return nil, errors.New("collective: New: nil transport")
	}
	ranks := make([]int, t.Size())
	for i := range ranks {
		ranks[i] = i
	}
	opts = opts.withDefaults()
	return newGroup(ctx, t, opts, opts.Name, ranks)
}

func newGroup(ctx context.Context, t transport.Transport, opts Options, name string, ranks []int) (*Group, error) {
	if !littleEndian() {
		return nil, errBigEndian
	}
	me := -1
	for i, r := range ranks {
		if r == t.Rank() {
			me = i
		}
	}
	if me < 0 {
		return nil, fmt.Errorf("collective: rank %d is not a member of group %q (world ranks %v)", t.Rank(), name, ranks)
	}
	// Elements per chunk; the op header carries it in 32 bits (1 Gi elements = 4 GiB chunks
	// is far beyond any useful pipelining unit).
	chunk := min(max(1, opts.ChunkBytes/4), 1<<30)
	g := &Group{
		t:          t,
		opts:       opts,
		log:        opts.Logger.With("group", name, "rank", t.Rank()),
		name:       name,
		ranks:      ranks,
		rank:       me,
		worldRank:  t.Rank(),
		chunk:      chunk,
		subCount:   make(map[string]int),
		wake:       make(chan struct{}, 1),
		failed:     make(chan struct{}),
		quit:       make(chan struct{}),
		workerDone: make(chan struct{}),
		closeDone:  make(chan struct{}),
		senderDone: make(chan struct{}),
		sendGo:     make(chan struct{}),
		sendRes:    make(chan error),
		p2pLinks:   make(map[p2pKey]*p2pLink),
	}
	g.run.g = g
	g.run.wake = make(chan struct{}, 1)
	g.run.sentWake = make(chan struct{}, 1)
	if err := g.alg.init(g); err != nil {
		return nil, err
	}
	g.wd.init(g)
	if n := len(ranks); n > 1 {
		if err := g.openRing(ctx); err != nil {
			return nil, err
		}
		g.recvScratch = alignedBytes(4 * (chunk + 1)) // one chunk of any dtype (8-byte aligned for fp64, int64)
		g.sendScratch = f32Bytes(make([]float32, (fp16WireBytes(chunk)+3)/4))
		go g.sender()
	} else {
		close(g.senderDone)
	}
	go g.worker()
	g.log.Debug("collective: group ready", "size", len(ranks), "members", ranks, "chunk_bytes", 4*chunk)
	return g, nil
}

// openRing opens the links to both neighbours at once, so that it cannot deadlock with a
// transport whose Link waits for the peer to ask too.
func (g *Group) openRing(ctx context.Context) error {
	if g.opts.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, g.opts.Timeout)
		defer cancel()
	}
	n := len(g.ranks)
	rightW, leftW := g.ranks[(g.rank+1)%n], g.ranks[(g.rank+n-1)%n]
	ch := g.name + ".ring"
	var rerr, lerr error
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		g.right, rerr = g.t.Link(ctx, rightW, ch)
	}()
	if n > 2 {
		g.left, lerr = g.t.Link(ctx, leftW, ch)
	}
	wg.Wait()
	if n == 2 {
		g.left = g.right // one link, both directions
	}
	if err := errors.Join(rerr, lerr); err != nil {
		if g.right != nil {
			g.right.Close()
		}
		if g.left != nil {
			g.left.Close()
		}
		return fmt.Errorf("collective: rank %d: opening the ring of group %q to ranks %d and %d: %w", g.worldRank, g.name, leftW, rightW, err)
	}
	return nil
}

// Rank is this member's rank in the group, in [0, Size()).
func (g *Group) Rank() int { return g.rank }

// Size is the number of members.
func (g *Group) Size() int { return len(g.ranks) }

// Ranks returns the world ranks of the members, indexed by group rank.
func (g *Group) Ranks() []int { return append([]int(nil), g.ranks...) }

// Err returns the error that failed the group, ErrClosed after Close, or nil.
func (g *Group) Err() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return ErrClosed
	}
	return g.err
}

// Shutdown ends the group in order (NCCL's Finalize): it waits until the ops already issued
// have completed, then says goodbye to both ring neighbours: it tells its left neighbour that
// it has consumed everything sent to it and waits until its right neighbour says the same (or
// closes its end), which proves that every byte of the ring this member sent was received.
// For a transport the group owns (InitFromEnv) it then drains it (transport.Shutdowner), so
// that the goodbye itself and any Send data are consumed too. Subgroups are shut down first.
//
// Every member should call Shutdown, then Close. Shutdown is collective: it returns once the
// neighbours have called it too, or ctx ends, or the group fails; it returns nil when the
// ring was flushed, the group's error if it had failed, and ctx's cause if ctx ended first.
// Ops issued after Shutdown began fail with ErrClosed. It frees nothing: call Close.
func (g *Group) Shutdown(ctx context.Context) error {
	g.mu.Lock()
	subs := append([]*Group(nil), g.subs...)
	g.mu.Unlock()
	var errs []error
	for _, s := range subs {
		errs = append(errs, s.Shutdown(ctx))
	}
	if err := g.drainQueue(ctx); err != nil {
		return errors.Join(append(errs, err)...)
	}
	errs = append(errs, g.alg.shutdown(ctx))
	if len(g.ranks) > 1 {
		errs = append(errs, g.goodbye(ctx))
	}
	if sd, ok := g.t.(transport.Shutdowner); ok && g.ownsT {
		errs = append(errs, sd.Shutdown(ctx))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("collective: rank %d: Shutdown of group %q: %w", g.worldRank, g.name, err)
	}
	return nil
}

// drainQueue marks the group as shutting down (new ops fail with ErrClosed) and waits until
// the ops issued before have completed.
func (g *Group) drainQueue(ctx context.Context) error {
	g.mu.Lock()
	if g.closed {
		g.mu.Unlock()
		return ErrClosed
	}
	g.shutdown = true
	g.mu.Unlock()
	for {
		g.mu.Lock()
		idle, err := len(g.queue) == 0 && !g.busy, g.err
		g.mu.Unlock()
		if err != nil {
			return err
		}
		if idle {
			return nil
		}
		// Polling: Shutdown runs once per group, at the end, and ops finish in milliseconds.
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for the ops in flight: %w", context.Cause(ctx))
		case <-g.failed:
		case <-time.After(time.Millisecond):
		}
	}
}

// Close releases the group (NCCL's Destroy): its subgroups close, its links close, and its
// goroutines exit before Close returns. It is local and prompt: it does not wait for the
// neighbours. It is idempotent and returns nil. Close does not close a transport passed to
// New (it does close the one InitFromEnv made).
//
// Call Shutdown first to end in order. Without it, data of the last op that a neighbour has
// not read yet may be lost when the transport closes (QUIC drops unsent data), and that
// neighbour's op fails. So that programs that only call Close keep working, Close of a
// group that owns its transport and was not shut down drains the transport first
// (transport.Shutdowner, at most MaxCloseWait): that waits only for bytes already written to
// be read, which a live neighbour does within its op, never for the neighbour to call Close.
//
// Closing a group with ops queued or in flight fails them (wrapping ErrClosed) without
// waiting, and makes the op in flight fail on the peers too (NCCL's Abort is what a failed
// op does to the transport; see Group).
func (g *Group) Close() error {
	g.mu.Lock()
	if g.closing {
		g.mu.Unlock()
		<-g.closeDone
		return nil
	}
	g.closing = true
	subs := g.subs
	g.subs = nil
	g.mu.Unlock()
	defer close(g.closeDone)

	for _, s := range subs {
		s.Close()
	}

	g.mu.Lock()
	g.closed = true
	drain := g.ownsT && !g.shutdown && g.err == nil && len(g.queue) == 0 && !g.busy && len(g.ranks) > 1
	g.mu.Unlock()
	if sd, ok := g.t.(transport.Shutdowner); ok && drain {
		ctx, cancel := context.WithTimeout(context.Background(), MaxCloseWait)
		if err := sd.Shutdown(ctx); err != nil {
			g.log.Warn("collective: Close: draining the transport before closing it", "err", err)
		}
		cancel()
	}
	close(g.quit)
	signal(g.wake)
	g.closeRing()
	g.alg.close()
	g.peers.close()
	g.p2pMu.Lock()
	for _, pl := range g.p2pLinks {
		if pl.link != nil {
			pl.link.Close()
		}
	}
	g.p2pMu.Unlock()
	<-g.workerDone
	<-g.senderDone
	g.wd.stop()
	if g.ownsT {
		g.t.Close()
		// The group of the job is closed on a training program's way out: write its timeline.
		if err := g.opts.Timeline.Flush(); err != nil {
			g.log.Warn("collective: Close: writing the timeline", "err", err)
		}
	}
	return nil
}

// goodbye tells the left neighbour that this member has consumed everything it sent, and
// waits until the right neighbour says the same, closes its end, or fails, or ctx ends.
// Nothing else uses the links by now: the group is idle and refuses new ops. The goodbye
// travels against the ring's direction: the left neighbour reads it as its right link.
func (g *Group) goodbye(ctx context.Context) error {
	if d, ok := ctx.Deadline(); ok {
		g.left.SetDeadline(d)
		g.right.SetDeadline(d)
		defer g.left.SetDeadline(time.Time{})
		defer g.right.SetDeadline(time.Time{})
	}
	stop := context.AfterFunc(ctx, func() {
		g.left.SetDeadline(time.Unix(1, 0))
		g.right.SetDeadline(time.Unix(1, 0))
	})
	defer stop()
	var out, in [headerSize]byte
	(&header{kind: kindClose, seq: g.seq}).encode(&out)
	wrote := make(chan error, 1)
	go func() { _, err := g.left.Write(out[:]); wrote <- err }()
	right := g.ranks[(g.rank+1)%len(g.ranks)]
	err := readFull(g.right, in[:])
	var h header
	switch {
	case err == nil:
		if derr := h.decode(in[:]); derr != nil || h.kind != kindClose {
			err = fmt.Errorf("rank %d sent %x instead of its goodbye", right, in)
		} else if h.seq != g.seq {
			err = &MismatchError{Rank: g.worldRank, Call: fmt.Sprintf("Shutdown after %d ops", g.seq), PeerRank: right, PeerCall: fmt.Sprintf("Shutdown after %d ops", h.seq)}
		}
	case closedInOrder(err):
		err = nil // the right neighbour closed its end in order: it had finished reading
	case ctx.Err() != nil:
		err = fmt.Errorf("waiting for rank %d's goodbye: %w", right, context.Cause(ctx))
	default:
		err = fmt.Errorf("waiting for rank %d's goodbye: %w", right, err)
	}
	if werr := <-wrote; err == nil && werr != nil && !closedInOrder(werr) {
		// The left neighbour may have closed already, having read all it needed: not an
		// error of ours unless it failed.
		var pe *transport.PeerError
		if errors.As(werr, &pe) {
			err = werr
		}
	}
	return err
}

func (g *Group) closeRing() {
	if g.right != nil {
		g.right.Close()
	}
	if g.left != nil && g.left != g.right {
		g.left.Close()
	}
}

func signal(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// fail records err as the group's failure (unless one is recorded already) and aborts the
// transport with it, so that every peer fails too. It returns the recorded failure, which
// later ops return as well.
func (g *Group) fail(call string, err error) error {
	g.mu.Lock()
	if g.err != nil {
		e := g.err
		g.mu.Unlock()
		return e
	}
	closed := g.closed
	var me *MismatchError
	var oe *OpError
	switch {
	case closed:
		err = &OpError{Rank: g.worldRank, Call: call, Err: fmt.Errorf("%w while the op was in flight (%v)", ErrClosed, err)}
	case !errors.As(err, &me) && !errors.As(err, &oe):
		err = &OpError{Rank: g.worldRank, Call: call, Err: err}
	}
	g.err = err
	close(g.failed)
	g.mu.Unlock()
	if closed {
		// Close broke the op; the peers see their links close. Nothing to abort.
		return err
	}
	g.log.Warn("collective: group failed; aborting the transport", "err", err)
	g.t.Abort(err)
	return err
}

// failure returns the error an op must fail with before it starts, or nil.
func (g *Group) failure() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return ErrClosed
	}
	return g.err
}

// issue queues an op for the worker, giving it the next sequence number. Context
// cancellation of a queued or running op fails the group (see Group).
func (g *Group) issue(ctx context.Context, w *Work) *Work {
	w.g, w.ctx, w.done = g, ctx, make(chan struct{})
	if err := ctx.Err(); err != nil {
		w.complete(err) // never issued: the peers cannot be waiting for it from us yet
		return w
	}
	g.mu.Lock()
	if g.closed || g.shutdown || g.err != nil {
		err := g.err
		if g.closed || g.shutdown {
			err = ErrClosed
		}
		g.mu.Unlock()
		w.complete(err)
		return w
	}
	w.h.seq = g.seq
	g.seq++
	w.queuedAt = g.opts.Timeline.Now()
	if ctx.Done() != nil {
		// Registered under g.mu: if ctx is already done the callback runs at once in its own
		// goroutine and waits for the lock, by which time w is fully issued.
		w.stopCancel = context.AfterFunc(ctx, func() {
			g.mu.Lock()
			finished := w.finished
			g.mu.Unlock()
			if !finished {
				g.fail(w.h.describe(showSeq), fmt.Errorf("context ended before the op completed: %w", context.Cause(ctx)))
			}
		})
	}
	g.queue = append(g.queue, w)
	g.mu.Unlock()
	g.traceQueued(w)
	signal(g.wake)
	return w
}

func (g *Group) next() *Work {
	for {
		g.mu.Lock()
		if len(g.queue) > 0 {
			w := g.queue[0]
			g.queue[0] = nil
			g.queue = g.queue[1:]
			g.busy = true
			g.mu.Unlock()
			return w
		}
		closed := g.closed
		g.mu.Unlock()
		if closed {
			return nil
		}
		<-g.wake
	}
}

// worker runs the group's ops one at a time in issue order; it is the receiving side of
// every ring op, and hands the sending side to the sender goroutine.
func (g *Group) worker() {
	defer close(g.workerDone)
	for {
		w := g.next()
		if w == nil {
			return
		}
		start := g.opts.Timeline.Now()
		err := g.execute(w)
		g.mu.Lock()
		g.busy = false
		g.mu.Unlock()
		g.traceOp(w, start, err)
		w.finish(err)
	}
}

func (g *Group) execute(w *Work) error {
	if err := g.failure(); err != nil {
		return err
	}
	if err := g.t.Err(); err != nil {
		return g.fail(w.h.describe(showSeq), err)
	}
	if w.h.kind.peerOp() {
		return g.executePeer(w) // peerops.go (with one member: a local copy)
	}
	if len(g.ranks) == 1 {
		return nil // every collective of one member is the identity (Avg divides by 1)
	}
	if w.h.algo != algoRing {
		return g.executeAlgo(w) // algo.go
	}
	x := &g.run
	x.reset(w)
	g.wd.start(w)
	select {
	case g.sendGo <- struct{}{}:
	case <-g.quit:
		g.wd.stop()
		return ErrClosed
	}
	rerr := x.recv()
	if rerr != nil {
		rerr = g.fail(w.h.describe(showSeq), rerr)
	}
	x.recvFinished.Store(true)
	serr := <-g.sendRes
	g.wd.stop()
	if rerr != nil {
		return rerr
	}
	return serr
}

// sender runs the sending side of each ring op.
func (g *Group) sender() {
	defer close(g.senderDone)
	for {
		select {
		case <-g.sendGo:
		case <-g.quit:
			return
		}
		err := g.run.send()
		if err != nil {
			err = g.fail(g.run.w.h.describe(showSeq), err)
		}
		g.sendRes <- err
	}
}

// readFull reads exactly len(b) bytes from l.
// closedInOrder reports whether a link's error says that the peer ended in order: it closed
// the link (io.EOF) or its whole transport (transport.ErrPeerClosed), having finished.
func closedInOrder(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, transport.ErrPeerClosed)
}

func readFull(l transport.Link, b []byte) error {
	_, err := io.ReadFull(l, b)
	return err
}

// checkPeer validates a group rank given by the caller.
func (g *Group) checkPeer(what string, peer int) error {
	if peer < 0 || peer >= len(g.ranks) {
		return fmt.Errorf("collective: %s: rank %d out of range for group of size %d", what, peer, len(g.ranks))
	}
	return nil
}

// Subgroup makes a group of the members of g listed in ranks (ranks of g; for the world
// group, world ranks), in that order around its ring. It has its own ring over its own
// channels, runs its ops concurrently with g's, and is closed when g is.
//
// Every listed member, and only they, must call Subgroup with the same list; members that
// make several subgroups of the same list must make them in the same order (each gets
// distinct channels). A member whose list differs ends up on other channels and fails after
// Options.Timeout in its first op.
func (g *Group) Subgroup(ctx context.Context, ranks []int) (*Group, error) {
	if len(ranks) == 0 {
		return nil, errors.New("collective: Subgroup: empty rank list")
	}
	seen := make(map[int]bool, len(ranks))
	world := make([]int, len(ranks))
	in := false
	for i, r := range ranks {
		if err := g.checkPeer("Subgroup", r); err != nil {
			return nil, err
		}
		if seen[r] {
			return nil, fmt.Errorf("collective: Subgroup: rank %d listed twice in %v", r, ranks)
		}
		seen[r] = true
		world[i] = g.ranks[r]
		in = in || r == g.rank
	}
	if !in {
		return nil, fmt.Errorf("collective: Subgroup: calling rank %d is not in %v", g.rank, ranks)
	}
	if err := g.failure(); err != nil {
		return nil, err
	}
	parts := make([]string, len(world))
	for i, r := range world {
		parts[i] = strconv.Itoa(r)
	}
	key := strings.Join(parts, "-")
	g.mu.Lock()
	k := g.subCount[key]
	g.subCount[key]++
	g.mu.Unlock()
	sg, err := newGroup(ctx, g.t, g.opts, fmt.Sprintf("%s.sub%s.%d", g.name, key, k), world)
	if err != nil {
		return nil, err
	}
	g.mu.Lock()
	if g.closing {
		g.mu.Unlock()
		sg.Close()
		return nil, ErrClosed
	}
	g.subs = append(g.subs, sg)
	g.mu.Unlock()
	return sg, nil
}

// watchdog fails the op in flight when neither side of the ring moves a chunk for
// Options.Timeout. It checks every Timeout/4 with a timer (no goroutine while idle).
type watchdog struct {
	g      *Group
	period time.Duration
	limit  time.Duration

	mu        sync.Mutex
	timer     *time.Timer
	w         *Work
	lastProgr int64
	idle      time.Duration
}

func (d *watchdog) init(g *Group) {
	d.g = g
	d.limit = g.opts.Timeout
	if d.limit <= 0 {
		return
	}
	d.period = max(d.limit/4, time.Millisecond)
	d.timer = time.AfterFunc(time.Hour, d.tick)
	d.timer.Stop()
}

func (d *watchdog) start(w *Work) {
	if d.timer == nil {
		return
	}
	d.mu.Lock()
	d.w = w
	d.lastProgr = d.g.run.progress.Load()
	d.idle = 0
	d.timer.Reset(d.period)
	d.mu.Unlock()
}

func (d *watchdog) stop() {
	if d.timer == nil {
		return
	}
	d.mu.Lock()
	d.w = nil
	d.timer.Stop()
	d.mu.Unlock()
}

func (d *watchdog) tick() {
	d.mu.Lock()
	w := d.w
	if w == nil {
		d.mu.Unlock()
		return
	}
	if p := d.g.run.progress.Load(); p != d.lastProgr {
		d.lastProgr, d.idle = p, 0
	} else {
		d.idle += d.period
	}
	limit := d.limit
	if d.g.run.headerIn.Load() {
		// The left neighbour has joined this op, so it is probably stalled behind someone
		// else: give the rank that waits for the one that never joined time to fail first
		// and name it.
		limit += d.limit / 2
	}
	limit += chainPatience(&w.h, d.g.rank, len(d.g.ranks), d.g.run.headerIn.Load(), d.limit) // ring.go
	if d.idle < limit {
		d.timer.Reset(d.period)
		d.mu.Unlock()
		return
	}
	d.w = nil
	d.mu.Unlock()
	g := d.g
	n := len(g.ranks)
	// Both sides stalled: blame the neighbour whose data the receiving side waits for, unless
	// it has everything and only the sending side is stuck.
	peer, what := g.ranks[(g.rank+n-1)%n], "receiving from"
	if g.run.recvFinished.Load() {
		peer, what = g.ranks[(g.rank+1)%n], "sending to"
	}
	if b := g.run.blame.Load(); b > 0 {
		peer, what = int(b-1), "waiting for" // a peer op names the member it waits for
	}
	g.fail(w.h.describe(showSeq), &transport.PeerError{Rank: peer, Err: fmt.Errorf("%w: nothing moved for %v while %s it", ErrTimeout, limit, what)})
}
