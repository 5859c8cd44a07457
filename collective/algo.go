package collective

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ringtrain/ringtrain/collective/transport"
)

// algoState is what a group keeps for the AllReduce algorithms other than the ring: where
// its members run (Topology), the tuner that picks an algorithm per call, the links of
// recursive doubling (opened on first use) and the two internal groups of the hierarchical
// algorithm (made on first use).
//
// Every non-ring op still sends its header once around the group's ring (to the right
// neighbour, checked by it against its own call; see lapState): a rank that chose another
// algorithm (or another count, op...) is caught there even when the algorithm's own
// messages would never meet it, and fails with a MismatchError naming the field.
type algoState struct {
	g     *Group
	topo  Topology
	tuner tuner

	mu     sync.Mutex // guards links, local, cross and closed against Close
	links  map[int]transport.Link
	local  *Group // hier: the members on this host
	cross  *Group // hier: the members of the other hosts with this member's local rank
	closed bool

	lap           lapState         // the ring lap of the header
	msgHdr        [headerSize]byte // recursive doubling: the header ahead of every message
	peerHdr       [headerSize]byte
	scratchIn     []byte     // one received message
	scratchOut    []byte     // one encoded message (fp16) or header+payload (small fp32)
	scratchF32    []byte     // rd: the peer's values, decoded, for Max and Min
	osOpened      bool       // oneshot: its links are open (by the worker, before its writer uses them)
	osMembers     []int      // rd+oneshot: the group ranks with this member's local rank, by host
	osCrossOpened bool       // rd+oneshot: the links to them are open
	wrote         chan error // the writing side of an exchange
}

func (a *algoState) init(g *Group) error {
	a.g = g
	a.wrote = make(chan error, 1)
	hosts, err := worldHostIDs(g.t, g.opts)
	if err != nil {
		return err
	}
	a.topo = makeTopology(hosts, g.ranks)
	return a.tuner.init(g, a.topo)
}

// link returns the recursive-doubling link to group rank peer, opening it on first use
// (both ends open it in the same step, so a transport that waits for the peer is fine).
func (a *algoState) link(ctx context.Context, peer int) (transport.Link, error) {
	a.mu.Lock()
	if a.closed {
		a.mu.Unlock()
		return nil, ErrClosed
	}
	l := a.links[peer]
	a.mu.Unlock()
	if l != nil {
		return l, nil
	}
	g := a.g
	if g.opts.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, g.opts.Timeout)
		defer cancel()
	}
	l, err := g.t.Link(ctx, g.ranks[peer], g.name+".rd")
	if err != nil {
		return nil, &transport.PeerError{Rank: g.ranks[peer], Err: fmt.Errorf("opening the recursive-doubling link: %w", err)}
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.closed {
		l.Close()
		return nil, ErrClosed
	}
	if a.links == nil {
		a.links = make(map[int]transport.Link)
	}
	a.links[peer] = l
	return l, nil
}

// shutdown shuts the internal groups down in a fixed order (the same on every rank), then
// says goodbye on every recursive-doubling link and closes it.
func (a *algoState) shutdown(ctx context.Context) error {
	a.mu.Lock()
	local, cross := a.local, a.cross
	a.mu.Unlock()
	var errs []error
	for _, s := range []*Group{local, cross} {
		if s != nil {
			errs = append(errs, s.Shutdown(ctx))
		}
	}
	errs = append(errs, a.byeLinks(ctx))
	return errors.Join(errs...)
}

// byeLinks ends the recursive-doubling links in order. Both ends of such a link write on it
// (unlike a ring link), so a transport that drains its links at Shutdown (datalink, shared
// memory) would ask a peer that had already finished and closed for an acknowledgement it
// can no longer give. So each end writes a goodbye on every link and reads the peer's
// (which comes after all the peer's data: both ends have then read everything the other
// wrote, bar the goodbye itself), then closes the link, before the transport drains. Both
// ends hold the same links: the schedules open them in the same steps.
func (a *algoState) byeLinks(ctx context.Context) error {
	a.mu.Lock()
	links := a.links
	a.links = nil
	a.mu.Unlock()
	if len(links) == 0 {
		return nil
	}
	g := a.g
	if d, ok := ctx.Deadline(); ok {
		for _, l := range links {
			l.SetDeadline(d)
		}
	}
	stop := context.AfterFunc(ctx, func() {
		for _, l := range links {
			l.SetDeadline(time.Unix(1, 0))
		}
	})
	defer stop()
	var bye [headerSize]byte
	(&header{kind: kindClose, seq: g.seq}).encode(&bye)
	var errs []error
	for peer, l := range links {
		if _, err := l.Write(bye[:]); err != nil && !closedInOrder(err) {
			errs = append(errs, fmt.Errorf("goodbye to rank %d on the recursive-doubling link: %w", g.ranks[peer], err))
		}
	}
	for peer, l := range links {
		var in [headerSize]byte
		err := readFull(l, in[:])
		var h header
		switch {
		case closedInOrder(err):
			// Closed in order: the peer had read everything.
		case err != nil:
			errs = append(errs, fmt.Errorf("waiting for rank %d's goodbye on the recursive-doubling link: %w", g.ranks[peer], err))
		default:
			if derr := h.decode(in[:]); derr != nil || h.kind != kindClose {
				errs = append(errs, fmt.Errorf("rank %d sent %x instead of its goodbye on the recursive-doubling link", g.ranks[peer], in))
			}
		}
	}
	for _, l := range links {
		l.Close()
	}
	return errors.Join(errs...)
}

// close releases the links and internal groups (Group.Close).
func (a *algoState) close() {
	a.mu.Lock()
	a.closed = true
	links, local, cross := a.links, a.local, a.cross
	a.links = nil
	a.mu.Unlock()
	for _, l := range links {
		l.Close()
	}
	for _, s := range []*Group{local, cross} {
		if s != nil {
			s.Close()
		}
	}
}

// executeAlgo runs an op whose header names an algorithm other than the ring (on the
// group's worker goroutine), with the header's lap to the right neighbour (see lapState).
func (g *Group) executeAlgo(w *Work) error {
	a := &g.alg
	g.wd.start(w)
	defer g.wd.stop()
	g.run.headerIn.Store(false)
	g.run.recvFinished.Store(false)
	var lap <-chan error
	if w.h.algo != algoOneShot { // the one-shot's first message is its lap (oneshot.go)
		var err error
		if lap, err = a.startLap(w); err != nil {
			return g.fail(w.h.describe(showSeq), err) // the watcher was not armed
		}
		if w.h.algo == algoHier {
			// hier's messages are its internal groups' ops, whose headers do not carry this
			// op's: a mismatched call could pass them, or fail there with an error naming
			// an internal ReduceScatter. Read the lap beside it from the start, as before.
			// (rd, rhd and rd+oneshot check this op's header on every message, and a rank
			// completes only with every rank's contribution, each checked on its way.)
			lap = a.watchLapNow()
		}
	}
	var err error
	switch w.h.algo {
	case algoRD, algoRHD:
		err = a.recursive(w)
	case algoHier:
		err = a.hier(w)
	case algoOneShot:
		err = a.oneShot(w)
	case algoRDOneShot:
		err = a.rdOneShot(w)
	default:
		err = fmt.Errorf("collective: algorithm %v not implemented", w.h.algo)
	}
	lapped, lapDone := lap != nil, false
	if err != nil {
		if lap != nil {
			// The lap may say why (a rank that runs something else): read it now, beside.
			lap = a.watchLapNow()
		}
		var lerr error
		err, lerr, lapDone = a.cause(err, lap)
		err = g.fail(w.h.describe(showSeq), err)
		if lapDone && lerr != nil && err == nil {
			err = lerr
		}
	}
	if lapped && !lapDone {
		if lerr := a.finishLap(err == nil); lerr != nil && err == nil {
			err = lerr
		}
	}
	return err
}

// lapWatchDelay is how long an algorithm may run before its header lap is read beside it
// (see lapState).
const lapWatchDelay = 10 * time.Millisecond

// The header lap. Every non-ring op sends its header to the right neighbour on the ring
// link, and checks the left neighbour's against its own call: a rank that chose another
// algorithm (or another count, op...) is caught there even when the algorithm's own messages
// would never meet it, and fails with a MismatchError naming the field. The header is
// written before the algorithm starts (the write cannot wait on anything that waits on this
// rank: the right neighbour reads its left header in every non-ring op, and what came
// before on this link belongs to ops it completes without us). Reading it costs nothing
// extra when the algorithm completes: every rank joined the op by then, so the left
// neighbour's header is there, and it is read inline at the end. Only an algorithm still
// running after lapWatchDelay, or one that failed, has it read by a watcher goroutine
// beside it (a rank that runs something else may never send what the algorithm waits for:
// the lap is what finds it), and hier, whose internal ops do not check this op's header,
// has it read beside it from the start. Before this, every op paid a goroutine for the lap.
//
// lapState is the lap's per-group state (one op at a time: the worker's).
type lapState struct {
	timer   *time.Timer          // fires watchLap; stopped before firing in the common case
	w       atomic.Pointer[Work] // the op in flight, for watchLap
	res     chan error           // watchLap's result
	watched bool                 // this op's watcher ran or was started
	out, in [headerSize]byte
}

// startLap writes the op's header to the right neighbour and arms the watcher. lap is
// the watcher's result channel.
func (a *algoState) startLap(w *Work) (lap <-chan error, err error) {
	l := &a.lap
	if l.res == nil {
		l.res = make(chan error, 1)
		l.timer = time.AfterFunc(time.Hour, a.watchLap)
		l.timer.Stop()
	}
	l.w.Store(w)
	l.watched = false
	w.h.encode(&l.out)
	if _, err := a.g.right.Write(l.out[:]); err != nil {
		return nil, err
	}
	l.timer.Reset(lapWatchDelay)
	return l.res, nil
}

// watchLap is the timer's function: it reads the lap beside the algorithm.
func (a *algoState) watchLap() {
	l := &a.lap
	w := l.w.Load()
	err := a.readLap(w)
	if err != nil {
		// At once: the algorithm may be waiting for a peer that runs something else.
		err = a.g.fail(w.h.describe(showSeq), err)
	}
	l.res <- err
}

// watchLapNow makes sure the watcher runs (now, if its timer had not fired) and returns
// its result channel.
func (a *algoState) watchLapNow() <-chan error {
	l := &a.lap
	if !l.watched {
		l.watched = true
		if l.timer.Stop() {
			go a.watchLap()
		}
	}
	return l.res
}

// finishLap returns the lap's result: read inline when the watcher never ran and the
// algorithm succeeded (inline), else the watcher's.
func (a *algoState) finishLap(inline bool) error {
	l := &a.lap
	if l.timer == nil {
		return nil
	}
	if !l.watched && l.timer.Stop() {
		if inline {
			return a.readLap(l.w.Load())
		}
		go a.watchLap()
	}
	return <-l.res
}

// readLap reads the left neighbour's header and checks it against this op's.
func (a *algoState) readLap(w *Work) error {
	g := a.g
	err := readFull(g.left, a.lap.in[:])
	if err == nil {
		n := len(g.ranks)
		left := g.ranks[mod(g.rank-1, n)]
		var h header
		if derr := h.decode(a.lap.in[:]); derr != nil {
			err = fmt.Errorf("from rank %d: %w", left, derr)
		} else {
			err = mismatch(g.worldRank, &w.h, left, &h)
		}
		if err == nil {
			g.run.headerIn.Store(true)
			g.run.progress.Add(1)
		}
	}
	return err
}

// causeGrace bounds how long a rank whose algorithm failed on a link waits for the story
// behind it (see cause).
const causeGrace = 2 * time.Second

// cause returns the error an op whose algorithm failed with err should report. Unlike the
// ring, these algorithms talk to ranks that are not ring neighbours, so the first sign of a
// failure elsewhere is often a bare link error (a partner that aborted refuses a
// connection or closes its stream) that arrives before the abort notice saying why (an op
// mismatch, the rank that died). So, for anything but a MismatchError found here, wait a
// little for the header lap to find the mismatch itself or for the transport to deliver a
// peer's notice, and report that, with what this rank saw. It also returns the lap's result
// when it consumed it (lapDone).
func (a *algoState) cause(err error, lap <-chan error) (_ error, lapErr error, lapDone bool) {
	var me *MismatchError
	if errors.As(err, &me) || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err, nil, false
	}
	t := a.g.t
	timer := time.NewTimer(causeGrace)
	defer timer.Stop()
	for {
		select {
		case lapErr = <-lap:
			lapDone = true
			if errors.As(lapErr, &me) {
				return lapErr, lapErr, true
			}
			lap = nil // keep waiting for the transport
		case <-t.Done():
			if terr := t.Err(); terr != nil && !errors.Is(terr, transport.ErrClosed) {
				return fmt.Errorf("%w (this rank saw: %v)", terr, err), lapErr, lapDone
			}
			return err, lapErr, lapDone
		case <-timer.C:
			return err, lapErr, lapDone
		}
	}
}
