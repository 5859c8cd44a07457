package quictransport

import (
	"errors"
	"fmt"
	"github.com/ringtrain/ringtrain/jobenv"
	"log/slog"
	"net"
	"os"
	"strconv"
	"time"
)

// Config describes this rank's place in the job and how its transport behaves. Every field
// documents its zero-value default; Rank, Size, MasterAddr and MasterPort have none.
type Config struct {
	// Rank is this process's world rank, 0 <= Rank < Size. Rank 0 serves the rendezvous
	// store.
	Rank int
	// Size is the number of ranks in the job (WORLD_SIZE).
	Size int
	// LocalRank is the rank among the processes on this host (LOCAL_RANK). The transport does
	// not use it; it travels here for the layers above (device choice, shared memory).
	LocalRank int

	// MasterAddr and MasterPort locate the rendezvous store (UDP). Rank 0 binds MasterPort on
	// all interfaces, or on the loopback address when MasterAddr is a loopback address.
	MasterAddr string
	MasterPort int
	// Token is the job token (GORUN_TOKEN) every connection proves. Empty is allowed only
	// when Size is 1.
	Token string

	// ListenAddr is the local UDP address of this rank's data endpoint. Empty means an
	// ephemeral port on all interfaces, or on the loopback address when MasterAddr is a
	// loopback address.
	ListenAddr string
	// AdvertiseAddr is the address (host or host:port) the other ranks dial. Empty means the
	// local address this host uses to reach MasterAddr (127.0.0.1 when MasterAddr is
	// loopback) with the port actually bound. A host without a port gets the bound port.
	AdvertiseAddr string

	// JoinTimeout bounds Establish: ranks that have not published their endpoint by then are
	// named in the error. Zero means 120s.
	JoinTimeout time.Duration
	// PeerTimeout is how soon a peer that died or vanished is detected: QUIC's idle timeout,
	// with keep-alives every third of it. Zero means 15s.
	PeerTimeout time.Duration

	// StreamWindow is each link's flow-control receive window in bytes (QUIC stream window),
	// used from the start rather than grown by auto-tuning. Zero means 32 MiB.
	StreamWindow uint64
	// ConnWindow is the receive window shared by all links to one peer (QUIC connection
	// window). Zero means 64 MiB (at least StreamWindow).
	ConnWindow uint64
	// SocketBuffer is the UDP send and receive buffer size to ask the kernel for. Zero means
	// 32 MiB; the kernel may grant less (net.core.rmem_max) unless the process may force it.
	SocketBuffer int

	// Logger receives refusals, failures and diagnostics. Nil means slog.Default(). The
	// transport adds a "rank" attribute.
	Logger *slog.Logger
}

// Defaults for the zero values of Config.
const (
	DefaultJoinTimeout  = 120 * time.Second
	DefaultPeerTimeout  = 15 * time.Second
	DefaultStreamWindow = 32 << 20
	DefaultConnWindow   = 64 << 20
	DefaultSocketBuffer = 32 << 20
)

// withDefaults validates c and fills in the zero-value defaults.
func (c Config) withDefaults() (Config, error) {
	if c.Size < 1 {
		return c, fmt.Errorf("quictransport: world size %d, want at least 1", c.Size)
	}
	if c.Rank < 0 || c.Rank >= c.Size {
		return c, fmt.Errorf("quictransport: rank %d out of range [0, %d)", c.Rank, c.Size)
	}
	if c.MasterAddr == "" {
		return c, errors.New("quictransport: MasterAddr is empty")
	}
	if c.MasterPort < 0 || c.MasterPort > 65535 {
		return c, fmt.Errorf("quictransport: master port %d out of range", c.MasterPort)
	}
	if c.Token == "" && c.Size > 1 {
		return c, errors.New("quictransport: empty job token with more than one rank")
	}
	if c.JoinTimeout <= 0 {
		c.JoinTimeout = DefaultJoinTimeout
	}
	if c.PeerTimeout <= 0 {
		c.PeerTimeout = DefaultPeerTimeout
	}
	if c.StreamWindow == 0 {
		c.StreamWindow = DefaultStreamWindow
	}
	if c.ConnWindow == 0 {
		c.ConnWindow = max(DefaultConnWindow, c.StreamWindow)
	}
	if c.SocketBuffer <= 0 {
		c.SocketBuffer = DefaultSocketBuffer
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c, nil
}

// EnvError reports a missing or malformed environment variable.
type EnvError struct {
	Var   string // the variable's name
	Value string // its value ("" when unset)
	Err   error  // what is wrong with it
}

func (e *EnvError) Error() string {
	if e.Value == "" {
		return fmt.Sprintf("quictransport: environment variable %s: %v", e.Var, e.Err)
	}
	return fmt.Sprintf("quictransport: environment variable %s=%q: %v", e.Var, e.Value, e.Err)
}

func (e *EnvError) Unwrap() error { return e.Err }

var errUnset = errors.New("not set")

// ConfigFromEnv reads the torchrun-style environment: RANK, WORLD_SIZE, MASTER_ADDR,
// MASTER_PORT and GORUN_TOKEN are required (the token may be empty or unset only when
// WORLD_SIZE is 1); LOCAL_RANK defaults to RANK; GORUN_JOIN_TIMEOUT and GORUN_PEER_TIMEOUT
// are optional Go durations ("90s", "2m"). Errors are *EnvError naming the variable and its
// bad value. Fields not read from the environment keep their zero-value defaults.
func ConfigFromEnv() (Config, error) {
	var c Config
	var err error
	if c.Size, err = envInt(jobenv.WorldSize, 1, 1<<24); err != nil {
		return c, err
	}
	if c.Rank, err = envInt(jobenv.Rank, 0, c.Size-1); err != nil {
		return c, err
	}
	if os.Getenv(jobenv.LocalRank) != "" {
		if c.LocalRank, err = envInt(jobenv.LocalRank, 0, 1<<24); err != nil {
			return c, err
		}
	} else {
		c.LocalRank = c.Rank
	}
	c.MasterAddr = os.Getenv(jobenv.MasterAddr)
	if c.MasterAddr == "" {
		return c, &EnvError{Var: jobenv.MasterAddr, Err: errUnset}
	}
	if c.MasterPort, err = envInt(jobenv.MasterPort, 1, 65535); err != nil {
		return c, err
	}
	c.Token = os.Getenv(jobenv.Token)
	if c.Token == "" && c.Size > 1 {
		return c, &EnvError{Var: jobenv.Token, Err: fmt.Errorf("empty, but WORLD_SIZE is %d: every rank needs the job token", c.Size)}
	}
	if c.JoinTimeout, err = envDuration(jobenv.JoinTimeout); err != nil {
		return c, err
	}
	if c.PeerTimeout, err = envDuration(jobenv.PeerTimeout); err != nil {
		return c, err
	}
	return c, nil
}

func envInt(name string, lo, hi int) (int, error) {
	v, ok := os.LookupEnv(name)
	if !ok || v == "" {
		return 0, &EnvError{Var: name, Err: errUnset}
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		return 0, &EnvError{Var: name, Value: v, Err: errors.New("not an integer")}
	}
	if n < lo || n > hi {
		return 0, &EnvError{Var: name, Value: v, Err: fmt.Errorf("out of range [%d, %d]", lo, hi)}
	}
	return n, nil
}

func envDuration(name string) (time.Duration, error) {
	v := os.Getenv(name)
	if v == "" {
		return 0, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		return 0, &EnvError{Var: name, Value: v, Err: errors.New("not a Go duration like 90s or 2m")}
	}
	if d <= 0 {
		return 0, &EnvError{Var: name, Value: v, Err: errors.New("must be positive")}
	}
	return d, nil
}

// loopbackIP returns the loopback IP MasterAddr resolves to, or nil if it is not loopback.
func loopbackIP(host string) net.IP {
	if host == "localhost" {
		return net.IPv4(127, 0, 0, 1)
	}
	ip := net.ParseIP(host)
	if ip == nil {
		addrs, err := net.LookupIP(host)
		if err != nil || len(addrs) == 0 {
			return nil
		}
		for _, a := range addrs {
			if !a.IsLoopback() {
				return nil
			}
		}
		ip = addrs[0]
	}
	if ip.IsLoopback() {
		return ip
	}
	return nil
}
