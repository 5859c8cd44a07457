package launcher

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/ringtrain/ringtrain/preempt"
)

// Node 0 coordinates a multi-node job. Its event loop owns all state; goroutines (the
// listener, each connection's reader, the build, the local group) only send it events.
// It is the agent state machine of state.go (torch elastic's WorkerState), per attempt k:
//
//	init:        wait (up to --join-timeout) until every node has joined and built TARGET;
//	             then send start(k) to every node, start the local ranks → healthy
//	healthy:     the first failure anywhere (a local rank, a node's failed(k), a lost node,
//	             an interrupt) sends stop(k) to every node and stops the local ranks
//	             → restarting; every rank of every node exiting 0 → succeeded (finish(0))
//	restarting:  wait until every node reports exited(k) (or is lost), then decide:
//	             restarts left and no fatal cause → init (k+1); an interrupt → stopped
//	             (finish(75) when the ranks saved a checkpoint, see package preempt);
//	             otherwise → failed (finish(1))
//
// A node whose connection dies is lost for the attempt. If restarts remain, the next gather
// waits for a gorun with that node rank to join again (a restarted pod, a requeued step);
// otherwise the job ends.

// nodeSlot is node 0's view of one other node.
type nodeSlot struct {
	conn    *agentConn
	host    string
	ready   bool // built TARGET on this connection
	running bool // running ranks of the current attempt
}

type coordEvent struct {
	node int
	conn *agentConn
	msg  *message // nil: the connection ended
}

type joinRequest struct {
	conn  net.Conn
	rmac  *macState
	wmac  *macState
	join  *message
	reply chan error
}

type coordinator struct {
	r      *runner
	ctx    context.Context
	slots  []nodeSlot // index = node rank; slot 0 unused (node 0 is us)
	events chan coordEvent
	joins  chan joinRequest
	done   chan struct{} // closed when the event loop has returned

	lastReject string // why the last join was refused, for the timeout message
}

func (r *runner) runCoordinator(ctx context.Context) error {
	c := &r.cfg
	ln, err := net.Listen("tcp", net.JoinHostPort("", strconv.Itoa(c.MasterPort)))
	if err != nil {
		return jobErrorf("node 0: cannot serve the node agent on TCP port %d (--master-port): %v", c.MasterPort, err)
	}
	defer ln.Close()
	co := &coordinator{
		r: r, ctx: ctx,
		slots:  make([]nodeSlot, c.NNodes),
		events: make(chan coordEvent, 64),
		joins:  make(chan joinRequest),
		done:   make(chan struct{}),
	}
	r.say("node 0 of %d: %d rank(s) here (global ranks 0-%d of %d); waiting for %d other node(s) on TCP port %d",
		c.NNodes, c.NProc, c.NProc-1, c.NNodes*c.NProc, c.NNodes-1, c.MasterPort)
	acceptDone := make(chan struct{})
	go co.acceptLoop(ln, acceptDone)
	defer func() { ln.Close(); <-acceptDone }()
	defer func() {
		close(co.done)
		for i := 1; i < len(co.slots); i++ {
			if s := &co.slots[i]; s.conn != nil {
				s.conn.close()
			}
		}
	}()
	return co.loop()
}

// acceptLoop authenticates new connections and hands their joins to the event loop.
func (co *coordinator) acceptLoop(ln net.Listener, done chan struct{}) {
	defer close(done)
	for {
		conn, err := ln.Accept()
		if err != nil {
			return
		}
		go func() {
			rmac, wmac, join, err := serverHandshake(conn, co.r.cfg.Token)
			if err != nil {
				co.r.say("refused agent connection from %s: %v", conn.RemoteAddr(), err)
				conn.Close()
				return
			}
			req := joinRequest{conn: conn, rmac: rmac, wmac: wmac, join: join, reply: make(chan error, 1)}
			select {
			case co.joins <- req:
			case <-co.done:
				conn.Close()
			}
		}()
	}
}

// accept validates a join and, if it fits a free slot, welcomes the node.
func (co *coordinator) accept(req joinRequest) {
	c := &co.r.cfg
	j := req.join
	var reason string
	switch {
	case int(j.nnodes) != c.NNodes:
		reason = fmt.Sprintf("node %d has --nnodes %d but node 0 has --nnodes %d", j.nodeRank, j.nnodes, c.NNodes)
	case int(j.nproc) != c.NProc:
		reason = fmt.Sprintf("node %d has --nproc %d but node 0 has --nproc %d: every node must start the same number of ranks", j.nodeRank, j.nproc, c.NProc)
	case j.nodeRank == 0 || int(j.nodeRank) >= c.NNodes:
		reason = fmt.Sprintf("--node-rank %d is not in [1, %d)", j.nodeRank, c.NNodes)
	case co.slots[j.nodeRank].conn != nil:
		reason = fmt.Sprintf("node rank %d has already joined (from %s): is --node-rank the same on two nodes?", j.nodeRank, co.slots[j.nodeRank].host)
	}
	wmac := req.wmac
	if reason != "" {
		co.lastReject = reason
		co.r.say("refused a node from %s: %s", req.conn.RemoteAddr(), reason)
		_ = req.conn.SetWriteDeadline(time.Now().Add(time.Second))
		_, _ = req.conn.Write(appendFrame(nil, &message{typ: msgReject, text: reason}, wmac))
		req.conn.Close()
		return
	}
	_ = req.conn.SetWriteDeadline(time.Now().Add(handshakeTimeout))
	if _, err := req.conn.Write(appendFrame(nil, &message{typ: msgWelcome}, wmac)); err != nil {
		req.conn.Close()
		return
	}
	_ = req.conn.SetWriteDeadline(time.Time{})
	node := int(j.nodeRank)
	conn := newAgentConn(req.conn, bufio.NewReader(req.conn), req.rmac, wmac, co.r.cfg.HeartbeatInterval, co.r.cfg.HeartbeatTimeout)
	co.slots[node] = nodeSlot{conn: conn, host: printable(j.text) + " (" + conn.peer + ")"}
	co.r.say("node %d joined from %s", node, co.slots[node].host)
	go forwardEvents(conn, node, co.events, co.done)
}

// forwardEvents hands the leader every message node's conn receives, then one event without a
// message when the connection ends, until done closes (the fixed-size coordinator and the
// elastic leader alike).
func forwardEvents(conn *agentConn, node int, events chan<- coordEvent, done <-chan struct{}) {
	for m := range conn.in {
		select {
		case events <- coordEvent{node: node, conn: conn, msg: m}:
		case <-done:
			return
		}
	}
	select {
	case events <- coordEvent{node: node, conn: conn}:
	case <-done:
	}
}

// failure is the first cause that stops an attempt.
type failure struct {
	where string // "node 1" or "node 0"
	text  string
	fatal bool // no restart: an interrupt, a build error
	said  bool // already printed when it happened
}

// loop is node 0's event loop for the whole job.
func (co *coordinator) loop() error {
	r, c := co.r, &co.r.cfg
	type buildResult struct{ err error }
	buildDone := make(chan buildResult, 1)
	buildCtx, cancelBuild := context.WithCancel(co.ctx)
	go func() { buildDone <- buildResult{r.build(buildCtx)} }()
	built, buildPending := false, true
	defer func() {
		cancelBuild()
		if buildPending {
			<-buildDone // the build is being killed; let it end before its directory goes
		}
	}()

	runID := c.RunID
	if runID == "" {
		runID = randomHex(6)
	}
	r.group.runID = runID

	var (
		attempt      = 0
		sm           = &stateMachine{cur: stateInit, say: r.say, observe: c.observeState}
		joinDeadline = time.NewTimer(c.JoinTimeout)
		settle       *time.Timer
		settleC      <-chan time.Time
		stopLocal    chan stopRequest
		localFail    chan *rankExit
		localDone    chan *attemptResult
		localRunning bool
		localRes     *attemptResult
		first        *failure
		ctxDone      = co.ctx.Done()
		interrupted  bool
	)
	defer joinDeadline.Stop()

	finish := func(code uint8, reason string) {
		for i := 1; i < len(co.slots); i++ {
			if s := &co.slots[i]; s.conn != nil {
				s.conn.send(&message{typ: msgFinish, code: code, text: reason})
			}
		}
		var wg sync.WaitGroup
		for i := 1; i < len(co.slots); i++ {
			if s := &co.slots[i]; s.conn != nil {
				wg.Add(1)
				go func(conn *agentConn) {
					defer wg.Done()
					conn.closeAfterFlush(2 * time.Second)
				}(s.conn)
			}
		}
		wg.Wait()
	}
	// fail records the first cause of the attempt's end and stops everyone.
	fail := func(f failure) {
		if first != nil {
			if f.fatal {
				first.fatal = true
			}
			return
		}
		first = &f
		if sm.cur != stateHealthy {
			return // init: the loop ends the job; restarting: already stopping
		}
		sm.to(stateRestarting)
		if f.where != "node 0" && !f.said {
			r.say("%s reports: %s", f.where, indentAfterFirst(f.text))
		}
		r.say("stopping attempt %d on all nodes", attempt)
		for i := 1; i < len(co.slots); i++ {
			if s := &co.slots[i]; s.conn != nil && s.running {
				s.conn.send(&message{typ: msgStop, attempt: uint32(attempt), text: f.where + ": " + firstLine(f.text)})
			}
		}
		if localRunning {
			select {
			case stopLocal <- stopRequest{sig: syscall.SIGTERM, reason: f.where + ": " + firstLine(f.text)}:
			default:
			}
		}
		settle = time.NewTimer(2*c.Grace + 30*time.Second)
		settleC = settle.C
	}

	for {
		// Transitions first: start an attempt once everyone is here, decide once every
		// node's ranks have ended.
		switch sm.cur {
		case stateInit:
			if first != nil {
				// Failed before the attempt could start (build error, interrupt, join timeout).
				finish(1, first.where+": "+firstLine(first.text))
				if interrupted {
					sm.to(stateStopped)
					return r.interrupted(co.ctx)
				}
				sm.to(stateFailed)
				return jobErrorf("%s: %s", first.where, firstLine(first.text))
			}
			if !built || !co.allReady() {
				break
			}
			joinDeadline.Stop()
			r.say("all %d nodes ready; starting attempt %d (run id %s)", c.NNodes, attempt, runID)
			for i := 1; i < len(co.slots); i++ {
				co.slots[i].running = true
				co.slots[i].conn.send(&message{typ: msgStart, attempt: uint32(attempt), text: runID})
			}
			stopLocal = make(chan stopRequest, 1)
			localFail = make(chan *rankExit, 1)
			localDone = make(chan *attemptResult, 1)
			localRunning = true
			go func(k int, stop chan stopRequest, fails chan *rankExit, done chan *attemptResult) {
				done <- r.group.run(co.ctx, k, stop, func(ex *rankExit) { fails <- ex })
			}(attempt, stopLocal, localFail, localDone)
			sm.to(stateHealthy)
		case stateHealthy, stateRestarting:
			if localRunning || co.anyRunning() {
				break
			}
			if settle != nil {
				settle.Stop()
				settle, settleC = nil, nil
			}
			if first == nil {
				sm.to(stateSucceeded)
				r.say("attempt %d succeeded on all %d nodes", attempt, c.NNodes)
				finish(0, "")
				return nil
			}
			restart := attempt < c.MaxRestarts && !first.fatal
			header := r.failHeader(attempt)
			if restart {
				header = fmt.Sprintf("attempt %d failed; restarting all nodes (restart %d of %d)", attempt, attempt+1, c.MaxRestarts)
			} else if interrupted {
				header = "job interrupted"
			}
			r.stderr.write([]byte(formatSummary(localRes, header)))
			if first.where != "node 0" {
				r.say("first failure: %s: %s", first.where, indentAfterFirst(first.text))
			}
			if !restart {
				if first.fatal && localRes.preempted() {
					// Stopped by a signal (here or on another node) and rank 0, with the
					// rest of this node, saved the checkpoint: the job is resumable.
					sm.to(stateStopped)
					finish(preempt.ExitCode, "preempted: "+first.where+": "+firstLine(first.text))
					return r.preempted(co.ctx)
				}
				if first.where == "node 0" && localRes != nil && localRes.first >= 0 {
					r.rootCause = &localRes.exits[localRes.first]
				}
				finish(1, first.where+": "+firstLine(first.text))
				if interrupted {
					sm.to(stateStopped)
					return r.interrupted(co.ctx)
				}
				sm.to(stateFailed)
				return jobErrorf("%s: %s", first.where, firstLine(first.text))
			}
			attempt++
			first, localRes = nil, nil
			sm.to(stateInit)
			joinDeadline.Reset(c.JoinTimeout)
			continue // the nodes may all be ready already
		}

		select {
		case b := <-buildDone:
			buildPending = false
			if b.err != nil {
				if errors.Is(b.err, ErrInterrupted) {
					fail(failure{where: "node 0", text: "interrupted while building", fatal: true})
					interrupted = true
					continue
				}
				finish(1, "node 0: "+b.err.Error())
				return b.err
			}
			built = true
		case req := <-co.joins:
			co.accept(req)
		case ev := <-co.events:
			s := &co.slots[ev.node]
			if s.conn != ev.conn {
				continue // an old connection of a node that has rejoined since
			}
			where := "node " + strconv.Itoa(ev.node)
			if ev.msg == nil {
				err := ev.conn.Err()
				wasRunning := s.running
				*s = nodeSlot{}
				r.say("lost node %d: %v", ev.node, err)
				// Before a start, a node may drop and come back (the join timeout bounds
				// that); during an attempt, losing it fails the attempt.
				if wasRunning {
					fail(failure{where: where, text: fmt.Sprintf("lost contact with its gorun: %v", err), said: true})
				}
				continue
			}
			m := ev.msg
			switch m.typ {
			case msgReady:
				s.ready = true
			case msgFailed:
				if m.fatal || (sm.cur != stateInit && int(m.attempt) == attempt) {
					fail(failure{where: where, text: printable(m.text), fatal: m.fatal})
				}
			case msgExited:
				if int(m.attempt) == attempt && s.running {
					s.running = false
					if !m.ok {
						fail(failure{where: where, text: "its ranks failed"})
					}
				}
			default:
				r.say("node %d sent an unexpected %s message; dropping it", ev.node, m.typ)
				s.conn.close()
			}
		case ex := <-localFail:
			fail(failure{where: "node 0", text: describeRankFailure(ex)})
		case res := <-localDone:
			localRunning, localRes = false, res
			localFail = nil // its event, if still queued, is covered by res
			if res.first >= 0 {
				fail(failure{where: "node 0", text: describeRankFailure(&res.exits[res.first])})
			} else if res.stopped && first == nil {
				fail(failure{where: "node 0", text: res.stopCause, fatal: true})
			}
		case <-ctxDone:
			ctxDone = nil
			interrupted = true
			fail(failure{where: "node 0", text: "interrupted: gorun received " + signalName(signalOf(co.ctx)), fatal: true})
		case <-joinDeadline.C:
			if sm.cur == stateInit {
				msg := fmt.Sprintf("node(s) %s did not join within --join-timeout %v (is gorun running there with --master-addr reaching this host, --master-port %d and the same token?)",
					co.missing(), c.JoinTimeout, c.MasterPort)
				if co.lastReject != "" {
					msg += "; last refused join: " + co.lastReject
				}
				if !built {
					msg = "TARGET did not finish building within --join-timeout " + c.JoinTimeout.String()
				}
				fail(failure{where: "node 0", text: msg, fatal: true})
			}
		case <-settleC:
			settle, settleC = nil, nil
			for i := 1; i < len(co.slots); i++ {
				if s := &co.slots[i]; s.running {
					r.say("node %d did not report its ranks' end in time; treating it as lost", i)
					s.conn.close()
					*s = nodeSlot{}
				}
			}
		}
	}
}

func (co *coordinator) allReady() bool {
	for i := 1; i < len(co.slots); i++ {
		if co.slots[i].conn == nil || !co.slots[i].ready {
			return false
		}
	}
	return true
}

func (co *coordinator) anyRunning() bool {
	for i := 1; i < len(co.slots); i++ {
		if co.slots[i].running {
			return true
		}
	}
	return false
}

func (co *coordinator) missing() string {
	var miss []string
	for i := 1; i < len(co.slots); i++ {
		if co.slots[i].conn == nil {
			miss = append(miss, strconv.Itoa(i))
		} else if !co.slots[i].ready {
			miss = append(miss, strconv.Itoa(i)+" (joined, still building)")
		}
	}
	sort.Strings(miss)
	return strings.Join(miss, ", ")
}

// describeRankFailure is the text a node sends about its failed rank: one line, then the
// rank's last stderr lines.
func describeRankFailure(ex *rankExit) string {
	var b strings.Builder
	fmt.Fprintf(&b, "rank %d (local rank %d, pid %d) %s", ex.rank, ex.local, ex.pid, ex.how())
	if m := ex.reported(); m != "" {
		fmt.Fprintf(&b, ": %s", m) // its error file's message: the first line says what went wrong
	}
	for _, line := range ex.tail {
		fmt.Fprintf(&b, "\n[%d] %s", ex.rank, line)
	}
	return b.String()
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
}

// indentAfterFirst prints continuation lines under "gorun: " messages.
func indentAfterFirst(s string) string {
	return strings.ReplaceAll(s, "\n", "\ngorun:   ")
}
