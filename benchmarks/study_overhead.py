"""How much of a study's wall time is spent training: the quickstart search phase on local Ray.

trial_time_fraction = (sum over trials and epochs of Tune's time_this_iter_s, i.e. the time inside
``run``'s epochs: train, validate, checkpoint) / (wall time of the search x CPUs the trials used).

Usage: python benchmarks/study_overhead.py [--spec search_spaces/quickstart.yaml] [--samples N] [--epochs N]
The last line printed is one JSON object.
"""
from __future__ import annotations

import argparse
import json
import os

from _study import scratch_spec, timed_search, trial_results

from trainables.data import load_arrays


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--spec", default="search_spaces/quickstart.yaml")
    ap.add_argument("--samples", type=int, help="samples per strategy (default: the spec's)")
    ap.add_argument("--epochs", type=int, help="epochs per trial (default: the spec's)")
    args = ap.parse_args()
    overrides = {}
    if args.samples:
        overrides["search"] = {"samples_per_strategy": args.samples}
    if args.epochs:
        overrides["training"] = {"epochs": args.epochs}
    spec = scratch_spec(args.spec, **overrides)
    load_arrays(spec.data)  # data preparation is cached once per data set, not part of a study's cost
    cpus = spec.ray.num_cpus or os.cpu_count()
    summary, wall = timed_search(spec)
    trials = trial_results(spec)
    compute = sum(r["time_this_iter_s"] for rows in trials for r in rows)
    epochs = sum(len(rows) for rows in trials)
    fraction = compute / (wall * cpus)
    print(f"{len(trials)} trials, {epochs} epochs, {len(spec.strategies)} strategies on {cpus} CPUs")
    print(f"wall time of the search:                {wall:8.1f} s")
    print(f"summed time inside trials' epochs:       {compute:8.1f} s")
    print(f"wall x CPUs:                             {wall * cpus:8.1f} s")
    print(f"trial_time_fraction:                     {fraction:8.3f}")
    print(json.dumps({"trial_time_fraction": round(fraction, 3), "wall_s": round(wall, 1),
                      "trial_compute_s": round(compute, 1), "trials": len(trials)}))


if __name__ == "__main__":
    main()
