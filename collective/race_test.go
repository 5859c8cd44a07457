//go:build race

package collective

// raceEnabled is true in builds with the race detector, which slows memory-bound test code
// tenfold; a few tests shrink their work under it.
const raceEnabled = true
