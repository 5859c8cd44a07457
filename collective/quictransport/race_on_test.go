//go:build race

package quictransport

// raceEnabled shrinks test payloads: the race detector slows quic-go about tenfold.
const raceEnabled = true
