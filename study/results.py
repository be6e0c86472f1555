"""Reading a study's phases back from MLflow: each strategy's best searched config, the repeat runs
(which (strategy, seed) pairs are done), the long table of repeat metrics, and the per-run curves,
confusion matrices and class names the report draws."""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
from mlflow.exceptions import MlflowException

from trainables.predictions import PREDICTIONS_FILE, read_predictions
from trainables.progress import progress_bar

from .errors import StudyError
from .spec import StudySpec, changed_fields
from .tracking import StudyTracker

REPEAT = "repeat"  # the repeat phase's tag


def search_bests(spec: StudySpec, tracker: StudyTracker, search_seeds: list[int] | None = None
                 ) -> dict[tuple[str, int], dict]:
    """(strategy, search seed) -> the best trial of that search (``summary.json``'s ``best``: its
    config, searched values and score), read from the search's parent run in MLflow, for every
    search seed of ``search_seeds`` (default ``repeats.search_seeds``)."""
    bests = {}
    for search_seed in spec.search_seeds if search_seeds is None else search_seeds:
        phase = spec.search_phase(search_seed)
        searched = "" if len(spec.search_seeds) == 1 else f" with search seed {search_seed}"
        for strategy in spec.strategies:
            parents = [r for r in tracker.find_runs(strategy=strategy, phase=phase)
                       if r.data.tags.get("role") == "parent" and r.info.status == "FINISHED"]
            if not parents:
                raise StudyError(f"no finished search of strategy {strategy!r}{searched} in MLflow experiment "
                                 f"{spec.experiment!r} at {spec.tracking.uri}: run `study run` first")
            summary = tracker.client.download_artifacts(parents[0].info.run_id, "summary.json")
            best = json.loads(Path(summary).read_text())["best"]
            if best is None:
                raise StudyError(f"the search of strategy {strategy!r}{searched} has no successful trial to repeat")
            bests[(strategy, search_seed)] = best
    return bests


# Spec fields a later phase (or a resumed search) may change: they do not touch the search's trials.
AFTER_SEARCH = ("repeats.", "compare.", "resources.", "ray.", "failure.", "tracking.", "storage_shared",
                "search.max_concurrent")


def search_changes(spec: StudySpec, recorded: dict | None) -> dict[str, tuple]:
    """The spec fields that differ from ``recorded`` (the spec the search ran with,
    :func:`recorded_spec`), beyond ``AFTER_SEARCH`` (none without a record): field -> (then, now)."""
    if recorded is None:
        return {}
    return {k: v for k, v in changed_fields(recorded, spec.model_dump(mode="json")).items()
            if not k.startswith(AFTER_SEARCH)}


def refuse_search_changes(spec: StudySpec, tracker: StudyTracker, command: str) -> None:
    """A phase after the search re-runs the searched configs: a change it cannot honour (training,
    data, model, strategies, search) is one :class:`StudyError` naming the fields."""
    changes = search_changes(spec, recorded_spec(tracker))
    if changes:
        raise StudyError(f"{command} re-runs the configs the search of study {spec.name!r} chose and honours "
                         f"only the repeats, compare, resources, ray and failure settings; changed since the "
                         f"search: {describe_changes(changes)}: undo them, or run the search again "
                         "(study run --fresh)")


def describe_changes(changes: dict[str, tuple]) -> str:
    return "; ".join(f"{k}: {then!r} -> {now!r}" for k, (then, now) in changes.items())


def recorded_spec(tracker: StudyTracker) -> dict | None:
    """The spec (its JSON dump) the study's search ran with, from a search parent run in MLflow;
    None when the study has no search there yet."""
    parents = [r for r in tracker.find_runs(phase="search") if r.data.tags.get("role") == "parent"]
    for run in parents:
        try:
            return json.loads(Path(tracker.client.download_artifacts(run.info.run_id, "spec.json")).read_text())
        except (OSError, ValueError, MlflowException):
            continue
    return None


def repeat_runs(spec: StudySpec, tracker: StudyTracker) -> tuple[dict[tuple[str, int, int], object], list]:
    """The study's repeat runs: (strategy, search seed, seed) -> FINISHED run, and the runs that are
    not. A run without a search seed (repeated before there were several) repeated search.seed's."""
    done, unfinished = {}, []
    for run in tracker.find_runs(phase=REPEAT):
        tags = run.data.tags
        if "trial_id" not in tags:
            continue
        if run.info.status == "FINISHED":
            done[(tags["strategy"], int(tags.get("search_seed", spec.search.seed)), int(tags["seed"]))] = run
        else:
            unfinished.append(run)
    return done, unfinished


def repeat_table(spec: StudySpec, tracker: StudyTracker | None = None) -> pd.DataFrame:
    """Long table of the FINISHED repeat runs in MLflow: strategy, search_seed, seed, run_id and
    every metric of ``repeats.metrics`` (final epoch, or the best-validation epoch with ``use: best``)."""
    tracker = tracker or StudyTracker.of(spec)
    rows = []
    wanted, searches = set(spec.repeat_seeds), set(spec.search_seeds)
    for (strategy, search_seed, seed), run in repeat_runs(spec, tracker)[0].items():
        if strategy not in spec.strategies or seed not in wanted or search_seed not in searches:
            continue
        row = {"strategy": strategy, "search_seed": search_seed, "seed": seed, "run_id": run.info.run_id}
        for metric in spec.repeats.metrics:
            key = f"best/{metric}" if spec.repeats.use == "best" else metric
            row[metric] = run.data.metrics.get(key)
        rows.append(row)
    return pd.DataFrame(rows, columns=["strategy", "search_seed", "seed", "run_id", *spec.repeats.metrics])


def metric_curves(tracker: StudyTracker, long: pd.DataFrame, metric: str) -> dict[str, np.ndarray]:
    """Per strategy, the per-epoch history of ``metric`` of each of its runs (seeds x epochs,
    NaN-padded to the longest)."""
    curves = {}
    bar = progress_bar(None, f"compare: {metric} curves", "run", total=len(long))
    for strategy, part in long.groupby("strategy", sort=False):
        series = []
        for run_id in part.run_id:
            series.append([m.value for m in sorted(tracker.client.get_metric_history(run_id, metric),
                                                   key=lambda m: m.step)])
            bar.update(1)
        width = max((len(s) for s in series), default=0)
        curves[strategy] = np.array([s + [np.nan] * (width - len(s)) for s in series], float)
    bar.close()
    return curves


def summed_confusions(tracker: StudyTracker, long: pd.DataFrame, key: str) -> dict[str, np.ndarray]:
    """Per strategy, the confusion matrix ``key`` summed over its runs."""
    sums: dict[str, np.ndarray] = {}
    for strategy, run_id in progress_bar(list(zip(long.strategy, long.run_id)), "compare: confusion matrices", "run"):
        path = tracker.client.download_artifacts(run_id, "confusion_matrices.json")
        cm = np.array(json.loads(Path(path).read_text())[key])
        sums[strategy] = sums.get(strategy, 0) + cm
    return sums


def prediction_frames(tracker: StudyTracker, long: pd.DataFrame, model: str) -> tuple[dict[str, dict[int, pd.DataFrame]], list[str]]:
    """Per strategy, seed -> the test predictions of ``model`` (``final`` or ``best``) stored in each repeat run;
    and the runs without a predictions artifact (runs of a study repeated before predictions were stored)."""
    frames: dict[str, dict[int, pd.DataFrame]] = {}
    missing = []
    for strategy, seed, run_id in progress_bar(list(zip(long.strategy, long.seed, long.run_id)),
                                               "compare: predictions", "run"):
        try:
            path = tracker.client.download_artifacts(run_id, PREDICTIONS_FILE)
        except (OSError, MlflowException):
            missing.append(f"{strategy} seed {seed}")
            continue
        frame = read_predictions(path)
        frames.setdefault(strategy, {})[int(seed)] = frame[frame.model == model].reset_index(drop=True)
    return frames, missing


def operating_point_table(tracker: StudyTracker, long: pd.DataFrame, use: str) -> pd.DataFrame:
    """Long table of every repeat run's operating-point test metrics (``test_at_<point>/<metric>``, of
    the final or best-validation model): strategy, seed, point, metric, value."""
    prefix = "best/test_at_" if use == "best" else "test_at_"
    rows = []
    for strategy, seed, run_id in zip(long.strategy, long.seed, long.run_id):
        for key, value in tracker.client.get_run(run_id).data.metrics.items():
            if key.startswith(prefix):
                point, _, metric = key.removeprefix(prefix).partition("/")
                rows.append({"strategy": strategy, "seed": seed, "point": point, "metric": metric, "value": value})
    return pd.DataFrame(rows, columns=["strategy", "seed", "point", "metric", "value"])


def class_names(tracker: StudyTracker, strategy: str) -> list[str]:
    """The data set's class names, from the data manifest of the strategy's search."""
    parent = tracker.parent_run(strategy, "search")
    path = tracker.client.download_artifacts(parent, "data_manifest.json")
    return json.loads(Path(path).read_text())["class_names"]


def studies(uri: str) -> pd.DataFrame:
    """Every study in a tracking store: its experiment, the furthest phase it reached, its search
    trials and repeat runs by status, whether its report exists and whether a process holds it now
    (its lease in MLflow is fresh)."""
    from mlflow import MlflowClient

    from .lock import LEASE_S, LEASE_TAG

    client, rows = MlflowClient(uri), []
    for exp in client.search_experiments():
        lease = json.loads(exp.tags[LEASE_TAG]) if LEASE_TAG in exp.tags else {}
        held = bool(lease) and not lease.get("released") and time.time() - lease.get("heartbeat", 0) < LEASE_S
        by_study: dict[str, list] = {}
        for run in client.search_runs([exp.experiment_id], max_results=10000):
            if "study" in run.data.tags:
                by_study.setdefault(run.data.tags["study"], []).append(run)
        for study, runs in sorted(by_study.items()):
            def count(phase: str) -> str:
                trials = [r.info.status for r in runs if "trial_id" in r.data.tags
                          and r.data.tags.get("phase", "").partition("-seed")[0] == phase]
                return ", ".join(f"{trials.count(s)} {s.lower()}" for s in ("FINISHED", "FAILED", "RUNNING")
                                 if trials.count(s)) or "-"
            phases = {r.data.tags.get("phase", "").partition("-seed")[0] for r in runs}
            reached = next((p for p in ("compare", "repeat", "search") if p in phases), "-")
            report = any(r.data.tags.get("phase") == "compare" and r.info.status == "FINISHED" for r in runs)
            rows.append({"study": study, "experiment": exp.name, "phase": reached, "search trials": count("search"),
                         "repeat runs": count(REPEAT), "report": "yes" if report else "no",
                         "running now": f"{lease.get('command')} (pid {lease.get('pid')} on {lease.get('host')})"
                         if held and lease.get("study", study) == study else "no"})
    return pd.DataFrame(rows, columns=["study", "experiment", "phase", "search trials", "repeat runs", "report",
                                       "running now"])
