package quictransport

import "crypto/tls"

// Certificate is this rank's ephemeral certificate: the identity whose fingerprint it
// published in the store. Data links that run beside QUIC (package datalink's TLS over TCP)
// present the same identity, so a peer pins one fingerprint whatever carries the bytes.
func (t *Transport) Certificate() tls.Certificate { return t.cert }

// PeerFingerprint is the SHA-256 fingerprint of the certificate rank published in the
// authenticated store (this rank's own for rank == Rank()).
func (t *Transport) PeerFingerprint(rank int) [32]byte { return t.entries[rank].Fingerprint }

// PeerAddr is the data endpoint (host:port, UDP) rank published in the store; its host is
// where that rank is reachable (this rank's own advertised address for rank == Rank()).
func (t *Transport) PeerAddr(rank int) string { return t.entries[rank].Addr }

// Token is the job token this transport proves.
func (t *Transport) Token() string { return t.cfg.Token }
