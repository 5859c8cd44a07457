//go:build !unix

package launcher

import (
	"errors"
	"os"
	"strconv"
	"syscall"
)

// Without Unix process groups a rank is signalled alone; programs it started are not reached.

func newSysProcAttr() *syscall.SysProcAttr { return nil }

func waitExitedNoReap(pid int) error { return errors.ErrUnsupported }

// signalGroup signals the rank itself. Only KILL is portable, so every signal becomes KILL.
func signalGroup(pid int, sig os.Signal) error {
	p, err := os.FindProcess(pid)
	if err != nil {
		return err
	}
	return p.Kill()
}

func exitOf(ps *os.ProcessState) (code int, signal string) { return ps.ExitCode(), "" }

func signalName(sig os.Signal) string {
	if s, ok := sig.(syscall.Signal); ok {
		switch s {
		case syscall.SIGKILL:
			return "SIGKILL"
		case syscall.SIGTERM:
			return "SIGTERM"
		case syscall.SIGINT:
			return "SIGINT"
		}
		return "signal " + strconv.Itoa(int(s))
	}
	return sig.String()
}

func signalNumber(sig os.Signal) int {
	if s, ok := sig.(syscall.Signal); ok {
		return int(s)
	}
	return 15
}
