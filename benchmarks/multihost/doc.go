// Package multihost benchmarks AllReduce across hosts: network namespaces joined by a bridge
// (internal/netcluster), every host's link shaped with tbf, one rank per host started by its
// own gorun exactly as on separate machines, benchmarks/allreduce as the workload. It needs
// root (it skips otherwise):
//
//	go test -run '^$' -bench AllReduceHosts -benchtime 1x ./benchmarks/multihost/ \
//	    [-args -hosts 4 -rate 1gbit -size 64MiB -iters 5 -warmup 2 -out results.jsonl]
//
// The link between hosts is gorun's default (TLS over TCP) unless -transport (or
// GORUN_TRANSPORT) names tcp or quic.
//
// Figures: busbw against the link rate (a ring's bus bandwidth is what each rank's link
// carries, so it can at best equal the link rate), the raw ring exchange over the same
// links in the same job (the ceiling the transport reaches on these links), fp16's
// AllReduce time against fp32's, and two diagnostics: the share of the machine's CPU time
// that was busy during each job, and the packets the tbf queues dropped.
//
// # Results on the development machine (2 cores, shared with other builds), over QUIC
//
// These figures predate the TLS/TCP data plane (QUIC was then the only link between hosts);
// today's runs, over TLS by default, are in benchmarks/results/rerun-7a95480/multihost and
// benchmarks/results/dataplane.
//
// 64 MiB, median of 5, JSON lines in results/:
//
//	hosts  links     fp32 time  fp32 busbw           raw exchange        fp16 time (÷ fp32)  CPU busy  tbf drops
//	4      1gbit     2207 ms    45.6 MB/s = 0.365    42.5 MB/s = 0.340   1259 ms (0.571)     100%      0
//	4      1gbit     2374 ms    42.4 MB/s = 0.339    43.4 MB/s = 0.347   1105 ms (0.466)     100%      0
//	4      unshaped  2146 ms    46.9 MB/s            45.8 MB/s           1169 ms (0.545)     100%      0
//	2      1gbit      694 ms    96.7 MB/s = 0.773    96.9 MB/s = 0.775    407 ms (0.587)     100%      0
//
// (The two 4-host 1gbit rows are back-to-back runs of the same command: on this shared
// machine single figures move by ±15%.) The fp32 target (busbw ≥ 0.9 of the link) is not met
// here, and fp16's (time ≤ 0.55 of fp32's) only in some runs (0.47–0.59 over four runs); the
// figures say why: the run is CPU-bound, not link-bound.
//
//   - Removing the 1 Gbit/s limit changes nothing (45.6 → 46.9 MB/s): the links are not what
//     holds the ring back. The tbf queues dropped no packet (burst 256 KB is above the
//     rate/HZ minimum of 125 KB at 1 Gbit/s, and the 50 ms queue absorbs QUIC's bursts), so
//     neither tbf's burst nor QUIC's congestion control reacting to drops is at play.
//   - The machine's CPU is 100% busy throughout: four ranks each encrypting, packetising and
//     sending (and receiving) every byte over QUIC, plus the kernel's veth, bridge and tbf
//     work, on 2 cores that other engineers' builds also use. A CPU profile of one rank shows
//     its time in sendmsg/recvmsg system calls (~30%), AES-GCM and copies, i.e. per-byte
//     transport work; 4 ranks × 2 directions × 125 MB/s is about 1 GB/s of QUIC traffic to
//     process, about 2.7 times what these 2 cores manage (≈ 4 × 2 × 46 MB/s).
//   - The collective itself is not the bottleneck: fp32 AllReduce busbw equals the raw ring
//     exchange over the same transport (1.07 and 1.00 of it), as the ring algorithm allows.
//   - With 2 hosts (half the processes on the same 2 cores) busbw rises to 0.77 of the link,
//     and a 3-iteration run at a quieter moment reached 107 MB/s (0.85): the closer each
//     rank gets to a core of its own, the closer the link rate.
//   - fp16 halves the bytes on the wire, and with the collective's AVX2/F16C kernels its
//     encode/decode costs little, so its time is about half of fp32's (0.47–0.59): on a
//     CPU-bound run it saves the transport's per-byte work rather than link time, and the
//     noise of the shared CPU decides on which side of 0.55 a run lands.
//
// On hosts with a core per rank for the transport (real machines, or this benchmark on a
// machine with ≥ 8 cores) the links, not the CPU, should set the pace; the benchmark prints
// CPU busy and tbf drops so that a run there shows which one did.
package multihost
