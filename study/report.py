"""The compare phase: statistics over the repeats held in MLflow, written as a report (HTML with
inline plots, Markdown, CSV tables) and logged to a study-level MLflow run."""
from __future__ import annotations

import base64
import html
import sys
from dataclasses import asdict

import pandas as pd
from tqdm import tqdm

from . import plots
from .errors import StudyError
from .layout import report_dir
from .progress import plural, progress_bar
from .results import class_names, metric_curves, repeat_table, summed_confusions
from .spec import StudySpec
from .stats import MetricReport, compare
from .tracking import StudyTracker, check_tracking_uri, write_json

SCOPE = ("Scope: these seeds vary {sources} on one data set; the results support statements about "
         "this pipeline on this data, not about data sets in general.")


def analyse(spec: StudySpec, long: pd.DataFrame) -> dict[str, MetricReport]:
    """Per metric of ``repeats.metrics``: the seeds x strategies table and its statistics."""
    strategies = [s for s in spec.strategies if s in set(long.strategy)]
    if spec.compare.baseline not in strategies:
        raise StudyError(f"compare.baseline: no finished repeats of {spec.compare.baseline!r} in MLflow")
    absent = [s for s in spec.strategies if s not in strategies]
    out = {}
    for metric in _bar(spec.repeats.metrics, "statistics", "metric"):
        wide = long.pivot(index="seed", columns="strategy", values=metric).reindex(columns=strategies)
        try:
            out[metric] = compare(wide, metric, spec.compare.baseline,
                                  higher_is_better=not metric.endswith("loss"), alpha=spec.compare.alpha,
                                  all_pairs=spec.compare.all_pairs)
        except ValueError as exc:
            raise StudyError(f"repeats.metrics: {exc}: the repeat runs in MLflow do not record it") from None
        if absent:
            out[metric].warnings.insert(0, f"left out, without a finished repeat run: {', '.join(absent)}")
    return out


def _bar(items, what: str, unit: str) -> tqdm:
    """``items`` with a progress bar on stderr."""
    return progress_bar(items, f"compare: {what}", unit)


def _md_table(df: pd.DataFrame) -> str:
    cells = [[str(df.index.name or "")] + [str(c) for c in df.columns]]
    for idx, row in df.iterrows():
        cells.append([str(idx)] + [f"{v:.4g}" if isinstance(v, float) else str(v) for v in row])
    lines = ["| " + " | ".join(r) + " |" for r in cells]
    return "\n".join([lines[0], "|" + "---|" * len(cells[0]), *lines[1:]])


def _table_html(df: pd.DataFrame) -> str:
    return df.to_html(float_format=lambda v: f"{v:.4g}", border=0, classes="t", na_rep="")


def run_compare(spec: StudySpec) -> dict:
    """Statistics and report from the FINISHED repeat runs in MLflow. Returns a summary with the
    verdicts and the report's paths."""
    check_tracking_uri(spec.tracking.uri)
    tracker = StudyTracker.of(spec)
    long = repeat_table(spec, tracker)
    if long.empty:
        raise StudyError(f"no finished repeat runs of study {spec.name!r} in MLflow: run `study repeat` first")
    long = long.sort_values(["strategy", "seed"]).reset_index(drop=True)
    print(f"compare: {plural(len(long), 'repeat run')} of {plural(long.strategy.nunique(), 'strategy')} "
          "read from MLflow", file=sys.stderr, flush=True)
    reports = analyse(spec, long)
    strategies = [s for s in spec.strategies if s in set(long.strategy)]
    out = report_dir(spec)
    out.mkdir(parents=True, exist_ok=True)

    long.to_csv(out / "repeats.csv", index=False)
    comparisons = pd.concat([r.comparisons_frame() for r in reports.values()], ignore_index=True)
    comparisons.to_csv(out / "comparisons.csv", index=False)
    pd.concat({m: r.per_strategy for m, r in reports.items()}, names=["metric"]).to_csv(
        out / "per_strategy.csv")
    friedman = {m: r.friedman for m, r in reports.items() if r.friedman}
    write_json(out / "friedman.json", friedman)

    figures = {"paired": plots.paired_strips(long, spec.repeats.metrics, strategies)}
    metrics = set(spec.repeats.metrics)
    if {"test/sensitivity", "test/ppv"} <= metrics:
        figures["sens_ppv"] = plots.sensitivity_vs_ppv(long, strategies, "test/sensitivity", "test/ppv")
    figures["curves"] = plots.validation_curves(metric_curves(tracker, long, spec.search.metric),
                                                spec.search.metric)
    for metric, f in friedman.items():
        figures[f"cd_{metric.replace('/', '_')}"] = plots.critical_difference(
            f["mean_ranks"], f["critical_difference"], metric)
    cm_key = "best/test/confusion_matrix" if spec.repeats.use == "best" else "test/confusion_matrix"
    figures["confusion"] = plots.confusion_matrices(summed_confusions(tracker, long, cm_key),
                                                    class_names(tracker, strategies[0]))
    for name, png in figures.items():
        (out / f"{name}.png").write_bytes(png)

    warnings = list(dict.fromkeys(w for r in reports.values() for w in r.warnings))  # same for each metric
    sources = "split, initialisation, data order and augmentation" if spec.repeats.vary_split \
        else "initialisation, data order and augmentation (the split is fixed)"
    scope = SCOPE.format(sources=sources)
    (out / "report.md").write_text(_markdown(spec, long, reports, friedman, warnings, scope, figures))
    (out / "report.html").write_text(_html(spec, long, reports, friedman, warnings, scope, figures))

    summary = {"study": spec.name, "baseline": spec.compare.baseline, "seeds": int(long.seed.nunique()),
               "use": spec.repeats.use, "warnings": warnings,
               "verdicts": {m: [c.verdict for c in r.comparisons] for m, r in reports.items()},
               "comparisons": {m: [asdict(c) for c in r.comparisons] for m, r in reports.items()},
               "report_html": str(out / "report.html"), "report_md": str(out / "report.md")}
    write_json(out / "compare_summary.json", summary)
    run_id = tracker.parent_run("study", "compare")
    tracker.client.log_artifacts(run_id, str(out), "report")
    tracker.finish(run_id)
    summary["mlflow_run_id"] = run_id
    return summary


def _markdown(spec, long, reports, friedman, warnings, scope, figures) -> str:
    lines = [f"# Study {spec.name}: strategies compared over paired seeds", "",
             f"{long.seed.nunique()} seeds per strategy (paired), test split, "
             f"{'final epoch' if spec.repeats.use == 'final' else 'best-validation epoch'}; "
             f"baseline `{spec.compare.baseline}`; Wilcoxon signed-rank, Holm-corrected per metric, "
             f"alpha {spec.compare.alpha}.", "", scope, ""]
    if warnings:
        lines += ["## Warnings", ""] + [f"- {w}" for w in warnings] + [""]
    for metric, rep in reports.items():
        lines += [f"## {metric}", "", _md_table(rep.per_strategy), ""]
        lines += [f"- {c.verdict}" for c in rep.comparisons] + [""]
        if metric in friedman:
            f = friedman[metric]
            lines += [f"Friedman chi2 = {f['statistic']:.3g}, p = {f['p_value']:.3g}; mean ranks "
                      + ", ".join(f"{k} {v:.2f}" for k, v in sorted(f["mean_ranks"].items(), key=lambda kv: kv[1]))
                      + f"; Nemenyi CD = {f['critical_difference']:.2f}", ""]
    lines += [f"![{name}]({name}.png)" for name in figures]
    return "\n".join(lines) + "\n"


def _html(spec, long, reports, friedman, warnings, scope, figures) -> str:
    esc = html.escape
    parts = [f"<h1>Study {esc(spec.name)}: strategies compared over paired seeds</h1>",
             f"<p>{long.seed.nunique()} seeds per strategy (paired), test split, "
             f"{'final epoch' if spec.repeats.use == 'final' else 'best-validation epoch'}; baseline "
             f"<code>{esc(spec.compare.baseline)}</code>; Wilcoxon signed-rank, Holm-corrected per "
             f"metric, alpha {spec.compare.alpha}.</p><p>{esc(scope)}</p>"]
    if warnings:
        parts.append("<div class='warn'><b>Warnings</b><ul>" + "".join(f"<li>{esc(w)}</li>" for w in warnings)
                     + "</ul></div>")
    for metric, rep in reports.items():
        parts.append(f"<h2>{esc(metric)}</h2>{_table_html(rep.per_strategy)}<ul>"
                     + "".join(f"<li>{esc(c.verdict)}</li>" for c in rep.comparisons) + "</ul>")
        frame = rep.comparisons_frame()
        if not frame.empty:
            cols = ["strategy", "baseline", "n", "n_used", "median_diff", "ci_low", "ci_high", "p_value",
                    "p_holm", "significant", "rank_biserial", "p_improvement", "method"]
            parts.append(_table_html(frame[cols]))
        if metric in friedman:
            f = friedman[metric]
            parts.append(f"<p>Friedman &chi;&sup2; = {f['statistic']:.3g}, p = {f['p_value']:.3g}; Nemenyi "
                         f"CD = {f['critical_difference']:.2f}</p>")
    for name, png in figures.items():
        parts.append(f"<figure><img alt='{esc(name)}' src='data:image/png;base64,"
                     f"{base64.b64encode(png).decode()}'/></figure>")
    style = ("body{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}"
             "table.t{border-collapse:collapse;font-size:13px;margin:.5em 0}"
             "table.t td,table.t th{padding:3px 8px;border-bottom:1px solid #ddd;text-align:right}"
             ".warn{background:#fff4e5;padding:.5em 1em;border-left:4px solid #f90}img{max-width:100%}")
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{esc(spec.name)} report</title>"
            f"<style>{style}</style></head><body>{''.join(parts)}</body></html>")
