#!/usr/bin/env python3
"""PyTorch side of the cnn step comparison (benchmarks/flops/compare.sh).

The same LeNet-5 as models' "cnn" (conv5x5 6 pad 2 -> relu -> maxpool2 ->
conv5x5 16 -> relu -> maxpool2 -> flatten -> fc 400-120 -> relu -> fc 120-84 ->
relu -> fc 84-10), the same step (zero_grad, forward, softmax cross-entropy,
backward, SGD with momentum 0.9), batch 64 of random 1x28x28 inputs, one
thread (torch.set_num_threads(1)). Prints the best of REPS timed steps the
way the flops command does and appends a JSON line ({"kind": "step",
"model": "cnn", "build": "torch", ...}) to --json.

    /usr/bin/python3 benchmarks/flops/torch_lenet.py --reps 10 --json out.jsonl
"""
import argparse
import json
import time

import torch
import torch.nn as nn


def lenet():
    return nn.Sequential(
        nn.Conv2d(1, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(400, 120), nn.ReLU(),
        nn.Linear(120, 84), nn.ReLU(),
        nn.Linear(84, 10))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--reps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--json", default="")
    ap.add_argument("--clock", choices=["cpu", "wall"], default="cpu",
                    help="cpu: this process's CPU time (as benchmarks/flops -clock cpu); wall: elapsed time")
    args = ap.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(1)
    model = lenet()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    loss_fn = nn.CrossEntropyLoss()
    x = torch.rand(args.batch, 1, 28, 28) * 2 - 1
    y = torch.randint(0, 10, (args.batch,))

    def step():
        opt.zero_grad()
        loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()

    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    for _ in range(args.warmup):
        step()
    best = float("inf")
    for _ in range(args.reps):
        t = clock()
        step()
        best = min(best, clock() - t)
    ms = best * 1e3
    rec = {"kind": "step", "model": "cnn", "name": "step", "ms": ms,
           "samples_per_s": args.batch / best, "build": "torch",
           "torch": torch.__version__, "threads": torch.get_num_threads(), "clock": args.clock}
    print("# torch %s, %d thread(s), batch %d, best of %d, clock %s" % (torch.__version__, torch.get_num_threads(), args.batch, args.reps, args.clock))
    print("step  %-8s %-20s %8.3f ms %8.0f samples/s" % ("cnn", "step", ms, rec["samples_per_s"]))
    if args.json:
        with open(args.json, "a") as f:
            f.write(json.dumps(rec) + "\n")


if __name__ == "__main__":
    main()
