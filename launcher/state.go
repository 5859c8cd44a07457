package launcher

import "fmt"

// agentState is where a node agent stands, after torch elastic's WorkerState. Node 0's
// coordinator of a fixed-size job (coordinator.go) and the rendezvous host of an elastic job
// (elastic.go) are the same machine: they move only along [transitions], through
// [stateMachine], so each decision is one named step that can be read and tested.
//
//	init ──(every node joined and built; elastic: ≥ MIN, then MAX or --settle)──> healthy
//	healthy ──(a rank failed, a node lost or interrupted, elastic: admission)──> restarting
//	healthy ──(every rank of every node exited 0)──> succeeded
//	restarting ──(every node's ranks ended; restarts left or a membership change)──> init
//	restarting ──(every rank exited 0)──> succeeded
//	restarting ──(no restarts left, a fatal cause, elastic: partition, < MIN)──> failed
//	restarting ──(gorun interrupted: SIGINT/SIGTERM, preemption)──> stopped
//	init ──(--join-timeout, build error, elastic: < MIN, no majority)──> failed
//	init ──(gorun interrupted)──> stopped
type agentState int

const (
	stateInit       agentState = iota // nodes join and build TARGET; elastic: the rendezvous gathers a membership
	stateHealthy                      // the attempt's ranks run on every node
	stateRestarting                   // the attempt is being stopped or has ended: waiting for every node's ranks, then deciding
	stateSucceeded                    // every rank of the last attempt exited 0 (final)
	stateFailed                       // the job failed (final)
	stateStopped                      // gorun was interrupted or preempted: the job ended on request (final)
)

func (s agentState) String() string {
	names := [...]string{"init", "healthy", "restarting", "succeeded", "failed", "stopped"}
	if s < 0 || int(s) >= len(names) {
		return fmt.Sprintf("state-%d", int(s))
	}
	return names[s]
}

// final reports whether the job is over in this state.
func (s agentState) final() bool { return s == stateSucceeded || s == stateFailed || s == stateStopped }

// transitions lists every allowed move.
var transitions = map[agentState][]agentState{
	stateInit:       {stateHealthy, stateFailed, stateStopped},
	stateHealthy:    {stateRestarting, stateSucceeded},
	stateRestarting: {stateInit, stateSucceeded, stateFailed, stateStopped},
}

func allowed(from, to agentState) bool {
	for _, s := range transitions[from] {
		if s == to {
			return true
		}
	}
	return false
}

// stateMachine holds an agent's state and checks every move against transitions.
type stateMachine struct {
	cur agentState
	say func(format string, args ...any)
	// observe, if not nil, sees every move (tests).
	observe func(from, to agentState)
}

// to moves to state next. A move the table does not allow is a bug in the agent: it is said
// (so that a user can report it), and the move is made anyway, since refusing it would leave
// the job stuck.
func (m *stateMachine) to(next agentState) {
	if m.cur == next {
		return
	}
	if !allowed(m.cur, next) && m.say != nil {
		m.say("internal error: agent state %s -> %s is not a transition; please report it", m.cur, next)
	}
	if m.observe != nil {
		m.observe(m.cur, next)
	}
	m.cur = next
}
