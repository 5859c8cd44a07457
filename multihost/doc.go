// Package multihost proves ringtrain across machines: its tests build a small cluster of
// hosts as Linux network namespaces (internal/netcluster, scripts/netns-cluster.sh), run one
// gorun per host exactly as on separate machines (--nnodes, --node-rank, --master-addr,
// --token-file), and train with DDP while faults are injected: a rank killed with SIGKILL in
// the middle of an AllReduce, a restart from the last checkpoint, a host's link cut, a
// stranger without the token knocking on every port, and a lossy, slow ring through a UDP
// relay; and elastic jobs (--nnodes 2:3) that lose a host, take it back, lose the rendezvous
// host, or are partitioned, and still end with the single-process parameters. After each fault the last checkpoint on disk must still load.
//
// The tests need root and iproute2 (CI runs as root) and skip with the reason otherwise:
//
//	go test ./multihost/ -v
//
// The programs they run live in testdata: mhtrain (the training program), relay (loss and
// delay; this kernel has no netem) and stranger (the intruder). The package has no API: it
// is its tests.
package multihost
