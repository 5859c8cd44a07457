// Package multihost benchmarks AllReduce across hosts: network namespaces joined by a bridge
// (internal/netcluster), every host's link shaped with tbf, one rank per host started by its
// own gorun exactly as on separate machines, benchmarks/allreduce as the workload. It needs
// root (it skips otherwise):
//
//	go test -run '^$' -bench AllReduceHosts -benchtime 1x ./benchmarks/multihost/ \
//	    [-args -hosts 4 -rate 1gbit -size 64MiB -iters 5 -out results.jsonl]
//
// Figures: busbw against the link rate (a ring's bus bandwidth is what each rank's link
// carries, so it can at best equal the link rate), the raw ring exchange over the same QUIC
// transport (the ceiling the transport reaches on these links) and fp16's AllReduce time
// against fp32's. See the benchmark's doc for the results measured here.
package multihost
