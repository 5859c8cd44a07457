package shmtransport

import (
	"syscall"
	"time"
	"unsafe"
)

// The futex calls use the shared (not _PRIVATE) operations: the word lives in a MAP_SHARED
// file mapping, and the kernel keys such a futex by file and offset, so a waiter in one process
// is woken by a FUTEX_WAKE from the other.
const (
	futexWaitOp = 0 // FUTEX_WAIT
	futexWakeOp = 1 // FUTEX_WAKE
)

// futexWait sleeps while *addr == val, for at most d (d > 0), or until woken. Spurious
// returns are fine: callers re-check their condition.
func futexWait(addr *uint32, val uint32, d time.Duration) {
	ts := syscall.NsecToTimespec(int64(d))
	syscall.Syscall6(syscall.SYS_FUTEX, uintptr(unsafe.Pointer(addr)), futexWaitOp, uintptr(val),
		uintptr(unsafe.Pointer(&ts)), 0, 0)
}

// futexWake wakes every waiter on addr (there is at most one per word, plus a local Close).
func futexWake(addr *uint32) {
	syscall.Syscall6(syscall.SYS_FUTEX, uintptr(unsafe.Pointer(addr)), futexWakeOp, 1<<30, 0, 0, 0)
}
