#!/usr/bin/env python3
"""PyTorch side of the GPU throughput comparison (scripts/gpu-check.sh).

Builds the ready models of models/build.go in PyTorch and times full training
steps on the GPU, the same work per step as ringtrain's GPU backend does:

  mlp       flatten -> 784-512 -> relu -> 512-512 -> relu -> 512-10
  mlp-wide  flatten -> 784-4096 -> relu -> 4096-4096 -> relu -> 4096-10
  cnn       LeNet-5: conv 1->6 k5 pad 2, relu, maxpool 2/2, conv 6->16 k5, relu,
            maxpool 2/2, flatten, 400-120 relu 120-84 relu 84-10

One step: the batch (pageable CPU float32 images and int64 labels, created
once) is copied to the GPU with .to('cuda'), forward, mean softmax
cross-entropy, backward, SGD(lr=0.01, momentum=0.9).step(). Plain FP32: TF32
is OFF for matmul and cuDNN (set_float32_matmul_precision('highest')), and
cudnn.benchmark is False (no autotuning: cuDNN's heuristics pick the
convolution algorithms, as a fresh process would).

Timing: 5 warm-up steps, then 3 repeats of --steps steps, each repeat between
two torch.cuda.synchronize() calls; step_ms is the median repeat's time per
step, step_ms_min and step_ms_max the spread over the repeats.

Usage:
  python3 scripts/gpu_torch.py --config mlp-wide:4096 --config cnn:512 \
      --config mlp:64 --steps 50 --out torch.jsonl

Prints one JSON object per configuration on stdout (and into --out):
  {"check":"torch-throughput","model":"mlp","batch":64,"samples_per_s":...,
   "step_ms":...,"step_ms_min":...,"step_ms_max":...,"torch":"2.11.0",
   "device":"NVIDIA H200","tf32":false,...}
Exits 2 when CUDA is not available, 1 when a configuration failed.
"""

import argparse
import json
import statistics
import sys
import time

MODELS = ("mlp", "mlp-wide", "cnn")
WARMUP = 5
REPEATS = 3
LR = 0.01
MOMENTUM = 0.9


def parse_config(s):
    name, sep, batch = s.partition(":")
    if not sep or name not in MODELS:
        raise argparse.ArgumentTypeError(
            f"--config {s!r}: want MODEL:BATCH with MODEL one of {', '.join(MODELS)}")
    try:
        b = int(batch)
    except ValueError:
        b = 0
    if b <= 0:
        raise argparse.ArgumentTypeError(f"--config {s!r}: batch must be a positive integer")
    return name, b


def build(torch, name):
    nn = torch.nn
    if name in ("mlp", "mlp-wide"):
        h = 512 if name == "mlp" else 4096
        return nn.Sequential(
            nn.Flatten(),
            nn.Linear(784, h), nn.ReLU(),
            nn.Linear(h, h), nn.ReLU(),
            nn.Linear(h, 10),
        )
    # LeNet-5 on 28x28, as models.cnnLayers: the first convolution pads by 2.
    return nn.Sequential(
        nn.Conv2d(1, 6, 5, stride=1, padding=2), nn.ReLU(), nn.MaxPool2d(2, 2),
        nn.Conv2d(6, 16, 5, stride=1, padding=0), nn.ReLU(), nn.MaxPool2d(2, 2),
        nn.Flatten(),
        nn.Linear(400, 120), nn.ReLU(),
        nn.Linear(120, 84), nn.ReLU(),
        nn.Linear(84, 10),
    )


def bench(torch, name, batch, steps, seed, pinned=False):
    torch.manual_seed(seed)
    dev = torch.device("cuda")
    model = build(torch, name).to(dev)
    opt = torch.optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM)
    loss_fn = torch.nn.CrossEntropyLoss()  # mean over the batch
    # Host batch, pageable (not pinned), created once: each step copies it.
    x_cpu = torch.randn(batch, 1, 28, 28, dtype=torch.float32)
    y_cpu = torch.randint(0, 10, (batch,), dtype=torch.int64)
    if pinned:
        # What a DataLoader with pin_memory=True hands over: page-locked
        # host memory, which the copy engine reads directly.
        x_cpu, y_cpu = x_cpu.pin_memory(), y_cpu.pin_memory()

    def step():
        x = x_cpu.to(dev)
        y = y_cpu.to(dev)
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()
        return loss

    for _ in range(WARMUP):
        loss = step()
    torch.cuda.synchronize()
    per_step = []
    for _ in range(REPEATS):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        for _ in range(steps):
            loss = step()
        torch.cuda.synchronize()
        per_step.append((time.perf_counter() - t0) / steps)
    med = statistics.median(per_step)
    return {
        "check": "torch-throughput",
        "model": name,
        "batch": batch,
        "input": "pinned" if pinned else "pageable",
        "samples_per_s": batch / med,
        "step_ms": med * 1e3,
        "step_ms_min": min(per_step) * 1e3,
        "step_ms_max": max(per_step) * 1e3,
        "steps": steps,
        "repeats": REPEATS,
        "warmup": WARMUP,
        "params": sum(p.numel() for p in model.parameters()),
        "final_loss": float(loss.item()),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "device": torch.cuda.get_device_name(),
        "tf32": False,
        "cudnn_benchmark": False,
        "ok": True,
    }


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", action="append", type=parse_config, default=[],
                    metavar="MODEL:BATCH", help="model and batch to time (repeatable); models: " + ", ".join(MODELS))
    ap.add_argument("--steps", type=int, default=50, help="timed steps per repeat (default 50)")
    ap.add_argument("--seed", type=int, default=1, help="seed of the weights and the batch")
    ap.add_argument("--out", default="", help="also write the JSON lines to this file")
    ap.add_argument("--pinned", action="store_true",
                    help="also time each configuration with the host batch in pinned memory")
    args = ap.parse_args(argv)
    if not args.config:
        args.config = [("mlp-wide", 4096), ("cnn", 512), ("mlp", 512)]
    if args.steps <= 0:
        ap.error("--steps must be positive")

    try:
        import torch
    except ImportError as e:
        print(f"gpu_torch.py: PyTorch is not installed ({e})", file=sys.stderr)
        return 2
    if not torch.cuda.is_available():
        print(f"gpu_torch.py: CUDA is not available to PyTorch {torch.__version__} "
              f"(built for CUDA {torch.version.cuda}); nothing to time", file=sys.stderr)
        return 2

    # Plain FP32 everywhere, as ringtrain's kernels and cuBLAS SGEMM.
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.set_float32_matmul_precision("highest")
    torch.backends.cudnn.benchmark = False

    out = open(args.out, "w") if args.out else None
    failed = 0
    try:
        for name, batch in args.config:
            for pinned in ([False, True] if args.pinned else [False]):
                try:
                    rec = bench(torch, name, batch, args.steps, args.seed, pinned)
                except Exception as e:  # report and go on with the next configuration
                    failed += 1
                    rec = {"check": "torch-throughput", "model": name, "batch": batch, "ok": False,
                           "error": f"{type(e).__name__}: {e}", "torch": torch.__version__}
                line = json.dumps(rec)
                print(line, flush=True)
                if out:
                    out.write(line + "\n")
                    out.flush()
    finally:
        if out:
            out.close()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
