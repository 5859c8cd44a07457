#!/usr/bin/env bash
# Chaos run: for each seed and transport, a 4-rank soak (benchmarks/soak) under gorun in which
# one rank, drawn from the seed, kills itself with SIGKILL at a time drawn from the seed.
# Checks, per run: every survivor fails on its own within GORUN_PEER_TIMEOUT (+ slack) with an
# error naming the dead rank, gorun exits non-zero, no process of the job and no shared-memory
# file of the job is left. Prints one JSON line per run and a summary per transport (hangs,
# late survivors, wrong messages, leftovers); exits 1 if any run failed.
#
#   scripts/chaos.sh                          # seeds 1-10 over shm and quic
#   SEEDS=1-50 TRANSPORTS=quic scripts/chaos.sh
#   scripts/chaos.sh --peer-timeout 5s -v     # extra flags go to `soak chaos` (see its --help)
#
# Environment: SEEDS (1-10), TRANSPORTS (shm,tls,tcp,quic), NPROC (4), PEER_TIMEOUT (3s), OUT (a file
# that also receives the output).
set -euo pipefail
cd "$(dirname "$0")/.."

SEEDS=${SEEDS:-1-10}
TRANSPORTS=${TRANSPORTS:-shm,tls,tcp,quic}
NPROC=${NPROC:-4}
PEER_TIMEOUT=${PEER_TIMEOUT:-3s}

bin=$(mktemp -d "${TMPDIR:-/tmp}/chaos-bin-XXXXXX")
trap 'rm -rf "$bin"' EXIT
go build -o "$bin/gorun" ./cmd/gorun
go build -o "$bin/soak" ./benchmarks/soak

header="chaos: $(date -u +%Y-%m-%dT%H:%M:%SZ) commit $(git rev-parse --short HEAD 2>/dev/null || echo '?') seeds $SEEDS transports $TRANSPORTS nproc $NPROC peer timeout $PEER_TIMEOUT, $(nproc) cores"
run() {
	echo "$header"
	"$bin/soak" chaos --gorun "$bin/gorun" --prog "$bin/soak" --seeds "$SEEDS" --transports "$TRANSPORTS" \
		--nproc "$NPROC" --peer-timeout "$PEER_TIMEOUT" "$@"
}
if [ -n "${OUT:-}" ]; then
	run "$@" 2>&1 | tee "$OUT"
	exit "${PIPESTATUS[0]}"
fi
run "$@"
