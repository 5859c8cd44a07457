package datalink

import (
	"fmt"
	"strings"
)

// Mode says what carries the bytes of a link between two ranks that do not share memory.
type Mode int

const (
	// ModeTLS (the zero value) is TLS 1.3 over TCP: both ends present the certificates whose
	// fingerprints they published at the rendezvous and pin each other's, and bind the
	// connection to the job token.
	ModeTLS Mode = iota
	// ModeTCP is plaintext TCP after a handshake that proves the job token (HMAC) and a
	// nonce that travelled over the authenticated QUIC link. Only for trusted fabrics: the
	// bytes are not encrypted and not integrity-protected beyond TCP's checksum.
	ModeTCP
	// ModeQUIC keeps every link on the base (QUIC) transport.
	ModeQUIC
)

// String returns the name ParseMode accepts.
func (m Mode) String() string {
	switch m {
	case ModeTLS:
		return "tls"
	case ModeTCP:
		return "tcp"
	case ModeQUIC:
		return "quic"
	}
	return fmt.Sprintf("Mode(%d)", int(m))
}

// ParseMode parses "tls", "tcp" or "quic" (case-insensitive; "" means tls).
func ParseMode(s string) (Mode, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "", "tls":
		return ModeTLS, nil
	case "tcp":
		return ModeTCP, nil
	case "quic":
		return ModeQUIC, nil
	}
	return ModeTLS, fmt.Errorf("datalink: unknown transport %q (want tls, tcp or quic)", s)
}
