#!/usr/bin/env bash
# Issue 15's netns figures, all in one run (as root, from the repository root):
#
#   go build -o /tmp/scalebin/ ./cmd/gorun ./benchmarks/allreduce
#   for r in 1 2 3; do mkdir -p benchmarks/results/scale/netns/round$r; bash benchmarks/results/scale/netns/run.sh benchmarks/results/scale/netns/round$r >benchmarks/results/scale/netns/round$r/run.log 2>&1; done
#
#  1. 4 hosts × 2 ranks (network namespaces, unshaped veth links, TLS between hosts, shared
#     memory inside): 4 KiB AllReduce latency, ring vs auto (the tuner) vs hier, interleaved;
#     64 MiB busbw, ring vs hier, interleaved. (rd is timed beside them at 4 KiB too.)
#  2. one host, 4 ranks (shared memory): 4 KiB, ring vs auto, interleaved.
#  3. the inter-host α-β sweep: 2 hosts × 1 rank (one rank per host, so nothing is
#     oversubscribed by co-located ranks), ring, 4 KiB .. 64 MiB, for the α-β fit.
#
# Ratios come from algorithms timed interleaved in one job (allreduce --algo a,b). The 4×2
# runs put 8 ranks on this machine's 2 cores: relative latency checks, not fits.
set -euo pipefail
bin=/tmp/scalebin
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
job scl4 4 2 4x2-4KiB -- --algo ring,rd,hier,auto --min 4KiB --max 4KiB --iters 50 --warmup 10
job scl4 4 2 4x2-64MiB -- --algo ring,hier --min 64MiB --max 64MiB --iters 5 --warmup 1 --timeout 120s
bash $cl down scl4
"$bin/gorun" --standalone --nproc 4 "$bin/allreduce" --json --algo ring,rd,auto --min 4KiB --max 4KiB --iters 50 --warmup 10 \
	>"$out/1x4-4KiB.log" 2>&1
grep -h '^\[0\] {' "$out/1x4-4KiB.log" | cut -c5- >"$out/1x4-4KiB.jsonl"
echo "1x4-4KiB: $(wc -l <"$out/1x4-4KiB.jsonl") rows"
bash $cl up scl2 2
job scl2 2 1 2x1-sweep -- --algo ring --min 4KiB --max 64MiB --factor 4 --iters 10 --warmup 2 --baseline
bash $cl down scl2
date -u +"end %FT%TZ"; uptime
