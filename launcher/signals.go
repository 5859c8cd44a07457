package launcher

import (
	"context"
	"flag"
	"os"
	"os/signal"
	"syscall"
)

var errHelp = flag.ErrHelp

// notifySignals turns the first SIGINT, SIGTERM or SIGHUP into the cancellation of ctx (with
// the signal as cause, so that Run forwards that very signal to the ranks) and the second into
// closing force (KILL now). SIGPIPE is caught too, so that a closed stdout (gorun ... | head)
// makes writes fail instead of killing the launcher before it can stop its ranks.
func notifySignals(cancel context.CancelCauseFunc, force chan struct{}) (stop func()) {
	ch := make(chan os.Signal, 4)
	signal.Notify(ch, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	pipe := make(chan os.Signal, 1)
	signal.Notify(pipe, syscall.SIGPIPE)
	done := make(chan struct{})
	go func() {
		n := 0
		for {
			select {
			case s := <-ch:
				n++
				switch n {
				case 1:
					cancel(&SignalError{Signal: s})
				case 2:
					close(force)
				}
			case <-pipe:
			case <-done:
				return
			}
		}
	}()
	return func() {
		signal.Stop(ch)
		signal.Stop(pipe)
		close(done)
	}
}
