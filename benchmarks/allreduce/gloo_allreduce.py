#!/usr/bin/env python3
"""PyTorch Gloo AllReduce baseline, nccl-tests style JSON: python3 gloo_allreduce.py N BYTES ITERS.

N processes on 127.0.0.1, one thread each (torch.set_num_threads(1)), fp32 sum, median time
over ITERS after one warm-up; busbw = bytes/time * 2(N-1)/N.
"""
import json, os, socket, statistics, sys, time
import multiprocessing as mp


def rank_main(rank, n, nbytes, iters, port, q):
    import torch
    import torch.distributed as dist
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=n)
    t = torch.ones(nbytes // 4, dtype=torch.float32)
    dist.all_reduce(t)
    times = []
    for _ in range(iters):
        dist.barrier()
        s = time.perf_counter()
        dist.all_reduce(t)
        times.append(time.perf_counter() - s)
    med = torch.tensor([statistics.median(times)], dtype=torch.float64)
    dist.all_reduce(med, op=dist.ReduceOp.MAX)
    if rank == 0:
        q.put(med.item())
    dist.destroy_process_group()


def main():
    n, nbytes, iters = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    s = socket.socket(); s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]; s.close()
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    ps = [ctx.Process(target=rank_main, args=(r, n, nbytes, iters, port, q)) for r in range(n)]
    for p in ps:
        p.start()
    med = q.get(timeout=600)
    for p in ps:
        p.join()
    algbw = nbytes / med / 1e9
    print(json.dumps({"op": "allreduce", "impl": "gloo", "ranks": n, "bytes": nbytes, "dtype": "fp32",
                      "time_us": med * 1e6, "algbw_gbs": algbw, "busbw_gbs": algbw * 2 * (n - 1) / n,
                      "iters": iters, "transport": "gloo-tcp"}))


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    main()
