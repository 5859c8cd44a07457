package launcher

import "runtime"

// spawner starts processes from one goroutine locked to one OS thread for the spawner's whole
// life. On Linux the parent-death signal (Pdeathsig) fires when the *thread* that forked the
// child ends, not the process; Go may end a thread whose goroutine exits while locked to it.
// Forking always from a thread that lives as long as the job keeps the safety net meaningful.
type spawner struct {
	reqs chan func()
	done chan struct{}
}

func newSpawner() *spawner {
	s := &spawner{reqs: make(chan func()), done: make(chan struct{})}
	ready := make(chan struct{})
	go func() {
		runtime.LockOSThread()
		// Unlock before returning so that the thread goes back to the pool instead of
		// exiting: by then every child has been reaped, but a thread exit is never needed.
		defer runtime.UnlockOSThread()
		close(ready)
		for {
			select {
			case f := <-s.reqs:
				f()
			case <-s.done:
				return
			}
		}
	}()
	<-ready
	return s
}

// do runs f on the spawner's thread and waits for it.
func (s *spawner) do(f func()) {
	finished := make(chan struct{})
	s.reqs <- func() { f(); close(finished) }
	<-finished
}

// close stops the spawner. No process it started may still be running.
func (s *spawner) close() { close(s.done) }
