//go:build !race

package shmtransport

// See race_on.go: without the race detector these cost nothing.

func raceRelease() {}
func raceAcquire() {}

// raceEnabled reports a -race build.
const raceEnabled = false
