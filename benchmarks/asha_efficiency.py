"""ASHA vs FIFO on the same search space, sample budget and Optuna seed (CPU-sized), over several
Optuna seeds: one seed is one draw of the configs both schedulers see, so the headline figures are
medians over seeds.

The trials anneal their LR (``--lr-policy cosine``) by default: with a constant LR the quickstart's
val/balanced_accuracy swings by up to 40 points from one epoch to the next (covid recall flips
between ~0 and ~1 on 22 validation images), so a trial's last-epoch score, which both schedulers
are judged on, says more about the epoch than about the config. ``--lr-policy constant`` measures
that case too. Two trials run at a time (``max_concurrent: 2``), the spec's sampler and space.

Prints, per seed, the epochs each consumed and the best validation score each reached.
Usage: python benchmarks/asha_efficiency.py [--samples 12] [--epochs 9] [--strategy upsample] [--seeds 0 1 2]
The last line printed is one JSON object.
"""
from __future__ import annotations

import argparse
import json
import statistics

from _study import scratch_spec, timed_search, trial_results


def search(args, scheduler: str, seed: int) -> dict:
    spec = scratch_spec(args.spec, training={"epochs": args.epochs, "lr_policy": args.lr_policy},
                        search={"samples_per_strategy": args.samples, "seed": seed, "max_concurrent": 2},
                        scheduler={"type": scheduler, "grace_period": args.grace_period,
                                   "reduction_factor": args.reduction_factor})
    spec.strategies = {args.strategy: spec.strategies[args.strategy]}
    summary, wall = timed_search(spec)
    best = summary["strategies"][args.strategy]["best"]
    return {"epochs": sum(len(r) for r in trial_results(spec)), "best": best["score"], "wall_s": wall}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--spec", default="search_spaces/quickstart.yaml")
    ap.add_argument("--strategy", default="upsample")
    ap.add_argument("--samples", type=int, default=12)
    ap.add_argument("--epochs", type=int, default=9)
    ap.add_argument("--grace-period", type=int, default=1)
    ap.add_argument("--reduction-factor", type=float, default=3)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--lr-policy", default="cosine")
    args = ap.parse_args()
    rows = []
    for seed in args.seeds:
        asha, fifo = search(args, "asha", seed), search(args, "fifo", seed)
        rows.append({"seed": seed, "asha": asha, "fifo": fifo,
                     "epoch_fraction": asha["epochs"] / fifo["epochs"], "best_ratio": asha["best"] / fifo["best"]})
        print(f"seed {seed}: ASHA {asha['epochs']} epochs, best {asha['best']:.4f}, {asha['wall_s']:.0f}s; "
              f"FIFO {fifo['epochs']} epochs, best {fifo['best']:.4f}, {fifo['wall_s']:.0f}s", flush=True)
    print(f"\n{'seed':>4s} {'ASHA epochs':>11s} {'FIFO epochs':>11s} {'ASHA best':>9s} {'FIFO best':>9s} "
          f"{'epochs':>7s} {'best':>7s}")
    for r in rows:
        print(f"{r['seed']:4d} {r['asha']['epochs']:11d} {r['fifo']['epochs']:11d} {r['asha']['best']:9.4f} "
              f"{r['fifo']['best']:9.4f} {r['epoch_fraction']:7.1%} {r['best_ratio']:7.1%}")
    frac = statistics.median(r["epoch_fraction"] for r in rows)
    ratio = statistics.median(r["best_ratio"] for r in rows)
    print(f"median over {len(rows)} seeds: ASHA used {frac:.0%} of FIFO's epochs and reached {ratio:.1%} "
          "of its best score")
    print(json.dumps({"asha_epoch_fraction": round(frac, 3), "asha_best_over_fifo_best": round(ratio, 4),
                      "seeds": len(rows), "best_ratio_min": round(min(r["best_ratio"] for r in rows), 4),
                      "epoch_fraction_max": round(max(r["epoch_fraction"] for r in rows), 3)}))


if __name__ == "__main__":
    main()
