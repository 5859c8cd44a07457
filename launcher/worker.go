package launcher

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"syscall"
	"time"

	"github.com/ringtrain/ringtrain/preempt"
)

// A node other than 0 joins node 0's agent, builds TARGET, says it is ready, and then runs
// each attempt node 0 starts: it reports its first failing rank at once (failed) and the end
// of all its ranks (exited), and stops its ranks when node 0 says stop. It ends when node 0
// says finish, when it is interrupted, or when it loses node 0 (then it stops its ranks and
// exits non-zero: without node 0 there is no job).

// dialNode0 connects and authenticates to node 0's agent, retrying refused or unreachable
// connections until the join timeout. Authentication failures and refusals are final.
func (r *runner) dialNode0(ctx context.Context) (*agentConn, error) {
	c := &r.cfg
	addr := net.JoinHostPort(c.MasterAddr, strconv.Itoa(c.MasterPort))
	host, _ := os.Hostname()
	join := &message{typ: msgJoin, nodeRank: uint32(c.NodeRank), nnodes: uint32(c.NNodes), nproc: uint32(c.NProc), text: host}
	deadline := time.Now().Add(c.JoinTimeout)
	backoff := 100 * time.Millisecond
	var lastErr error
	for attemptN := 0; ; attemptN++ {
		d := net.Dialer{Timeout: min(5*time.Second, max(time.Until(deadline), time.Millisecond))}
		conn, err := d.DialContext(ctx, "tcp", addr)
		if err == nil {
			br := bufio.NewReader(conn)
			rmac, wmac, answer, herr := clientHandshake(conn, br, c.Token, join)
			if herr != nil {
				conn.Close()
				if errors.Is(herr, ErrTokenMismatch) || errors.Is(herr, errBadMessage) {
					return nil, jobErrorf("node %d: joining node 0 at %s: %v", c.NodeRank, addr, herr)
				}
				err = herr
			} else if answer.typ == msgReject {
				conn.Close()
				return nil, jobErrorf("node %d: node 0 at %s refused to let us join: %s", c.NodeRank, addr, printable(answer.text))
			} else {
				return newAgentConn(conn, br, rmac, wmac, c.HeartbeatInterval, c.HeartbeatTimeout), nil
			}
		}
		lastErr = err
		if ctx.Err() != nil {
			return nil, r.interrupted(ctx)
		}
		if time.Now().After(deadline) {
			return nil, jobErrorf("node %d: cannot reach node 0's agent at %s (--master-addr, --master-port) within --join-timeout %v: %v",
				c.NodeRank, addr, c.JoinTimeout, lastErr)
		}
		if attemptN == 0 || attemptN%20 == 0 {
			r.say("waiting for node 0's agent at %s: %v", addr, err)
		}
		select {
		case <-time.After(backoff):
		case <-ctx.Done():
			return nil, r.interrupted(ctx)
		}
		backoff = min(2*backoff, 2*time.Second)
	}
}

func (r *runner) runWorker(ctx context.Context) error {
	c := &r.cfg
	r.say("node %d of %d: %d rank(s) here (global ranks %d-%d of %d); joining node 0 at %s:%d",
		c.NodeRank, c.NNodes, c.NProc, c.NodeRank*c.NProc, (c.NodeRank+1)*c.NProc-1, c.NNodes*c.NProc, c.MasterAddr, c.MasterPort)
	conn, err := r.dialNode0(ctx)
	if err != nil {
		return err
	}
	defer conn.close()
	r.say("joined node 0")

	if err := r.build(ctx); err != nil {
		text := err.Error()
		if errors.Is(err, ErrInterrupted) {
			text = "interrupted while building"
		}
		conn.send(&message{typ: msgFailed, fatal: true, text: fmt.Sprintf("node %d: %s", c.NodeRank, text)})
		conn.closeAfterFlush(2 * time.Second)
		return err
	}
	conn.send(&message{typ: msgReady})

	var (
		attempt      = -1
		localRunning bool
		stopLocal    chan stopRequest
		localDone    chan *attemptResult
		ctxDone      = ctx.Done()
		interrupted  bool
		finished     *message // node 0's finish, acted on once the local ranks are done
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
					return r.preempted(ctx)
				}
				return r.interrupted(ctx)
			case finished != nil:
				if finished.code == 0 {
					return nil
				}
				if finished.code == preempt.ExitCode {
					return &JobError{Code: preempt.ExitCode, Msg: "job preempted: " + printable(finished.text), Err: ErrPreempted}
				}
				return &JobError{Code: int(finished.code), Msg: "job failed: " + printable(finished.text)}
			case lostErr != nil:
				return jobErrorf("node %d: lost node 0's agent: %v (stopped this node's ranks)", c.NodeRank, lostErr)
			}
		}
		select {
		case m, ok := <-in:
			if !ok {
				in = nil
				lostErr = conn.Err()
				r.say("lost node 0's agent: %v; stopping this node's ranks", lostErr)
				stop("lost node 0")
				continue
			}
			switch m.typ {
			case msgStart:
				if localRunning {
					r.say("node 0 started attempt %d while attempt %d is still running here; ignoring it", m.attempt, attempt)
					continue
				}
				attempt = int(m.attempt)
				r.group.runID = m.text
				stopLocal, localDone = r.startAttempt(ctx, attempt, conn)
				localRunning = true
			case msgStop:
				if localRunning && int(m.attempt) == attempt {
					r.say("node 0 says stop: %s", printable(m.text))
					stop(printable(m.text))
				}
			case msgFinish:
				finished = m
				if m.code != 0 {
					r.say("node 0 ended the job: %s", printable(m.text))
				}
				stop("node 0 ended the job")
			default:
				r.say("node 0 sent an unexpected %s message; leaving", m.typ)
				conn.close()
			}
		case res := <-localDone:
			localRunning, lastRes = false, res
			ok := res.ok()
			if !ok && !res.preempted() {
				header := fmt.Sprintf("attempt %d ended on node %d", attempt, c.NodeRank)
				if res.first >= 0 {
					header = fmt.Sprintf("attempt %d failed on node %d", attempt, c.NodeRank)
				}
				r.stderr.write([]byte(formatSummary(res, header)))
			}
			conn.send(&message{typ: msgExited, attempt: uint32(attempt), ok: ok})
		case <-ctxDone:
			ctxDone = nil
			interrupted = true
			// Tell node 0 at once (no restart can help); a running group sees ctx itself
			// and forwards the signal to its ranks.
			conn.send(&message{typ: msgFailed, attempt: uint32(max(attempt, 0)), fatal: true,
				text: fmt.Sprintf("interrupted: node %d's gorun received %s", c.NodeRank, signalName(signalOf(ctx)))})
		}
	}
}

// startAttempt runs this node's ranks for attempt k in the background (a follower of node 0,
// fixed-size or elastic), telling the leader over conn of each rank failure as it happens:
// stop asks the ranks to stop, done delivers the attempt's result.
func (r *runner) startAttempt(ctx context.Context, k int, conn *agentConn) (stop chan stopRequest, done chan *attemptResult) {
	stop, done = make(chan stopRequest, 1), make(chan *attemptResult, 1)
	go func() {
		done <- r.group.run(ctx, k, stop, func(ex *rankExit) {
			conn.send(&message{typ: msgFailed, attempt: uint32(k), text: describeRankFailure(ex)})
		})
	}()
	return stop, done
}
