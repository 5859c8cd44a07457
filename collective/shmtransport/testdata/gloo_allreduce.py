#!/usr/bin/env python3
"""Anchor for the shared-memory transport: PyTorch Gloo all_reduce on CPU float32 tensors.

Runs N ranks as separate processes (torch.multiprocessing, init over tcp://127.0.0.1), each
all-reducing a tensor of --bytes bytes, and prints one JSON line per N with the median and best
time and busbw = (bytes/time) * 2(N-1)/N (nccl-tests convention), so it lines up with the Go
benchmark's output. Use Debian's interpreter: /usr/bin/python3 gloo_allreduce.py --ranks 2,4
"""
import argparse
import json
import os
import socket
import statistics
import time

import torch
import torch.distributed as dist
import torch.multiprocessing as mp


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def worker(rank, n, port, nbytes, warmup, iters, q):
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=n)
    x = torch.ones(nbytes // 4, dtype=torch.float32)
    for _ in range(warmup):
        dist.all_reduce(x)
    times = []
    for _ in range(iters):
        x.fill_(float(rank + 1))
        dist.barrier()
        t0 = time.perf_counter()
        dist.all_reduce(x)
        times.append(time.perf_counter() - t0)
    want = n * (n + 1) / 2
    ok = bool(torch.all(x == want))
    # Every rank reports; the slowest rank's time per iteration is the collective's time.
    q.put((rank, times, ok))
    dist.destroy_process_group()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ranks", default="2,4")
    ap.add_argument("--bytes", type=int, default=64 << 20)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--iters", type=int, default=10)
    a = ap.parse_args()
    ctx = mp.get_context("spawn")
    for n in [int(s) for s in a.ranks.split(",")]:
        q = ctx.Queue()
        port = free_port()
        procs = [ctx.Process(target=worker, args=(r, n, port, a.bytes, a.warmup, a.iters, q)) for r in range(n)]
        for p in procs:
            p.start()
        res = [q.get() for _ in procs]
        for p in procs:
            p.join()
        per_iter = [max(r[1][i] for r in res) for i in range(a.iters)]
        med, best = statistics.median(per_iter), min(per_iter)
        factor = 2 * (n - 1) / n
        print(json.dumps({
            "impl": "gloo", "torch": torch.__version__, "op": "allreduce", "ranks": n,
            "bytes": a.bytes, "dtype": "fp32", "iters": a.iters,
            "time_us_median": round(med * 1e6), "time_us_best": round(best * 1e6),
            "busbw_gbs_median": round(a.bytes / med / 1e9 * factor, 3),
            "busbw_gbs_best": round(a.bytes / best / 1e9 * factor, 3),
            "correct": all(r[2] for r in res), "cores": os.cpu_count(),
        }), flush=True)


if __name__ == "__main__":
    main()
