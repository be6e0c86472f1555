"""How much of a study's wall time is spent training: the quickstart search phase on local Ray.

trial_time_fraction = (sum over trials and epochs of Tune's time_this_iter_s, i.e. the time inside
``run``'s epochs: train, validate, checkpoint) / (wall time of the search x CPUs the trials used).

Measured side by side, each ``--repeats`` times (medians reported):
- the search as ``study run`` does it locally: it starts Ray, searches, stops Ray (the headline);
- the same search on a Ray that is already running, as with ``ray.address`` on a cluster: the
  difference is Ray's own start and stop. Trial actors start cold in both.

Usage: python benchmarks/study_overhead.py [--spec search_spaces/quickstart.yaml] [--samples N]
       [--epochs N] [--repeats N]
The last line printed is one JSON object.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics

import ray
from _study import scratch_spec, timed_search, trial_results

from study.runtime import connect_ray
from trainables.data import load_arrays


def measure(args, running_ray: bool) -> dict:
    """One search in a scratch folder; with ``running_ray`` Ray is started before the clock."""
    overrides = {}
    if args.samples:
        overrides["search"] = {"samples_per_strategy": args.samples}
    if args.epochs:
        overrides["training"] = {"epochs": args.epochs}
    spec = scratch_spec(args.spec, **overrides)
    arrays = load_arrays(spec.data)  # data preparation is cached once per data set, not part of a study's cost
    if running_ray:
        connect_ray(spec, arrays.images.nbytes)
    try:
        _, wall = timed_search(spec)
    finally:
        if running_ray:
            ray.shutdown()
    trials = trial_results(spec)
    cpus = spec.ray.num_cpus or os.cpu_count()
    compute = sum(r["time_this_iter_s"] for rows in trials for r in rows)
    return {"wall_s": wall, "compute_s": compute, "cpus": cpus, "trials": len(trials),
            "epochs": sum(len(rows) for rows in trials), "fraction": compute / (wall * cpus)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--spec", default="search_spaces/quickstart.yaml")
    ap.add_argument("--samples", type=int, help="samples per strategy (default: the spec's)")
    ap.add_argument("--epochs", type=int, help="epochs per trial (default: the spec's)")
    ap.add_argument("--repeats", type=int, default=1, help="measurements of each kind (medians reported)")
    args = ap.parse_args()
    runs: dict[str, list[dict]] = {"starts Ray": [], "Ray running": []}
    for _ in range(args.repeats):
        for kind, rows in runs.items():
            rows.append(measure(args, running_ray=kind == "Ray running"))
    print(f"\n{'search':12s} {'trials':>6s} {'epochs':>6s} {'CPUs':>4s} {'wall s':>7s} {'epochs s':>8s} "
          f"{'fraction':>8s}")
    for kind, rows in runs.items():
        for r in rows:
            print(f"{kind:12s} {r['trials']:6d} {r['epochs']:6d} {r['cpus']:4d} {r['wall_s']:7.1f} "
                  f"{r['compute_s']:8.1f} {r['fraction']:8.3f}")

    def median(kind: str, key: str) -> float:
        return statistics.median(r[key] for r in runs[kind])

    print(json.dumps({
        "trial_time_fraction": round(median("starts Ray", "fraction"), 3),
        "trial_time_fraction_ray_running": round(median("Ray running", "fraction"), 3),
        "wall_s": round(median("starts Ray", "wall_s"), 1),
        "wall_s_ray_running": round(median("Ray running", "wall_s"), 1),
        "trial_compute_s": round(median("starts Ray", "compute_s"), 1),
        "trials": runs["starts Ray"][0]["trials"], "repeats": args.repeats}))


if __name__ == "__main__":
    main()
