//go:build !race

package shmtransport

import "github.com/ringtrain/ringtrain/collective/transport"

// See race_on.go: without the race detector these cost nothing.

func raceRelease() {}
func raceAcquire() {}

func wrapBaseForRace(l transport.Link) transport.Link { return l }

// raceEnabled reports a -race build.
const raceEnabled = false
