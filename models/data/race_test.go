//go:build race

package data

// raceEnabled lets single-goroutine, compute-heavy tests skip under -race,
// where they find nothing and run ten times slower.
const raceEnabled = true
