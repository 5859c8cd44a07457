package shmtransport

import (
	"fmt"
	"github.com/ringtrain/ringtrain/jobenv"
	"os"
	"strings"
)

// Mode says which transport a link may use.
type Mode int

const (
	// ModeAuto (the zero value) uses shared memory for peers on the same host and the base
	// transport for the others.
	ModeAuto Mode = iota
	// ModeQUIC keeps every link on the base transport.
	ModeQUIC
	// ModeShm requires shared memory: a link to a peer on another host fails with an error
	// naming that peer.
	ModeShm
)

// EnvTransport and EnvShm are the environment variables ModeFromEnv reads (set by gorun's
// --transport and --shm).
const (
	EnvTransport = jobenv.Transport
	EnvShm       = jobenv.Shm
)

// String returns the name ParseMode accepts: "auto", "quic" or "shm".
func (m Mode) String() string {
	switch m {
	case ModeAuto:
		return "auto"
	case ModeQUIC:
		return "quic"
	case ModeShm:
		return "shm"
	}
	return fmt.Sprintf("Mode(%d)", int(m))
}

// ParseMode parses "auto", "quic" or "shm" (case-insensitive; "" means auto). "tls" and
// "tcp", which name the link between hosts (package datalink), leave shared memory on: auto.
func ParseMode(s string) (Mode, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "", "auto", "tls", "tcp":
		return ModeAuto, nil
	case "quic":
		return ModeQUIC, nil
	case "shm":
		return ModeShm, nil
	}
	return ModeAuto, fmt.Errorf("shmtransport: unknown transport %q (want auto, quic or shm)", s)
}

// ModeFromEnv reads the mode from GORUN_SHM when it is set (on: ModeAuto, off: ModeQUIC,
// i.e. every link stays on the base transport, require: ModeShm), else from
// GORUN_TRANSPORT; both unset or empty mean ModeAuto.
func ModeFromEnv() (Mode, error) {
	if v := strings.ToLower(strings.TrimSpace(os.Getenv(EnvShm))); v != "" {
		switch v {
		case "on":
			return ModeAuto, nil
		case "off":
			return ModeQUIC, nil
		case "require":
			return ModeShm, nil
		}
		return ModeAuto, fmt.Errorf("shmtransport: %s=%q: want on, off or require", EnvShm, v)
	}
	v := os.Getenv(EnvTransport)
	m, err := ParseMode(v)
	if err != nil {
		return ModeAuto, fmt.Errorf("shmtransport: %s=%q: want auto, quic or shm", EnvTransport, v)
	}
	return m, nil
}
