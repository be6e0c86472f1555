"""Paired statistics over seeds: which strategy really wins, and how sure can we be.

Input: per metric a seeds x strategies table (rows paired by seed). Tests come from scipy and
statsmodels; this module only arranges them, computes effect sizes from their ranks and warns when
the number of seeds cannot reach the requested significance at all.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd
from scipy import stats
from statsmodels.stats.multitest import multipletests

N_BOOT = 9999


@dataclass
class Comparison:
    """One strategy against another over paired seeds."""

    metric: str
    strategy: str
    baseline: str
    n: int  # paired seeds
    n_used: int  # seeds left after zero differences are dropped (zero_method='wilcox')
    zeros: int
    ties: bool
    method: str
    median_diff: float
    ci_low: float
    ci_high: float
    wins: int
    losses: int
    p_value: float
    p_holm: float = math.nan
    significant: bool = False
    rank_biserial: float = math.nan
    p_improvement: float = math.nan
    p_improvement_ci: tuple[float, float] = (math.nan, math.nan)
    verdict: str = ""


@dataclass
class MetricReport:
    metric: str
    higher_is_better: bool
    per_strategy: pd.DataFrame
    comparisons: list[Comparison]
    friedman: dict | None
    warnings: list[str] = field(default_factory=list)

    def comparisons_frame(self) -> pd.DataFrame:
        return pd.DataFrame([asdict(c) for c in self.comparisons])


def _ci(data: tuple[np.ndarray, ...], statistic, paired: bool, seed: int,
        n_boot: int = N_BOOT) -> tuple[float, float]:
    """95% bootstrap CI (BCa, percentile where BCa is degenerate, e.g. constant data)."""
    if len(data[0]) < 2 or all(np.ptp(d) == 0 for d in data):
        value = float(statistic(*data, axis=-1))
        return value, value
    for method in ("BCa", "percentile"):
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", stats.DegenerateDataWarning)  # falls back to percentile
            res = stats.bootstrap(data, statistic, paired=paired, vectorized=True, n_resamples=n_boot,
                                  method=method, rng=np.random.default_rng(seed))
        low, high = res.confidence_interval
        if np.isfinite(low) and np.isfinite(high):
            return float(low), float(high)
    return math.nan, math.nan


def _iqm(x: np.ndarray, axis: int = -1) -> np.ndarray:
    return stats.trim_mean(x, 0.25, axis=axis)


def describe(table: pd.DataFrame, seed: int = 0, n_boot: int = N_BOOT) -> pd.DataFrame:
    """Per strategy: n, mean, std, median, IQR, IQM and a bootstrap 95% CI of the IQM."""
    rows = []
    for strategy in table.columns:
        x = table[strategy].dropna().to_numpy(float)
        q1, q3 = np.percentile(x, [25, 75]) if len(x) else (math.nan, math.nan)
        low, high = _ci((x,), _iqm, paired=False, seed=seed, n_boot=n_boot) if len(x) else (math.nan, math.nan)
        rows.append({"strategy": strategy, "n": len(x), "mean": x.mean() if len(x) else math.nan,
                     "std": x.std(ddof=1) if len(x) > 1 else math.nan,
                     "median": np.median(x) if len(x) else math.nan, "iqr": q3 - q1,
                     "iqm": float(_iqm(x)) if len(x) else math.nan, "iqm_ci_low": low,
                     "iqm_ci_high": high})
    return pd.DataFrame(rows).set_index("strategy")


def wilcoxon(a: np.ndarray, b: np.ndarray) -> tuple[float, float, str, int, bool]:
    """Two-sided Wilcoxon signed-rank of a - b: (statistic, p, method, zeros, ties).

    Exact when there are no zero differences or ties (scipy's exact distribution); otherwise the
    permutation distribution (exact enumeration up to 2^13 sign flips, 9999 resamples beyond).
    Zero differences are dropped (``zero_method='wilcox'``).
    """
    d = a - b
    zeros = int(np.sum(d == 0))
    nonzero = np.abs(d[d != 0])
    ties = len(np.unique(nonzero)) < len(nonzero)
    if len(nonzero) == 0:
        return math.nan, 1.0, "no non-zero differences", zeros, ties
    if zeros or ties:
        method = stats.PermutationMethod(n_resamples=N_BOOT, rng=0)
        res = stats.wilcoxon(a, b, zero_method="wilcox", method=method)
        return float(res.statistic), float(res.pvalue), "permutation", zeros, ties
    res = stats.wilcoxon(a, b, zero_method="wilcox", method="exact" if len(d) <= 50 else "auto")
    return float(res.statistic), float(res.pvalue), "exact" if len(d) <= 50 else "asymptotic", zeros, ties


def rank_biserial(a: np.ndarray, b: np.ndarray) -> float:
    """Matched-pairs rank-biserial correlation: (R+ - R-) / (R+ + R-) over non-zero differences,
    ranks from scipy.stats.rankdata; +1 = a better on every seed (for higher-is-better)."""
    d = a - b
    d = d[d != 0]
    if len(d) == 0:
        return 0.0
    ranks = stats.rankdata(np.abs(d))
    plus, minus = ranks[d > 0].sum(), ranks[d < 0].sum()
    return float((plus - minus) / (plus + minus))


def _p_better(a: np.ndarray, b: np.ndarray, axis: int = -1) -> np.ndarray:
    return np.mean(a > b, axis=axis) + 0.5 * np.mean(a == b, axis=axis)


def min_p_exact(n: int) -> float:
    """The smallest two-sided p an exact Wilcoxon test can give with n non-zero pairs: 2 / 2^n."""
    return 2.0 / 2**n if n > 0 else 1.0


def seeds_needed(alpha: float, comparisons: int) -> int:
    """Fewest pairs for which the exact test can reach ``alpha / comparisons`` (Holm's first step)."""
    n = 1
    while min_p_exact(n) >= alpha / max(1, comparisons):
        n += 1
    return n


def _points(metric: str, table: pd.DataFrame) -> tuple[float, str]:
    """Proportions are spoken of in points (x100); other metrics in their own units."""
    values = table.to_numpy(float)
    values = values[np.isfinite(values)]
    proportion = metric.split("/")[-1] != "loss" and values.size and values.min() >= 0 and values.max() <= 1
    return (100.0, " points") if proportion else (1.0, "")


def compare(table: pd.DataFrame, metric: str, baseline: str, higher_is_better: bool = True,
            alpha: float = 0.05, all_pairs: bool = False, seed: int = 0,
            n_boot: int = N_BOOT) -> MetricReport:
    """All statistics of one metric: per strategy, each vs the baseline (or every pair), Holm over
    this metric's comparisons, Friedman with mean ranks and Nemenyi's critical difference."""
    table = table.dropna(axis=0, how="any")
    strategies = list(table.columns)
    if baseline not in strategies:
        raise ValueError(f"compare.baseline: {baseline!r} is not one of the strategies {strategies}")
    pairs = ([(a, b) for i, a in enumerate(strategies) for b in strategies[i + 1:]] if all_pairs
             else [(s, baseline) for s in strategies if s != baseline])
    scale, unit = _points(metric, table)
    sign = 1.0 if higher_is_better else -1.0
    comparisons = []
    for a, b in pairs:
        x, y = table[a].to_numpy(float), table[b].to_numpy(float)
        _, p, method, zeros, ties = wilcoxon(x, y)
        low, high = _ci((x - y,), np.median, paired=False, seed=seed, n_boot=n_boot)
        pa, pb = sign * x, sign * y
        p_imp_ci = _ci((pa, pb), _p_better, paired=True, seed=seed, n_boot=n_boot)
        comparisons.append(Comparison(
            metric=metric, strategy=a, baseline=b, n=len(x), n_used=int(np.sum(x != y)), zeros=zeros,
            ties=ties, method=method, median_diff=float(np.median(x - y)), ci_low=low, ci_high=high,
            wins=int(np.sum(pa > pb)), losses=int(np.sum(pa < pb)), p_value=p,
            rank_biserial=sign * rank_biserial(x, y), p_improvement=float(_p_better(pa, pb)),
            p_improvement_ci=p_imp_ci))
    if comparisons:
        reject, p_holm, _, _ = multipletests([c.p_value for c in comparisons], alpha=alpha, method="holm")
        for c, r, ph in zip(comparisons, reject, p_holm):
            c.p_holm, c.significant = float(ph), bool(r)
            c.verdict = _verdict(c, scale, unit, higher_is_better, alpha)
    warnings = []
    n = len(table)
    if comparisons and min_p_exact(n) >= alpha / len(comparisons):
        warnings.append(f"with n = {n} seeds no comparison can reach p < {alpha} after Holm "
                        f"over {len(comparisons)} comparison(s) (the smallest exact p is "
                        f"{min_p_exact(n):.4g}); use at least {seeds_needed(alpha, len(comparisons))} seeds")
    return MetricReport(metric, higher_is_better, describe(table, seed, n_boot), comparisons,
                        friedman(table, higher_is_better, alpha), warnings)


def _verdict(c: Comparison, scale: float, unit: str, higher_is_better: bool, alpha: float) -> str:
    better = c.median_diff > 0 if higher_is_better else c.median_diff < 0
    if c.median_diff == 0:
        move = f"leaves {c.metric} unchanged (median difference 0)"
    else:
        move = (f"{'raises' if c.median_diff > 0 else 'lowers'} {c.metric} by a median "
                f"{abs(c.median_diff) * scale:.3g}{unit} [{c.ci_low * scale:.3g}, {c.ci_high * scale:.3g}]")
    claim = "significant" if c.significant else "not significant"
    direction = "better" if better or c.median_diff == 0 else "worse"
    return (f"{c.strategy} {move} vs {c.baseline}, p_holm = {c.p_holm:.3g} ({claim} at {alpha}), "
            f"{c.wins}/{c.n} seeds better" + (f", {c.zeros} tied" if c.zeros else "")
            + ("" if direction == "better" else " (worse)"))


def friedman(table: pd.DataFrame, higher_is_better: bool = True, alpha: float = 0.05) -> dict | None:
    """Friedman test over all strategies, mean ranks (1 = best) and Nemenyi's critical difference
    (Demšar 2006): CD = q_alpha / sqrt(2) * sqrt(k (k + 1) / (6 N)), q from the studentized range."""
    k, n = table.shape[1], table.shape[0]
    if k < 3 or n < 2:
        return None
    values = table.to_numpy(float) * (-1 if higher_is_better else 1)
    ranks = np.apply_along_axis(stats.rankdata, 1, values)
    mean_ranks = dict(zip(table.columns, ranks.mean(0).round(6)))
    res = stats.friedmanchisquare(*[table[c].to_numpy(float) for c in table.columns])
    q = stats.studentized_range.ppf(1 - alpha, k, np.inf) / math.sqrt(2)
    cd = q * math.sqrt(k * (k + 1) / (6 * n))
    return {"statistic": float(res.statistic), "p_value": float(res.pvalue), "mean_ranks": mean_ranks,
            "critical_difference": cd, "n": n, "k": k}
