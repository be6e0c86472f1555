"""The compare phase: statistics over the repeats held in MLflow, written as a report (HTML with
inline plots, Markdown, CSV tables) and logged to a study-level MLflow run."""
from __future__ import annotations

import base64
import html
import json
import sys
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from trainables.metric_names import lower_is_better, resolve_class
from trainables.metrics import calibration_metrics
from trainables.predictions import probabilities
from trainables.progress import progress_bar

from . import plots
from .errors import StudyError
from .layout import report_dir
from .predictions import embedding, patient_bootstrap_auroc, pr_band, reliability, roc_band
from .progress import plural
from .results import (
    class_names,
    metric_curves,
    operating_point_table,
    prediction_frames,
    repeat_table,
    search_bests,
    summed_confusions,
)
from .spec import StudySpec
from .stats import MetricReport, compare
from .tracking import StudyTracker, check_tracking_uri, write_json

SCOPE = ("Scope: these seeds vary {sources} on one data set; the results support statements about "
         "this pipeline on this data, not about data sets in general.")


def analyse(spec: StudySpec, long: pd.DataFrame) -> dict[str, MetricReport]:
    """Per metric of ``repeats.metrics`` that the repeat runs record: the seeds x strategies table
    (rows (search_seed, seed) with several search seeds) and its statistics. A
    metric no run records (runs repeated before it was reported) is left out with a warning; when
    none is recorded, :class:`StudyError`."""
    strategies = [s for s in spec.strategies if s in set(long.strategy)]
    if spec.compare.baseline not in strategies:
        raise StudyError(f"compare.baseline: no finished repeats of {spec.compare.baseline!r} in MLflow")
    absent = [s for s in spec.strategies if s not in strategies]
    unrecorded = [m for m in spec.repeats.metrics if long[m].isna().all()]
    if len(unrecorded) == len(spec.repeats.metrics):
        raise StudyError(f"repeats.metrics: the repeat runs in MLflow record none of {', '.join(unrecorded)}")
    out = {}
    for metric in progress_bar([m for m in spec.repeats.metrics if m not in unrecorded], "compare: statistics",
                               "metric"):
        index = ["search_seed", "seed"] if long.search_seed.nunique() > 1 else "seed"
        wide = long.pivot(index=index, columns="strategy", values=metric).reindex(columns=strategies)
        try:
            out[metric] = compare(wide, metric, spec.compare.baseline,
                                  higher_is_better=not lower_is_better(metric), alpha=spec.compare.alpha,
                                  all_pairs=spec.compare.all_pairs, rope=spec.compare.rope)
        except ValueError as exc:
            raise StudyError(f"repeats.metrics: {exc}: the repeat runs in MLflow do not record it") from None
        if absent:
            out[metric].warnings.insert(0, f"left out, without a finished repeat run: {', '.join(absent)}")
        if unrecorded:
            out[metric].warnings.insert(0, f"not compared, no repeat run records them (repeated before they were "
                                           f"reported?): {', '.join(unrecorded)}")
    return out


def run_compare(spec: StudySpec) -> dict:
    """Statistics and report from the FINISHED repeat runs in MLflow. Returns a summary with the
    verdicts and the report's paths."""
    check_tracking_uri(spec.tracking.uri)
    tracker = StudyTracker.of(spec)
    long = repeat_table(spec, tracker)
    if long.empty:
        raise StudyError(f"no finished repeat runs of study {spec.name!r} in MLflow: run `study repeat` first")
    long = long.sort_values(["strategy", "search_seed", "seed"]).reset_index(drop=True)
    print(f"compare: {plural(len(long), 'repeat run')} of {plural(long.strategy.nunique(), 'strategy')} "
          "read from MLflow", file=sys.stderr, flush=True)
    reports = analyse(spec, long)
    strategies = [s for s in spec.strategies if s in set(long.strategy)]
    searches = sorted(set(long.search_seed))
    # the figures and the discrimination section pair runs by seed: with several searches, one search's
    shown = long[long.search_seed == shown_search(spec, searches)]
    out = report_dir(spec)
    out.mkdir(parents=True, exist_ok=True)

    long.to_csv(out / "repeats.csv", index=False)
    comparisons = pd.concat([r.comparisons_frame() for r in reports.values()], ignore_index=True)
    comparisons.to_csv(out / "comparisons.csv", index=False)
    pd.concat({m: r.per_strategy for m, r in reports.items()}, names=["metric"]).to_csv(
        out / "per_strategy.csv")
    friedman = {m: r.friedman for m, r in reports.items() if r.friedman}
    write_json(out / "friedman.json", friedman)

    figures = _figures(spec, tracker, shown, strategies, friedman)
    warnings = list(dict.fromkeys(w for r in reports.values() for w in r.warnings))  # same for each metric
    evaluation = _evaluation(spec, tracker, shown, strategies, plots.palette(strategies), warnings)
    variance = search_variance(spec, tracker, reports, searches) if len(searches) > 1 else None
    if variance is not None:
        variance.configs.to_csv(out / "search_configs.csv")
        variance.robustness.to_csv(out / "search_robustness.csv")
    figures += evaluation.figures
    for figure in figures:
        (out / f"{figure.name}.png").write_bytes(figure.png)
    evaluation.auroc.to_csv(out / "auroc.csv")
    evaluation.operating_points.to_csv(out / "operating_points.csv", index=False)

    sources = "split, initialisation, data order and augmentation" if spec.repeats.vary_split \
        else "initialisation, data order and augmentation (the split is fixed)"
    scope = SCOPE.format(sources=sources)
    blocks = _blocks(spec, long, reports, friedman, warnings, scope, figures, evaluation, variance)
    (out / "report.md").write_text(render_markdown(blocks))
    (out / "report.html").write_text(render_html(blocks, f"{spec.name} report"))

    summary = {"study": spec.name, "baseline": spec.compare.baseline, "seeds": int(long.seed.nunique()),
               "search_seeds": searches, "use": spec.repeats.use, "warnings": warnings,
               "verdicts": {m: [c.verdict for c in r.comparisons] for m, r in reports.items()},
               "auroc": evaluation.auroc.reset_index().to_dict("records"),
               "comparisons": {m: [asdict(c) for c in r.comparisons] for m, r in reports.items()},
               "report_html": str(out / "report.html"), "report_md": str(out / "report.md")}
    write_json(out / "compare_summary.json", summary)
    run_id = tracker.parent_run("study", "compare")
    tracker.client.log_artifacts(run_id, str(out), "report")
    tracker.finish(run_id)
    summary["mlflow_run_id"] = run_id
    return summary


def shown_search(spec: StudySpec, searches: list[int]) -> int:
    """The search whose repeats the figures show: ``search.seed``'s, else the first with repeats."""
    return spec.search.seed if spec.search.seed in searches else searches[0]


@dataclass
class SearchVariance:
    """What the report says of a study with several search seeds."""

    configs: pd.DataFrame  # per strategy: each search's chosen values and validation score, and their spread
    robustness: pd.DataFrame  # per comparison and metric: how many searches alone give the overall verdict


def search_variance(spec: StudySpec, tracker: StudyTracker, reports: dict[str, MetricReport],
                    searches: list[int]) -> SearchVariance:
    """The configs each search chose (from the searches' parent runs in MLflow) with their spread, and
    per comparison the verdicts of the searches alone against the search x seed test's."""
    bests = search_bests(spec, tracker, searches)
    rows = {}
    for strategy in spec.strategies:
        chosen = {k: bests[(strategy, k)] for k in searches if (strategy, k) in bests}
        row = {f"search seed {k}": ", ".join(f"{key} {_value(v)}" for key, v in best["searched"].items())
               + f" (val {best['score']:.3g})" for k, best in chosen.items()}
        row["spread"] = config_spread([best["searched"] for best in chosen.values()])
        rows[strategy] = row
    configs = pd.DataFrame.from_dict(rows, orient="index")
    configs.index.name = "strategy"
    cells: dict[str, dict[str, str]] = {}
    for metric, rep in reports.items():
        for c in [c for c in rep.comparisons if c.searches > 1]:
            own = ", ".join(s.split(": ", 1)[1].replace("not significant", "n.s.") for s in c.search_standings)
            cells.setdefault(f"{c.strategy} vs {c.baseline}", {})[metric] = \
                f"{c.search_agree}/{c.searches} ({c.standing.replace('not significant', 'n.s.')}; alone: {own})"
    robustness = pd.DataFrame.from_dict(cells, orient="index")
    robustness.index.name = "comparison"
    return SearchVariance(configs, robustness)


def _value(v) -> str:
    return f"{v:.3g}" if isinstance(v, float) else str(v)


def config_spread(searched: list[dict]) -> str:
    """How far apart the searches' chosen values lie, per searched key: max / min for positive
    numbers (``lr x3.1``), the range for others, the number of distinct values for choices."""
    parts = []
    for key in dict.fromkeys(k for values in searched for k in values):
        values = [v[key] for v in searched if key in v]
        numbers = [v for v in values if isinstance(v, int | float) and not isinstance(v, bool)]
        if len(numbers) == len(values) and len(set(values)) > 1 and isinstance(values[0], float):
            low, high = min(numbers), max(numbers)
            parts.append(f"{key} x{high / low:.3g}" if low > 0 else f"{key} {low:.3g} to {high:.3g}")
        else:
            distinct = len({json_key(v) for v in values})
            parts.append(f"{key} {'the same' if distinct == 1 else f'{distinct} values'}")
    return ", ".join(parts)


def json_key(value) -> str:
    return json.dumps(value, sort_keys=True, default=str)


@dataclass
class Figure:
    name: str
    png: bytes
    caption: str


def _figures(spec: StudySpec, tracker: StudyTracker, long: pd.DataFrame, strategies: list[str],
             friedman: dict) -> list[Figure]:
    """Every figure of the report with its caption; one colour per strategy in all of them."""
    colors = plots.palette(strategies)
    metric = spec.search.metric
    metrics = [m for m in spec.repeats.metrics if long[m].notna().any()]
    out = [Figure("paired", plots.paired_strips(long, metrics, strategies, colors),
                  "Each dot is one seed's test value of a strategy; a grey line joins the values of one seed "
                  "across the strategies (the pairs the tests compare); boxes show the median and quartiles.")]
    if {"test/sensitivity", "test/ppv"} <= set(metrics):
        out.append(Figure("sens_ppv", plots.sensitivity_vs_ppv(long, strategies, "test/sensitivity", "test/ppv",
                                                               colors),
                          "Each small dot is one seed's test sensitivity and PPV, an X the strategy's mean. Up "
                          "and to the right is better; a strategy that moves only right buys sensitivity with "
                          "PPV."))
    out.append(Figure("curves", plots.validation_curves(metric_curves(tracker, long, metric), metric, colors),
                      f"Validation {metric} per epoch during the repeats: the mean over the seeds, with a band "
                      "of one standard deviation."))
    for m, f in friedman.items():
        out.append(Figure(f"cd_{m.replace('/', '_')}", plots.critical_difference(
            f["mean_ranks"], f["critical_difference"], m),
            f"Critical-difference diagram of {m} (Demšar 2006): each strategy's mean rank over the {f['blocks']} "
            f"(1 = best); strategies joined by a red bar are not significantly different (Nemenyi, alpha "
            f"{spec.compare.alpha})."))
    cm_key = "best/test/confusion_matrix" if spec.repeats.use == "best" else "test/confusion_matrix"
    out.append(Figure("confusion", plots.confusion_matrices(summed_confusions(tracker, long, cm_key),
                                                            class_names(tracker, strategies[0]), colors),
                      "Test confusion matrices summed over the seeds, one per strategy. Rows are the true "
                      "class, each normalised to 1: the share (and the colour) is how often that class was "
                      "predicted as the column's class; the count is in brackets."))
    return out


@dataclass
class Evaluation:
    """What the report shows of the repeats' per-sample predictions and operating points."""

    auroc: pd.DataFrame  # one row per strategy
    operating_points: pd.DataFrame  # one row per (strategy, point)
    figures: list[Figure]


AUROC_NOTE = ("AUROC of the positive class vs the rest on the test split. Across seeds: the mean, standard "
              "deviation and range over the paired seeds: how much AUROC moves when the training seed changes. "
              "Within one seed: the AUROC of one trained model (the first repeat seed, or the strategy's lowest "
              "finished one) with a 95% percentile bootstrap CI that resamples test patients (2,000 replicates): "
              "how much it moves with the test sample alone.")
OPERATING_POINTS_NOTE = ("Each operating point's threshold is fixed on the validation split of the same run and applied "
                         "to the test split; mean ± SD over the seeds. Comparing strategies at one operating point asks "
                         "whether an advantage is a better model or only a moved decision threshold.")


def _evaluation(spec: StudySpec, tracker: StudyTracker, long: pd.DataFrame, strategies: list[str], colors: dict,
                warnings: list[str]) -> Evaluation:
    """AUROC across and within seeds, operating-point metrics, and the curve, calibration and
    embedding figures, from the repeat runs' stored predictions (runs without any are left out, with
    a warning)."""
    frames, missing = prediction_frames(tracker, long, "best" if spec.repeats.use == "best" else "final")
    if missing:
        warnings.append(f"{plural(len(missing), 'repeat run')} stored no predictions ({', '.join(missing[:5])}"
                        f"{', ...' if len(missing) > 5 else ''}): the curves, calibration and AUROC tables leave them "
                        "out; they were run before predictions were stored")
    names = class_names(tracker, strategies[0])
    positive = resolve_class(names, spec.data.positive_class)
    points = operating_point_table(tracker, long, spec.repeats.use)
    points["strategy"] = pd.Categorical(points.strategy, strategies, ordered=True)  # the spec's order
    ops = (points.groupby(["strategy", "point", "metric"], sort=False, observed=True).value
           .agg(lambda v: f"{v.mean():.3f} ± {v.std(ddof=1) if len(v) > 1 else 0:.3f}").unstack("metric")
           .reset_index().sort_values("strategy", kind="stable") if not points.empty
           else pd.DataFrame(columns=["strategy", "point"]))
    one_class = [f"{s} seed {k}" for s in frames for k, f in frames[s].items() if (f.label == positive).all()
                 or not (f.label == positive).any()]
    if one_class:
        warnings.append(f"test predictions without both {names[positive]} and other images, left out of the "
                        f"curves: {', '.join(one_class)}")
        frames = {s: kept for s in frames if (kept := {k: f for k, f in frames[s].items()
                                                        if f"{s} seed {k}" not in one_class})}
    shown = [s for s in strategies if s in frames]
    rows, roc, pr, bins, ece, coords = [], {}, {}, {}, {}, {}
    for s in progress_bar(shown, "compare: curves and bootstrap", "strategy"):
        by_seed = frames[s]
        seed = spec.repeats.first_seed if spec.repeats.first_seed in by_seed else min(by_seed)
        roc[s], pr[s] = roc_band(list(by_seed.values()), positive), pr_band(list(by_seed.values()), positive)
        bins[s] = reliability(list(by_seed.values()))
        ece[s] = float(np.mean([calibration_metrics(f.label.to_numpy(), probabilities(f))["ece"]
                                for f in by_seed.values()]))
        one = by_seed[seed]
        auroc, low, high = patient_bootstrap_auroc(one.label.to_numpy() == positive, probabilities(one)[:, positive],
                                                   one.patient.to_numpy(), seed=spec.repeats.first_seed)
        scores = np.array(roc[s].scores)
        rows.append({"strategy": s, "seeds": len(scores), "mean AUROC": scores.mean(),
                     "SD across seeds": scores.std(ddof=1) if len(scores) > 1 else np.nan,
                     "min": scores.min(), "max": scores.max(), "seed": seed, "AUROC of that seed": auroc,
                     "patient bootstrap 95% CI low": low, "patient bootstrap 95% CI high": high,
                     "test patients": one.patient.nunique()})
        with_features = [(k, f) for k, f in by_seed.items() if "features" in f and f.features.notna().all()]
        if with_features:
            k, f = with_features[0]
            points_2d, method = embedding(np.stack(f.features.to_numpy()), seed=k)
            coords[s] = (points_2d, f.label.to_numpy(), method)
    auroc_table = pd.DataFrame(rows).set_index("strategy") if rows else pd.DataFrame()
    figures = []
    if shown:
        prevalence = float(np.mean([(f.label == positive).mean() for s in shown for f in frames[s].values()]))
        figures += [
            Figure("roc_pr", plots.roc_and_pr(roc, pr, prevalence, names[positive], colors),
                   "ROC (left) and precision-recall (right) curves of the positive class on the test split: per "
                   "strategy the mean curve over the seeds (sensitivity read at fixed false-positive rates, "
                   "interpolated precision at fixed recalls) with a band of one SD; the legend gives the mean "
                   "AUROC / average precision ± SD over seeds."),
            Figure("reliability", plots.reliability_diagrams(bins, ece, colors),
                   f"Reliability diagrams: test predictions of all seeds pooled into {len(bins[shown[0]])} "
                   "equal-width bins of top-class confidence; bars are each bin's accuracy (darker: more samples), "
                   "dots its mean confidence; on the dashed diagonal the probabilities are calibrated. ECE is the "
                   "mean over seeds of the expected calibration error.")]
    if coords:
        seed = spec.repeats.first_seed
        figures.append(Figure("embedding", plots.embeddings(coords, names, seed),
                              f"Penultimate-layer features of the test split (seed {seed}) in two dimensions "
                              "(scikit-learn t-SNE on 50 principal components, or PCA beyond 3,000 images), "
                              "each point coloured by its true class: how well each strategy's representation "
                              "separates the classes (report 002 used t-SNE to show what over-sampling did)."))
    return Evaluation(auroc_table, ops, figures)


PER_STRATEGY = {"n": "seeds", "mean": "mean", "std": "std", "median": "median", "iqr": "IQR", "iqm": "IQM",
                "iqm_ci_low": "IQM 95% CI low", "iqm_ci_high": "IQM 95% CI high"}
PER_STRATEGY_NOTE = ("IQR: interquartile range. IQM: interquartile mean, the mean of the middle half of the "
                     "seeds (rliable's robust aggregate), with a bootstrap 95% confidence interval.")
COMPARISON = {"strategy": "strategy", "baseline": "against", "n": "seeds", "n_used": "seeds not tied",
              "median_diff": "median difference", "ci_low": "95% CI low", "ci_high": "95% CI high",
              "p_value": "p", "p_holm": "p (Holm)", "significant": "significant", "rank_biserial": "effect r",
              "p_improvement": "P(better)", "method": "test"}
COMPARISON_NOTE = ("Median difference: of the paired seeds' values, strategy minus the one it is compared "
                   "against, with a bootstrap 95% CI (in the metric's units). p: two-sided Wilcoxon "
                   "signed-rank test (exact without ties, else the permutation distribution); p (Holm): "
                   "corrected over this metric's comparisons. Effect r: matched-pairs rank-biserial "
                   "correlation (+1: better on every seed). P(better): the share of seeds on which the "
                   "strategy is better, ties counting half. Seeds not tied: those whose difference is not "
                   "zero (within 1e-9 of the metric's scale).")

SEARCH_SEED_COLUMNS = {"strategy": "strategy", "baseline": "against", "searches": "searches", "n": "pairs",
                  "mean_diff": "mean difference", "ci_low": "95% CI low", "ci_high": "95% CI high",
                  "median_diff": "median difference", "p_value": "p", "p_holm": "p (Holm)",
                  "significant": "significant", "search_agree": "searches agreeing",
                  "search_share": "between-search variance", "rank_biserial": "effect r",
                  "p_improvement": "P(better)", "method": "test"}
SEARCH_SEED_NOTE = ("Pairs: (search seed, seed). Mean difference: strategy minus the one it is compared against, the "
               "mean over all pairs, with its 95% t interval; median difference: over all pairs. p: the search x seed "
               "test. Every search's best configs were repeated over the same seeds, so a difference has a part "
               "from its search (the configs that search chose), a part from its seed (the same initial weights, "
               "data order and split in every search) and noise; the mean's standard error counts all three (random "
               "effects, two-way ANOVA mean squares, Satterthwaite degrees of freedom). Treating the pairs as "
               "independent would leave the search's part out and find differences another search would not. "
               "p (Holm): corrected over this metric's comparisons. Searches agreeing: how many searches, analysed "
               "alone (Wilcoxon + Holm over their own seeds), give the same verdict (better, worse or not "
               "significant). Between-search variance: the search's share of the differences' variance. Effect r "
               "and P(better): over all pairs, as in a single search.")

ROPE_COLUMNS = {"p_rope_better": "P(better, ROPE)", "p_rope_equivalent": "P(equivalent)", "p_rope_worse": "P(worse, ROPE)"}
ROPE_NOTE = (" P(better, ROPE), P(equivalent), P(worse, ROPE): the Bayesian signed-rank test (Benavoli et al. 2017, "
             "baycomp) with a region of practical equivalence of ±{rope} in the metric's units: the posterior "
             "probabilities that the strategy is better by more than it, that the difference lies within it, and "
             "that it is worse; above 0.95 a probability is a decision. Where the Wilcoxon test can only say "
             "'not significant', P(equivalent) says whether the strategies are practically the same.")


def _summary_table(reports: dict[str, MetricReport]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The verdicts in one table (one row per comparison, one column per metric), and a same-shaped
    table of their standing: ``better`` or ``worse`` when significant, else ``""``."""
    cells: dict[tuple[str, str], str] = {}
    state: dict[tuple[str, str], str] = {}
    for metric, rep in reports.items():
        for c in rep.comparisons:
            key = (f"{c.strategy} vs {c.baseline}", metric)
            estimate = c.estimate * rep.scale
            cells[key] = (f"{estimate:+.3g}{rep.unit} [{c.ci_low * rep.scale:.3g}, {c.ci_high * rep.scale:.3g}], "
                          f"p_holm {c.p_holm:.2g}" + (" *" if c.significant else ""))
            state[key] = "" if c.standing == "not significant" else c.standing
    rows = list(dict.fromkeys(r for r, _ in cells))
    frame = pd.DataFrame({m: [cells.get((r, m), "") for r in rows] for m in reports}, index=rows)
    frame.index.name = "comparison"
    status = pd.DataFrame({m: [state.get((r, m), "") for r in rows] for m in reports}, index=rows)
    return frame, status


def _blocks(spec: StudySpec, long: pd.DataFrame, reports: dict[str, MetricReport], friedman: dict,
            warnings: list[str], scope: str, figures: list[Figure], evaluation: Evaluation,
            variance: SearchVariance | None = None) -> list[tuple]:
    """The report as a list of blocks, rendered as HTML and as Markdown."""
    n = long.seed.nunique()
    epoch = "final epoch" if spec.repeats.use == "final" else "best-validation epoch"
    summary, status = _summary_table(reports)
    searches = sorted(set(long.search_seed))
    if variance is None:
        design = (f"{plural(n, 'seed')} per strategy (paired), test split, {epoch}; baseline "
                  f"{spec.compare.baseline}; Wilcoxon signed-rank, Holm-corrected per metric, alpha {spec.compare.alpha}.")
        summary_note = ("Median paired difference against the baseline [bootstrap 95% CI] and Holm-corrected p; "
                        "* marks a significant difference (green: better, red: worse). Proportions are in points "
                        "(x100).")
    else:
        design = (f"{len(searches)} searches (search seeds {', '.join(map(str, searches))}), each strategy's best "
                  f"config of each search repeated over the same {plural(n, 'seed')}: pairs are (search seed, seed); "
                  f"test split, {epoch}; baseline {spec.compare.baseline}; the search x seed test (random effects: "
                  f"the search and the seed both count), Holm-corrected per metric, alpha {spec.compare.alpha}.")
        summary_note = ("Mean paired difference against the baseline over all (search, seed) pairs [95% t interval] and "
                        "Holm-corrected p of the search x seed test; * marks a significant difference (green: better, red: "
                        "worse). Proportions are in points (x100).")
    blocks: list[tuple] = [
        ("h1", f"Study {spec.name}: strategies compared over paired seeds"),
        ("p", f"{design} {scope}"),
        ("h2", "Summary"),
        ("table", summary, status, summary_note),
    ]
    if warnings:
        blocks.append(("warnings", warnings))
    if variance is not None:
        blocks += [
            ("h2", "Search variance"),
            ("p", f"Each search ran the same budget with its own Optuna sampler seed and search-trial seeds (Bouthillier "
                  "et al., MLSys 2021: the search is one of the largest sources of variance in a benchmark). A verdict "
                  "holds up when the searches agree; a 'not significant' with agreeing searches means the effect is "
                  "smaller than the noise of these seeds and searches, not that there is none (compare.rope tells "
                  "whether it is practically nil). The figures and the discrimination section below show the "
                  f"repeats of search seed {shown_search(spec, searches)}."),
            ("table", variance.robustness, None,
             "Per comparison and metric: searches (of K) whose repeats alone give the overall verdict; then "
             "that verdict and each search's own (Wilcoxon + Holm over its seeds; n.s.: not significant)."),
            ("table", variance.configs, None,
             "The config each search chose for each strategy (its searched values and validation score), and how "
             "far apart they lie (x: largest over smallest value)."),
        ]
    for metric, rep in reports.items():
        nested = bool(rep.comparisons) and rep.comparisons[0].searches > 1  # decided per metric (rows with NaN drop)
        per_strategy = rep.per_strategy.rename(columns=PER_STRATEGY | ({"n": "pairs"} if nested else {}))
        blocks += [("h2", metric),
                   ("table", per_strategy, None, PER_STRATEGY_NOTE),
                   ("list", [c.verdict for c in rep.comparisons])]
        frame = rep.comparisons_frame()
        if not frame.empty:
            columns = (SEARCH_SEED_COLUMNS if nested else COMPARISON) | (ROPE_COLUMNS if spec.compare.rope else {})
            note = (SEARCH_SEED_NOTE if nested else COMPARISON_NOTE) + (
                ROPE_NOTE.format(rope=spec.compare.rope) + (" With several searches it takes each search's mean "
                                                            "over its seeds." if nested else "")
                if spec.compare.rope else "")
            blocks.append(("table", frame[list(columns)].rename(columns=columns), None, note))
        if metric in friedman:
            f = friedman[metric]
            ranks = ", ".join(f"{k} {v:.2f}" for k, v in sorted(f["mean_ranks"].items(), key=lambda kv: kv[1]))
            blocks.append(("p", f"Friedman over {f['n']} {f['blocks']}: chi-squared = {f['statistic']:.3g}, "
                                f"p = {f['p_value']:.3g}; mean ranks "
                                f"(1 = best) {ranks}; Nemenyi critical difference {f['critical_difference']:.2f}."))
    blocks.append(("h2", "Discrimination and operating points"))
    if not evaluation.auroc.empty:
        blocks.append(("table", evaluation.auroc, None, AUROC_NOTE))
    if not evaluation.operating_points.empty:
        blocks.append(("table", evaluation.operating_points, None, OPERATING_POINTS_NOTE))
    else:
        blocks.append(("p", "No operating points: set training.evaluation.operating_points (e.g. [youden, "
                            "{specificity: 0.95}]) to compare strategies at a validation-chosen threshold."))
    blocks.append(("h2", "Figures"))
    blocks += [("figure", f) for f in figures]
    return blocks


def _cell(v) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def render_markdown(blocks: list[tuple]) -> str:
    lines: list[str] = []
    for kind, *rest in blocks:
        if kind in ("h1", "h2"):
            lines += [f"{'#' if kind == 'h1' else '##'} {rest[0]}", ""]
        elif kind == "p":
            lines += [rest[0], ""]
        elif kind == "warnings":
            lines += ["**Warnings**", ""] + [f"- {w}" for w in rest[0]] + [""]
        elif kind == "list":
            lines += [f"- {item}" for item in rest[0]] + [""]
        elif kind == "table":
            df, _, note = rest
            named = df.index.name is not None
            head = ([df.index.name] if named else []) + [str(c) for c in df.columns]
            lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
            for idx, row in df.iterrows():
                lines.append("| " + " | ".join(([str(idx)] if named else []) + [_cell(v) for v in row]) + " |")
            lines += ["", f"*{note}*", ""]
        elif kind == "figure":
            f = rest[0]
            lines += [f"![{f.name}]({f.name}.png)", "", f"*{f.caption}*", ""]
    return "\n".join(lines)


def render_html(blocks: list[tuple], title: str) -> str:
    esc = html.escape
    parts = []
    for kind, *rest in blocks:
        if kind in ("h1", "h2"):
            parts.append(f"<{kind}>{esc(rest[0])}</{kind}>")
        elif kind == "p":
            parts.append(f"<p>{esc(rest[0])}</p>")
        elif kind == "warnings":
            parts.append("<div class='warn'><b>Warnings</b><ul>" + "".join(f"<li>{esc(w)}</li>" for w in rest[0])
                         + "</ul></div>")
        elif kind == "list":
            parts.append("<ul>" + "".join(f"<li>{esc(item)}</li>" for item in rest[0]) + "</ul>")
        elif kind == "table":
            df, status, note = rest
            named = df.index.name is not None
            head = ([df.index.name] if named else []) + [str(c) for c in df.columns]
            rows = []
            for r, (idx, row) in enumerate(df.iterrows()):
                cells = [f"<th>{esc(str(idx))}</th>"] if named else []
                for c, v in enumerate(row):
                    mark = status.iat[r, c] if status is not None else ""
                    cells.append(f"<td class='{mark}'>{esc(_cell(v))}</td>" if mark else f"<td>{esc(_cell(v))}</td>")
                rows.append("<tr>" + "".join(cells) + "</tr>")
            parts.append("<table class='t'><thead><tr>" + "".join(f"<th>{esc(h)}</th>" for h in head)
                         + "</tr></thead><tbody>" + "".join(rows) + f"</tbody></table><p class='note'>{esc(note)}</p>")
        elif kind == "figure":
            f = rest[0]
            parts.append(f"<figure id='{esc(f.name)}'><img alt='{esc(f.name)}' src='data:image/png;base64,"
                         f"{base64.b64encode(f.png).decode()}'/><figcaption>{esc(f.caption)}</figcaption></figure>")
    style = ("body{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}"
             "table.t{border-collapse:collapse;font-size:13px;margin:.5em 0}"
             "table.t td,table.t th{padding:3px 8px;border-bottom:1px solid #ddd;text-align:right}"
             "td.better{background:#e3f4e3}td.worse{background:#fbe3e3}p.note,figcaption{font-size:12px;color:#555}"
             ".warn{background:#fff4e5;padding:.5em 1em;border-left:4px solid #f90}img{max-width:100%}"
             "figure{margin:1.5em 0}")
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{esc(title)}</title>"
            f"<style>{style}</style></head><body>{''.join(parts)}</body></html>")
