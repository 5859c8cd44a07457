// Package jobenv is the environment contract between gorun (package launcher) and the ranks it
// starts: every variable the launcher sets for a rank, and every variable a rank reads that
// changes how the job runs. Both sides use these constants, so a name cannot drift between
// the writer and the readers, and [Vars] is the one table the documentation mirrors
// (launcher/USAGE.md is checked against it by a test).
//
// The names follow torchrun (RANK, WORLD_SIZE, LOCAL_RANK, ..., TORCHELASTIC_*), so that
// Kubernetes operators, Slurm scripts and tools built for PyTorch read them unchanged; names
// only gorun has start with GORUN_.
//
// The package imports nothing of the module: the launcher, package collective and training
// programs all import it.
package jobenv

// Set by gorun for every rank, in every attempt.
const (
	// Rank is the rank's global index in [0, WORLD_SIZE): NODE_RANK × LOCAL_WORLD_SIZE +
	// LOCAL_RANK. In an elastic job it is renumbered densely at every membership change.
	Rank = "RANK"
	// WorldSize is the number of ranks in the job (in this world version): NNODES × nproc.
	WorldSize = "WORLD_SIZE"
	// LocalRank is the rank's index on its node, 0 … LOCAL_WORLD_SIZE−1. Picks the GPU.
	LocalRank = "LOCAL_RANK"
	// LocalWorldSize is the number of ranks on this node (--nproc, the same on every node).
	LocalWorldSize = "LOCAL_WORLD_SIZE"
	// NodeRank is the node's index in [0, NNODES). Fixed-size jobs: --node-rank. Elastic
	// jobs: assigned by the rendezvous at each membership change (the rendezvous host is 0).
	NodeRank = "NODE_RANK"
	// GroupRank is torchrun's name for NODE_RANK (same value).
	GroupRank = "GROUP_RANK"
	// RoleRank is torchrun's rank within the worker role; gorun has one role, so it equals RANK.
	RoleRank = "ROLE_RANK"
	// RoleWorldSize is torchrun's size of the worker role; it equals WORLD_SIZE.
	RoleWorldSize = "ROLE_WORLD_SIZE"
	// NNodes is the number of nodes in the job (in this world version).
	NNodes = "NNODES"
	// MasterAddr is the host of rank 0's rendezvous store (UDP). In an elastic job it is the
	// current rendezvous host, which moves when that host is lost.
	MasterAddr = "MASTER_ADDR"
	// MasterPort is the port of rank 0's rendezvous store (UDP); the node agent uses the same
	// number over TCP. Default 29500.
	MasterPort = "MASTER_PORT"
	// Token is the job secret: it authenticates ranks to the store and nodes to each other.
	Token = "GORUN_TOKEN"
	// RunID is the job's id, the same on every node (node 0's --run-id, else random).
	RunID = "GORUN_RUN_ID"
	// TorchElasticRunID is torchrun's name for GORUN_RUN_ID (same value).
	TorchElasticRunID = "TORCHELASTIC_RUN_ID"
	// RestartCount is the attempt number: 0 for the first, then one more after every restart,
	// whether a failure or a membership change caused it.
	RestartCount = "GORUN_RESTART_COUNT"
	// TorchElasticRestartCount is torchrun's name for GORUN_RESTART_COUNT (same value).
	TorchElasticRestartCount = "TORCHELASTIC_RESTART_COUNT"
	// WorldVersion counts membership changes: 0 for the first membership, one more each time
	// the set of nodes changes (a node lost or admitted). A restart with the same nodes keeps
	// it. A program that sees it differ from its checkpoint's knows the world was resized.
	WorldVersion = "GORUN_WORLD_VERSION"
	// Elastic is "1" in a job started with --nnodes MIN:MAX (the world size may change between
	// attempts), "0" otherwise.
	Elastic = "GORUN_ELASTIC"
	// MinNodes and MaxNodes are the bounds of --nnodes MIN:MAX (both NNODES when fixed).
	MinNodes = "GORUN_MIN_NODES"
	MaxNodes = "GORUN_MAX_NODES"
	// Transport selects what carries links between hosts (and between ranks of one host when
	// GORUN_SHM is off): tls (default), tcp or quic (--transport). The old spellings auto
	// (= tls with shared memory) and shm (= GORUN_SHM=require) still work, with a note.
	Transport = "GORUN_TRANSPORT"
	// Shm says whether ranks of one host use shared memory: on (default), off, or require
	// (--shm).
	Shm = "GORUN_SHM"
	// SocketIfname is the network interface (or IP address) every rank advertises and binds
	// for QUIC and TCP (--iface), like NCCL_SOCKET_IFNAME / GLOO_SOCKET_IFNAME. Empty: the
	// address that reaches MASTER_ADDR.
	SocketIfname = "GORUN_SOCKET_IFNAME"
	// GoMaxProcs is each rank's GOMAXPROCS (--threads-per-rank, else cores ÷ nproc).
	GoMaxProcs = "GOMAXPROCS"
	// ErrorFile is torchrun's TORCHELASTIC_ERROR_FILE: where this rank records its failure
	// (package errorfile), one path per rank and attempt. Set for gorun itself, it is where
	// gorun writes the job's root cause.
	ErrorFile = "TORCHELASTIC_ERROR_FILE"
)

// Read by ranks (package collective), never set by gorun: the user sets them around gorun.
const (
	// JoinTimeout bounds how long a rank waits for the others at the rendezvous (default 120s).
	JoinTimeout = "GORUN_JOIN_TIMEOUT"
	// PeerTimeout is how soon a dead or silent peer is detected (default 15s). gorun's node
	// agents follow it too: a node silent for GORUN_PEER_TIMEOUT is lost.
	PeerTimeout = "GORUN_PEER_TIMEOUT"
	// Streams is the number of TCP connections per data link (default 1), striped, so that
	// one edge can use several cores and NIC queues.
	Streams = "GORUN_STREAMS"
	// ShmDir is the directory of the shared-memory segments (default /dev/shm).
	ShmDir = "GORUN_SHM_DIR"
	// Algo forces the AllReduce algorithm: ring, hier, rd, rhd, oneshot, rdoneshot or auto
	// (the tuner; default).
	Algo = "GORUN_ALGO"
	// TunerFile is a JSON α-β table replacing the committed one (rank 0's is used by all).
	TunerFile = "GORUN_TUNER_FILE"
	// HostID replaces the host identity a rank publishes at the rendezvous (default: boot id
	// and network namespace), e.g. to simulate hosts on one machine.
	HostID = "GORUN_HOST_ID"
	// Timeline is the Chrome trace file of the job (gorun --timeline): every rank records its
	// collectives, DDP phases and pipeline actions into the file with its rank inserted
	// (trace.json → trace.rank3.json, package timeline), and gorun merges them into this one.
	Timeline = "GORUN_TIMELINE"
)

// Var documents one variable of the contract.
type Var struct {
	Name    string
	Default string // the value when nothing overrides it, in words
	Meaning string
	// SetByGorun is true for variables gorun sets for every rank, false for those the user
	// sets and ranks read.
	SetByGorun bool
}

// Vars is the whole contract, in the order the documentation lists it.
var Vars = []Var{
	{Rank, "", "global rank: `NODE_RANK × LOCAL_WORLD_SIZE + LOCAL_RANK` (renumbered densely when an elastic job's membership changes)", true},
	{WorldSize, "", "ranks in the job: `NNODES × nproc` (in an elastic job, of the current world version)", true},
	{LocalRank, "", "rank on this node, 0 … nproc−1", true},
	{LocalWorldSize, "", "ranks on this node (`--nproc`, the same on every node)", true},
	{NodeRank, "", "this node's index; elastic jobs: assigned at each membership change, the rendezvous host is 0", true},
	{GroupRank, "", "torchrun's name for `NODE_RANK`", true},
	{RoleRank, "", "torchrun's rank in the (only) role: `RANK`", true},
	{RoleWorldSize, "", "torchrun's size of the (only) role: `WORLD_SIZE`", true},
	{NNodes, "", "nodes in the job (in the current world version)", true},
	{MasterAddr, "", "host of rank 0's rendezvous store (UDP): the current rendezvous host", true},
	{MasterPort, "29500", "port of rank 0's rendezvous store (UDP; the node agents use it over TCP)", true},
	{Token, "", "the job secret: authenticates ranks to the rendezvous and nodes to each other", true},
	{RunID, "random", "the job's id, the same on all nodes", true},
	{TorchElasticRunID, "", "torchrun's name for `GORUN_RUN_ID`", true},
	{RestartCount, "0", "0 for the first attempt, one more after each restart (a failure or a membership change)", true},
	{TorchElasticRestartCount, "0", "torchrun's name for `GORUN_RESTART_COUNT`", true},
	{WorldVersion, "0", "membership version: one more each time an elastic job's set of nodes changes", true},
	{Elastic, "0", "`1` when started with `--nnodes MIN:MAX`", true},
	{MinNodes, "NNODES", "lower bound of `--nnodes MIN:MAX`", true},
	{MaxNodes, "NNODES", "upper bound of `--nnodes MIN:MAX`", true},
	{Transport, "tls", "`--transport`: what carries links between hosts (and between ranks of one host with `--shm off`): `tls` (TLS 1.3 over TCP, pinned certificates), `tcp` (plaintext after a token handshake; not encrypted), `quic`; old spellings `auto` (= `tls`) and `shm` (= `--shm require`) still work with a note", true},
	{Shm, "on", "`--shm`: `on` (ranks of one host share memory), `off` (every link takes `--transport`), `require` (fail naming a peer that cannot)", true},
	{SocketIfname, "", "`--iface`: interface name or IP address every rank advertises and binds (QUIC and TCP); unset: the address that reaches `MASTER_ADDR`. gorun sets it with `--iface`", false},
	{GoMaxProcs, "cores ÷ nproc", "`--threads-per-rank`, else gorun's own `GOMAXPROCS`, else the node's usable cores divided by nproc, at least 1", true},
	{JoinTimeout, "120s", "a rank that never arrives: every other rank fails after this, naming the missing ranks", false},
	{PeerTimeout, "15s", "a peer that dies or vanishes is detected within this, the error names it; gorun's node agents use it too", false},
	{Streams, "1", "TCP connections per data link (`tls`/`tcp`), striped in 256 KiB blocks, 1 to 64", false},
	{ShmDir, "/dev/shm", "directory of the shared-memory segments (8 MiB + 4 KiB per link); an edge whose pages cannot be reserved there stays on the base transport, with one warning naming it", false},
	{Algo, "auto", "AllReduce algorithm: `ring`, `hier` (reduce-scatter on each host, AllReduce across hosts, all-gather on the host; the ring where hosts hold unequal rank counts), `rd` (recursive doubling or Rabenseifner, whichever the model prefers), `rhd` (Rabenseifner), `oneshot` (tiny buffers: every rank sends its buffer to every other), `rdoneshot` (tiny buffers: rd inside each host, one-shot across), `auto` (the α-β tuner picks per call); every rank must use the same", false},
	{TunerFile, "committed table", "JSON α-β table per link kind for the tuner (as printed by `go run ./benchmarks/alphabeta`); rank 0's table is the one every rank uses", false},
	{HostID, "boot id + network namespace", "host identity a rank publishes at the rendezvous; ranks with equal identities count as one host (hierarchical AllReduce, tuner)", false},
	{ErrorFile, "per rank and attempt", "torchrun's error file: a failing rank records its error there as JSON (`errorfile.Record`), gorun prints it in the failure summary; set for gorun itself, gorun writes the job's root cause there (torchrun's layout, with `errorCode`)", true},
	{Timeline, "", "`--timeline FILE`: each rank writes a Chrome trace (collectives, DDP phases, pipeline actions) to FILE with its rank inserted (`trace.rank0.json`); gorun merges them into FILE when the job ends. Unset: no timeline, no cost", false},
}

// Markdown renders Vars as the Markdown table the documentation carries.
func Markdown() string {
	s := "| variable | set by | default | meaning |\n|---|---|---|---|\n"
	for _, v := range Vars {
		by := "gorun"
		if !v.SetByGorun {
			by = "you"
		}
		def := v.Default
		if def == "" {
			def = "—"
		} else {
			def = "`" + def + "`"
		}
		s += "| `" + v.Name + "` | " + by + " | " + def + " | " + v.Meaning + " |\n"
	}
	return s
}

// Read by gorun itself (torchrun's PET_* names, as the Kubernetes PyTorch operator sets them):
// each stands for the gorun flag of the same meaning when the flag is absent.
const (
	PetNProcPerNode = "PET_NPROC_PER_NODE" // --nproc
	PetNNodes       = "PET_NNODES"         // --nnodes (N or MIN:MAX)
	PetNodeRank     = "PET_NODE_RANK"      // --node-rank
	PetMasterAddr   = "PET_MASTER_ADDR"    // --master-addr
	PetMasterPort   = "PET_MASTER_PORT"    // --master-port
	PetMaxRestarts  = "PET_MAX_RESTARTS"   // --max-restarts
	PetRdzvEndpoint = "PET_RDZV_ENDPOINT"  // --rdzv-endpoints
)
