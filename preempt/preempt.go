// Package preempt is the rank side of gorun's preemption contract: how a training program
// turns SIGTERM (a spot instance reclaimed, Slurm's preemption, a Kubernetes eviction) into a
// checkpoint at the next step boundary and an exit gorun understands.
//
// The contract, end to end:
//
//  1. gorun receives SIGTERM and forwards it to every rank's process group; it sends SIGKILL
//     to whatever still runs --grace later, so the save must fit in --grace.
//  2. Each rank has called [Watch] at start. The signal does not cancel anything: training
//     goes on to the end of the current step.
//  3. At every step boundary the ranks agree whether any of them was asked to stop (the
//     signal reaches the ranks at slightly different moments, and every rank must leave at
//     the same step, or the others would wait in the next collective): one small AllReduce
//     of [Watcher.Flag] with the maximum. In package collective's terms:
//     `f := []float32{w.Flag()}; g.AllReduce(ctx, f, collective.Max); stop := f[0] > 0`.
//  4. If they agree to stop, they save a checkpoint (every rank calls SaveCheckpoint, which
//     returns on every rank only once rank 0's file is durable) and exit with [ExitCode].
//  5. gorun exits with [ExitCode] too when it was signalled and every rank of its node exited
//     with it: "preempted, checkpoint saved; start the job again to resume". Otherwise (a
//     rank failed, was killed after --grace, or never saw the signal) gorun exits 128+15, as
//     for any interrupted job.
//
// A rank exits with ExitCode only after its checkpoint is durable: the code is the promise.
// A program without a checkpoint to write should not watch SIGTERM at all (it then dies of
// the signal, and gorun reports an interrupted job).
//
// The package imports nothing of the module: gorun (package launcher) reads ExitCode from it.
package preempt

import (
	"os"
	"os/signal"
	"sync/atomic"
	"syscall"
)

// ExitCode is the exit status of a rank (and of gorun) that stopped because it was asked to
// and saved a checkpoint first. 75 is EX_TEMPFAIL of sysexits.h: a temporary failure, try
// again later. It lets a scheduler tell "preempted, resumable" from a failure, for example a
// Kubernetes Job's podFailurePolicy (onExitCodes 75: Ignore) or a Slurm requeue script.
const ExitCode = 75

// Watcher records whether the process has been asked to stop by one of the watched signals.
type Watcher struct {
	ch        chan os.Signal
	requested atomic.Bool
	sig       atomic.Value // os.Signal
	done      chan struct{}
}

// Watch starts watching sigs (SIGTERM when none are given). From now on those signals no
// longer kill the process: they only set the flag that [Watcher.Requested] reads. Call
// [Watcher.Stop] to restore their default action.
func Watch(sigs ...os.Signal) *Watcher {
	if len(sigs) == 0 {
		sigs = []os.Signal{syscall.SIGTERM}
	}
	w := &Watcher{ch: make(chan os.Signal, 1), done: make(chan struct{})}
	signal.Notify(w.ch, sigs...)
	go func() {
		for {
			select {
			case s := <-w.ch:
				w.sig.Store(s)
				w.requested.Store(true)
			case <-w.done:
				return
			}
		}
	}()
	return w
}

// Requested reports whether a watched signal has arrived. It never blocks.
func (w *Watcher) Requested() bool { return w != nil && w.requested.Load() }

// Signal is the signal that arrived last, nil before any.
func (w *Watcher) Signal() os.Signal {
	if w == nil {
		return nil
	}
	s, _ := w.sig.Load().(os.Signal)
	return s
}

// Flag is Requested as a number to reduce with the maximum across ranks: 1 asked, 0 not.
func (w *Watcher) Flag() float32 {
	if w.Requested() {
		return 1
	}
	return 0
}

// Request sets the flag as if a signal had arrived (tests, or a program's own reasons to
// stop at the next step boundary, such as a time budget).
func (w *Watcher) Request() { w.requested.Store(true) }

// Stop stops watching: the signals get their default action again. The flag keeps its value.
func (w *Watcher) Stop() {
	if w == nil {
		return
	}
	signal.Stop(w.ch)
	select {
	case <-w.done:
	default:
		close(w.done)
	}
}
