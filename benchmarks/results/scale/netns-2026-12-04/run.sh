#!/usr/bin/env bash
# Issue 15's netns figures, all in one run (as root, from the repository root):
#
#   d=benchmarks/results/scale/netns-2026-12-04
#   go build -o /tmp/scalebin-latency/ ./cmd/gorun ./benchmarks/allreduce   # at commit 224c947
#   for r in 1 2 3; do mkdir -p $d/round$r; SCALEBIN=/tmp/scalebin-latency flock /tmp/ringtrain-measure.lock bash $d/run.sh $d/round$r >$d/round$r/run.log 2>&1; done
#   python3 $d/summarize.py >$d/summary.md
#
# (Run so for round1; rounds 2 and 3 ran one after the other under a single lock, the same
# commands, to wait only once behind the other engineers' measurements.)
#
# The same runs as ../netns/run.sh, with the algorithms added since timed beside them
# (rdoneshot at 4x2, oneshot on one host) and the binaries' directory settable (SCALEBIN).
#
#  1. 4 hosts × 2 ranks (network namespaces, unshaped veth links, TLS between hosts, shared
#     memory inside): 4 KiB AllReduce latency, ring vs auto (the tuner) vs hier vs rdoneshot,
#     interleaved;
#     64 MiB busbw, ring vs hier, interleaved. (rd is timed beside them at 4 KiB too.)
#  2. one host, 4 ranks (shared memory): 4 KiB, ring vs rd vs oneshot vs auto, interleaved.
#  3. the inter-host α-β sweep: 2 hosts × 1 rank (one rank per host, so nothing is
#     oversubscribed by co-located ranks), ring, 4 KiB .. 64 MiB, for the α-β fit.
#
# Ratios come from algorithms timed interleaved in one job (allreduce --algo a,b). The 4×2
# runs put 8 ranks on this machine's 2 cores: relative latency checks, not fits.
set -euo pipefail
bin=${SCALEBIN:-/tmp/scalebin}
out=${1:-$(dirname "$0")}
cl=scripts/netns-cluster.sh
tok=$(mktemp); echo "scale-netns-$$" >"$tok"
trap 'rm -f "$tok"' EXIT

# job NAME HOSTS NPROC OUTFILE -- allreduce args: one gorun per host, rank 0's JSON lines kept.
job() {
	local name=$1 hosts=$2 nproc=$3 file=$4; shift 5
	local master; master=$(bash $cl ip "$name" 0)
	local pids=() i
	for ((i = 0; i < hosts; i++)); do
		ip netns exec "$name-h$i" env -u GORUN_ALGO "$bin/gorun" --nnodes "$hosts" --node-rank "$i" \
			--master-addr "$master" --master-port 29500 --token-file "$tok" --nproc "$nproc" \
			--join-timeout 120s "$bin/allreduce" --json "$@" >"$out/$file.node$i.log" 2>&1 &
		pids+=($!)
	done
	local rc=0
	for p in "${pids[@]}"; do wait "$p" || rc=$?; done
	grep -h '^\[0\] {' "$out/$file.node0.log" | cut -c5- >"$out/$file.jsonl" || true
	echo "$file: exit $rc, $(wc -l <"$out/$file.jsonl") rows"
	return 0 # the rows are what count; a non-zero exit is reported above
}

date -u +"start %FT%TZ"; uptime
bash $cl up scl4 4
trap 'bash $cl down scl4; bash $cl down scl2; rm -f "$tok"' EXIT
job scl4 4 2 4x2-4KiB -- --algo ring,rd,hier,rdoneshot,auto --min 4KiB --max 4KiB --iters 50 --warmup 10
job scl4 4 2 4x2-64MiB -- --algo ring,hier --min 64MiB --max 64MiB --iters 5 --warmup 1 --timeout 120s
bash $cl down scl4
"$bin/gorun" --standalone --nproc 4 "$bin/allreduce" --json --algo ring,rd,oneshot,auto --min 4KiB --max 4KiB --iters 50 --warmup 10 \
	>"$out/1x4-4KiB.log" 2>&1
grep -h '^\[0\] {' "$out/1x4-4KiB.log" | cut -c5- >"$out/1x4-4KiB.jsonl"
echo "1x4-4KiB: $(wc -l <"$out/1x4-4KiB.jsonl") rows"
bash $cl up scl2 2
job scl2 2 1 2x1-sweep -- --algo ring --min 4KiB --max 64MiB --factor 4 --iters 10 --warmup 2 --baseline
bash $cl down scl2
date -u +"end %FT%TZ"; uptime
