// Package launcher starts and supervises the processes ("ranks") of one distributed job, like
// torchrun does for PyTorch. It is the library behind the gorun command:
//
//	gorun --nproc 4 train.go --epochs 3
//
// builds train.go once, starts four copies of it with the torchrun environment (RANK,
// WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT, GORUN_TOKEN...), prefixes every line they
// print with their rank, and supervises them: the first rank that fails stops the others (TERM,
// then KILL after a grace period), optionally the whole group restarts, and no process of the
// job outlives gorun.
//
// With several machines, one gorun runs per node. Node 0's gorun serves a small agent on TCP
// MASTER_ADDR:MASTER_PORT (the ranks' own rendezvous uses UDP on the same port number); the
// other nodes' agents join it, authenticated by HMAC challenge-response over the job token, and
// node 0 decides for everyone when a group starts, stops and restarts.
//
// With --nnodes MIN:MAX the job is elastic (elastic.go): the rendezvous host decides each
// membership, lost nodes make the survivors restart at a new world size, waiting nodes are
// admitted, and the lowest surviving node takes over the rendezvous when its host is lost
// (with a majority of the last membership, so that a partition cannot make two jobs).
//
// The environment every rank gets is package jobenv's contract. Two more contracts have their
// rank side in small packages: preempt (SIGTERM becomes a checkpoint at a step boundary and exit
// status 75, which gorun passes on) and errorfile (torchrun's TORCHELASTIC_ERROR_FILE, which
// gorun reads to report a rank's failure and writes for its own scheduler). Node 0's agent, in a
// fixed-size or an elastic job, is one explicit state machine (state.go).
//
// The launcher knows only processes, environment variables and its own node-to-node agreement:
// it imports nothing of the training code or of package collective (preempt and errorfile
// import nothing of the module).
//
// The entry points are [ParseArgs] (the command line and environment to a [Config]), [Run] (one
// job) and [Main] (what cmd/gorun calls: parsing, signals and exit codes).
package launcher
