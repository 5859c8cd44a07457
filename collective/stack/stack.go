// Package stack composes the transports a rank joins a job with, in one place: QUIC
// (package quictransport) forms and guards the ring; links between hosts, and between ranks
// of one host when shared memory is off, move their bytes over a data link (package
// datalink: TLS over TCP by default, plain TCP, or QUIC itself); links between ranks of one
// host use shared memory (package shmtransport) unless it is switched off.
//
//	shmtransport (GORUN_SHM=on)      same-host links: shared memory
//	  └─ datalink (GORUN_TRANSPORT)  other links: tls | tcp | quic, GORUN_STREAMS connections
//	       └─ quictransport          rendezvous, identities, control, liveness
//
// The algorithms (package collective) see one transport.Transport and know none of these;
// collective.InitFromEnv calls [FromEnv], so users keep one call and one import.
package stack

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"sort"
	"strconv"
	"strings"

	"github.com/ringtrain/ringtrain/collective/datalink"
	"github.com/ringtrain/ringtrain/collective/quictransport"
	"github.com/ringtrain/ringtrain/collective/shmtransport"
	"github.com/ringtrain/ringtrain/collective/transport"
	"github.com/ringtrain/ringtrain/jobenv"
)

// Shm says whether ranks of one host use shared memory.
type Shm int

const (
	ShmOn      Shm = iota // shared memory between ranks of one host (the default)
	ShmOff                // every link takes the data link of Settings.Transport
	ShmRequire            // shared memory or an error naming the peer (the old --transport shm)
)

func (s Shm) String() string {
	switch s {
	case ShmOn:
		return "on"
	case ShmOff:
		return "off"
	case ShmRequire:
		return "require"
	}
	return fmt.Sprintf("Shm(%d)", int(s))
}

// Settings are the job's transport choices (gorun's --transport, --shm, --iface and
// GORUN_STREAMS). The zero value is the default: tls between hosts, shared memory inside one.
type Settings struct {
	// Transport carries the links between hosts, and between ranks of one host when Shm is
	// ShmOff; zero is datalink.ModeTLS.
	Transport datalink.Mode
	// Shm says whether ranks of one host share memory; zero is ShmOn.
	Shm Shm
	// Iface is the network interface name or IP address every rank advertises and binds
	// (QUIC and TCP); empty means the address that reaches MASTER_ADDR.
	Iface string
	// Streams is the number of TCP connections per link; zero means 1.
	Streams int
	// Notes are deprecation lines about the spellings read (ranks log them once).
	Notes []string
}

// ParseTransport reads a GORUN_TRANSPORT / --transport value: tls, tcp or quic, and the old
// spellings auto (now tls between hosts, shared memory inside one) and shm (shared memory
// required), which come with a note.
func ParseTransport(v string) (mode datalink.Mode, shm Shm, shmSet bool, note string, err error) {
	switch strings.ToLower(strings.TrimSpace(v)) {
	case "auto":
		return datalink.ModeTLS, ShmOn, true, "--transport auto is deprecated: it now means --transport tls --shm on (the default)", nil
	case "shm":
		return datalink.ModeTLS, ShmRequire, true, "--transport shm is deprecated: it now means --shm require", nil
	}
	m, err := datalink.ParseMode(v)
	if err != nil {
		return 0, 0, false, "", fmt.Errorf("stack: %s=%q: want tls, tcp or quic", jobenv.Transport, v)
	}
	return m, ShmOn, false, "", nil
}

// ParseShm reads a GORUN_SHM / --shm value: on, off or require ("" means on).
func ParseShm(v string) (Shm, error) {
	switch strings.ToLower(strings.TrimSpace(v)) {
	case "", "on", "1", "true", "yes":
		return ShmOn, nil
	case "off", "0", "false", "no":
		return ShmOff, nil
	case "require":
		return ShmRequire, nil
	}
	return ShmOn, fmt.Errorf("stack: %s=%q: want on, off or require", jobenv.Shm, v)
}

// SettingsFromEnv reads GORUN_TRANSPORT, GORUN_SHM, GORUN_SOCKET_IFNAME and GORUN_STREAMS.
// GORUN_SHM wins over the shared-memory part of an old GORUN_TRANSPORT spelling.
func SettingsFromEnv() (Settings, error) {
	var s Settings
	mode, shm, shmSet, note, err := ParseTransport(os.Getenv(jobenv.Transport))
	if err != nil {
		return s, err
	}
	s.Transport, s.Shm = mode, shm
	if note != "" {
		s.Notes = append(s.Notes, note)
	}
	if v := os.Getenv(jobenv.Shm); v != "" || !shmSet {
		if s.Shm, err = ParseShm(v); err != nil {
			return s, err
		}
	}
	s.Iface = strings.TrimSpace(os.Getenv(jobenv.SocketIfname))
	if v := strings.TrimSpace(os.Getenv(jobenv.Streams)); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > datalink.MaxStreams {
			return s, fmt.Errorf("stack: %s=%q: want a number of TCP streams from 1 to %d", jobenv.Streams, v, datalink.MaxStreams)
		}
		s.Streams = n
	}
	return s, nil
}

// IfaceAddr resolves an interface name or an IP address to the IP to bind and advertise:
// an IP as it is; an interface's first global IPv4 address, else its first IPv6 one.
func IfaceAddr(name string) (net.IP, error) {
	if ip := net.ParseIP(name); ip != nil {
		return ip, nil
	}
	ifi, err := net.InterfaceByName(name)
	if err != nil {
		return nil, fmt.Errorf("stack: %s=%q: %w", jobenv.SocketIfname, name, err)
	}
	addrs, err := ifi.Addrs()
	if err != nil {
		return nil, fmt.Errorf("stack: %s=%q: %w", jobenv.SocketIfname, name, err)
	}
	var v6 net.IP
	for _, a := range addrs {
		ipn, ok := a.(*net.IPNet)
		if !ok || ipn.IP.IsLinkLocalUnicast() {
			continue
		}
		if ipn.IP.To4() != nil {
			return ipn.IP, nil
		}
		if v6 == nil {
			v6 = ipn.IP
		}
	}
	if v6 != nil {
		return v6, nil
	}
	return nil, fmt.Errorf("stack: %s=%q: the interface has no usable address", jobenv.SocketIfname, name)
}

// Transport is the composed transport of one rank. Its methods are the top layer's; Kinds
// and the layers are there for reports and tests.
type Transport struct {
	transport.Transport
	QUIC     *quictransport.Transport
	DataLink *datalink.Transport
	ShmLinks *shmtransport.Transport // nil with ShmOff
	Settings Settings
}

// Shutdown drains every layer (see transport.Shutdowner).
func (t *Transport) Shutdown(ctx context.Context) error {
	if sd, ok := t.Transport.(transport.Shutdowner); ok {
		return sd.Shutdown(ctx)
	}
	return nil
}

// Kinds says, for every peer this rank has links to, what carries them: "shm", "tls",
// "tcp" or "quic" (several joined by "+" when channels differ).
func (t *Transport) Kinds() map[int]string {
	out := t.DataLink.Kinds()
	if t.ShmLinks != nil {
		for p, k := range t.ShmLinks.Kinds() {
			if k == "shm" {
				out[p] = k
			} else if strings.Contains(k, "shm") {
				out[p] = "shm+" + out[p]
			}
		}
	}
	return out
}

// KindsString renders Kinds as "1:tls,3:shm" in rank order.
func KindsString(kinds map[int]string) string {
	peers := make([]int, 0, len(kinds))
	for p := range kinds {
		peers = append(peers, p)
	}
	sort.Ints(peers)
	parts := make([]string, len(peers))
	for i, p := range peers {
		parts[i] = strconv.Itoa(p) + ":" + kinds[p]
	}
	return strings.Join(parts, ",")
}

// FromEnv joins the job described by the environment gorun sets (quictransport.ConfigFromEnv
// and SettingsFromEnv). logger, if not nil, is every layer's.
func FromEnv(ctx context.Context, logger *slog.Logger) (*Transport, error) {
	cfg, err := quictransport.ConfigFromEnv()
	if err != nil {
		return nil, err
	}
	s, err := SettingsFromEnv()
	if err != nil {
		return nil, err
	}
	if logger != nil {
		cfg.Logger = logger
	}
	return Establish(ctx, cfg, s)
}

// Establish joins over QUIC with cfg and composes the layers s asks for.
func Establish(ctx context.Context, cfg quictransport.Config, s Settings) (*Transport, error) {
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	var listenHost string
	if s.Iface != "" {
		ip, err := IfaceAddr(s.Iface)
		if err != nil {
			return nil, err
		}
		listenHost = ip.String()
		cfg.ListenAddr = net.JoinHostPort(listenHost, "0")
		cfg.AdvertiseAddr = listenHost
	}
	q, err := quictransport.Establish(ctx, cfg)
	if err != nil {
		return nil, err
	}
	rlog := log.With("rank", q.Rank())
	if q.Rank() == 0 {
		for _, n := range s.Notes {
			rlog.Warn("gorun: " + n)
		}
		if s.Transport == datalink.ModeTCP && q.Size() > 1 {
			rlog.Warn("collective: --transport tcp: data between ranks is NOT encrypted (plain TCP after an authenticated handshake); use it only on a trusted network")
		}
	}
	dl, err := datalink.Wrap(q, datalink.Options{
		Mode:       s.Transport,
		Streams:    s.Streams,
		Shm:        s.Shm != ShmOff,
		ListenHost: listenHost,
		Logger:     log,
	})
	if err != nil {
		return nil, errors.Join(fmt.Errorf("rank %d: %w", q.Rank(), err), q.Close())
	}
	t := &Transport{Transport: dl, QUIC: q, DataLink: dl, Settings: s}
	if s.Shm != ShmOff {
		mode := shmtransport.ModeAuto
		if s.Shm == ShmRequire {
			mode = shmtransport.ModeShm
		}
		shm, err := shmtransport.Wrap(dl, shmtransport.Options{Mode: mode, Logger: log, BaseKind: s.Transport.String()})
		if err != nil {
			return nil, errors.Join(fmt.Errorf("rank %d: %w", q.Rank(), err), dl.Close())
		}
		t.Transport, t.ShmLinks = shm, shm
	}
	return t, nil
}

// Base returns the top layer (shared memory, else the data links), so that code looking
// through wrappers (host identities) finds every layer.
func (t *Transport) Base() transport.Transport { return t.Transport }

// String is the settings as benchmarks label them: "tls shm=off", with streams and iface
// when set.
func (s Settings) String() string {
	out := s.Transport.String() + " shm=" + s.Shm.String()
	if s.Streams > 1 {
		out += " streams=" + strconv.Itoa(s.Streams)
	}
	if s.Iface != "" {
		out += " iface=" + s.Iface
	}
	return out
}
