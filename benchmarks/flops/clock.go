package main

import (
	"fmt"
	"time"
)

// clockCPU selects what every timing measures: the process's CPU time
// (-clock cpu, the default) or wall time (-clock wall).
var clockCPU = true

var wallStart = time.Now()

func setClock(name string) error {
	switch name {
	case "cpu":
		if _, ok := processCPU(); !ok {
			return fmt.Errorf("-clock cpu: this system has no per-process CPU clock; use -clock wall")
		}
		clockCPU = true
	case "wall":
		clockCPU = false
	default:
		return fmt.Errorf("-clock must be cpu or wall, got %q", name)
	}
	return nil
}

// now reads the selected clock.
func now() time.Duration {
	if clockCPU {
		d, _ := processCPU()
		return d
	}
	return time.Since(wallStart)
}
