#!/usr/bin/env bash
# Small-message latency, before and after the changes of the latency branch, side by side
# (as root, from the repository root; binaries of three commits, run one after another in
# each round, the whole script under the measurement lock, never at once):
#
#   flock /tmp/ringtrain-measure.lock bash benchmarks/results/scale/latency/run.sh benchmarks/results/scale/latency >benchmarks/results/scale/latency/run.log 2>&1
#   python3 benchmarks/results/scale/latency/summarize.py >benchmarks/results/scale/latency/summary.md
#
#   base   7426db4  before this work
#   pop    464590b  the header lap without a goroutine, the one-shot, shm segments MAP_POPULATE'd
#   after  224c947  + every shm page written once at setup, rd+oneshot, the tuner's one-shot model
#
# Every binary runs benchmarks/allreduce as of the last commit (job_cpu_us: the CPU the
# job's ranks used per op, summed over ranks), so only the collective library differs.
#  1. one host, 4 ranks, 4 KiB: ring, rd (and oneshot, auto), interleaved in one job; three
#     rounds of base, pop, after; --warmup 10 as netns/run.sh, and --warmup 1200 (past the
#     first pass around every 4 MiB shared-memory ring) for base and after.
#  2. the tuner's orderings, after only: one host, 3 and 8 ranks; 4 hosts × 2 ranks
#     (network namespaces, TLS between hosts) with ring, rd, oneshot, rdoneshot.
set -euo pipefail
out=${1:-$(dirname "$0")}
src=$(pwd)
bins=/tmp/latency-ab
for c in base:7426db4 pop:464590b after:224c947; do
	name=${c%%:*} commit=${c#*:}
	if [ ! -x $bins/$name/allreduce ]; then
		rm -rf $bins/src-$name && mkdir -p $bins/src-$name $bins/$name
		git archive "$commit" | tar -x -C $bins/src-$name
		cp benchmarks/allreduce/*.go $bins/src-$name/benchmarks/allreduce/
		(cd $bins/src-$name && go build -o $bins/$name/ ./cmd/gorun ./benchmarks/allreduce)
	fi
done

# one NAME BIN NPROC ALGOS ITERS WARMUP: one host, rank 0's JSON lines to NAME.jsonl
one() {
	local name=$1 b=$bins/$2
	"$b/gorun" --standalone --nproc "$3" "$b/allreduce" --json --algo "$4" \
		--min 4KiB --max 4KiB --iters "$5" --warmup "$6" >"$out/$name.log" 2>&1 || echo "$name: exit $?"
	grep -h '^\[0\] {' "$out/$name.log" | cut -c5- >"$out/$name.jsonl" || true
	echo "$name: $(wc -l <"$out/$name.jsonl") rows"
}

date -u +"start %FT%TZ"; uptime
for r in 1 2 3; do
	one r$r-1x4-base base 4 ring,rd,auto 100 10
	one r$r-1x4-pop pop 4 ring,rd,oneshot,auto 100 10
	one r$r-1x4-after after 4 ring,rd,oneshot,auto 100 10
	uptime
done
one warm-1x4-base base 4 ring,rd,auto 100 1200
one warm-1x4-after after 4 ring,rd,oneshot,auto 100 1200
one n3-after after 3 ring,rd,oneshot 100 10
one n8-after after 8 ring,rd,oneshot 50 10

cl=scripts/netns-cluster.sh
tok=$(mktemp); echo "latency-ab-$$" >"$tok"
bash $cl up lat4 4
trap 'bash $cl down lat4; rm -f "$tok"' EXIT
master=$(bash $cl ip lat4 0)
for r in 1 2; do
	b=$bins/after
	pids=()
	for ((i = 0; i < 4; i++)); do
		ip netns exec "lat4-h$i" env -u GORUN_ALGO "$b/gorun" --nnodes 4 --node-rank "$i" \
			--master-addr "$master" --master-port 29500 --token-file "$tok" --nproc 2 \
			--join-timeout 120s "$b/allreduce" --json --algo ring,rd,oneshot,rdoneshot,auto \
			--min 4KiB --max 4KiB --iters 50 --warmup 10 >"$out/r$r-4x2-after.node$i.log" 2>&1 &
		pids+=($!)
	done
	for p in "${pids[@]}"; do wait "$p" || echo "node exit $?"; done
	grep -h '^\[0\] {' "$out/r$r-4x2-after.node0.log" | cut -c5- >"$out/r$r-4x2-after.jsonl" || true
	echo "r$r-4x2-after: $(wc -l <"$out/r$r-4x2-after.jsonl") rows"
done
date -u +"end %FT%TZ"; uptime
