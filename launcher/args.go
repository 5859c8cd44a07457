package launcher

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/ringtrain/ringtrain/jobenv"
)

// flagDef describes one command-line flag once, so that parsing, --help and the USAGE.md
// table (checked by a test) cannot drift apart.
type flagDef struct {
	name  string // canonical name, used with "--"
	alias string // optional second name
	arg   string // placeholder for the value; empty for a boolean flag
	def   string // default, as shown in --help
	env   string // environment variables consulted when the flag is absent, in order
	help  string
}

var flagDefs = []flagDef{
	{name: "nproc", alias: "nproc-per-node", arg: "N", def: "1", env: jobenv.PetNProcPerNode,
		help: "ranks (processes) to start on this node"},
	{name: "nnodes", arg: "M|MIN:MAX", def: "1", env: "PET_NNODES, NNODES, WORLD_SIZE*, SLURM_NNODES",
		help: "number of nodes, one gorun each; MIN:MAX makes the job elastic (it goes on at a new size when nodes are lost or join)"},
	{name: "node-rank", arg: "I", def: "0", env: "PET_NODE_RANK, NODE_RANK, RANK*, SLURM_NODEID",
		help: "this node's index in [0, nnodes); global rank = node-rank × nproc + local rank"},
	{name: "master-addr", arg: "HOST", def: "127.0.0.1 (single node only)",
		env:  "PET_MASTER_ADDR, MASTER_ADDR, first host of SLURM_JOB_NODELIST",
		help: "node 0's host name or address (rank 0's rendezvous and node 0's agent)"},
	{name: "master-port", arg: "PORT", def: "29500", env: "PET_MASTER_PORT, MASTER_PORT",
		help: "port of rank 0's rendezvous (UDP) and node 0's agent (TCP)"},
	{name: "standalone", def: "off",
		help: "single-node job on a free local port (ignores master address and port)"},
	{name: "max-restarts", arg: "K", def: "0", env: jobenv.PetMaxRestarts,
		help: "restart the whole group up to K times after a failure"},
	{name: "grace", arg: "DURATION", def: "5s",
		help: "time between TERM and KILL when stopping ranks (0 = KILL at once)"},
	{name: "log-dir", arg: "DIR", def: "none",
		help: "also write each rank's output, unprefixed, to DIR/rank-<RANK>.log"},
	{name: "token", arg: "SECRET", def: "random (single node only)", env: jobenv.Token,
		help: "job secret shared by all nodes (visible in ps: prefer --token-file)"},
	{name: "token-file", arg: "FILE", def: "none",
		help: "read the job secret from FILE (surrounding white space ignored)"},
	{name: "threads-per-rank", arg: "N", def: "GOMAXPROCS, else cores / nproc",
		help: "GOMAXPROCS of every rank"},
	{name: "transport", arg: "NAME", def: "tls", env: jobenv.Transport,
		help: "what carries links between hosts (and between ranks of one host with --shm off): tls (TLS 1.3 over TCP), tcp (plaintext, not encrypted) or quic; old auto = tls, shm = --shm require"},
	{name: "shm", arg: "on|off", def: "on", env: jobenv.Shm,
		help: "shared memory between ranks of one host: on, off, or require (fail naming a peer that cannot)"},
	{name: "iface", arg: "NAME|IP", def: "the address that reaches the master", env: jobenv.SocketIfname,
		help: "network interface (or address) every rank advertises and binds, like NCCL_SOCKET_IFNAME"},
	{name: "run-id", arg: "ID", def: "random", env: jobenv.RunID,
		help: "job name given to ranks as GORUN_RUN_ID (node 0's value wins)"},
	{name: "join-timeout", arg: "DURATION", def: "5m",
		help: "how long nodes wait for each other before each attempt"},
	{name: "rdzv-endpoints", arg: "HOST:PORT,...", def: "MASTER_ADDR:MASTER_PORT", env: jobenv.PetRdzvEndpoint,
		help: "elastic jobs: where a node looks for the running job's rendezvous, in order (it may have moved to any node)"},
	{name: "timeline", arg: "FILE", def: "none", env: "GORUN_TIMELINE",
		help: "each rank writes a Chrome trace of its collectives, DDP phases and pipeline actions to FILE with its rank inserted (trace.rank0.json); gorun merges them into FILE at the end"},
	{name: "settle", arg: "DURATION", def: "10s",
		help: "elastic jobs: once MIN nodes are there, wait this long for more before starting; a node waiting while the job runs below MAX is admitted (job restarted) after this"},
}

// LookupEnv reads one environment variable; os.LookupEnv is one.
type LookupEnv func(key string) (string, bool)

// ParseArgs turns gorun's command line (without the program name) and an environment into a
// Config. Flags stop at TARGET: everything after it belongs to the program. Each setting comes
// from, in order of precedence: its flag, the torchrun-style environment (PET_*, then plain
// names such as NNODES and MASTER_ADDR), Slurm's variables, then the default.
//
// It returns flag.ErrHelp for -h/--help, and a *UsageError for anything else wrong.
func ParseArgs(args []string, env LookupEnv) (*Config, error) {
	if env == nil {
		env = os.LookupEnv
	}
	fs := flag.NewFlagSet("gorun", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}

	var (
		nproc, nodeRank, masterPort, maxRestarts, threads                    intValue
		nnodes, masterAddr, logDir, token, tokenFile, transport, runID, rdzv stringValue
		shm, iface, timelineFile                                             stringValue
		grace, joinTimeout, settle                                           durationValue
		standalone                                                           boolValue
	)
	vals := map[string]flag.Value{
		"nproc": &nproc, "nnodes": &nnodes, "node-rank": &nodeRank, "master-addr": &masterAddr,
		"master-port": &masterPort, "standalone": &standalone, "max-restarts": &maxRestarts,
		"grace": &grace, "log-dir": &logDir, "token": &token, "token-file": &tokenFile,
		"threads-per-rank": &threads, "transport": &transport, "shm": &shm, "iface": &iface, "run-id": &runID,
		"join-timeout": &joinTimeout, "rdzv-endpoints": &rdzv, "settle": &settle, "timeline": &timelineFile,
	}
	for _, d := range flagDefs {
		fs.Var(vals[d.name], d.name, d.help)
		if d.alias != "" {
			fs.Var(vals[d.name], d.alias, d.help)
		}
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil, flag.ErrHelp
		}
		// The flag package names flags with one dash; gorun documents two.
		msg := err.Error()
		for _, r := range [][2]string{
			{"flag provided but not defined: -", "unknown flag --"},
			{"for flag -", "for flag --"},
			{" for -", " for --"},
			{"flag needs an argument: -", "flag needs an argument: --"},
		} {
			msg = strings.Replace(msg, r[0], r[1], 1)
		}
		return nil, usagef("%s", msg)
	}
	rest := fs.Args()
	if len(rest) == 0 {
		return nil, usagef("missing TARGET (a .go file, a package directory or an executable) after the flags")
	}

	c := &Config{Target: rest[0], Args: rest[1:]}
	// torchrun users write "gorun ... prog.go -- --flag": a "--" right after TARGET only
	// separates gorun's flags from the program's and is dropped (write "-- --" to pass one).
	if len(c.Args) > 0 && c.Args[0] == "--" {
		c.Args = c.Args[1:]
	}
	slurm, err := slurmDefaults(env)
	if err != nil {
		return nil, err
	}
	pick := func(v *intValue, envs []string, slurmVal string, def int) (int, error) {
		if v.set {
			return v.v, nil
		}
		for _, k := range envs {
			if s, ok := env(k); ok && strings.TrimSpace(s) != "" {
				n, err := parseEnvInt(k, s)
				if err != nil {
					return 0, err
				}
				return n, nil
			}
		}
		if slurmVal != "" {
			return strconv.Atoi(slurmVal) // validated by slurmDefaults
		}
		return def, nil
	}

	if c.NProc, err = pick(&nproc, []string{jobenv.PetNProcPerNode}, "", 1); err != nil {
		return nil, err
	}
	// WORLD_SIZE and RANK, as set by operators that run one process per pod, count pods:
	// they stand for the node count and node rank only when nothing more specific is set.
	nodeEnvs, rankEnvs := []string{jobenv.PetNNodes, jobenv.NNodes}, []string{jobenv.PetNodeRank, jobenv.NodeRank}
	if !anySet(env, jobenv.PetNNodes, jobenv.NNodes, jobenv.PetNodeRank, jobenv.NodeRank) {
		nodeEnvs, rankEnvs = append(nodeEnvs, jobenv.WorldSize), append(rankEnvs, jobenv.Rank)
	}
	nn, nnFrom := "1", "--nnodes"
	if nnodes.set {
		nn = nnodes.v
	} else if k := firstSet(env, nodeEnvs); k != "" {
		nn, _ = env(k)
		nnFrom = "environment " + k
	} else if slurm.nnodes != "" {
		nn, nnFrom = slurm.nnodes, "SLURM_NNODES"
	}
	if c.MinNodes, c.MaxNodes, err = parseNNodes(nnFrom, nn); err != nil {
		return nil, err
	}
	c.NNodes = c.MaxNodes
	if c.NodeRank, err = pick(&nodeRank, rankEnvs, slurm.nodeID, 0); err != nil {
		return nil, err
	}
	if c.MasterPort, err = pick(&masterPort, []string{jobenv.PetMasterPort, jobenv.MasterPort}, "", DefaultMasterPort); err != nil {
		return nil, err
	}
	// Zero would read as "default" below; given explicitly, it is a mistake.
	if c.NProc < 1 {
		return nil, usagef("--nproc must be at least 1, got %d", c.NProc)
	}
	if c.MinNodes < 1 {
		return nil, usagef("--nnodes must be at least 1, got %s", nn)
	}
	if rdzv.set || anySet(env, jobenv.PetRdzvEndpoint) {
		for _, e := range strings.Split(firstOf(rdzv, env, []string{jobenv.PetRdzvEndpoint}, ""), ",") {
			e = strings.TrimSpace(e)
			if e == "" {
				continue
			}
			if _, _, err := net.SplitHostPort(e); err != nil {
				e = net.JoinHostPort(e, strconv.Itoa(c.MasterPort))
			}
			c.RdzvEndpoints = append(c.RdzvEndpoints, e)
		}
	}
	if settle.set {
		if settle.v <= 0 {
			return nil, usagef("--settle must be positive, got %v", settle.v)
		}
		c.Settle = settle.v
	}
	if c.MaxRestarts, err = pick(&maxRestarts, []string{jobenv.PetMaxRestarts}, "", 0); err != nil {
		return nil, err
	}
	c.ThreadsPerRank = threads.v

	c.MasterAddr = firstOf(masterAddr, env, []string{jobenv.PetMasterAddr, jobenv.MasterAddr}, slurm.master)
	c.Transport = strings.ToLower(strings.TrimSpace(firstOf(transport, env, []string{jobenv.Transport}, "")))
	if !transport.set && c.Transport != "" && !contains(Transports, c.Transport) {
		return nil, usagef("environment GORUN_TRANSPORT=%q: must be one of %v", c.Transport, Transports)
	}
	c.Shm = strings.ToLower(strings.TrimSpace(firstOf(shm, env, []string{jobenv.Shm}, "")))
	if !shm.set && c.Shm != "" && !contains(ShmModes, c.Shm) {
		return nil, usagef("environment GORUN_SHM=%q: must be one of %v", c.Shm, ShmModes)
	}
	if c.Transport == "shm" && c.Shm == "" {
		c.Shm = "require" // the old --transport shm
	}
	c.Iface = firstOf(iface, env, []string{jobenv.SocketIfname}, "")
	c.RunID = firstOf(runID, env, []string{jobenv.RunID}, "")
	c.LogDir = logDir.v
	c.Timeline = strings.TrimSpace(firstOf(timelineFile, env, []string{jobenv.Timeline}, ""))
	c.Standalone = standalone.v
	if c.Standalone {
		for _, name := range []string{"nnodes", "node-rank", "master-addr", "master-port"} {
			if vals[name].(interface{ isSet() bool }).isSet() {
				return nil, usagef("--standalone picks its own address and port for a single node: drop --%s", name)
			}
		}
		c.NNodes, c.MinNodes, c.MaxNodes, c.NodeRank, c.MasterAddr, c.MasterPort = 1, 1, 1, 0, "", 0
	}

	c.Grace = DefaultGrace
	if grace.set {
		c.Grace = grace.v
		if c.Grace == 0 {
			c.Grace = -1 // explicit --grace 0: KILL at once
		}
	}
	c.JoinTimeout = DefaultJoinTimeout
	if joinTimeout.set {
		if joinTimeout.v <= 0 {
			return nil, usagef("--join-timeout must be positive, got %v", joinTimeout.v)
		}
		c.JoinTimeout = joinTimeout.v
	}
	if grace.v < 0 {
		return nil, usagef("--grace must not be negative, got %v", grace.v)
	}

	switch {
	case token.set && tokenFile.set:
		return nil, usagef("give either --token or --token-file, not both")
	case token.set:
		if strings.TrimSpace(token.v) == "" {
			return nil, usagef("--token is empty")
		}
		c.Token = strings.TrimSpace(token.v)
	case tokenFile.set:
		c.Token, err = readTokenFile(tokenFile.v)
		if err != nil {
			return nil, err
		}
	default:
		if s, ok := env(jobenv.Token); ok {
			c.Token = strings.TrimSpace(s)
		}
	}

	d := c.withDefaults()
	if err := d.validate(); err != nil {
		return nil, err
	}
	return c, nil
}

// readTokenFile reads a secret from a file and refuses an empty one.
func readTokenFile(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", usagef("--token-file: %v", err)
	}
	tok := strings.TrimSpace(string(b))
	if tok == "" {
		return "", usagef("--token-file %s is empty", path)
	}
	return tok, nil
}

func anySet(env LookupEnv, keys ...string) bool {
	for _, k := range keys {
		if s, ok := env(k); ok && strings.TrimSpace(s) != "" {
			return true
		}
	}
	return false
}

func firstOf(v stringValue, env LookupEnv, envs []string, fallback string) string {
	if v.set {
		return v.v
	}
	for _, k := range envs {
		if s, ok := env(k); ok && strings.TrimSpace(s) != "" {
			return strings.TrimSpace(s)
		}
	}
	return fallback
}

// parseNNodes reads --nnodes: N (fixed), or torchrun's MIN:MAX (elastic when MIN < MAX).
func parseNNodes(from, s string) (lo, hi int, err error) {
	s = strings.TrimSpace(s)
	a, b, ranged := strings.Cut(s, ":")
	if !ranged {
		b = a
	}
	lo, err1 := strconv.Atoi(strings.TrimSpace(a))
	hi, err2 := strconv.Atoi(strings.TrimSpace(b))
	switch {
	case (err1 != nil || err2 != nil) && from == "--nnodes":
		return 0, 0, usagef("invalid value %q for flag --nnodes: not an integer (or MIN:MAX)", s)
	case err1 != nil || err2 != nil:
		return 0, 0, usagef("%s=%q is not an integer (or MIN:MAX)", from, s)
	case !ranged && lo < 1:
		return 0, 0, usagef("--nnodes must be at least 1, got %d", lo)
	case lo < 1 || hi < lo:
		return 0, 0, usagef("%s %q: an elastic range needs 1 <= MIN <= MAX", from, s)
	}
	return lo, hi, nil
}

// firstSet is the first of keys set (not blank) in env, or "".
func firstSet(env LookupEnv, keys []string) string {
	for _, k := range keys {
		if s, ok := env(k); ok && strings.TrimSpace(s) != "" {
			return k
		}
	}
	return ""
}

// parseEnvInt reads an integer setting from the environment. torchrun's elastic form "N:N"
// is accepted when both bounds agree; a range is not (this launcher is not elastic).
func parseEnvInt(key, s string) (int, error) {
	s = strings.TrimSpace(s)
	if lo, hi, ok := strings.Cut(s, ":"); ok {
		if lo != hi {
			return 0, usagef("environment %s=%q asks for an elastic range; gorun needs a fixed number", key, s)
		}
		s = lo
	}
	n, err := strconv.Atoi(s)
	if err != nil {
		return 0, usagef("environment %s=%q is not an integer", key, s)
	}
	return n, nil
}

// synopsis is "--nproc N, --nproc-per-node N".
func (d flagDef) synopsis() string {
	one := func(name string) string {
		if d.arg == "" {
			return "--" + name
		}
		return "--" + name + " " + d.arg
	}
	if d.alias != "" {
		return one(d.name) + ", " + one(d.alias)
	}
	return one(d.name)
}

// Usage writes gorun's --help text.
func Usage(w io.Writer) {
	fmt.Fprint(w, `usage: gorun [flags] TARGET [args...]

Start nproc copies ("ranks") of TARGET on this node, with the torchrun environment, and
supervise them. TARGET is a .go file, a Go package directory (both built once, before any rank
starts), an executable file, or a command in PATH. Flags stop at TARGET: every argument after
it goes to the program. Multi-node: one gorun per node with --nnodes, --node-rank,
--master-addr and a shared --token-file.

Flags (precedence: flag > environment > Slurm > default; * = only if the more specific
variables are unset):
`)
	for _, d := range flagDefs {
		fmt.Fprintf(w, "  %s\n        %s\n", d.synopsis(), d.help)
		extra := "default " + d.def
		if d.env != "" {
			extra += "; env " + d.env
		}
		fmt.Fprintf(w, "        (%s)\n", extra)
	}
	fmt.Fprint(w, `
Every rank gets: RANK WORLD_SIZE LOCAL_RANK LOCAL_WORLD_SIZE NODE_RANK NNODES MASTER_ADDR
MASTER_PORT GORUN_TOKEN GORUN_RUN_ID GORUN_RESTART_COUNT GORUN_TRANSPORT GOMAXPROCS.
Output lines are prefixed "[RANK] ". The first failing rank stops the others (TERM, then KILL
after --grace) and gorun prints a summary.

Exit status: 0 all ranks succeeded; 1 the job failed; 2 usage error; 128+N stopped by signal N.
`)
}

// The flag.Value types below remember whether the flag was given, which the precedence rules
// need, and word their errors for people.

type intValue struct {
	v   int
	set bool
}

func (v *intValue) String() string { return strconv.Itoa(v.v) }
func (v *intValue) isSet() bool    { return v.set }
func (v *intValue) Set(s string) error {
	n, err := strconv.Atoi(strings.TrimSpace(s))
	if err != nil {
		return errors.New("not an integer")
	}
	v.v, v.set = n, true
	return nil
}

type stringValue struct {
	v   string
	set bool
}

func (v *stringValue) String() string { return v.v }
func (v *stringValue) isSet() bool    { return v.set }
func (v *stringValue) Set(s string) error {
	v.v, v.set = s, true
	return nil
}

type durationValue struct {
	v   time.Duration
	set bool
}

func (v *durationValue) String() string { return v.v.String() }
func (v *durationValue) isSet() bool    { return v.set }
func (v *durationValue) Set(s string) error {
	d, err := time.ParseDuration(strings.TrimSpace(s))
	if err != nil {
		// A bare number is a common slip; say what is expected.
		return errors.New("not a duration (write it like 5s, 500ms or 1m)")
	}
	v.v, v.set = d, true
	return nil
}

type boolValue struct {
	v   bool
	set bool
}

func (v *boolValue) String() string   { return strconv.FormatBool(v.v) }
func (v *boolValue) isSet() bool      { return v.set }
func (v *boolValue) IsBoolFlag() bool { return true }
func (v *boolValue) Set(s string) error {
	b, err := strconv.ParseBool(s)
	if err != nil {
		return errors.New("not true or false")
	}
	v.v, v.set = b, true
	return nil
}
