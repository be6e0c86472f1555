"""VaB-AL overhead: classifier-epoch time of ``control`` and ``vabal_both`` on the same data and
model, side by side in one run.

An epoch is what ``trainables.train.run`` does per epoch: one training pass and the validation
pass. ``vabal_both`` also pays a refresh (features of train + val, ``vae_epochs`` VAE epochs,
``mc_samples`` Monte Carlo scoring) once every ``refresh_every`` epochs; its per-epoch figure is the
median epoch plus the median refresh divided by ``refresh_every`` (the amortised steady state).
``augment`` is the same trial as vabal_both without VaB-AL, so ``vabal_both / augment`` isolates
VaB-AL's own cost. Epochs of the strategies alternate, so machine noise hits them alike.

Usage: python benchmarks/vabal_overhead.py [--n 1500] [--models resnet18_cifar simple_cnn]
       [--repeats 3] [--mc-samples 100] [--refresh-every 4] [--device auto]
The last line printed is one JSON object with the headline figures.
"""
from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from trainables.config import parse_config
from trainables.data import load_arrays
from trainables.train import TrialState, build_trial, evaluate, train_one_epoch

STRATEGIES = ("control", "augment", "vabal_both")


def sync(t: TrialState) -> None:
    if t.device.type == "cuda":
        torch.cuda.synchronize(t.device)


def timed(t: TrialState, fn) -> float:
    sync(t)
    start = time.perf_counter()
    fn()
    sync(t)
    return time.perf_counter() - start


def epoch(t: TrialState) -> None:
    train_one_epoch(t)
    evaluate(t, "val")


def measure(model: str, args: argparse.Namespace) -> dict[str, float]:
    base = {"model": model, "epochs": 100, "batch_size": 64, "lr": 1e-3, "device": args.device,
            "num_threads": args.threads, "amp": args.amp,
            "vabal": {"refresh_every": args.refresh_every, "mc_samples": args.mc_samples},
            "data": {"source": "synthetic", "synthetic": {"n": args.n, "seed": 0}, "load_size": 36,
                     "image_size": 32, "val_fraction": 0.25, "test_fraction": 0.25}}
    arrays = load_arrays(parse_config({"data": base["data"]}).data)
    trials = {}
    for name in STRATEGIES:
        cfg = {k: v for k, v in base.items() if k != "vabal" or name.startswith("vabal")}
        trials[name] = build_trial(parse_config(cfg | {"strategy": name}), arrays)
    vabal = trials["vabal_both"]
    refresh = lambda: next(h for h in vabal.hooks if h.name == "vabal").refresh(vabal)  # noqa: E731
    for t in trials.values():  # warm-up: allocator, kernels, and a first round of weights
        epoch(t)
    refresh()
    times: dict[str, list[float]] = {name: [] for name in (*STRATEGIES, "refresh")}
    for _ in range(args.repeats):
        for name, t in trials.items():
            times[name].append(timed(t, lambda: epoch(t)))
        times["refresh"].append(timed(vabal, refresh))
    med = {k: statistics.median(v) for k, v in times.items()}
    amortised = med["vabal_both"] + med["refresh"] / args.refresh_every
    return {"control_s": med["control"], "augment_s": med["augment"],
            "vabal_epoch_s": med["vabal_both"], "refresh_s": med["refresh"],
            "vabal_amortised_s": amortised, "vabal_over_control": amortised / med["control"],
            "vabal_over_augment": amortised / med["augment"],
            "refresh_over_control_epoch": med["refresh"] / med["control"],
            "train_samples": len(trials["control"].train_labels_cpu)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=1500)
    p.add_argument("--models", nargs="+", default=["resnet18_cifar", "simple_cnn"])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--mc-samples", type=int, default=100)
    p.add_argument("--refresh-every", type=int, default=4)
    p.add_argument("--device", default="auto")
    p.add_argument("--amp", default="off", choices=["off", "bf16"])
    p.add_argument("--threads", type=int, default=max(1, torch.get_num_threads()))
    args = p.parse_args()
    results = {m: measure(m, args) for m in args.models}
    device = "cuda" if args.device != "cpu" and torch.cuda.is_available() else "cpu"
    print(f"device {device}, {args.n} images (32 px), mc_samples {args.mc_samples}, "
          f"refresh_every {args.refresh_every}, amp {args.amp}, medians of {args.repeats}")
    print(f"{'model':16} {'control':>9} {'augment':>9} {'vabal ep':>9} {'refresh':>9} "
          f"{'vabal/ep':>9} {'x control':>9} {'x augment':>9}")
    for m, r in results.items():
        print(f"{m:16} {r['control_s']:9.3f} {r['augment_s']:9.3f} {r['vabal_epoch_s']:9.3f} "
              f"{r['refresh_s']:9.3f} {r['vabal_amortised_s']:9.3f} {r['vabal_over_control']:9.3f} "
              f"{r['vabal_over_augment']:9.3f}")
    head = results[args.models[0]]
    summary = {"vabal_over_control_epoch": round(head["vabal_over_control"], 4),
               "vabal_over_augment_epoch": round(head["vabal_over_augment"], 4),
               "model": args.models[0], "device": device}
    summary |= {f"vabal_over_control_epoch_{m}": round(r["vabal_over_control"], 4)
                for m, r in results.items() if m != args.models[0]}
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
