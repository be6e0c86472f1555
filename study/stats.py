"""Paired statistics over seeds: which strategy really wins, and how sure can we be.

Input: per metric a seeds x strategies table (rows paired by seed), or, for a study with several
search seeds, a table indexed by (search_seed, seed) (see :func:`search_seed_test`). Tests come from
scipy, statsmodels and baycomp; this module only arranges them, computes effect sizes from their
ranks and warns when the number of seeds cannot reach the requested significance at all.

Values are compared on a grid of ``TOLERANCE`` x the table's largest absolute value (1e-9 of the
metric's scale; :func:`grid_step`): metrics that are ratios of small counts give differences that
are zero in exact arithmetic but a few ulps apart as floats (``(0 + 4/40 + 6/30) / 3`` against
``(0 + 0 + 9/30) / 3``), so every paired difference is rounded to the grid before anything uses
it. A difference within the grid is a zero (a tie) everywhere: the Wilcoxon test, the wins and
losses, the verdict, P(A > B); equal differences tie in rank; values equal on the grid tie in
Friedman's ranks.
"""
from __future__ import annotations

import gc
import math
import warnings
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd
from scipy import stats
from statsmodels.stats.multitest import multipletests

N_BOOT = 9999
TOLERANCE = 1e-9  # of the metric's scale: paired differences closer to zero than this are ties


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
    rope: float = math.nan  # the region of practical equivalence, +- in the metric's units
    p_rope_better: float = math.nan  # Bayesian signed-rank test: P(strategy better by more than the ROPE)
    p_rope_equivalent: float = math.nan  # P(the difference lies within the ROPE)
    p_rope_worse: float = math.nan
    higher_is_better: bool = True
    searches: int = 1  # search seeds; above 1 the p-value is :func:`search_seed_test`'s
    mean_diff: float = math.nan  # with several searches: the mean of all (search, seed) differences
    search_share: float = math.nan  # share of the paired differences' variance that lies between searches
    search_standings: list[str] = field(default_factory=list)  # per search seed: its own Wilcoxon + Holm verdict
    search_agree: int = 0  # searches whose own verdict is the search x seed test's
    verdict: str = ""

    @property
    def estimate(self) -> float:
        """The difference the verdict states: the median over seeds, or with several searches the
        mean over all (search, seed) pairs (what :func:`search_seed_test` tests)."""
        return self.mean_diff if self.searches > 1 else self.median_diff

    @property
    def standing(self) -> str:
        """``better``, ``worse`` (significant, for the strategy) or ``not significant``."""
        return standing(self.significant, self.estimate, self.higher_is_better)


@dataclass
class MetricReport:
    metric: str
    higher_is_better: bool
    per_strategy: pd.DataFrame
    comparisons: list[Comparison]
    friedman: dict | None
    warnings: list[str] = field(default_factory=list)
    scale: float = 1.0  # 100 for proportions, spoken of in points
    unit: str = ""      # " points" or ""

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


def grid_step(*values: np.ndarray) -> float:
    """The grid on which values are compared: ``TOLERANCE`` x their largest absolute value (x 1
    when all are zero or none is finite)."""
    finite = np.concatenate([np.asarray(v, float).ravel() for v in values])
    finite = np.abs(finite[np.isfinite(finite)])
    return TOLERANCE * (float(finite.max()) if finite.size and finite.max() > 0 else 1.0)


def on_grid(values: np.ndarray, step: float) -> np.ndarray:
    """``values`` rounded to multiples of ``step`` (equal multiples are equal floats)."""
    return np.rint(np.asarray(values, float) / step) * step


def paired_differences(a: np.ndarray, b: np.ndarray, step: float | None = None) -> np.ndarray:
    """``a - b`` rounded to the comparison grid (``step``, default :func:`grid_step` of a and b):
    a difference within it is exactly 0, and equal differences are equal floats."""
    return on_grid(np.asarray(a, float) - np.asarray(b, float), step or grid_step(a, b))


def wilcoxon(a: np.ndarray, b: np.ndarray, step: float | None = None) -> tuple[float, float, str, int, bool]:
    """Two-sided Wilcoxon signed-rank of the paired differences a - b on the comparison grid
    (:func:`paired_differences`): (statistic, p, method, zeros, ties).

    Exact when there are no zero differences or ties (scipy's exact distribution); otherwise the
    permutation distribution (exact enumeration up to 2^13 sign flips, 9999 resamples beyond).
    Zero differences are dropped (``zero_method='wilcox'``).
    """
    d = paired_differences(a, b, step)
    zeros, ties = zeros_and_ties(d)
    nonzero = np.abs(d[d != 0])
    if len(nonzero) == 0:
        return math.nan, 1.0, "no non-zero differences", zeros, ties
    if zeros or ties:
        method = stats.PermutationMethod(n_resamples=N_BOOT, rng=0)
        res = stats.wilcoxon(d, zero_method="wilcox", method=method)
        return float(res.statistic), float(res.pvalue), "permutation", zeros, ties
    res = stats.wilcoxon(d, zero_method="wilcox", method="exact" if len(d) <= 50 else "auto")
    return float(res.statistic), float(res.pvalue), "exact" if len(d) <= 50 else "asymptotic", zeros, ties


def zeros_and_ties(d: np.ndarray) -> tuple[int, bool]:
    """Of paired differences on the comparison grid: how many are zero, and whether two non-zero
    ones tie in absolute value."""
    nonzero = np.abs(d[d != 0])
    return int(np.sum(d == 0)), len(np.unique(nonzero)) < len(nonzero)


def rank_biserial(a: np.ndarray, b: np.ndarray, step: float | None = None) -> float:
    """Matched-pairs rank-biserial correlation: (R+ - R-) / (R+ + R-) over the non-zero paired
    differences on the comparison grid, ranks from scipy.stats.rankdata; +1 = a better on every
    seed (for higher-is-better)."""
    d = paired_differences(a, b, step)
    d = d[d != 0]
    if len(d) == 0:
        return 0.0
    ranks = stats.rankdata(np.abs(d))
    plus, minus = ranks[d > 0].sum(), ranks[d < 0].sum()
    return float((plus - minus) / (plus + minus))


def _p_better(d: np.ndarray, axis: int = -1) -> np.ndarray:
    """P(A > B) from signed differences (positive = A better): wins + half the ties."""
    return np.mean(d > 0, axis=axis) + 0.5 * np.mean(d == 0, axis=axis)


def min_p_exact(n: int) -> float:
    """The smallest two-sided p an exact Wilcoxon test can give with n non-zero pairs: 2 / 2^n."""
    return 2.0 / 2**n if n > 0 else 1.0


def seeds_needed(alpha: float, comparisons: int) -> int:
    """Fewest pairs for which the exact test can reach ``alpha / comparisons`` (Holm's first step)."""
    n = 1
    while min_p_exact(n) >= alpha / max(1, comparisons):
        n += 1
    return n


NOT_PROPORTIONS = {"loss", "log_loss", "brier", "threshold", "mcc"}  # in [0, 1] at times, but not shares


def _points(metric: str, table: pd.DataFrame) -> tuple[float, str]:
    """Proportions are spoken of in points (x100); other metrics in their own units."""
    values = table.to_numpy(float)
    values = values[np.isfinite(values)]
    proportion = (metric.split("/")[-1] not in NOT_PROPORTIONS and values.size and values.min() >= 0
                  and values.max() <= 1)
    return (100.0, " points") if proportion else (1.0, "")


def _row_name(key) -> str:
    return f"search seed {key[0]} seed {key[1]}" if isinstance(key, tuple) else f"seed {key}"


def compare(table: pd.DataFrame, metric: str, baseline: str, higher_is_better: bool = True,
            alpha: float = 0.05, all_pairs: bool = False, seed: int = 0,
            n_boot: int = N_BOOT, rope: float | None = None) -> MetricReport:
    """All statistics of one metric: per strategy, each vs the baseline (or every pair), Holm over
    this metric's comparisons, Friedman with mean ranks and Nemenyi's critical difference; with
    ``rope``, each comparison's Bayesian signed-rank probabilities (:func:`rope_probabilities`).

    ``table``: float, rows paired by seed, one column per strategy. Indexed by (search_seed, seed)
    with more than one search seed, the p-values are :func:`search_seed_test`'s (search x seed),
    each search's own Wilcoxon + Holm verdict is kept (``search_standings``), and Friedman and the
    ROPE test take one value per search (its mean over seeds).

    A seed without a value for every strategy cannot be paired: it is left out, and a warning
    names it; a table with no complete seed is a ``ValueError`` (no NaN ever reaches a verdict)."""
    notes = []
    incomplete = table[table.isna().any(axis=1)]
    if len(incomplete):
        missing = {s: [c for c in table.columns if np.isnan(incomplete.loc[s, c])] for s in incomplete.index}
        notes.append(f"{metric}: {len(incomplete)} seed(s) left out, without a value for every strategy: "
                     + "; ".join(f"{_row_name(s)} ({', '.join(cols)})" for s, cols in missing.items()))
        table = table.dropna(axis=0, how="any")
    if table.empty:
        raise ValueError(f"{metric}: no seed has a value for every strategy")
    strategies = list(table.columns)
    if baseline not in strategies:
        raise ValueError(f"compare.baseline: {baseline!r} is not one of the strategies {strategies}")
    pairs = ([(a, b) for i, a in enumerate(strategies) for b in strategies[i + 1:]] if all_pairs
             else [(s, baseline) for s in strategies if s != baseline])
    scale, unit = _points(metric, table)
    sign = 1.0 if higher_is_better else -1.0
    step = grid_step(table.to_numpy(float))
    table = pd.DataFrame(on_grid(table.to_numpy(float), step), index=table.index, columns=table.columns)
    blocks = (table.index.get_level_values("search_seed").to_numpy()
              if "search_seed" in (table.index.names or []) else np.zeros(len(table), int))
    searches = list(dict.fromkeys(blocks.tolist()))
    nested = len(searches) > 1
    per_search = table.groupby(blocks, sort=False).mean() if nested else None  # a search's mean over seeds
    comparisons = []
    for a, b in pairs:
        x, y = table[a].to_numpy(float), table[b].to_numpy(float)
        d = paired_differences(x, y, step)
        if nested:  # the p-value and interval are the search x seed test's (below)
            (zeros, ties), p, method, low, high = zeros_and_ties(d), math.nan, "", math.nan, math.nan
        else:
            _, p, method, zeros, ties = wilcoxon(x, y, step)
            low, high = _ci((d,), np.median, paired=False, seed=seed, n_boot=n_boot)
        better = sign * d  # positive where a is better
        comparisons.append(c := Comparison(
            metric=metric, strategy=a, baseline=b, n=len(x), n_used=int(np.sum(d != 0)), zeros=zeros,
            ties=ties, method=method, median_diff=float(np.median(d)), ci_low=low, ci_high=high,
            wins=int(np.sum(better > 0)), losses=int(np.sum(better < 0)), p_value=p,
            rank_biserial=sign * rank_biserial(x, y, step), p_improvement=float(_p_better(better)),
            p_improvement_ci=_ci((better,), _p_better, paired=False, seed=seed, n_boot=n_boot),
            higher_is_better=higher_is_better))
        if nested:
            test = search_seed_test(d, blocks, table.index.get_level_values("seed").to_numpy(), step)
            c.searches, c.p_value, c.method = len(searches), test.p_value, test.method
            c.mean_diff, (c.ci_low, c.ci_high), c.search_share = test.mean_diff, test.ci, test.search_share
            left_out = test.seeds_left_out
        if rope is not None:  # with several searches, on one value per search (its mean over the seeds)
            c.rope = rope
            xr, yr = (per_search[a].to_numpy(float), per_search[b].to_numpy(float)) if nested else (x, y)
            c.p_rope_better, c.p_rope_equivalent, c.p_rope_worse = rope_probabilities(
                xr, yr, rope, higher_is_better, seed)
    if comparisons:
        reject, p_holm = holm([c.p_value for c in comparisons], alpha)
        for c, r, ph in zip(comparisons, reject, p_holm):
            c.p_holm, c.significant = float(ph), bool(r)
    if nested and comparisons:
        own = [search_standings(table[blocks == k], pairs, step, higher_is_better, alpha) for k in searches]
        for j, c in enumerate(comparisons):
            c.search_standings = [f"search seed {k}: {standings[j]}" for k, standings in zip(searches, own)]
            c.search_agree = sum(standings[j] == c.standing for standings in own)
    for c in comparisons:
        c.verdict = _verdict(c, scale, unit, higher_is_better, alpha)
    warnings = notes
    if nested and comparisons and left_out:
        warnings.append(f"{metric}: {left_out} seed(s) left out of the search x seed test, without a value in "
                        "every search")
    n = len(table)
    fewest = min(int(np.sum(blocks == k)) for k in searches)
    if comparisons and nested and min_p_exact(fewest) >= alpha / len(comparisons):
        warnings.append(f"a search with {fewest} seeds cannot reach p < {alpha} on its own (Wilcoxon + Holm over "
                        f"{len(comparisons)} comparison(s); the smallest exact p is {min_p_exact(fewest):.4g}): "
                        f"'searches agreeing' counts only 'not significant' verdicts; use at least "
                        f"{seeds_needed(alpha, len(comparisons))} seeds per search")
    if comparisons and not nested and min_p_exact(n) >= alpha / len(comparisons):
        warnings.append(f"with n = {n} seeds no comparison can reach p < {alpha} after Holm "
                        f"over {len(comparisons)} comparison(s) (the smallest exact p is "
                        f"{min_p_exact(n):.4g}); use at least {seeds_needed(alpha, len(comparisons))} seeds")
    ranked = friedman(per_search if nested else table, higher_is_better, alpha)
    if ranked is not None:
        ranked["blocks"] = "searches (each its mean over the seeds)" if nested else "seeds"
    return MetricReport(metric, higher_is_better, describe(table, seed, n_boot), comparisons, ranked, warnings,
                        scale, unit)


def standing(significant: bool, estimate: float, higher_is_better: bool) -> str:
    """A verdict in one word: ``better`` / ``worse`` when significant, else ``not significant``."""
    if not significant:
        return "not significant"
    return "better" if (estimate > 0) == higher_is_better else "worse"


def search_standings(table: pd.DataFrame, pairs: list[tuple[str, str]], step: float, higher_is_better: bool,
                     alpha: float) -> list[str]:
    """The verdict of each pair that one search's repeats (``table``, seeds x strategies, on the
    grid ``step``) give on their own: Wilcoxon + Holm over ``pairs``, as a study with that search
    alone would report it (:func:`standing`)."""
    tests = [wilcoxon(table[a].to_numpy(float), table[b].to_numpy(float), step) for a, b in pairs]
    reject, _ = holm([t[1] for t in tests], alpha)
    medians = [float(np.median(paired_differences(table[a], table[b], step))) for a, b in pairs]
    return [standing(bool(r), m, higher_is_better) for r, m in zip(reject, medians)]


@dataclass
class SearchSeedTest:
    p_value: float
    method: str
    mean_diff: float
    ci: tuple[float, float]
    search_share: float  # NaN where it cannot be told from the noise (one seed per search)
    seeds_left_out: int  # seeds without a difference in every search


def search_seed_test(d: np.ndarray, searches: np.ndarray, seeds: np.ndarray, step: float = 0.0) -> SearchSeedTest:
    """Test of paired differences ``d`` (float ``[n]``, on the comparison grid ``step``) from several
    searches, each search's best configs repeated over the same seeds: ``searches`` and ``seeds``
    name the (search seed, seed) of each difference.

    Searches and seeds are crossed, both random: d = mu + u_search + v_seed + e (Bouthillier et al.,
    MLSys 2021: the search is a random draw like the seed; the same seed gives every search the same
    initial weights, data order and split, so ``v`` is shared across searches). H0: mu = 0. The grand
    mean's variance sigma_u^2 / K + sigma_v^2 / n + sigma_e^2 / (K n) is estimated from the two-way
    ANOVA's mean squares as (MS_search + MS_seed - MS_error) / (K n), never below MS_search / (K n)
    or MS_seed / (K n), with Satterthwaite's degrees of freedom (Satterthwaite 1946; the quasi-F of
    Searle, Casella & McCulloch 1992, "Variance Components"), and t = mean / SE. With one seed per
    search it is the one-sample t-test of the search means (K - 1 df); when the searches chose the
    same configs (identical rows) it is the paired t-test over the seeds (n - 1 df). Testing the K n
    pairs as independent, or the search means alone, leaves a variance component out and rejects far
    more often than alpha (tests/test_search_variance.py simulates the false-positive rate). With no
    variance at all (every difference equal) the exact Wilcoxon test of the per-seed means is used.

    Only seeds with a difference in every search enter (a complete search x seed grid). Returns the
    p-value, the mean difference with its 95% t interval, and the share of the differences' variance
    that lies between searches (ANOVA estimates, each truncated at 0)."""
    frame = pd.DataFrame({"d": np.asarray(d, float), "search": searches, "seed": seeds})
    full = frame.pivot(index="search", columns="seed", values="d")
    grid = full.dropna(axis=1).to_numpy(float)
    k, n = grid.shape
    if n == 0:
        raise ValueError("no seed has a difference in every search")
    mean = float(grid.mean())
    rows, cols = grid.mean(1), grid.mean(0)
    terms = [(n * float(((rows - mean) ** 2).sum()) / (k - 1), k - 1, 1.0)]  # (mean square, df, sign)
    if n > 1:
        resid = grid - rows[:, None] - cols[None, :] + mean
        terms += [(k * float(((cols - mean) ** 2).sum()) / (n - 1), n - 1, 1.0),
                  (float((resid ** 2).sum()) / ((k - 1) * (n - 1)), (k - 1) * (n - 1), -1.0)]
    combined = sum(sign * ms for ms, _, sign in terms)
    floor = max(terms[:2], key=lambda t: t[0])
    if combined < floor[0]:  # the estimate would fall below a component known to be in it
        used, combined = [floor], floor[0]
    else:
        used = terms
    variance = combined / (k * n)
    tiny = (step or TOLERANCE) ** 2
    method = f"search x seed t-test, {k} x {n}, Satterthwaite df"
    if variance <= tiny:
        p = wilcoxon(cols, np.zeros(n), step or None)[1]
        ci = (mean, mean)
        method = f"Wilcoxon of the {n} per-seed means (no variance between searches or seeds)"
    else:
        df = combined ** 2 / sum(ms ** 2 / dof for ms, dof, _ in used)
        se = math.sqrt(variance)
        p = float(2 * stats.t.sf(abs(mean) / se, df))
        half = float(stats.t.ppf(0.975, df)) * se
        ci = (mean - half, mean + half)
        method = method.replace("Satterthwaite df", f"Satterthwaite df {df:.1f}")
    share = math.nan
    if n > 1:
        ms_a, ms_b, ms_e = (t[0] for t in terms)
        search_var, seed_var = max(0.0, (ms_a - ms_e) / n), max(0.0, (ms_b - ms_e) / k)
        total = search_var + seed_var + ms_e
        share = search_var / total if total > 0 else 0.0
    return SearchSeedTest(p, method, mean, ci, share, int(full.shape[1] - n))


ROPE_SAMPLES = 20000
DECISIVE = 0.95  # Benavoli et al. (2017): a posterior probability above it is a decision


def rope_probabilities(x: np.ndarray, y: np.ndarray, rope: float, higher_is_better: bool = True,
                       seed: int = 0, nsamples: int = ROPE_SAMPLES) -> tuple[float, float, float]:
    """The Bayesian signed-rank test with a region of practical equivalence (Benavoli et al., JMLR
    2017, "Time for a change"; ``baycomp.SignedRankTest``, Dirichlet-process prior 0.5, ``nsamples``
    posterior draws from ``seed``) on paired values ``x`` (the strategy) and ``y`` (what it is
    compared with), float ``[n]``: (P(x better by more than ``rope``), P(|difference| <= ``rope``),
    P(x worse by more than ``rope``)), "better" following ``higher_is_better``."""
    from baycomp import SignedRankTest

    x_larger, equivalent, y_larger = SignedRankTest.probs(np.asarray(x, float), np.asarray(y, float), rope,
                                                          nsamples=nsamples, random_state=seed)
    better, worse = (x_larger, y_larger) if higher_is_better else (y_larger, x_larger)
    return float(better), float(equivalent), float(worse)


def rope_phrase(c: Comparison, scale: float, unit: str) -> str:
    """The most probable of the three regions, e.g. ``practically equivalent (P = 0.93, ROPE +-1
    point)``; decisive when its probability exceeds ``DECISIVE``."""
    regions = {"better": c.p_rope_better, "practically equivalent": c.p_rope_equivalent, "worse": c.p_rope_worse}
    name, p = max(regions.items(), key=lambda kv: kv[1])
    hedge = "" if p > DECISIVE else "probably "
    return f"{hedge}{name} (P = {p:.2f}, ROPE ±{c.rope * scale:.3g}{unit})"


def holm(p_values: list[float], alpha: float) -> tuple[np.ndarray, np.ndarray]:
    """statsmodels' Holm step-down: (reject, adjusted p). Its Holm branch calls ``gc.collect()`` (to
    free a large temporary); in a process that holds torch and Ray a full collection costs up to a
    second per call, so the objects already there are frozen out of it for the call (``gc.freeze``)."""
    gc.freeze()
    try:
        reject, adjusted, _, _ = multipletests(p_values, alpha=alpha, method="holm")
    finally:
        gc.unfreeze()
    return reject, adjusted


def _verdict(c: Comparison, scale: float, unit: str, higher_is_better: bool, alpha: float) -> str:
    kind = "mean" if c.searches > 1 else "median"
    better = c.estimate > 0 if higher_is_better else c.estimate < 0
    if c.estimate == 0:
        move = f"leaves {c.metric} unchanged ({kind} difference 0)"
    else:
        move = (f"{'raises' if c.estimate > 0 else 'lowers'} {c.metric} by a {kind} "
                f"{abs(c.estimate) * scale:.3g}{unit} [{c.ci_low * scale:.3g}, {c.ci_high * scale:.3g}]")
    claim = "significant" if c.significant else "not significant"
    direction = "better" if better or c.estimate == 0 else "worse"
    seeds = f"{c.n} seed" if c.n == 1 else f"{c.n} seeds"
    robust, claim = "", f"{claim} at {alpha}"
    if c.searches > 1:
        claim, seeds = f"{claim}; {c.method}", f"{c.n} (search, seed) pairs"
        robust = (f"; {c.search_agree} of {c.searches} searches alone give the same verdict ({c.standing}); "
                  f"{c.search_share:.0%} of the variance between searches")
    rope = "" if math.isnan(c.rope) else f"; Bayesian signed-rank: {rope_phrase(c, scale, unit)}"
    return (f"{c.strategy} {move} vs {c.baseline}, p_holm = {c.p_holm:.3g} ({claim}), "
            f"{c.wins} of {seeds} better" + (f", {c.zeros} tied" if c.zeros else "")
            + ("" if direction == "better" else " (worse)") + robust + rope)


def friedman(table: pd.DataFrame, higher_is_better: bool = True, alpha: float = 0.05) -> dict | None:
    """Friedman test over all strategies, mean ranks (1 = best) and Nemenyi's critical difference
    (Demšar 2006): CD = q_alpha / sqrt(2) * sqrt(k (k + 1) / (6 N)), q from the studentized range."""
    k, n = table.shape[1], table.shape[0]
    if k < 3 or n < 2:
        return None
    values = table.to_numpy(float)
    values = on_grid(values, grid_step(values)) * (-1 if higher_is_better else 1)  # ties within the grid
    ranks = np.apply_along_axis(stats.rankdata, 1, values)
    mean_ranks = dict(zip(table.columns, ranks.mean(0).round(6)))
    res = stats.friedmanchisquare(*values.T)
    q = stats.studentized_range.ppf(1 - alpha, k, np.inf) / math.sqrt(2)
    cd = q * math.sqrt(k * (k + 1) / (6 * n))
    return {"statistic": float(res.statistic), "p_value": float(res.pvalue), "mean_ranks": mean_ranks,
            "critical_difference": cd, "n": n, "k": k}
