"""``study compare-across``: the same strategies studied on several data sets (one study per spec),
compared across data sets as Demšar (JMLR 2006) recommends: each data set is a block, its value for a
strategy the mean over the study's paired seeds (test split, the study's ``repeats.use`` epoch);
Friedman's test over the data sets with mean ranks and Nemenyi's critical difference.

baycomp's hierarchical Bayesian test (Benavoli et al. 2017) is not offered: it compiles a Stan model
through pystan/httpstan with a C++ toolchain at run time, which this service does not require.
"""
from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from trainables.metric_names import lower_is_better

from . import plots
from .errors import StudyError
from .report import Figure, render_html, render_markdown
from .results import repeat_table
from .spec import StudySpec
from .stats import friedman
from .tracking import check_tracking_uri, write_json

FEW_DATA_SETS = 5  # below it Friedman over data sets has little power (Demšar 2006 used 14)


def across_table(specs: list[StudySpec]) -> tuple[dict[str, pd.DataFrame], list[str], list[str]]:
    """Per metric common to the specs' ``repeats.metrics``, the data sets x strategies table of
    mean test values over each study's (search seed, seed) pairs that have a value for every strategy; the strategies
    and metrics left out (not in every study)."""
    if len(specs) < 2:
        raise StudyError("compare-across: give two or more specs (one study per data set)")
    names = [s.name for s in specs]
    if len(set(names)) < len(names):
        raise StudyError(f"compare-across: two specs name the same study ({', '.join(names)}); each data set "
                         "is its own study")
    longs = {}
    for spec in specs:
        check_tracking_uri(spec.tracking.uri)
        long = repeat_table(spec)
        if long.empty:
            raise StudyError(f"{spec.name}: no finished repeat runs in MLflow at {spec.tracking.uri}: run "
                             "`study run` on it first")
        longs[spec.name] = long
    strategies = [s for s in specs[0].strategies if all(s in set(long.strategy) for long in longs.values())]
    metrics = [m for m in specs[0].repeats.metrics if all(m in s.repeats.metrics for s in specs)]
    every_strategy = list(dict.fromkeys(s for spec in specs for s in spec.strategies))
    every_metric = list(dict.fromkeys(m for spec in specs for m in spec.repeats.metrics))
    if len(strategies) < 3:
        raise StudyError(f"compare-across: Friedman's test needs 3 or more strategies with finished repeats in "
                         f"every study; common to all: {strategies or 'none'}")
    tables = {}
    for metric in metrics:  # means over the seeds paired across every strategy of the study
        rows = {name: long.pivot(index=["search_seed", "seed"], columns="strategy", values=metric)
                .reindex(columns=strategies).dropna().mean() for name, long in longs.items()}
        tables[metric] = pd.DataFrame(rows).T.rename_axis("data set (study)")
    return (tables, [s for s in every_strategy if s not in strategies],
            [m for m in every_metric if m not in metrics])


def compare_across(specs: list[StudySpec], out: Path | None = None) -> dict:
    """Friedman + Nemenyi over the specs' studies per common metric, written as a report (HTML with
    inline plots, Markdown, CSV) into ``out`` (default ``<storage_path>/across-<study>-<study>...``).
    Returns a summary with the figures and the report's paths."""
    tables, left_strategies, left_metrics = across_table(specs)
    alpha = specs[0].compare.alpha
    folder = out or Path(specs[0].storage_path) / ("across-" + "-".join(s.name for s in specs))
    folder.mkdir(parents=True, exist_ok=True)
    warnings = []
    if len(specs) < FEW_DATA_SETS:
        warnings.append(f"{len(specs)} data sets: Friedman's test over so few blocks has little power and "
                        "Nemenyi's critical difference is wide; a result here is a hint, not a verdict")
    if left_strategies:
        warnings.append(f"left out, without finished repeats in every study: {', '.join(left_strategies)}")
    if left_metrics:
        warnings.append(f"metrics not compared by every study, left out: {', '.join(left_metrics)}")
    blocks: list[tuple] = [
        ("h1", f"Strategies compared across {len(specs)} data sets"),
        ("p", f"Studies: {', '.join(s.name for s in specs)}. Each data set is a block; its value for a strategy is "
              f"the mean over the study's paired seeds on its test split. Friedman's test over the data sets, "
              f"mean ranks (1 = best) and Nemenyi's critical difference at alpha {alpha} (Demšar 2006).")]
    results, figures = {}, []
    for metric, table in tables.items():
        incomplete = list(table.index[table.isna().any(axis=1)])
        if incomplete:
            warnings.append(f"{metric}: left out of {', '.join(incomplete)}, whose repeats do not record it for "
                            "every strategy")
            table = table.dropna()
        if len(table) < 2:
            continue
        result = friedman(table, higher_is_better=not lower_is_better(metric), alpha=alpha)
        results[metric] = result
        table.to_csv(folder / f"means_{_slug(metric)}.csv")
        ranks = ", ".join(f"{k} {v:.2f}" for k, v in sorted(result["mean_ranks"].items(), key=lambda kv: kv[1]))
        figure = Figure(f"cd_{_slug(metric)}", plots.critical_difference(result["mean_ranks"],
                                                                         result["critical_difference"], metric),
                        f"Critical-difference diagram of {metric} over {len(specs)} data sets: strategies joined by "
                        "a red bar are not significantly different (Nemenyi).")
        figures.append(figure)
        (folder / f"{figure.name}.png").write_bytes(figure.png)
        blocks += [("h2", metric),
                   ("table", table, None, "Mean over the paired seeds of each study (test split)."),
                   ("p", f"Friedman chi-squared = {result['statistic']:.3g}, p = {result['p_value']:.3g} over "
                         f"{result['n']} data sets and {result['k']} strategies; mean ranks {ranks}; Nemenyi "
                         f"critical difference {result['critical_difference']:.2f}."),
                   ("figure", figure)]
    if warnings:
        blocks.insert(2, ("warnings", warnings))
    (folder / "report.md").write_text(render_markdown(blocks))
    (folder / "report.html").write_text(render_html(blocks, "strategies across data sets"))
    summary = {"studies": [s.name for s in specs], "friedman": results, "warnings": warnings,
               "report_html": str(folder / "report.html"), "report_md": str(folder / "report.md")}
    write_json(folder / "across_summary.json", summary)
    return summary


def _slug(metric: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", metric)
