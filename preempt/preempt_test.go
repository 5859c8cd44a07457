package preempt

import (
	"syscall"
	"testing"
	"time"
)

// TestWatchSIGTERM sends the process a real SIGTERM: it must set the flag, not kill us.
func TestWatchSIGTERM(t *testing.T) {
	w := Watch()
	defer w.Stop()
	if w.Requested() || w.Flag() != 0 || w.Signal() != nil {
		t.Fatal("requested before any signal")
	}
	if err := syscall.Kill(syscall.Getpid(), syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for !w.Requested() {
		if time.Now().After(deadline) {
			t.Fatal("SIGTERM did not set the flag within 10s")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if w.Flag() != 1 || w.Signal() != syscall.SIGTERM {
		t.Fatalf("flag %v, signal %v", w.Flag(), w.Signal())
	}
}

func TestNilWatcher(t *testing.T) {
	var w *Watcher
	if w.Requested() || w.Flag() != 0 || w.Signal() != nil {
		t.Fatal("a nil watcher reports a request")
	}
	w.Stop()
}
