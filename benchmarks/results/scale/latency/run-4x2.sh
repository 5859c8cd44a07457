#!/usr/bin/env bash
# 4 hosts × 2 ranks (network namespaces, TLS between hosts, shared memory inside), 4 KiB,
# before (7426db4) and after (224c947) side by side: two rounds, each a job of each binary
# one after the other (as root, from the repository root, binaries as built by run.sh):
#
#   flock /tmp/ringtrain-measure.lock bash benchmarks/results/scale/latency/run-4x2.sh benchmarks/results/scale/latency >benchmarks/results/scale/latency/run-4x2.log 2>&1
set -euo pipefail
out=${1:-$(dirname "$0")}
bins=/tmp/latency-ab
cl=scripts/netns-cluster.sh
tok=$(mktemp); echo "latency-4x2-$$" >"$tok"
date -u +"start %FT%TZ"; uptime
bash $cl up lat4 4
trap 'bash $cl down lat4; rm -f "$tok"' EXIT
master=$(bash $cl ip lat4 0)
job() { # NAME BIN ALGOS
	local pids=() i
	for ((i = 0; i < 4; i++)); do
		ip netns exec "lat4-h$i" env -u GORUN_ALGO "$bins/$2/gorun" --nnodes 4 --node-rank "$i" \
			--master-addr "$master" --master-port 29500 --token-file "$tok" --nproc 2 \
			--join-timeout 120s "$bins/$2/allreduce" --json --algo "$3" \
			--min 4KiB --max 4KiB --iters 50 --warmup 10 >"$out/$1.node$i.log" 2>&1 &
		pids+=($!)
	done
	for p in "${pids[@]}"; do wait "$p" || echo "node exit $?"; done
	grep -h '^\[0\] {' "$out/$1.node0.log" | cut -c5- >"$out/$1.jsonl" || true
	echo "$1: $(wc -l <"$out/$1.jsonl") rows"
}
for r in 1 2; do
	job r$r-4x2-base base ring,rd,auto
	job r$r-4x2-after2 after ring,rd,auto
done
date -u +"end %FT%TZ"; uptime
