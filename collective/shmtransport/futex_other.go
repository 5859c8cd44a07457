//go:build !linux

package shmtransport

import "time"

// Off Linux no shared-memory link is ever made; these keep the portable link code compiling.
func futexWait(addr *uint32, val uint32, d time.Duration) { time.Sleep(min(d, time.Millisecond)) }
func futexWake(addr *uint32)                              {}
