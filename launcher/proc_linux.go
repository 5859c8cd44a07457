//go:build linux

package launcher

import (
	"syscall"
	"unsafe"
)

// newSysProcAttr puts a rank in its own process group, so that a signal to the group reaches
// everything the rank started, and asks the kernel to KILL the rank if the thread that started
// it dies (the spawner keeps that thread alive as long as the launcher runs): if the launcher
// itself is killed with SIGKILL, its ranks go with it.
func newSysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}

// waitExitedNoReap blocks until process pid has exited but leaves it a zombie. While the
// zombie exists its pid (which is also its process group id) cannot be reused, so the launcher
// can then KILL whatever the rank left behind in its group without any risk of hitting an
// unrelated process. (Go's os package uses the same waitid call internally.)
func waitExitedNoReap(pid int) error {
	const (
		pPID    = 1          // P_PID
		wExited = 0x4        // WEXITED
		wNoWait = 0x01000000 // WNOWAIT
	)
	var info [128]byte // siginfo_t
	for {
		_, _, e := syscall.Syscall6(syscall.SYS_WAITID, pPID, uintptr(pid),
			uintptr(unsafe.Pointer(&info[0])), wExited|wNoWait, 0, 0)
		if e == syscall.EINTR {
			continue
		}
		if e != 0 {
			return e
		}
		return nil
	}
}
