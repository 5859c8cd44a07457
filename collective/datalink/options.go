package datalink

import (
	"crypto/tls"
	"fmt"
	"log/slog"
	"time"
)

// Identity is what a data link needs of the base transport's identities: this rank's
// certificate and the fingerprints and addresses every rank published at the rendezvous.
// *quictransport.Transport implements it.
type Identity interface {
	Certificate() tls.Certificate
	PeerFingerprint(rank int) [32]byte
	PeerAddr(rank int) string
}

// Defaults for the zero values of Options.
const (
	DefaultStreams      = 1
	MaxStreams          = 64
	DefaultSocketBuffer = 4 << 20
	DefaultDialTimeout  = 10 * time.Second
	DefaultBrokenGrace  = time.Second
	DefaultStripeBytes  = 256 << 10
)

// Options configures Wrap. The zero value is ModeTLS with one TCP stream per link.
type Options struct {
	// Mode picks what carries links between ranks that do not share memory; zero is
	// ModeTLS. Both ends state theirs in the setup: if either says ModeQUIC the link stays
	// on QUIC, else if either says ModeTLS it is TLS, else plain TCP (encryption wins).
	Mode Mode
	// PeerMode, if not nil, overrides Mode for links to one peer (tests). Nil means Mode.
	PeerMode func(peer int) Mode
	// Streams is the number of TCP connections per link, which a link stripes its bytes
	// over in StripeBytes blocks so that several cores and NIC queues can carry one edge.
	// Zero means DefaultStreams (1); at most MaxStreams. The lower rank's value is used.
	Streams int
	// StripeBytes is the block size of the striping when Streams > 1; zero means
	// DefaultStripeBytes.
	StripeBytes int
	// Shm says that a shared-memory transport sits above this one: links between ranks of
	// the same host (same HostID on both ends) then stay on the base transport, where the
	// shared-memory layer runs its own setup, instead of opening TCP connections. False:
	// every link between two ranks uses Mode (how forced transports are measured on one host).
	Shm bool
	// HostID identifies this rank's host for Shm; empty means $GORUN_HOST_ID, else the
	// kernel's boot id and network namespace (LocalHostID).
	HostID string
	// Identity supplies the certificate and the published fingerprints and addresses; nil
	// means the base transport, which must then implement Identity.
	Identity Identity
	// Token is the job token; empty means the base's (if it has a Token() string method).
	// Required for ModeTLS and ModeTCP links.
	Token string
	// ListenHost is the address (an IP, or a host name) this rank's TCP listener binds and
	// advertises; empty means the host of this rank's published base address.
	ListenHost string
	// SocketBuffer is the TCP send and receive buffer to ask for. Zero means
	// DefaultSocketBuffer (4 MiB), applied per direction only where the kernel grants that
	// much (net.core.rmem_max / wmem_max) and auto-tuning could not grow the buffer as far
	// (net.ipv4.tcp_rmem / tcp_wmem), since a fixed buffer switches Linux's auto-tuning off;
	// negative leaves the buffers to the kernel.
	SocketBuffer int
	// DialTimeout bounds the TCP connection and TLS handshake of a link; after it the link
	// stays on QUIC with a warning. Zero means DefaultDialTimeout.
	DialTimeout time.Duration
	// BrokenGrace is how long a link whose TCP connection ended waits for the peer's
	// orderly close (on the base link) or for the base transport to report the failure
	// before it blames the peer itself and aborts the transport. Zero means
	// DefaultBrokenGrace.
	BrokenGrace time.Duration
	// Logger receives the choice of each peer's links (Info, once per peer), fallbacks
	// (Warn) and refused connections (Warn). Nil means slog.Default().
	Logger *slog.Logger
	// BaseKind names the base transport in Kind; empty means "quic".
	BaseKind string
}

func (o Options) withDefaults() (Options, error) {
	if o.Mode < ModeTLS || o.Mode > ModeQUIC {
		return o, fmt.Errorf("datalink: unknown mode %d", int(o.Mode))
	}
	if o.Streams == 0 {
		o.Streams = DefaultStreams
	}
	if o.Streams < 1 || o.Streams > MaxStreams {
		return o, fmt.Errorf("datalink: Options.Streams %d out of range [1, %d]", o.Streams, MaxStreams)
	}
	if o.StripeBytes == 0 {
		o.StripeBytes = DefaultStripeBytes
	}
	if o.StripeBytes < 1 {
		return o, fmt.Errorf("datalink: Options.StripeBytes %d", o.StripeBytes)
	}
	if o.SocketBuffer == 0 {
		o.SocketBuffer = DefaultSocketBuffer
	}
	if o.DialTimeout <= 0 {
		o.DialTimeout = DefaultDialTimeout
	}
	if o.BrokenGrace <= 0 {
		o.BrokenGrace = DefaultBrokenGrace
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.BaseKind == "" {
		o.BaseKind = "quic"
	}
	if o.HostID == "" {
		o.HostID = LocalHostID()
	}
	return o, nil
}
