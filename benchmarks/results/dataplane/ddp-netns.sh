#!/usr/bin/env bash
# DDP training across 2 network-namespace hosts (scripts/netns-cluster.sh, unshaped links), one
# rank per host, one gorun per host as on two machines: the fashion example's mlp on synthetic
# data, once per transport between the hosts (tls, tcp, quic), ROUNDS rounds interleaved so the
# shared machine's load hits each alike. Prints each rank-0 epoch JSON line with the transport
# added; exposed_comm_ms is the communication backward did not hide (ddp.StepStats).
# Needs root.
#
#   bash benchmarks/results/dataplane/ddp-netns.sh 3 > ddp-netns-YYYYMMDD.jsonl
set -euo pipefail
ROUNDS=${1:-3}
SAMPLES=${SAMPLES:-19200} # 300 steps of 64 per rank
root=$(git rev-parse --show-toplevel)
cd "$root"
bin=$(mktemp -d)
name=ddp$((RANDOM % 10000))
cleanup() { bash scripts/netns-cluster.sh down "$name" >/dev/null 2>&1 || true; rm -rf "$bin"; }
trap cleanup EXIT
go build -o "$bin/" ./cmd/gorun ./examples/fashion
bash scripts/netns-cluster.sh up "$name" 2 >/dev/null
ip0=$(bash scripts/netns-cluster.sh ip "$name" 0)
token=$(od -An -tx1 -N16 /dev/urandom | tr -d ' \n')
for round in $(seq "$ROUNDS"); do
	for tr in tls tcp quic; do
		for h in 1 0; do
			ip netns exec "$name-h$h" "$bin/gorun" --nnodes 2 --node-rank "$h" --master-addr "$ip0" \
				--master-port 29500 --token "$token" --nproc 1 --threads-per-rank 1 --transport "$tr" \
				"$bin/fashion" --model mlp --synthetic --synthetic-size "$SAMPLES" --epochs 1 --eval=false \
				--json --progress 0 >"$bin/out-$h.txt" 2>"$bin/err-$h.txt" &
		done
		wait
		grep -h '^\[0\] {' "$bin/out-0.txt" | sed -e 's/^\[0\] //' -e "s/^{/{\"transport\":\"$tr\",\"round\":$round,/"
	done
done
