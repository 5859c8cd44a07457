package shmtransport

// This file exports internals to the external test package (shmtransport_test), which can
// import package collective without an import cycle.

// RegisterChild adds a role a re-executed test binary can play (see TestMain).
func RegisterChild(role string, f func() error) { children[role] = f }

// EnvChild is the variable that selects a child role.
const EnvChild = envChild

// RaceEnabled reports a -race build.
const RaceEnabled = raceEnabled
