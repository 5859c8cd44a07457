//go:build race

package main

// raceOn lets the in-process training test skip under -race: it runs one
// goroutine (nothing for the detector to find) and gorgonia and the IDX
// decoding run about ten times slower instrumented.
const raceOn = true
