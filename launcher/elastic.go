package launcher

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/ringtrain/ringtrain/preempt"
)

// Elastic jobs (--nnodes MIN:MAX).
//
// One node is the rendezvous host (the "leader"): it serves the agent on TCP MASTER_PORT,
// decides every membership and hosts rank 0 (so MASTER_ADDR is its address). The others
// ("followers") join it. Every start message carries the whole membership: the world version,
// each node's rank and the address of every node, so every node knows every other.
//
// The leader is the agent state machine of state.go (torch elastic's WorkerState), the same
// as the fixed-size coordinator's; here init is the rendezvous of a membership:
//
//	init ──(≥ MIN ready; MAX, or --settle elapsed)──> healthy ──(failure, lost node,
//	  │                                                  │       admission)──> restarting
//	  │ (< MIN within --join-timeout, no quorum)         │ (all ranks exit 0)       │
//	  v                                                  v                          │
//	failed / stopped <── (no restarts left, fatal, partition, interrupt) ── restarting ──> init
//
// Failure model:
//
//   - A lost node (its agent connection closed, or silent for GORUN_PEER_TIMEOUT) ends the
//     attempt everywhere; the survivors restart at the new world size from the last
//     checkpoint. It does not use up --max-restarts: only rank failures on live nodes do.
//   - The leader keeps the job after losing nodes only while at least half of the last
//     membership (itself included) is still connected. A follower that loses the leader takes
//     over only with a strict majority of the last membership. Both cannot hold at once on
//     the two sides of a partition, so a partition never makes two jobs: the side without its
//     share exits 1 naming the partition.
//   - Takeover: the lowest-ranked surviving node of the last membership listens on its own
//     address (same port, token and authentication); the others try the surviving nodes in
//     rank order. The new leader restarts the ranks with itself as rank 0.
//   - A node that starts while the job runs joins through --rdzv-endpoints (any of them may
//     be the current rendezvous host) and waits. If the world is below MAX, the leader
//     restarts the job to admit it after --settle; at MAX it waits for the next membership
//     change. (torchrun restarts as soon as its monitor sees a waiting node; --settle is
//     our last-call window.)

// elasticJoin is the payload (JSON in the join's text) of an elastic node's join.
type elasticJoin struct {
	Host     string `json:"host"`
	Min      int    `json:"min"`
	Max      int    `json:"max"`
	Hint     int    `json:"hint"`      // --node-rank: order among new nodes
	Version  int    `json:"version"`   // last world version this node ran in; -1 none
	LastRank int    `json:"last_rank"` // its node rank there
}

// assignment is the payload (JSON in the start's text) of an elastic start: the whole
// membership of one attempt, as seen from the node it is sent to.
type assignment struct {
	RunID    string   `json:"run_id"`
	Attempt  int      `json:"attempt"`
	Failures int      `json:"failures"` // restarts used by rank failures so far
	Version  int      `json:"version"`
	NodeRank int      `json:"node_rank"`
	Members  []string `json:"members"` // every node's address by node rank; [0] the leader
}

// elasticState is what a node remembers across roles (follower → leader after a takeover).
type elasticState struct {
	last *assignment // the last membership this node ran in
}

// endpoints lists the agent addresses a node tries: --rdzv-endpoints (else the master
// address), then every node of the last membership.
func (r *runner) endpoints(es *elasticState) []string {
	c := &r.cfg
	var eps []string
	add := func(a string) {
		for _, e := range eps {
			if e == a {
				return
			}
		}
		eps = append(eps, a)
	}
	for _, e := range c.RdzvEndpoints {
		add(e)
	}
	if len(eps) == 0 {
		add(net.JoinHostPort(c.MasterAddr, strconv.Itoa(c.MasterPort)))
	}
	if es.last != nil {
		for _, m := range es.last.Members {
			add(net.JoinHostPort(m, strconv.Itoa(c.MasterPort)))
		}
	}
	return eps
}

func (r *runner) joinMessage(es *elasticState) *message {
	c := &r.cfg
	host, _ := os.Hostname()
	j := elasticJoin{Host: host, Min: c.MinNodes, Max: c.MaxNodes, Hint: c.NodeRank, Version: -1, LastRank: -1}
	if es.last != nil {
		j.Version, j.LastRank = es.last.Version, es.last.NodeRank
	}
	b, _ := json.Marshal(j)
	return &message{typ: msgJoin, nodeRank: uint32(c.NodeRank), nnodes: 0, nproc: uint32(c.NProc), text: string(b)}
}

// errNoAgent: no endpoint answered.
var errNoAgent = errors.New("no rendezvous agent answered")

// tryJoin dials addr once and joins; final reports a refusal that retrying cannot cure.
func (r *runner) tryJoin(ctx context.Context, addr string, es *elasticState, timeout time.Duration) (conn *agentConn, final, err error) {
	d := net.Dialer{Timeout: timeout}
	nc, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, nil, err
	}
	br := bufio.NewReader(nc)
	rmac, wmac, answer, err := clientHandshake(nc, br, r.cfg.Token, r.joinMessage(es))
	if err != nil {
		nc.Close()
		if errors.Is(err, ErrTokenMismatch) || errors.Is(err, errBadMessage) {
			return nil, jobErrorf("joining the rendezvous at %s: %v", addr, err), err
		}
		return nil, nil, err
	}
	if answer.typ == msgReject {
		nc.Close()
		return nil, jobErrorf("the rendezvous at %s refused to let us join: %s", addr, printable(answer.text)), errors.New("refused")
	}
	return newAgentConn(nc, br, rmac, wmac, r.cfg.HeartbeatInterval, r.cfg.HeartbeatTimeout), nil, nil
}

// discover tries the endpoints in rounds until one lets us join or the deadline passes.
func (r *runner) discover(ctx context.Context, eps []string, deadline time.Time, es *elasticState) (*agentConn, error) {
	backoff := 100 * time.Millisecond
	var lastErr error = errNoAgent
	for round := 0; ; round++ {
		for _, ep := range eps {
			conn, final, err := r.tryJoin(ctx, ep, es, 2*time.Second)
			if final != nil {
				return nil, final
			}
			if err == nil {
				r.say("joined the rendezvous at %s", ep)
				return conn, nil
			}
			lastErr = fmt.Errorf("%s: %w", ep, err)
		}
		if ctx.Err() != nil {
			return nil, r.interrupted(ctx)
		}
		if !time.Now().Before(deadline) {
			return nil, lastErr
		}
		if round == 0 || round%20 == 0 {
			r.say("waiting for a rendezvous at %s: %v", strings.Join(eps, ", "), lastErr)
		}
		select {
		case <-time.After(backoff):
		case <-ctx.Done():
			return nil, r.interrupted(ctx)
		}
		backoff = min(2*backoff, time.Second)
	}
}

// runElastic is an elastic node's life: build, find or become the rendezvous, run attempts
// as leader or follower, and take over the rendezvous when the leader is lost.
func (r *runner) runElastic(ctx context.Context) error {
	c := &r.cfg
	r.say("elastic job: --nnodes %d:%d, %d rank(s) per node; rendezvous endpoints %s",
		c.MinNodes, c.MaxNodes, c.NProc, strings.Join(r.endpoints(&elasticState{}), ", "))
	if err := r.build(ctx); err != nil {
		return err
	}
	es := &elasticState{}
	var conn *agentConn
	if c.NodeRank == 0 {
		// The first node looks for a running job (it may be a restarted node 0) and
		// otherwise starts one.
		var err error
		conn, err = r.discover(ctx, r.endpoints(es), time.Now(), es)
		if err != nil {
			var je *JobError
			if errors.As(err, &je) {
				return err
			}
			return r.lead(ctx, es, c.MasterAddr, nil)
		}
	} else {
		var err error
		conn, err = r.discover(ctx, r.endpoints(es), time.Now().Add(c.JoinTimeout), es)
		if err != nil {
			var je *JobError
			if errors.As(err, &je) {
				return err
			}
			return jobErrorf("node %d: found no rendezvous within --join-timeout %v: %v", c.NodeRank, c.JoinTimeout, err)
		}
	}
	for {
		lost, err := r.follow(ctx, conn, es)
		if !lost {
			return err
		}
		// The leader is gone. The lowest surviving node of the last membership takes over.
		if es.last == nil {
			conn, err = r.discover(ctx, r.endpoints(es), time.Now().Add(c.JoinTimeout), es)
			if err != nil {
				return jobErrorf("lost the rendezvous before any attempt and found none again: %v", err)
			}
			continue
		}
		conn, err = r.takeover(ctx, es)
		if err != nil {
			return err
		}
		if conn == nil {
			return nil // we led the rest of the job
		}
	}
}

// takeover walks the surviving members of the last membership in rank order: it joins the
// first that serves the rendezvous, or leads when its own turn comes. It returns a connection
// to the new leader, or nil after leading the job itself (err is then the job's end).
func (r *runner) takeover(ctx context.Context, es *elasticState) (*agentConn, error) {
	c := &r.cfg
	last := es.last
	window := c.HeartbeatTimeout + 2*c.Grace + 5*time.Second // a candidate's time to notice and stop its ranks
	for rank := 1; rank < len(last.Members); rank++ {
		if rank == last.NodeRank {
			r.say("taking over the rendezvous (lowest surviving node of world version %d)", last.Version)
			return nil, r.lead(ctx, es, last.Members[rank], last)
		}
		addr := net.JoinHostPort(last.Members[rank], strconv.Itoa(c.MasterPort))
		r.say("looking for the new rendezvous at node %d of world version %d (%s)", rank, last.Version, addr)
		conn, err := r.discover(ctx, []string{addr}, time.Now().Add(window), es)
		if err == nil {
			return conn, nil
		}
		var je *JobError
		if errors.As(err, &je) {
			return nil, err
		}
	}
	return nil, jobErrorf("no surviving node of world version %d serves the rendezvous", last.Version)
}

// follow runs attempts as the leader says until the job ends (lost=false, err = the job's
// outcome) or the leader is lost (lost=true, the local ranks have ended).
func (r *runner) follow(ctx context.Context, conn *agentConn, es *elasticState) (lost bool, err error) {
	defer conn.close()
	conn.send(&message{typ: msgReady})
	var (
		attempt      = -1
		localRunning bool
		stopLocal    chan stopRequest
		localDone    chan *attemptResult
		ctxDone      = ctx.Done()
		interrupted  bool
		finished     *message
		lastRes      *attemptResult
		lostErr      error
		in           = conn.in
	)
	stop := func(reason string) {
		if localRunning {
			select {
			case stopLocal <- stopRequest{sig: syscall.SIGTERM, reason: reason}:
			default:
			}
		}
	}
	for {
		if !localRunning {
			switch {
			case interrupted:
				conn.closeAfterFlush(2 * time.Second)
				if lastRes.preempted() {
					return false, r.preempted(ctx)
				}
				return false, r.interrupted(ctx)
			case finished != nil:
				if finished.code == 0 {
					return false, nil
				}
				if finished.code == preempt.ExitCode {
					return false, &JobError{Code: preempt.ExitCode, Msg: "job preempted: " + printable(finished.text), Err: ErrPreempted}
				}
				return false, &JobError{Code: int(finished.code), Msg: "job failed: " + printable(finished.text)}
			case lostErr != nil:
				return true, nil
			}
		}
		select {
		case m, ok := <-in:
			if !ok {
				in = nil
				lostErr = conn.Err()
				r.say("lost the rendezvous host's agent: %v; stopping this node's ranks", lostErr)
				stop("lost the rendezvous host")
				continue
			}
			switch m.typ {
			case msgStart:
				var a assignment
				if err := json.Unmarshal([]byte(m.text), &a); err != nil || a.NodeRank <= 0 || a.NodeRank >= len(a.Members) {
					r.say("the rendezvous sent a malformed start (%v); leaving", err)
					conn.close()
					continue
				}
				if localRunning {
					continue
				}
				attempt = int(m.attempt)
				es.last = &a
				r.group.runID = a.RunID
				r.group.world = world{nodeRank: a.NodeRank, nnodes: len(a.Members), masterAddr: a.Members[0], version: a.Version}
				r.say("attempt %d: world version %d, node %d of %d (global ranks %d-%d of %d), rendezvous %s",
					attempt, a.Version, a.NodeRank, len(a.Members), a.NodeRank*r.cfg.NProc, (a.NodeRank+1)*r.cfg.NProc-1,
					len(a.Members)*r.cfg.NProc, a.Members[0])
				stopLocal, localDone = r.startAttempt(ctx, attempt, conn)
				localRunning = true
			case msgStop:
				if localRunning && int(m.attempt) == attempt {
					r.say("the rendezvous says stop: %s", printable(m.text))
					stop(printable(m.text))
				}
			case msgFinish:
				finished = m
				if m.code != 0 {
					r.say("the rendezvous ended the job: %s", printable(m.text))
				}
				stop("the job ended")
			default:
				r.say("the rendezvous sent an unexpected %s message; leaving", m.typ)
				conn.close()
			}
		case res := <-localDone:
			localRunning, lastRes = false, res
			ok := res.ok()
			if !ok && res.first >= 0 {
				r.stderr.write([]byte(formatSummary(res, fmt.Sprintf("attempt %d failed on this node", attempt))))
			}
			if interrupted {
				// Leaving: the closed connection tells the leader this node is lost, a
				// membership change (not a failure that uses up a restart).
				continue
			}
			conn.send(&message{typ: msgExited, attempt: uint32(attempt), ok: ok})
		case <-ctxDone:
			// An interrupted follower leaves the job (a preempted node): the leader sees it
			// lost and goes on without it.
			ctxDone = nil
			interrupted = true
		}
	}
}

// emember is the leader's view of one follower.
type emember struct {
	id        int
	conn      *agentConn
	host      string
	addr      string // its address as we see it
	localAddr string // our address as it sees us
	info      elasticJoin
	seq       int
	ready     bool
	running   bool
	rank      int // node rank in the current world; -1 when not in it
}

// eleader is the state of the rendezvous host.
type eleader struct {
	r       *runner
	ctx     context.Context
	members map[int]*emember
	nextID  int
	events  chan coordEvent
	joins   chan joinRequest
	done    chan struct{}

	selfAddr string
	runID    string
	attempt  int
	failures int
	version  int
	world    []int // member ids by node rank; world[0] = -1 (us)

	// quorum, while not nil, is the membership this leader took over: the next attempt
	// starts only once a strict majority of it is here.
	quorum *assignment
}

// lead serves the rendezvous until the job ends. took is the membership taken over (nil for
// the first leader).
func (r *runner) lead(ctx context.Context, es *elasticState, selfAddr string, took *assignment) error {
	c := &r.cfg
	ln, err := net.Listen("tcp", net.JoinHostPort("", strconv.Itoa(c.MasterPort)))
	if err != nil {
		return jobErrorf("cannot serve the rendezvous on TCP port %d (--master-port): %v", c.MasterPort, err)
	}
	defer ln.Close()
	l := &eleader{
		r: r, ctx: ctx, members: map[int]*emember{},
		events: make(chan coordEvent, 64), joins: make(chan joinRequest), done: make(chan struct{}),
		selfAddr: selfAddr, version: -1, runID: c.RunID,
	}
	if took != nil {
		l.runID, l.attempt, l.failures, l.version = took.RunID, took.Attempt+1, took.Failures, took.Version
		l.quorum = took
		l.world = make([]int, len(took.Members)) // the old membership, for the version check
		for i := range l.world {
			l.world[i] = -2 - i
		}
	}
	if l.runID == "" {
		l.runID = randomHex(6)
	}
	r.say("serving the rendezvous on %s:%d", selfAddr, c.MasterPort)
	co := &coordinator{r: r, joins: l.joins, done: l.done}
	acceptDone := make(chan struct{})
	go co.acceptLoop(ln, acceptDone)
	defer func() { ln.Close(); <-acceptDone }()
	defer func() {
		close(l.done)
		for _, m := range l.members {
			m.conn.close()
		}
	}()
	_ = es
	return l.loop()
}

func (l *eleader) accept(req joinRequest) {
	c := &l.r.cfg
	j := req.join
	var info elasticJoin
	var reason string
	if j.nnodes != 0 {
		reason = fmt.Sprintf("node %d runs a fixed-size job (--nnodes %d) but this job is elastic (--nnodes %d:%d)", j.nodeRank, j.nnodes, c.MinNodes, c.MaxNodes)
	} else if err := json.Unmarshal([]byte(j.text), &info); err != nil {
		reason = "malformed elastic join: " + err.Error()
	} else if info.Min != c.MinNodes || info.Max != c.MaxNodes {
		reason = fmt.Sprintf("node has --nnodes %d:%d but the job has --nnodes %d:%d", info.Min, info.Max, c.MinNodes, c.MaxNodes)
	} else if int(j.nproc) != c.NProc {
		reason = fmt.Sprintf("node has --nproc %d but the job has --nproc %d: every node must start the same number of ranks", j.nproc, c.NProc)
	}
	if reason != "" {
		l.r.say("refused a node from %s: %s", req.conn.RemoteAddr(), reason)
		_ = req.conn.SetWriteDeadline(time.Now().Add(time.Second))
		_, _ = req.conn.Write(appendFrame(nil, &message{typ: msgReject, text: reason}, req.wmac))
		req.conn.Close()
		return
	}
	_ = req.conn.SetWriteDeadline(time.Now().Add(handshakeTimeout))
	if _, err := req.conn.Write(appendFrame(nil, &message{typ: msgWelcome}, req.wmac)); err != nil {
		req.conn.Close()
		return
	}
	_ = req.conn.SetWriteDeadline(time.Time{})
	conn := newAgentConn(req.conn, bufio.NewReader(req.conn), req.rmac, req.wmac, c.HeartbeatInterval, c.HeartbeatTimeout)
	id := l.nextID
	l.nextID++
	host, _, _ := net.SplitHostPort(req.conn.RemoteAddr().String())
	local, _, _ := net.SplitHostPort(req.conn.LocalAddr().String())
	m := &emember{id: id, conn: conn, host: printable(info.Host), addr: host, localAddr: local, info: info, seq: id, rank: -1}
	l.members[id] = m
	l.r.say("node %s (%s) joined the rendezvous", host, m.host)
	go forwardEvents(conn, id, l.events, l.done)
}

// readyMembers lists the connected, built followers in start order: survivors of the last
// membership by their rank there, then newcomers by --node-rank and arrival.
func (l *eleader) readyMembers() []*emember {
	var ms []*emember
	for _, m := range l.members {
		if m.ready {
			ms = append(ms, m)
		}
	}
	key := func(m *emember) (int, int, int) {
		if m.rank >= 0 {
			return 0, m.rank, m.seq
		}
		if l.quorum != nil && m.info.Version == l.quorum.Version && m.info.LastRank >= 0 {
			return 0, m.info.LastRank, m.seq
		}
		return 1, m.info.Hint, m.seq
	}
	sort.Slice(ms, func(i, j int) bool {
		a1, a2, a3 := key(ms[i])
		b1, b2, b3 := key(ms[j])
		if a1 != b1 {
			return a1 < b1
		}
		if a2 != b2 {
			return a2 < b2
		}
		return a3 < b3
	})
	return ms
}

// quorumCount is how many nodes of the taken-over membership are here, us included.
func (l *eleader) quorumCount() int {
	n := 1
	for _, m := range l.members {
		if m.ready && m.info.Version == l.quorum.Version && m.info.LastRank > 0 {
			n++
		}
	}
	return n
}

func (l *eleader) loop() error {
	r, c := l.r, &l.r.cfg
	var (
		sm           = &stateMachine{cur: stateInit, say: r.say, observe: c.observeState}
		rdzvStart    = time.Now()
		settleAt     time.Time
		admitAt      time.Time
		tick         = time.NewTicker(100 * time.Millisecond)
		stopLocal    chan stopRequest
		localFail    chan *rankExit
		localDone    chan *attemptResult
		localRunning bool
		localRes     *attemptResult
		first        *failure
		lost         []string // nodes lost during the attempt
		admitting    bool
		ctxDone      = l.ctx.Done()
		interrupted  bool
	)
	defer tick.Stop()
	if l.quorum != nil {
		r.say("rendezvous moved here: waiting up to --join-timeout %v for a majority (%d) of world version %d's %d nodes",
			c.JoinTimeout, len(l.quorum.Members)/2+1, l.quorum.Version, len(l.quorum.Members))
	}

	finish := func(code uint8, reason string) {
		var wg sync.WaitGroup
		for _, m := range l.members {
			m.conn.send(&message{typ: msgFinish, code: code, text: reason})
			wg.Add(1)
			go func(conn *agentConn) { defer wg.Done(); conn.closeAfterFlush(2 * time.Second) }(m.conn)
		}
		wg.Wait()
	}
	end := func(reason string) error {
		finish(1, reason)
		if interrupted {
			sm.to(stateStopped)
			return r.interrupted(l.ctx)
		}
		sm.to(stateFailed)
		return jobErrorf("%s", reason)
	}
	fail := func(f failure) {
		if first != nil {
			if f.fatal {
				first.fatal = true
			}
			return
		}
		first = &f
		if sm.cur != stateHealthy {
			return
		}
		sm.to(stateRestarting)
		if f.where != "node 0" && !f.said {
			r.say("%s reports: %s", f.where, indentAfterFirst(f.text))
		}
		r.say("stopping attempt %d on all nodes (%s)", l.attempt, firstLine(f.text))
		for _, m := range l.members {
			if m.running {
				m.conn.send(&message{typ: msgStop, attempt: uint32(l.attempt), text: f.where + ": " + firstLine(f.text)})
			}
		}
		if localRunning {
			select {
			case stopLocal <- stopRequest{sig: syscall.SIGTERM, reason: f.where + ": " + firstLine(f.text)}:
			default:
			}
		}
	}
	start := func(ms []*emember) {
		ids := []int{-1}
		for _, m := range ms {
			ids = append(ids, m.id)
		}
		if !sameInts(ids, l.world) {
			l.version++
		}
		l.world = ids
		l.quorum = nil
		for _, m := range l.members {
			m.rank = -1
		}
		addrs := []string{l.selfAddr}
		for i, m := range ms {
			m.rank = i + 1
			addrs = append(addrs, m.addr)
		}
		r.say("attempt %d: world version %d, %d node(s), %d ranks: %s (rendezvous here)", l.attempt, l.version, len(ids),
			len(ids)*c.NProc, strings.Join(addrs, ", "))
		for _, m := range ms {
			a := assignment{RunID: l.runID, Attempt: l.attempt, Failures: l.failures, Version: l.version, NodeRank: m.rank,
				Members: append([]string{m.localAddr}, addrs[1:]...)}
			b, _ := json.Marshal(a)
			m.running = true
			m.conn.send(&message{typ: msgStart, attempt: uint32(l.attempt), text: string(b)})
		}
		r.group.runID = l.runID
		r.group.world = world{nodeRank: 0, nnodes: len(ids), masterAddr: l.selfAddr, version: l.version}
		stopLocal = make(chan stopRequest, 1)
		localFail = make(chan *rankExit, 1)
		localDone = make(chan *attemptResult, 1)
		localRunning = true
		go func(k int, stop chan stopRequest, fails chan *rankExit, done chan *attemptResult) {
			done <- r.group.run(l.ctx, k, stop, func(ex *rankExit) { fails <- ex })
		}(l.attempt, stopLocal, localFail, localDone)
		sm.to(stateHealthy)
		first, lost, admitting, localRes, admitAt = nil, nil, false, nil, time.Time{}
	}

	for {
		switch sm.cur {
		case stateInit:
			if first != nil && first.fatal {
				return end(first.where + ": " + firstLine(first.text))
			}
			ms := l.readyMembers()
			n := 1 + len(ms)
			quorumOK := l.quorum == nil || 2*l.quorumCount() > len(l.quorum.Members)
			if l.quorum == nil && len(l.world) > 1 {
				// Nodes of the last world lost after the attempt ended count as well: this
				// host keeps the job only with at least half of the last membership.
				surv := 1
				for _, m := range l.members {
					if m.rank > 0 {
						surv++
					}
				}
				if 2*surv < len(l.world) {
					return end(fmt.Sprintf("partition: only %d of the %d nodes of world version %d are left; "+
						"the rendezvous host keeps the job only with at least half of them (the other side may hold a majority)",
						surv, len(l.world), l.version))
				}
			}
			switch {
			case !quorumOK && time.Since(rdzvStart) > c.JoinTimeout:
				return end(fmt.Sprintf("partition: only %d of the %d nodes of world version %d reached this node within --join-timeout %v; "+
					"moving the rendezvous needs a majority (%d), so this side stops rather than make a second job",
					l.quorumCount(), len(l.quorum.Members), l.quorum.Version, c.JoinTimeout, len(l.quorum.Members)/2+1))
			case n < c.MinNodes || !quorumOK:
				settleAt = time.Time{}
				if n < c.MinNodes && time.Since(rdzvStart) > c.JoinTimeout {
					return end(fmt.Sprintf("only %d node(s) within --join-timeout %v; --nnodes %d:%d needs at least %d",
						n, c.JoinTimeout, c.MinNodes, c.MaxNodes, c.MinNodes))
				}
			default:
				if settleAt.IsZero() {
					settleAt = time.Now().Add(c.Settle)
				}
				if n >= c.MaxNodes || !time.Now().Before(settleAt) {
					if len(ms) > c.MaxNodes-1 {
						ms = ms[:c.MaxNodes-1]
					}
					start(ms)
				}
			}
		case stateHealthy:
			if !localRunning && !l.anyRunning() {
				sm.to(stateRestarting) // every rank exited 0: decided there
				continue
			}
			if !admitting && len(l.world) < c.MaxNodes {
				waiting := 0
				for _, m := range l.members {
					if m.ready && m.rank < 0 {
						waiting++
					}
				}
				switch {
				case waiting == 0:
					admitAt = time.Time{}
				case admitAt.IsZero():
					admitAt = time.Now().Add(c.Settle)
					r.say("%d node(s) waiting to join; restarting to admit them in %v unless the job ends first", waiting, c.Settle)
				case !time.Now().Before(admitAt):
					admitting = true
					fail(failure{where: "node 0", text: fmt.Sprintf("admitting %d waiting node(s) (world below --nnodes max %d)", waiting, c.MaxNodes)})
				}
			}
		case stateRestarting:
			if localRunning || l.anyRunning() {
				break
			}
			// Every node's ranks have ended: decide.
			if first == nil {
				sm.to(stateSucceeded)
				r.say("attempt %d succeeded on all %d nodes", l.attempt, len(l.world))
				finish(0, "")
				return nil
			}
			if localRes != nil && (localRes.first >= 0 || first.where == "node 0") {
				r.stderr.write([]byte(formatSummary(localRes, fmt.Sprintf("attempt %d ended", l.attempt))))
			}
			if first.fatal && localRes.preempted() {
				// Stopped by a signal and rank 0 (here) saved the checkpoint: resumable.
				sm.to(stateStopped)
				finish(preempt.ExitCode, "preempted: "+first.where+": "+firstLine(first.text))
				return r.preempted(l.ctx)
			}
			if first.fatal {
				return end(first.where + ": " + firstLine(first.text))
			}
			if len(lost) > 0 {
				survivors := 1
				for _, id := range l.world[1:] {
					if m, ok := l.members[id]; ok && m.conn.Err() == nil {
						survivors++
					}
				}
				if 2*survivors < len(l.world) {
					return end(fmt.Sprintf("partition: lost %s at once, %d of the %d nodes of world version %d are left; "+
						"the rendezvous host keeps the job only with at least half of them (the other side may hold a majority)",
						strings.Join(lost, ", "), survivors, len(l.world), l.version))
				}
				r.say("membership change: lost %s; %d of %d nodes left; re-forming the job (restarts used: %d of %d)",
					strings.Join(lost, ", "), survivors, len(l.world), l.failures, c.MaxRestarts)
			} else if admitting {
				r.say("membership change: admitting new nodes")
			} else {
				if l.failures >= c.MaxRestarts {
					if first.where == "node 0" && localRes != nil && localRes.first >= 0 {
						r.rootCause = &localRes.exits[localRes.first]
					}
					r.say("first failure: %s: %s", first.where, indentAfterFirst(first.text))
					return end(fmt.Sprintf("%s: %s (no restarts left, --max-restarts %d)", first.where, firstLine(first.text), c.MaxRestarts))
				}
				l.failures++
				r.say("attempt %d failed (%s: %s); restarting (restart %d of %d)", l.attempt, first.where, firstLine(first.text), l.failures, c.MaxRestarts)
			}
			l.attempt++
			sm.to(stateInit)
			rdzvStart, settleAt, first = time.Now(), time.Time{}, nil
			continue
		}

		select {
		case <-tick.C:
		case req := <-l.joins:
			l.accept(req)
		case ev := <-l.events:
			m, ok := l.members[ev.node]
			if !ok || m.conn != ev.conn {
				continue
			}
			where := "node " + m.addr
			if m.rank > 0 {
				where = fmt.Sprintf("node %d (%s)", m.rank, m.addr)
			}
			if ev.msg == nil {
				err := ev.conn.Err()
				delete(l.members, ev.node)
				r.say("lost %s: %v", where, err)
				if m.running {
					m.running = false
					lost = append(lost, where)
					fail(failure{where: where, text: fmt.Sprintf("lost contact with its gorun: %v", err), said: true})
				}
				continue
			}
			switch ev.msg.typ {
			case msgReady:
				m.ready = true
			case msgFailed:
				if sm.cur == stateHealthy && int(ev.msg.attempt) == l.attempt && m.running {
					fail(failure{where: where, text: printable(ev.msg.text), fatal: ev.msg.fatal})
				}
			case msgExited:
				if int(ev.msg.attempt) == l.attempt && m.running {
					m.running = false
					if !ev.msg.ok && sm.cur == stateHealthy {
						fail(failure{where: where, text: "its ranks failed"})
					}
				}
			default:
				r.say("%s sent an unexpected %s message; dropping it", where, ev.msg.typ)
				m.conn.close()
			}
		case ex := <-localFail:
			fail(failure{where: "node 0", text: describeRankFailure(ex)})
		case res := <-localDone:
			localRunning, localRes, localFail = false, res, nil
			if res.first >= 0 {
				fail(failure{where: "node 0", text: describeRankFailure(&res.exits[res.first])})
			} else if res.stopped && first == nil {
				fail(failure{where: "node 0", text: res.stopCause, fatal: true})
			}
		case <-ctxDone:
			ctxDone = nil
			interrupted = true
			if sm.cur == stateHealthy {
				fail(failure{where: "node 0", text: "interrupted: gorun received " + signalName(signalOf(l.ctx)), fatal: true})
			} else {
				if first == nil {
					first = &failure{where: "node 0", text: "interrupted: gorun received " + signalName(signalOf(l.ctx))}
				}
				first.fatal = true
				if sm.cur == stateInit {
					return end(first.where + ": " + first.text)
				}
			}
		}
	}
}

func (l *eleader) anyRunning() bool {
	for _, m := range l.members {
		if m.running {
			return true
		}
	}
	return false
}

func sameInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
