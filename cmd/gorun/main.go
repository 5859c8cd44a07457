// Command gorun starts a distributed ringtrain job, like torchrun does for PyTorch:
//
//	gorun --nproc 4 train.go --epochs 3
//
// builds train.go once, starts four ranks with RANK, WORLD_SIZE, MASTER_ADDR... set, prefixes
// their output with "[RANK] " and supervises them (the first failure stops the others;
// --max-restarts restarts the group). For several machines run one gorun per node with
// --nnodes, --node-rank, --master-addr and a shared --token-file. See gorun --help and
// launcher/USAGE.md.
//
// Exit status: 0 when every rank succeeded, 1 when the job failed, 2 for a usage error,
// 128+N when gorun was stopped by signal N.
package main

import (
	"os"

	"github.com/ringtrain/ringtrain/launcher"
)

func main() {
	os.Exit(launcher.Main(os.Args[1:], os.Stdout, os.Stderr))
}
