//go:build !race

package models_test

const raceOn = false
