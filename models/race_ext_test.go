//go:build race

package models_test

// raceOn lets the single-goroutine training test skip under -race.
const raceOn = true
