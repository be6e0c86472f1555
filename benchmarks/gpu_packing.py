"""Fractional-GPU packing: K trials one after another vs K trials sharing one GPU at once.

``resources: {gpu: 0.25}`` in a spec makes Ray start four trial processes on one GPU; this script
measures what that buys for a given model and data size, without Ray in the way: the same K trial
configs (seeds 0..K-1) run first sequentially in one process each, then as K concurrent processes.

Usage: python benchmarks/gpu_packing.py [--trials 4] [--model resnet18_cifar] [--n 3000]
       [--epochs 3] [--amp off]
The last line printed is one JSON object with the headline figures.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import time

import torch

from trainables.config import parse_config
from trainables.data import load_arrays
from trainables.train import run


def config(args: argparse.Namespace, seed: int) -> dict:
    return {"seed": seed, "model": args.model, "epochs": args.epochs, "batch_size": args.batch_size,
            "lr": 1e-3, "strategy": args.strategy, "amp": args.amp, "device": "cuda",
            "num_threads": 1,
            "data": {"source": "synthetic", "synthetic": {"n": args.n, "seed": 0}, "load_size": 36,
                     "image_size": 32, "val_fraction": 0.25, "test_fraction": 0.25}}


def one_trial(cfg: dict) -> float:
    """Run one trial in this process; returns its last validation balanced accuracy."""
    return run(cfg, lambda metrics, ckpt: None)["val/balanced_accuracy"]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--trials", type=int, default=4)
    p.add_argument("--model", default="resnet18_cifar")
    p.add_argument("--strategy", default="combined")
    p.add_argument("--n", type=int, default=3000)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--amp", default="off", choices=["off", "bf16"])
    args = p.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("gpu_packing.py needs a CUDA device")
    configs = [config(args, seed) for seed in range(args.trials)]
    load_arrays(parse_config(configs[0]).data)  # decode and cache once, outside the timings
    ctx = mp.get_context("spawn")
    with ctx.Pool(1) as pool:  # one process, trials one after another (warm-up trial first)
        pool.apply(one_trial, (configs[0] | {"epochs": 1},))
        start = time.perf_counter()
        sequential_scores = [pool.apply(one_trial, (c,)) for c in configs]
        sequential = time.perf_counter() - start
    with ctx.Pool(args.trials) as pool:  # K processes sharing the GPU
        pool.map(one_trial, [c | {"epochs": 1} for c in configs])  # warm up every process
        start = time.perf_counter()
        packed_scores = pool.map(one_trial, configs)
        packed = time.perf_counter() - start
    print(f"{torch.cuda.get_device_name()}: {args.trials} trials of {args.model} ({args.strategy}, "
          f"{args.epochs} epochs, {args.n} images, amp {args.amp})")
    print(f"one after another {sequential:8.2f} s   packed on one GPU {packed:8.2f} s   "
          f"speed-up {sequential / packed:.2f}x")
    print(f"same seeds, same scores packed and sequential: {sequential_scores == packed_scores}")
    print(json.dumps({"packed_speedup": round(sequential / packed, 3), "trials": args.trials,
                      "model": args.model, "amp": args.amp}))


if __name__ == "__main__":
    main()
