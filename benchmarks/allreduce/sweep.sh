#!/usr/bin/env bash
# One sweep over how ranks of one host can be linked, the nccl-tests way: for each round, each
# rank count and each transport, one job through gorun running this driver exactly as users run
# it, then (optionally) PyTorch Gloo's all_reduce on the same sizes, so that a busy machine slows
# every variant alike. Raw JSON lines to stdout, each with the round added; the driver's flags
# (sizes, --collective, --dtype, --compress, ...) come after the script's arguments.
#
#   bash benchmarks/allreduce/sweep.sh 3 -- --min 64MiB --max 64MiB --iters 5 --warmup 1 --baseline
#
# Transports (TRANSPORTS, default "shm tls tcp quic"): shm is gorun's default on one host
# (`--shm on`: shared memory between the ranks); tls, tcp and quic force that link between every
# pair (`--shm off --transport T`), which is how the cross-host data plane is measured on one
# machine. RANKS (default "2 4"), THREADS (threads per rank, default 1), GLOO (auto: when
# /usr/bin/python3 imports torch.distributed; 0 or 1), GLOO_BYTES (default 64 MiB) and
# GLOO_ITERS (default 5) set the rest. Gloo reports one size (its JSON carries impl "gloo").
set -euo pipefail
ROUNDS=${1:-3}
shift || true
[ "${1:-}" = "--" ] && shift
TRANSPORTS=${TRANSPORTS:-shm tls tcp quic}
RANKS=${RANKS:-2 4}
THREADS=${THREADS:-1}
GLOO=${GLOO:-auto}
GLOO_BYTES=${GLOO_BYTES:-$((64 << 20))}
GLOO_ITERS=${GLOO_ITERS:-5}
PY=${PY:-/usr/bin/python3} # Debian's python3-torch (1.13, with Gloo)
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
bin=$(mktemp -d)
trap 'rm -rf "$bin"' EXIT
(cd "$root" && go build -o "$bin/" ./cmd/gorun ./benchmarks/allreduce)
if [ "$GLOO" = auto ]; then
	GLOO=0
	"$PY" -c 'import torch.distributed' 2>/dev/null && GLOO=1
fi
echo "# $(date -u +%FT%TZ) $(nproc) cores, load: $(cut -d' ' -f1-3 /proc/loadavg), gloo=$GLOO, $(git -C "$root" rev-parse --short HEAD), transports: $TRANSPORTS, ranks: $RANKS" >&2
for round in $(seq "$ROUNDS"); do
	for n in $RANKS; do
		for tr in $TRANSPORTS; do
			case $tr in
			shm) link=(--shm on) ;;
			tls | tcp | quic) link=(--shm off --transport "$tr") ;;
			*) echo "sweep.sh: unknown transport '$tr' in TRANSPORTS (want shm, tls, tcp or quic)" >&2; exit 2 ;;
			esac
			"$bin/gorun" --nproc "$n" --threads-per-rank "$THREADS" "${link[@]}" "$bin/allreduce" -- --json "$@" 2>/dev/null |
				sed -n 's/^\[0\] {/{"round":'"$round"',/p'
		done
		if [ "$GLOO" = 1 ]; then
			"$PY" "$here/gloo_allreduce.py" "$n" "$GLOO_BYTES" "$GLOO_ITERS" 2>/dev/null | sed 's/^{/{"round":'"$round"',/'
		fi
	done
done
