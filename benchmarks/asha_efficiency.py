"""ASHA vs FIFO on the same search space, sample budget and Optuna seed (CPU-sized).

Prints the epochs each consumed and the best validation score each reached.
Usage: python benchmarks/asha_efficiency.py [--samples 12] [--epochs 9] [--strategy upsample]
The last line printed is one JSON object.
"""
from __future__ import annotations

import argparse
import json

from _study import scratch_spec, timed_search, trial_results


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--spec", default="search_spaces/quickstart.yaml")
    ap.add_argument("--strategy", default="upsample")
    ap.add_argument("--samples", type=int, default=12)
    ap.add_argument("--epochs", type=int, default=9)
    args = ap.parse_args()
    rows = {}
    for scheduler in ("asha", "fifo"):
        spec = scratch_spec(args.spec, training={"epochs": args.epochs},
                            search={"samples_per_strategy": args.samples},
                            scheduler={"type": scheduler, "grace_period": 1, "reduction_factor": 3})
        spec.strategies = {args.strategy: spec.strategies[args.strategy]}
        summary, wall = timed_search(spec)
        part = summary["strategies"][args.strategy]
        epochs = sum(len(r) for r in trial_results(spec))
        rows[scheduler] = {"epochs": epochs, "best": part["best"]["score"], "wall_s": wall}
        print(f"{scheduler}: {epochs} epochs, best {spec.search.metric} {part['best']['score']:.4f}, "
              f"wall {wall:.0f}s")
    frac = rows["asha"]["epochs"] / rows["fifo"]["epochs"]
    ratio = rows["asha"]["best"] / rows["fifo"]["best"]
    print(f"\n{'scheduler':10s} {'epochs':>8s} {'best val':>10s} {'wall s':>8s}")
    for k, r in rows.items():
        print(f"{k:10s} {r['epochs']:8d} {r['best']:10.4f} {r['wall_s']:8.0f}")
    print(f"ASHA used {frac:.0%} of FIFO's epochs and reached {ratio:.1%} of its best score")
    print(json.dumps({"asha_epoch_fraction": round(frac, 3), "asha_best_over_fifo_best": round(ratio, 4)}))


if __name__ == "__main__":
    main()
