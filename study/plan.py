"""``study plan``: how many paired seeds a comparison needs, estimated from the repeats already in
MLflow (a pilot) by simulation, for the test the compare stage runs (two-sided Wilcoxon signed-rank
per comparison, Holm over the metric's comparisons).

For each metric of ``repeats.metrics``, the pilot's paired differences (one column per comparison,
oriented so that positive is better for the strategy) are resampled by seed, whole rows at once so
the comparisons keep their correlation (a smoothed bootstrap: each resampled difference gets Gaussian
jitter of 0.1 x its column's standard deviation, which breaks the ties that resampling makes, so the
compare stage's exact Wilcoxon branch applies). At each candidate n, ``simulations`` tables of n
seeds are tested as the compare stage would; a comparison's power is the share in which Holm rejects
and the median difference points the way of the effect. The planned n is the smallest n whose power
reaches the target, for two effects: the observed one (the pilot's differences as they are) and a
given minimum effect (each column shifted so its median is ``effect``, in the metric's units, its
spread kept). Seeded; no normality assumed.

The plan is optimistic for coarse metrics: the compare stage rounds values to a grid, and a metric
that is a ratio of few counts (sensitivity on 20 positives) then has zero and tied differences, which
it drops or tests with the permutation distribution, with less power than the exact branch the
jittered simulation exercises. Treat its numbers as a lower bound there.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy import stats

from trainables.metric_names import lower_is_better

from .errors import StudyError
from .results import repeat_table
from .spec import StudySpec
from .stats import grid_step, holm, on_grid

JITTER = 0.1  # of each column's standard deviation


def simulated_power(differences: np.ndarray, n: int, alpha: float, simulations: int,
                    rng: np.random.Generator) -> np.ndarray:
    """Power per comparison at ``n`` seeds: ``differences`` float ``[seeds, comparisons]`` (positive
    = better) resampled by row; Wilcoxon per column, Holm across columns, as the compare stage."""
    spread = differences.std(0)
    scale = np.where(spread > 0, JITTER * spread, 1e-9 * max(1.0, float(np.abs(differences).max())))
    rows = rng.integers(0, len(differences), (simulations, n))
    sample = differences[rows] + rng.normal(0.0, 1.0, (simulations, n, differences.shape[1])) * scale
    p = stats.wilcoxon(sample, axis=1, zero_method="wilcox", method="exact" if n <= 50 else "asymptotic").pvalue
    rejected = np.array([holm(list(row), alpha)[0] for row in p])
    return (rejected & (np.median(sample, axis=1) > 0)).mean(0)


def planned_seeds(differences: np.ndarray, power: float, alpha: float, max_seeds: int, simulations: int,
                  seed: int) -> tuple[list[int | None], dict[int, np.ndarray]]:
    """The smallest n in 5..``max_seeds`` at which each comparison reaches ``power`` (None if none
    does), and the power curve computed on the way (n -> power per comparison)."""
    rng = np.random.default_rng(seed)
    planned: list[int | None] = [None] * differences.shape[1]
    curve = {}
    for n in range(5, max_seeds + 1):
        curve[n] = simulated_power(differences, n, alpha, simulations, rng)
        for j, reached in enumerate(curve[n] >= power):
            if reached and planned[j] is None:
                planned[j] = n
        if all(p is not None for p in planned):
            break
    return planned, curve


def plan(spec: StudySpec, effect: float | None = None, power: float = 0.8, max_seeds: int = 50,
         simulations: int = 400, seed: int = 0) -> pd.DataFrame:
    """One row per metric and comparison: the pilot's seeds and median difference, the power the
    compare stage has now, and the seeds it needs for the observed effect and for ``effect``. Metrics
    no repeat run records are left out, as the compare stage leaves them out."""
    long = repeat_table(spec)
    if long.empty:
        raise StudyError(f"no finished repeat runs of study {spec.name!r} in MLflow: `study plan` estimates from "
                         "the repeats of a pilot; run `study run` (or `study repeat`) first")
    long = long[long.search_seed == (spec.search.seed if spec.search.seed in set(long.search_seed)
                                     else long.search_seed.min())]  # the seeds of one search (see describe)
    strategies = [s for s in spec.strategies if s in set(long.strategy)]
    baseline = spec.compare.baseline
    pairs = ([(a, b) for i, a in enumerate(strategies) for b in strategies[i + 1:]] if spec.compare.all_pairs
             else [(s, baseline) for s in strategies if s != baseline])
    if baseline not in strategies or not pairs:
        raise StudyError(f"compare.baseline: no finished repeats of {baseline!r} and another strategy to plan for")
    rows = []
    for metric in [m for m in spec.repeats.metrics if long[m].notna().any()]:  # what the repeats record
        wide = long.pivot(index="seed", columns="strategy", values=metric).reindex(columns=strategies).dropna()
        if len(wide) < 3:
            raise StudyError(f"{metric}: the pilot has {len(wide)} seed(s) with a value for every strategy; "
                             "a plan needs at least 3")
        values = on_grid(wide.to_numpy(float), grid_step(wide.to_numpy(float)))
        sign = -1.0 if lower_is_better(metric) else 1.0
        column = {s: i for i, s in enumerate(strategies)}
        differences = np.stack([sign * (values[:, column[a]] - values[:, column[b]]) for a, b in pairs], 1)
        observed = np.median(differences, 0)
        oriented = differences * np.where(observed < 0, -1.0, 1.0)  # the observed effect, whichever way
        now = simulated_power(oriented, len(wide), spec.compare.alpha, simulations, np.random.default_rng(seed))
        for_observed, _ = planned_seeds(oriented, power, spec.compare.alpha, max_seeds, simulations, seed)
        for_effect: list[int | None] = [None] * len(pairs)
        if effect is not None:
            shifted = differences - observed + effect
            for_effect, _ = planned_seeds(shifted, power, spec.compare.alpha, max_seeds, simulations, seed)
        for j, (a, b) in enumerate(pairs):
            rows.append({"metric": metric, "comparison": f"{a} vs {b}", "pilot seeds": len(wide),
                         "median difference": float(observed[j] * sign), "power now": float(now[j]),
                         "seeds for the observed effect": _count(for_observed[j], max_seeds),
                         **({f"seeds for an effect of {effect:g}": _count(for_effect[j], max_seeds)}
                            if effect is not None else {})})
    return pd.DataFrame(rows)


def _count(n: int | None, max_seeds: int) -> str:
    return str(n) if n is not None else f"> {max_seeds}"


def describe(frame: pd.DataFrame, power: float, alpha: float) -> str:
    """The plan as Markdown, with what its numbers mean."""
    head = list(frame.columns)
    lines = [f"# Seed plan (power {power:g}, alpha {alpha:g}, Wilcoxon + Holm as the compare stage runs it)", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for _, row in frame.iterrows():
        lines.append("| " + " | ".join(f"{v:.4g}" if isinstance(v, float) and not math.isnan(v) else str(v)
                                       for v in row) + " |")
    lines += ["", "*Power now: the share of simulated studies with the pilot's number of seeds in which the compare "
                  "stage finds the observed effect significant. Seeds: the smallest number of paired seeds at which "
                  "that share reaches the target power; simulated by resampling the pilot's paired differences by "
                  "seed (smoothed bootstrap), the minimum-effect column with each comparison's differences shifted "
                  "to that median. Medians are in the metric's units. With several search seeds the pilot is the "
                  "repeats of search.seed's search, and the plan is for a study of one search (the search x seed "
                  "test's power depends on the number of searches and on how differently they choose, too).*", ""]
    return "\n".join(lines)
