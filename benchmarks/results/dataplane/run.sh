#!/bin/sh
# Forced transports on one host (--shm off), 64 MiB fp32, 1 thread per rank, 2 and 4 ranks,
# interleaved rounds (tcp, tls, quic, then Gloo if PyTorch is installed) so that a busy
# machine slows them alike. Raw JSON lines to stdout; summary by summarize.py. ITERS and CHUNK
# (collective chunk bytes) from the environment.
#
#   sh benchmarks/results/dataplane/run.sh ROUNDS > benchmarks/results/dataplane/raw.jsonl
set -eu
ROUNDS=${1:-3}
ITERS=${ITERS:-5}
CHUNK=${CHUNK:-0} # collective.Options.ChunkBytes (0: the package default, 256 KiB)
here=$(cd "$(dirname "$0")" && pwd)
go build -o /tmp/dp-gorun ./cmd/gorun
go build -o /tmp/dp-allreduce ./benchmarks/allreduce
gloo=0
PY=${PY:-/usr/bin/python3} # Debian's python3-torch (1.13, with Gloo)
$PY -c 'import torch.distributed' 2>/dev/null && gloo=1
echo "# $(date -u +%FT%TZ) $(nproc) cores, load: $(cut -d' ' -f1-3 /proc/loadavg), gloo=$gloo, $(git rev-parse --short HEAD)" >&2
for round in $(seq "$ROUNDS"); do
	for n in 2 4; do
		for tr in tcp tls quic; do
			/tmp/dp-gorun --nproc "$n" --threads-per-rank 1 --transport "$tr" --shm off /tmp/dp-allreduce -- \
				--min 64MiB --max 64MiB --iters "$ITERS" --warmup 1 --baseline --json --chunk "$CHUNK" 2>/dev/null |
				sed -n 's/^\[0\] {/{"round":'"$round"',/p'
		done
		if [ "$gloo" = 1 ]; then
			$PY "$here/gloo_allreduce.py" "$n" $((64 << 20)) "$ITERS" 2>/dev/null | sed 's/^{/{"round":'"$round"',/'
		fi
	done
done
