package launcher

import (
	"errors"
	"fmt"
	"io"
	"time"
)

// DefaultMasterPort is the port of node 0's agent (TCP) and of rank 0's rendezvous store (UDP)
// when neither a flag nor the environment names one. It is torchrun's default too.
const DefaultMasterPort = 29500

// DefaultGrace is how long ranks get between TERM and KILL when --grace is not given.
const DefaultGrace = 5 * time.Second

// DefaultSettle is Config.Settle's default.
const DefaultSettle = 10 * time.Second

// DefaultJoinTimeout bounds how long nodes wait for each other before a job (or a restart)
// starts, when --join-timeout is not given.
const DefaultJoinTimeout = 5 * time.Minute

// Transports lists the accepted values of --transport (exported to ranks as GORUN_TRANSPORT).
// auto and shm are the old spellings (auto = tls with shared memory, shm = --shm require);
// they still work, with a note.
var Transports = []string{"tls", "tcp", "quic", "auto", "shm"}

// ShmModes lists the accepted values of --shm (exported to ranks as GORUN_SHM).
var ShmModes = []string{"on", "off", "require"}

// Config describes one job as seen from one node. [ParseArgs] fills it from a command line
// and an environment; library users may build one directly. The zero value of every field is
// a usable default unless the field says otherwise.
type Config struct {
	// Target is what each rank runs: a .go file, a Go package directory, an executable file,
	// or the name of a command found in PATH. Required.
	Target string
	// Args are passed to every rank after the program name.
	Args []string

	// NProc is the number of ranks on this node. Zero means 1.
	NProc int
	// NNodes is the number of nodes (one gorun each). Zero means 1.
	NNodes int
	// MinNodes and MaxNodes make the job elastic when MinNodes < MaxNodes (--nnodes MIN:MAX):
	// it starts with MinNodes to MaxNodes nodes and goes on, at a new world size, when nodes
	// are lost (as long as MinNodes remain) or join. Zero means NNodes; for an elastic job
	// NNodes is ignored.
	MinNodes, MaxNodes int
	// Settle is how long an elastic rendezvous waits, once MinNodes are there, for more
	// nodes before it starts (and how long a node waiting while the job runs below
	// MaxNodes waits before the job is restarted to admit it). Zero means DefaultSettle.
	Settle time.Duration
	// RdzvEndpoints lists the agent addresses (host:port) where a node looks for a running
	// job before it joins, tried in order; an elastic job's rendezvous may have moved to any
	// of them. Empty means MasterAddr:MasterPort only.
	RdzvEndpoints []string
	// NodeRank is this node's index in [0, NNodes). Global ranks are NodeRank*NProc+local.
	NodeRank int
	// MasterAddr is node 0's host name or address, given to ranks as MASTER_ADDR and dialled
	// by other nodes' agents. Empty means 127.0.0.1, which only a single-node job may use.
	MasterAddr string
	// MasterPort is given to ranks as MASTER_PORT; node 0's agent listens on it over TCP.
	// Zero means DefaultMasterPort.
	MasterPort int
	// Standalone picks a free local port for a single-node job, ignoring MasterAddr and
	// MasterPort, so that several jobs can share a machine.
	Standalone bool

	// MaxRestarts is how many times the whole group is restarted after a failure. Zero means
	// none: the first failure ends the job.
	MaxRestarts int
	// Grace is the time between TERM and KILL when ranks are stopped. Zero means
	// DefaultGrace; a negative value means KILL at once.
	Grace time.Duration
	// JoinTimeout bounds how long nodes wait for each other before each attempt. Zero means
	// DefaultJoinTimeout.
	JoinTimeout time.Duration

	// LogDir, when not empty, receives one file per rank (rank-<RANK>.log) holding that rank's
	// stdout and stderr lines without prefixes, appended across restarts.
	LogDir string

	// Token is the job's shared secret, given to ranks as GORUN_TOKEN and used by the node
	// agents. Empty means a fresh random token, which only a single-node job may use.
	Token string
	// RunID names the job (GORUN_RUN_ID). Empty means node 0 picks a random one; other nodes
	// always use node 0's.
	RunID string
	// ThreadsPerRank sets each rank's GOMAXPROCS. Zero means the GOMAXPROCS found in Env if
	// any, else the node's usable cores divided among its ranks (at least 1).
	ThreadsPerRank int
	// Transport is exported to ranks as GORUN_TRANSPORT: what carries links between hosts
	// (tls, tcp or quic; the old auto and shm are still accepted). Empty means "tls".
	Transport string
	// Shm is exported to ranks as GORUN_SHM: on, off or require. Empty means "on".
	Shm string
	// Iface is exported to ranks as GORUN_SOCKET_IFNAME when not empty: the interface or
	// address ranks advertise and bind.
	Iface string
	// Timeline, when not empty, is exported to ranks as GORUN_TIMELINE (made absolute): each
	// rank writes its Chrome trace to it with its rank inserted, and Run merges this node's
	// ranks' files into it when the job ends (see timeline.go).
	Timeline string

	// Env is the base environment of every rank ("KEY=value" entries); the launcher's own
	// variables are set on top of it. Nil means the launcher's own environment (os.Environ).
	Env []string
	// Dir is the ranks' working directory. Empty means the launcher's.
	Dir string

	// Stdout and Stderr receive the ranks' prefixed output and the launcher's own messages
	// (always on Stderr, prefixed "gorun: "). Nil means io.Discard.
	Stdout, Stderr io.Writer

	// ForceKill, when closed, makes ranks that are being stopped get KILL at once instead of
	// after Grace. Main closes it on a second interrupt. Nil means never.
	ForceKill <-chan struct{}

	// HeartbeatInterval is how often node agents ping each other. Zero means 1s.
	HeartbeatInterval time.Duration
	// HeartbeatTimeout is how long an agent connection may stay silent before the peer node is
	// considered lost. Zero means GORUN_PEER_TIMEOUT from Env when set, else 10s.
	HeartbeatTimeout time.Duration

	// observeState, if not nil, sees every move of node 0's agent state machine (tests).
	observeState func(from, to agentState)

	heartbeatTimeoutSet bool
}

// withDefaults returns a copy of c with zero values replaced by their defaults.
func (c Config) withDefaults() Config {
	if c.NProc == 0 {
		c.NProc = 1
	}
	if c.NNodes == 0 {
		c.NNodes = 1
	}
	if c.MinNodes == 0 && c.MaxNodes == 0 {
		c.MinNodes, c.MaxNodes = c.NNodes, c.NNodes
	}
	if c.MaxNodes > c.MinNodes && c.NNodes < c.MaxNodes {
		c.NNodes = c.MaxNodes // elastic: NNodes only bounds validation below
	}
	if c.Settle == 0 {
		c.Settle = DefaultSettle
	}
	if c.MasterPort == 0 {
		c.MasterPort = DefaultMasterPort
	}
	if c.Grace == 0 {
		c.Grace = DefaultGrace
	}
	if c.Grace < 0 {
		c.Grace = 0
	}
	if c.JoinTimeout == 0 {
		c.JoinTimeout = DefaultJoinTimeout
	}
	if c.Transport == "" {
		c.Transport = "tls"
	}
	if c.Shm == "" {
		c.Shm = "on"
	}
	if c.HeartbeatInterval == 0 {
		c.HeartbeatInterval = time.Second
	}
	if c.HeartbeatTimeout == 0 {
		c.HeartbeatTimeout = 10 * time.Second
	} else {
		c.heartbeatTimeoutSet = true
	}
	if c.Stdout == nil {
		c.Stdout = io.Discard
	}
	if c.Stderr == nil {
		c.Stderr = io.Discard
	}
	return c
}

// validate checks a defaulted Config. Its errors are *UsageError naming the flag at fault.
func (c *Config) validate() error {
	switch {
	case c.Target == "":
		return usagef("missing TARGET (a .go file, a package directory or an executable)")
	case c.NProc < 1:
		return usagef("--nproc must be at least 1, got %d", c.NProc)
	case c.NNodes < 1:
		return usagef("--nnodes must be at least 1, got %d", c.NNodes)
	case c.MinNodes < 1 || c.MaxNodes < c.MinNodes:
		return usagef("--nnodes MIN:MAX needs 1 <= MIN <= MAX, got %d:%d", c.MinNodes, c.MaxNodes)
	case c.NodeRank < 0 || c.NodeRank >= c.NNodes:
		return usagef("--node-rank must be in [0, %d) for --nnodes %d, got %d", c.NNodes, c.NNodes, c.NodeRank)
	case c.MasterPort < 1 || c.MasterPort > 65535:
		return usagef("--master-port must be in [1, 65535], got %d", c.MasterPort)
	case c.MaxRestarts < 0:
		return usagef("--max-restarts must not be negative, got %d", c.MaxRestarts)
	case c.ThreadsPerRank < 0:
		return usagef("--threads-per-rank must not be negative, got %d", c.ThreadsPerRank)
	case c.Standalone && c.NNodes > 1:
		return usagef("--standalone is for single-node jobs, but --nnodes is %d", c.NNodes)
	case c.NNodes > 1 && c.MasterAddr == "":
		return usagef("a multi-node job (--nnodes %d) needs --master-addr: node 0's host name or address", c.NNodes)
	case c.NNodes > 1 && c.Token == "":
		return usagef("a multi-node job (--nnodes %d) needs a token shared by all nodes: "+
			"pass --token-file FILE (or --token, or set GORUN_TOKEN) with the same secret on every node", c.NNodes)
	case c.NNodes*c.NProc > 1<<20:
		return usagef("--nnodes %d × --nproc %d ranks is more than this launcher supports", c.NNodes, c.NProc)
	}
	if !contains(Transports, c.Transport) {
		return usagef("--transport must be one of %v, got %q", Transports, c.Transport)
	}
	if !contains(ShmModes, c.Shm) {
		return usagef("--shm must be one of %v, got %q", ShmModes, c.Shm)
	}
	return nil
}

// elastic reports whether the job's size may change (--nnodes MIN:MAX with MIN < MAX).
func (c *Config) elastic() bool { return c.MinNodes < c.MaxNodes }

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// UsageError reports a command line or configuration that cannot work: a bad flag value, a
// missing or unusable TARGET, contradictory settings. Main exits with status 2 for it.
type UsageError struct {
	Msg string
}

func (e *UsageError) Error() string { return e.Msg }

func usagef(format string, args ...any) error {
	return &UsageError{Msg: fmt.Sprintf(format, args...)}
}

// JobError reports a job that ran (or tried to) and did not succeed: a failed rank after all
// restarts, a build error, a lost or unreachable node. Code is the exit status Main uses.
type JobError struct {
	// Code is the suggested process exit status: 1 for failures, 128+N after signal N,
	// preempt.ExitCode (75) when the ranks saved a checkpoint and stopped on request.
	Code int
	// Msg says what went wrong, in one line.
	Msg string
	// Err is an underlying cause such as ErrInterrupted, or nil.
	Err error
}

func (e *JobError) Error() string { return e.Msg }

// Unwrap returns the underlying cause, for errors.Is and errors.As.
func (e *JobError) Unwrap() error { return e.Err }

func jobErrorf(format string, args ...any) error {
	return &JobError{Code: 1, Msg: fmt.Sprintf(format, args...)}
}

// ErrInterrupted is wrapped by the error Run returns when the job was stopped because its
// context ended (for example after SIGINT) rather than because a rank failed.
var ErrInterrupted = errors.New("interrupted")

// ErrPreempted is wrapped by the error Run returns when gorun was signalled and every rank of
// this node stopped with preempt.ExitCode: they saved a checkpoint at a step boundary, and
// starting the job again resumes it. Its JobError's Code is preempt.ExitCode.
var ErrPreempted = errors.New("preempted: checkpoint saved")
