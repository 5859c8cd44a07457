#!/bin/sh
# Forced transports on one host (--shm off), 64 MiB fp32, 1 thread per rank, 2 and 4 ranks,
# interleaved rounds (tcp, tls, quic, then Gloo if PyTorch is installed) so that a busy
# machine slows them alike: benchmarks/allreduce/sweep.sh with these settings. Raw JSON lines
# to stdout; summary by summarize.py. ITERS and CHUNK (collective chunk bytes) from the
# environment.
#
#   sh benchmarks/results/dataplane/run.sh ROUNDS > benchmarks/results/dataplane/raw.jsonl
set -eu
ITERS=${ITERS:-5}
CHUNK=${CHUNK:-0} # collective.Options.ChunkBytes (0: the package default, 256 KiB)
TRANSPORTS="tcp tls quic" RANKS="2 4" GLOO_ITERS=$ITERS exec bash "$(dirname "$0")/../../allreduce/sweep.sh" "${1:-3}" -- \
	--min 64MiB --max 64MiB --iters "$ITERS" --warmup 1 --baseline --chunk "$CHUNK"
