"""The search phase: every strategy gets the same Optuna (TPE) budget and its own ASHA brackets, all
strategies in one Ray Tune experiment (see :mod:`study.strategy_search`); every trial an MLflow
child run; resumable."""
from __future__ import annotations

import os
import socket
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import optuna
import pyarrow.fs
import ray
from ray import tune
from ray.tune.schedulers import ASHAScheduler, FIFOScheduler
from ray.tune.search.optuna import OptunaSearch

from trainables.data import ImageArrays, load_arrays

from .cluster import check_shared_storage
from .errors import StudyError, StudyInterrupted
from .pareto import pareto_indices
from .spec import StudySpec
from .ssl_stage import run_ssl_stages
from .strategy_search import StrategyScheduler, StrategySearch, optuna_distribution, optuna_sampler
from .tracking import MLflowTrialLogger, StudyTracker, check_tracking_uri, error_line, write_json
from .trainable import SearchView, tune_trainable

optuna.logging.set_verbosity(optuna.logging.WARNING)
RAY_ENV = {
    "RAY_AUTH_MODE": "disabled",
    "RAY_USAGE_STATS_ENABLED": "0",
    "TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S": "0",
    "RAY_AIR_NEW_OUTPUT": "0",
    "TUNE_DISABLE_AUTO_CALLBACK_LOGGERS": "0",
}
EXPERIMENT = "trials"  # the search's Tune experiment, under tune_storage(spec)
VIEW = SearchView()  # a search trial's Tune config -> (strategy, trial config)


def searched_values(config: dict, spec: StudySpec, strategy: str) -> dict[str, Any]:
    """The values the search chose for one trial, by dotted key."""
    out = {}
    for key in spec.space(strategy):
        node: Any = config
        for part in key.split("."):
            node = node[part]
        out[key] = node
    return out


def study_dir(spec: StudySpec) -> Path:
    """Local folder of the study's summaries: under ``storage_path``, or under ``./results`` when
    ``storage_path`` is a URI (``s3://...``), where Tune keeps results and checkpoints."""
    if "://" in spec.storage_path:
        return Path("results").resolve() / spec.name
    return Path(spec.storage_path).expanduser().resolve() / spec.name


def tune_storage(spec: StudySpec, phase: str = "search") -> str:
    """Where a phase's Tune experiments live (a local path or a URI)."""
    if "://" in spec.storage_path:
        return f"{spec.storage_path.rstrip('/')}/{spec.name}/{phase}"
    return str(study_dir(spec) / phase)


def optuna_storage_uri(spec: StudySpec) -> str:
    """Optuna's study database beside MLflow's SQLite file (both use alembic, so not inside it),
    or in the study folder when MLflow is a server; ``optuna-dashboard <uri>`` opens it."""
    if spec.tracking.uri.startswith("sqlite:///"):
        db = Path(spec.tracking.uri.removeprefix("sqlite:///")).resolve()
        return f"sqlite:///{db.with_name(db.stem + '-optuna.db')}"
    folder = study_dir(spec)
    folder.mkdir(parents=True, exist_ok=True)  # SQLite cannot create the file's folder
    return f"sqlite:///{folder / 'optuna.db'}"


def connect_ray(spec: StudySpec, object_store_bytes: int) -> bool:
    """Connect to the spec's Ray address or start a local Ray. Returns True if we started it."""
    for k, v in RAY_ENV.items():
        os.environ.setdefault(k, v)
    if ray.is_initialized():
        return False
    address = spec.ray.address
    if address:
        hostport = address.removeprefix("ray://")
        if hostport != "auto":
            host, _, port = hostport.rpartition(":")
            try:
                socket.create_connection((host or "127.0.0.1", int(port)), timeout=5).close()
            except (OSError, ValueError) as exc:
                raise StudyError(f"ray.address: cannot reach Ray at {address} ({exc})") from None
        # The Ray Client server starts a process per driver, which can die while starting
        # ("Initialization failure from server"); a second try gets a fresh one.
        attempts = 3 if address.startswith("ray://") else 1
        for attempt in range(1, attempts + 1):
            try:
                ray.init(address=address, logging_level="WARNING", log_to_driver=False)
                break
            except (ConnectionError, RuntimeError) as exc:
                if attempt == attempts or "Initialization failure from server" not in str(exc):
                    raise StudyError(f"ray.address: cannot connect to Ray at {address} ({exc})") from None
                time.sleep(2 * attempt)
        try:
            check_shared_storage(spec)
        except StudyError:
            ray.shutdown()
            raise
        return True
    ray.init(num_cpus=spec.ray.num_cpus, num_gpus=spec.ray.num_gpus, include_dashboard=False,
             object_store_memory=spec.ray.object_store_memory or max(100 << 20, 4 * object_store_bytes),
             logging_level="WARNING", log_to_driver=False)
    return True


class ResumableOptunaSearch(OptunaSearch):
    """OptunaSearch whose persisted study may be ahead of Tune's last experiment snapshot (after a
    hard kill): a result for a trial the storage already holds as finished is ignored."""

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        try:
            super().on_trial_result(trial_id, result)
        except optuna.exceptions.UpdateFinishedTrialError:
            pass


class Progress(tune.Callback):
    """One line per finished trial: its strategy (search) or phase (repeats), the count of finished
    trials of that label, the trial, epochs run, metric, stopped early or not."""

    def __init__(self, view, totals: dict[str, int], metric: str, epochs: int,
                 phase: str | None = None) -> None:
        self.view, self.totals, self.metric, self.epochs, self.phase = view, totals, metric, epochs, phase

    def _label(self, trial) -> str:
        return self.phase or self.view(trial.config)[0]

    def _name(self, trial) -> str:
        if self.phase is None:
            return f"trial {trial.trial_id}"
        strategy, config = self.view(trial.config)
        return f"{strategy} seed {config['seed']}"

    def _head(self, trials, trial) -> str:
        label = self._label(trial)
        done = 1 + sum(t.status in ("TERMINATED", "ERROR") and self._label(t) == label
                       for t in trials if t is not trial)
        return f"[{label}] {done}/{self.totals[label]} {self._name(trial)}"

    def on_trial_complete(self, iteration: int, trials: list, trial, **info) -> None:
        result = trial.last_result or {}
        epochs = int(result.get("epoch", 0))
        note = "stopped early" if epochs < self.epochs else "full budget"
        value = result.get(self.metric, float("nan"))
        print(f"{self._head(trials, trial)}: {epochs}/{self.epochs} epochs, {self.metric} {value:.4f} "
              f"({note})", flush=True)

    def on_trial_error(self, iteration: int, trials: list, trial, **info) -> None:
        why = error_line(Path(trial.error_file).read_text()) if trial.error_file else "unknown error"
        print(f"{self._head(trials, trial)}: FAILED {why}", flush=True)


def interrupted(path: str, expected: int) -> bool:
    """Whether the Tune experiment at ``path`` holds fewer than ``expected`` trials or unfinished
    ones, by its state saved on disk (the grid an interrupted fit returns calls every trial
    TERMINATED, started or not)."""
    trials = tune.ExperimentAnalysis(path).trials
    return len(trials) < expected or any(t.status not in ("TERMINATED", "ERROR") for t in trials)


def _front(results, spec: StudySpec) -> list:
    """Trials that ran the full budget (else all finished ones) and, in a multi-objective search,
    are on the Pareto front of ``search.objectives`` at their last epoch."""
    keys = [spec.search.metric, *spec.search.objectives]
    done = [r for r in results if r.error is None and all(k in (r.metrics or {}) for k in keys)]
    full = [r for r in done if r.metrics.get("epoch", 0) >= spec.epochs] or done
    if not spec.search.objectives:
        return full
    points = [[r.metrics[o] for o in spec.search.objectives] for r in full]
    return [full[i] for i in pareto_indices(points, spec.search.mode == "max")]


def _best(results, spec: StudySpec, strategy: str) -> dict | None:
    """Best trial by the spec's metric at its last epoch, preferring trials that ran the full budget
    (in a multi-objective search: the front member best by the spec's metric)."""
    metric, sign = spec.search.metric, 1 if spec.search.mode == "max" else -1
    full = _front(results, spec)
    if not full:
        return None
    best = max(full, key=lambda r: sign * r.metrics[metric])
    trial_config = VIEW(best.config)[1]
    return {"trial_id": best.metrics["trial_id"], "score": best.metrics[metric],
            "epochs": best.metrics.get("epoch"), "searched": searched_values(trial_config, spec, strategy),
            "config": trial_config}


def summarise(results, spec: StudySpec, strategy: str) -> dict:
    rows = list(results)
    failed = [{"trial_id": r.metrics.get("trial_id") if r.metrics else Path(r.path).name,
               "error": error_line(str(r.error))} for r in rows if r.error is not None]
    epochs = [int(r.metrics.get("epoch", 0)) for r in rows if r.error is None and r.metrics]
    part = {"trials": len(rows), "failed": failed, "stopped_early": sum(e < spec.epochs for e in epochs),
            "epochs_total": sum(epochs), "best": _best(rows, spec, strategy)}
    if spec.search.objectives:
        front = sorted(_front(rows, spec), key=lambda r: r.metrics[spec.search.objectives[0]])
        part["pareto_front"] = [{"trial_id": r.metrics["trial_id"],
                                 "values": {o: r.metrics[o] for o in spec.search.objectives},
                                 "searched": searched_values(VIEW(r.config)[1], spec, strategy)}
                                for r in front]
    return part


def _reset(spec: StudySpec, tracker: StudyTracker) -> None:
    """``--fresh``: drop the previous search results, Optuna studies and MLflow runs of the study."""
    fs, path = pyarrow.fs.FileSystem.from_uri(tune_storage(spec))
    if fs.get_file_info(path).type != pyarrow.fs.FileType.NotFound:
        fs.delete_dir(path)
    storage = optuna_storage_uri(spec)
    for s in spec.strategies:
        try:
            optuna.delete_study(study_name=f"{spec.name}.{s}.search", storage=storage)
        except KeyError:
            pass
    for run in tracker.find_runs(phase="search"):
        tracker.client.delete_run(run.info.run_id)


def run_search(spec: StudySpec, resume: bool = False, fresh: bool = False,
               arrays: ImageArrays | None = None) -> dict:
    """Search every strategy of the spec in one Tune experiment; returns (and writes) the search
    summary."""
    check_tracking_uri(spec.tracking.uri)
    if note := spec.search.random_search_note():
        print(note, file=sys.stderr)
    search_dir = tune_storage(spec)
    path = f"{search_dir}/{EXPERIMENT}"
    if not (resume or fresh) and tune.Tuner.can_restore(path):
        raise StudyError(f"{search_dir} already holds a search of study {spec.name!r}: pass --resume "
                         "to continue it or --fresh to start over")
    arrays = arrays if arrays is not None else load_arrays(spec.data)
    with ThreadPoolExecutor(1) as pool:  # MLflow's runs are prepared while Ray starts
        tracking = pool.submit(_prepare_tracking, spec, arrays, fresh)
        started = connect_ray(spec, arrays.images.nbytes)
    try:
        tracker, parents = tracking.result()
        run_ssl_stages(spec, arrays, tracker)
        trainable = tune.with_resources(
            tune.with_parameters(tune_trainable, data=arrays, view=VIEW),
            {"cpu": spec.resources.cpu, "gpu": spec.resources.gpu})
        if resume and tune.Tuner.can_restore(path):
            tuner = tune.Tuner.restore(path, trainable, resume_unfinished=True, resume_errored=False)
        else:
            tuner = _tuner(spec, trainable, search_dir, parents, tracker)
        results = list(tuner.fit())
    finally:
        if started:
            ray.shutdown()
    if interrupted(path, spec.search.samples_per_strategy * len(spec.strategies)):
        raise StudyInterrupted(f"study {spec.name!r} was interrupted during its search; its state is "
                               "saved: continue with --resume")
    summary = {"study": spec.name, "metric": spec.search.metric, "mode": spec.search.mode,
               "objectives": spec.search.objectives,
               "samples_per_strategy": spec.search.samples_per_strategy, "strategies": {}}
    for strategy, parent in parents.items():
        rows = [r for r in results if VIEW(r.config)[0] == strategy]
        tracker.settle("search", strategy, [r.metrics for r in rows if r.metrics and r.error is None],
                       spec.epochs)
        part = summarise(rows, spec, strategy)
        summary["strategies"][strategy] = part
        for point in part.get("pareto_front", []):
            tracker.tag_trial(strategy, point["trial_id"], "pareto_front", "true")
        tracker.finish(parent, part)
    _drop_orphan_runs(tracker, {r.metrics["trial_id"] for r in results if r.metrics})
    write_json(study_dir(spec) / "search_summary.json", summary)
    return summary


def _prepare_tracking(spec: StudySpec, arrays: ImageArrays, fresh: bool) -> tuple[StudyTracker, dict]:
    """The study's experiment (emptied with ``fresh``) and each strategy's search parent run, with
    the spec, the data manifest and the data set logged to it."""
    tracker = StudyTracker(spec.tracking.uri, spec.experiment, spec.name)
    if fresh:
        _reset(spec, tracker)
    parents = {s: tracker.parent_run(s, "search") for s in spec.strategies}
    for parent in parents.values():
        tracker.log_parent_inputs(parent, spec.model_dump(mode="json"), arrays.manifest,
                                  str(spec.data.path or arrays.manifest.get("source", "synthetic")))
    return tracker, parents


def trial_slots(spec: StudySpec) -> int:
    """How many of the spec's trials the connected Ray cluster runs at once (at least 1)."""
    have = ray.cluster_resources()
    slots = [have.get(key, 0.0) / need for key, need in (("CPU", spec.resources.cpu),
                                                          ("GPU", spec.resources.gpu)) if need]
    return max(1, int(min(slots))) if slots else 1


def _tuner(spec: StudySpec, trainable, search_dir: str, parents: dict[str, str],
           tracker: StudyTracker) -> tune.Tuner:
    objectives = spec.search.objectives  # several: the searchers get them, the scheduler is FIFO
    metric = objectives or spec.search.metric
    mode = [spec.search.mode] * len(objectives) if objectives else spec.search.mode
    storage = optuna.storages.RDBStorage(optuna_storage_uri(spec))
    searchers = {s: ResumableOptunaSearch(
        space={k: optuna_distribution(d) for k, d in spec.space(s).items()},
        metric=metric, mode=mode, sampler=optuna_sampler(spec.search), storage=storage,
        study_name=f"{spec.name}.{s}.search") for s in spec.strategies}
    bases = {s: spec.base_config(s, seed=spec.search.seed) for s in spec.strategies}
    searcher = StrategySearch(searchers, bases, spec.search.samples_per_strategy,
                              spec.search.max_concurrent, metric, mode)
    scheduler = (StrategyScheduler(lambda: ASHAScheduler(
                     metric=spec.search.metric, mode=spec.search.mode, time_attr="training_iteration",
                     max_t=spec.epochs, grace_period=spec.scheduler.grace_period,
                     reduction_factor=spec.scheduler.reduction_factor),
                     list(spec.strategies), spec.search.metric, spec.search.mode)
                 if spec.scheduler.type == "asha" else FIFOScheduler())
    logger = MLflowTrialLogger(spec.tracking.uri, tracker.experiment_id, parents,
                               {"study": spec.name, "phase": "search"}, spec.epochs, VIEW)
    totals = dict.fromkeys(spec.strategies, spec.search.samples_per_strategy)
    # Tune queues as many pending trials as its ConcurrencyLimiter allows (else one, for a custom
    # searcher: trial actors would start one after another, each waiting for the last to import torch)
    cap = (spec.search.max_concurrent * len(spec.strategies) if spec.search.max_concurrent
           else trial_slots(spec))
    return tune.Tuner(
        trainable,
        tune_config=tune.TuneConfig(search_alg=searcher, scheduler=scheduler, max_concurrent_trials=cap,
                                    num_samples=sum(totals.values()), reuse_actors=True),
        run_config=tune.RunConfig(
            name=EXPERIMENT, storage_path=search_dir, verbose=0,
            failure_config=tune.FailureConfig(max_failures=spec.failure.max_failures),
            checkpoint_config=tune.CheckpointConfig(num_to_keep=2),
            callbacks=[logger, Progress(VIEW, totals, spec.search.metric, spec.epochs)]))


def _drop_orphan_runs(tracker: StudyTracker, trial_ids: set[str]) -> None:
    """Runs of trials that a hard kill lost before Tune saved them are not part of the study:
    delete them so MLflow holds exactly one run per trial of the restored experiment."""
    for run in tracker.find_runs(phase="search"):
        tid = run.data.tags.get("trial_id")
        if tid and tid not in trial_ids:
            tracker.client.delete_run(run.info.run_id)
            print(f"note: deleted MLflow run {run.info.run_id} of trial {tid}, lost in an interrupted "
                  "run and re-run after resuming", file=sys.stderr)


def print_summary(summary: dict, spec: StudySpec) -> None:
    print(f"\nsearch of study {spec.name!r} ({spec.search.metric}, {spec.search.mode}):")
    for strategy, part in summary["strategies"].items():
        best = part["best"]
        line = (f"  {strategy:14s} best {best['score']:.4f} (trial {best['trial_id']}, "
                f"{best['epochs']} epochs) {best['searched']}" if best else f"  {strategy:14s} no result")
        print(f"{line}  [{part['trials']} trials, {part['stopped_early']} stopped early, "
              f"{len(part['failed'])} failed]")
        for f in part["failed"]:
            print(f"      failed {f['trial_id']}: {f['error']}")
        for point in part.get("pareto_front", []):
            values = ", ".join(f"{k} {v:.4f}" for k, v in point["values"].items())
            print(f"      pareto front: trial {point['trial_id']}: {values} {point['searched']}")
