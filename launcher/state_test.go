//go:build unix

package launcher

import (
	"context"
	"io"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestTransitionTable: the final states have no way out, every state is reachable from init,
// and the machine says so when asked for a move the table does not allow.
func TestTransitionTable(t *testing.T) {
	for _, s := range []agentState{stateSucceeded, stateFailed, stateStopped} {
		if !s.final() || len(transitions[s]) != 0 {
			t.Errorf("%s: final %v, transitions %v", s, s.final(), transitions[s])
		}
	}
	seen := map[agentState]bool{stateInit: true}
	for changed := true; changed; {
		changed = false
		for from := range seen {
			for _, to := range transitions[from] {
				if !seen[to] {
					seen[to], changed = true, true
				}
			}
		}
	}
	if len(seen) != 6 {
		t.Errorf("reachable from init: %v", seen)
	}
	var said []string
	m := &stateMachine{cur: stateSucceeded, say: func(f string, a ...any) { said = append(said, f) }}
	m.to(stateHealthy)
	if len(said) != 1 || m.cur != stateHealthy {
		t.Errorf("an illegal move: said %v, now %s", said, m.cur)
	}
}

// runNodes runs a fixed-size job of nnodes in this process (one Run per node, real rank
// processes) and returns node 0's state moves and every node's error.
func runNodes(t *testing.T, ctx context.Context, nnodes int, extra func(node int, c *Config), onMove func(to agentState), args ...string) ([]string, []error) {
	t.Helper()
	port := freeTestPort(t)
	var (
		mu    sync.Mutex
		moves []string
		wg    sync.WaitGroup
	)
	errs := make([]error, nnodes)
	for node := 0; node < nnodes; node++ {
		c := &Config{Target: rankBin, Args: args, NProc: 1, NNodes: nnodes, NodeRank: node, MasterAddr: "127.0.0.1",
			MasterPort: port, Token: "state-test-token-" + strconv.Itoa(port), JoinTimeout: 30 * time.Second,
			Grace: 2 * time.Second, Stdout: io.Discard, Stderr: io.Discard, Env: cleanEnv()}
		if node == 0 {
			c.observeState = func(from, to agentState) {
				mu.Lock()
				moves = append(moves, from.String()+">"+to.String())
				mu.Unlock()
				if onMove != nil {
					onMove(to)
				}
			}
		}
		if extra != nil {
			extra(node, c)
		}
		wg.Add(1)
		go func(node int) {
			defer wg.Done()
			errs[node] = Run(ctx, c)
		}(node)
	}
	wg.Wait()
	return moves, errs
}

// TestCoordinatorStates: node 0 of a fixed-size job moves through the state machine of
// state.go: a failure with a restart left goes healthy → restarting → init → healthy, a
// success ends in succeeded, no restart left in failed, an interrupt in stopped.
func TestCoordinatorStates(t *testing.T) {
	t.Parallel()
	ctx := contextT(t)
	for _, tc := range []struct {
		name     string
		restarts int
		args     []string
		cancel   bool
		want     string
	}{
		// rank 1 (node 1) exits 3 in attempt 0, succeeds in attempt 1.
		{"restart", 1, []string{"restart", "1", "1", "3"}, false, "init>healthy healthy>restarting restarting>init init>healthy healthy>succeeded"},
		{"no-restart-left", 0, []string{"restart", "1", "1", "3"}, false, "init>healthy healthy>restarting restarting>failed"},
		{"interrupted", 0, []string{"sleep"}, true, "init>healthy healthy>restarting restarting>stopped"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			cctx, cancel := context.WithCancel(ctx)
			defer cancel()
			onMove := func(to agentState) {
				if tc.cancel && to == stateHealthy {
					cancel() // as a signal to gorun would, once the ranks run
				}
			}
			moves, errs := runNodes(t, cctx, 2, func(node int, c *Config) { c.MaxRestarts = tc.restarts }, onMove, tc.args...)
			if got := strings.Join(moves, " "); got != tc.want {
				t.Errorf("node 0 moved %q, want %q (errors %v)", got, tc.want, errs)
			}
		})
	}
}

// TestElasticLeaderStates: the rendezvous host of an elastic job (--nnodes 1:2) moves through
// the same machine: node 1's gorun is interrupted (it leaves), which is a membership change
// (restarting → init → healthy at world size 1); then the program finishes (succeeded).
func TestElasticLeaderStates(t *testing.T) {
	t.Parallel()
	ctx := contextT(t)
	done := t.TempDir() + "/done"
	node1, stop1 := context.WithCancel(ctx)
	defer stop1()
	var healthy int
	onMove := func(to agentState) {
		if to != stateHealthy {
			return
		}
		healthy++
		switch healthy {
		case 1:
			go func() { time.Sleep(300 * time.Millisecond); stop1() }() // node 1 leaves once both ranks run
		case 2:
			go func() { time.Sleep(300 * time.Millisecond); os.WriteFile(done, nil, 0o644) }()
		}
	}
	port := freeTestPort(t)
	var (
		mu    sync.Mutex
		moves []string
		wg    sync.WaitGroup
	)
	errs := make([]error, 2)
	for node := 0; node < 2; node++ {
		c := &Config{Target: rankBin, Args: []string{"elastic", done}, NProc: 1, NNodes: 2, MinNodes: 1, MaxNodes: 2, NodeRank: node,
			MasterAddr: "127.0.0.1", MasterPort: port, Token: "elastic-state-test-" + strconv.Itoa(port), JoinTimeout: 30 * time.Second,
			Settle: 200 * time.Millisecond, Grace: 2 * time.Second, Stdout: io.Discard, Stderr: io.Discard,
			Env: cleanEnv("GORUN_PEER_TIMEOUT=2s")}
		runCtx := ctx
		if node == 0 {
			c.observeState = func(from, to agentState) {
				mu.Lock()
				moves = append(moves, from.String()+">"+to.String())
				mu.Unlock()
				onMove(to)
			}
		} else {
			runCtx = node1
		}
		wg.Add(1)
		go func(node int) {
			defer wg.Done()
			errs[node] = Run(runCtx, c)
		}(node)
	}
	wg.Wait()
	want := "init>healthy healthy>restarting restarting>init init>healthy healthy>restarting restarting>succeeded"
	if got := strings.Join(moves, " "); got != want || errs[0] != nil {
		t.Errorf("node 0 moved %q, want %q (errors %v)", got, want, errs)
	}
}
