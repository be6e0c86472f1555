"""Reading a study's phases back from MLflow: each strategy's best searched config, the repeat runs
(which (strategy, seed) pairs are done), the long table of repeat metrics, and the per-run curves,
confusion matrices and class names the report draws."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from .errors import StudyError
from .spec import StudySpec
from .tracking import StudyTracker

REPEAT = "repeat"  # the repeat phase's tag


def best_configs(spec: StudySpec, tracker: StudyTracker) -> dict[str, dict]:
    """Each strategy's best searched trial config, read from its search parent run in MLflow."""
    configs = {}
    for strategy in spec.strategies:
        parents = [r for r in tracker.find_runs(strategy=strategy, phase="search")
                   if r.data.tags.get("role") == "parent" and r.info.status == "FINISHED"]
        if not parents:
            raise StudyError(f"no finished search of strategy {strategy!r} in MLflow experiment "
                             f"{spec.experiment!r} at {spec.tracking.uri}: run `study run` first")
        summary = tracker.client.download_artifacts(parents[0].info.run_id, "summary.json")
        best = json.loads(Path(summary).read_text())["best"]
        if best is None:
            raise StudyError(f"the search of strategy {strategy!r} has no successful trial to repeat")
        configs[strategy] = best["config"]
    return configs


def repeat_runs(tracker: StudyTracker) -> tuple[dict[tuple[str, int], object], list]:
    """The study's repeat runs: (strategy, seed) -> FINISHED run, and the runs that are not."""
    done, unfinished = {}, []
    for run in tracker.find_runs(phase=REPEAT):
        tags = run.data.tags
        if "trial_id" not in tags:
            continue
        if run.info.status == "FINISHED":
            done[(tags["strategy"], int(tags["seed"]))] = run
        else:
            unfinished.append(run)
    return done, unfinished


def repeat_table(spec: StudySpec, tracker: StudyTracker | None = None) -> pd.DataFrame:
    """Long table of the FINISHED repeat runs in MLflow: strategy, seed, run_id and every metric
    of ``repeats.metrics`` (final epoch, or the best-validation epoch with ``use: best``)."""
    tracker = tracker or StudyTracker.of(spec)
    rows = []
    wanted = set(spec.repeat_seeds)
    for (strategy, seed), run in repeat_runs(tracker)[0].items():
        if strategy not in spec.strategies or seed not in wanted:
            continue
        row = {"strategy": strategy, "seed": seed, "run_id": run.info.run_id}
        for metric in spec.repeats.metrics:
            key = f"best/{metric}" if spec.repeats.use == "best" else metric
            row[metric] = run.data.metrics.get(key)
        rows.append(row)
    return pd.DataFrame(rows, columns=["strategy", "seed", "run_id", *spec.repeats.metrics])


def metric_curves(tracker: StudyTracker, long: pd.DataFrame, metric: str) -> dict[str, np.ndarray]:
    """Per strategy, the per-epoch history of ``metric`` of each of its runs (seeds x epochs,
    NaN-padded to the longest)."""
    curves = {}
    for strategy, part in long.groupby("strategy", sort=False):
        series = [[m.value for m in sorted(tracker.client.get_metric_history(r, metric),
                                           key=lambda m: m.step)] for r in part.run_id]
        width = max((len(s) for s in series), default=0)
        curves[strategy] = np.array([s + [np.nan] * (width - len(s)) for s in series], float)
    return curves


def summed_confusions(tracker: StudyTracker, long: pd.DataFrame, key: str) -> dict[str, np.ndarray]:
    """Per strategy, the confusion matrix ``key`` summed over its runs."""
    sums: dict[str, np.ndarray] = {}
    for strategy, run_id in zip(long.strategy, long.run_id):
        path = tracker.client.download_artifacts(run_id, "confusion_matrices.json")
        cm = np.array(json.loads(Path(path).read_text())[key])
        sums[strategy] = sums.get(strategy, 0) + cm
    return sums


def class_names(tracker: StudyTracker, strategy: str) -> list[str]:
    """The data set's class names, from the data manifest of the strategy's search."""
    parent = tracker.parent_run(strategy, "search")
    path = tracker.client.download_artifacts(parent, "data_manifest.json")
    return json.loads(Path(path).read_text())["class_names"]
