#!/bin/bash
# MTU 1500 vs 9000, 2 netns hosts, 10 Gbit tbf, tcp and tls, alternating, 2 rounds.
OUT=${OUT:-$(cd "$(dirname "$0")" && pwd)}
cd "$(dirname "$0")/../../../multihost"
for r in 1 2; do
  for mtu in 1500 9000; do
    for tr in tcp tls; do
      uptime
      NETNS_MTU=$mtu /tmp/mhbench.test -test.run '^$' -test.bench AllReduceHosts -test.benchtime 1x -hosts 2 -rate 10gbit -iters 3 -warmup 1 -transport $tr -out $OUT/mtu$mtu.jsonl 2>&1 | grep -E "busbw|raw|link" | head -4
      echo "== round $r mtu $mtu $tr"
    done
  done
done
