//go:build unix && !linux

package launcher

import (
	"errors"
	"syscall"
)

// newSysProcAttr puts a rank in its own process group. Outside Linux there is no
// parent-death signal, so a launcher killed with SIGKILL cannot take its ranks with it.
func newSysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}

// waitExitedNoReap is not available here; the caller reaps first and then signals the group,
// accepting the small chance that the group id was reused in between.
func waitExitedNoReap(pid int) error { return errors.ErrUnsupported }
