"""The search phase: every strategy gets the same Optuna (TPE) budget and its own ASHA brackets, all
strategies in one Ray Tune experiment (see :mod:`study.strategy_search`); every trial an MLflow
child run; resumable."""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import optuna
import pyarrow.fs
from ray import tune
from ray.tune.logger import JsonLoggerCallback
from ray.tune.schedulers import ASHAScheduler, FIFOScheduler

from trainables.data import ImageArrays, load_arrays

from .checkpoints import CheckpointRetention
from .errors import StudyError
from .layout import (
    check_writable,
    optuna_storage,
    optuna_study_name,
    search_experiment,
    search_plan_file,
    search_summary_file,
    tune_storage,
)
from .pareto import pareto_indices
from .preflight import check_data
from .progress import Progress
from .repeats import reset_repeats
from .results import describe_changes, recorded_spec, search_changes
from .runtime import PhaseRunner, experiment_results, finished, trial_slots
from .spec import StudySpec
from .ssl_stage import run_ssl_stages
from .strategy_search import (
    ResumableOptunaSearch,
    StrategyScheduler,
    StrategySearch,
    optuna_distribution,
    optuna_sampler,
)
from .tracking import MLflowTrialLogger, StudyTracker, check_tracking_uri, error_line, write_json
from .tune_adapter import SearchView

optuna.logging.set_verbosity(optuna.logging.WARNING)
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


def _reset(spec: StudySpec, tracker: StudyTracker, phase: str) -> None:
    """``--fresh``: drop one search's previous results, Optuna studies and MLflow runs (and
    :func:`run_search` the repeats of every search)."""
    fs, path = pyarrow.fs.FileSystem.from_uri(tune_storage(spec, phase))
    if fs.get_file_info(path).type != pyarrow.fs.FileType.NotFound:
        fs.delete_dir(path)
    storage = optuna_storage(spec)
    for s in spec.strategies:
        try:
            optuna.delete_study(study_name=optuna_study_name(spec, s, phase), storage=storage)
        except KeyError:
            pass
    for run in tracker.find_runs(phase=phase):
        tracker.client.delete_run(run.info.run_id)


def run_search(spec: StudySpec, resume: bool = False, fresh: bool = False,
               arrays: ImageArrays | None = None) -> dict[int, dict]:
    """Search every strategy of the spec once per search seed (``repeats.search_seeds``): each
    search is one Tune experiment (plus one per later budget raise) with its own Optuna studies and
    MLflow parent runs (:meth:`StudySpec.search_phase`), its sampler and trials seeded by its search
    seed. Returns (and writes) each search's summary, by search seed. Finished searches are
    summarised without starting Ray."""
    spec.check_searchable()
    check_tracking_uri(spec.tracking.uri)
    check_writable(spec)
    optuna_storage(spec)  # Optuna's storage opens (its tables created), before Ray starts
    if note := spec.search.random_search_note():
        print(note, file=sys.stderr)
    tracker = StudyTracker.of(spec)
    phases = {k: spec.search_phase(k) for k in spec.search_seeds}
    if fresh:
        reset_repeats(spec, tracker)
    recorded = recorded_spec(tracker) if resume else None  # the spec the study's search ran with
    experiments = {k: _plan(spec, tracker, resume, fresh, phase, recorded) for k, phase in phases.items()}
    arrays = arrays if arrays is not None else load_arrays(spec.data)
    check_data(spec, arrays)
    n = len(spec.strategies)
    todo = [(k, path, samples) for k, plan in experiments.items() for path, samples in plan
            if not finished(path, samples * n)]

    def prepare() -> dict[int, dict[str, str]]:
        return {k: _prepare_tracking(spec, arrays, tracker, k) for k in phases}

    if todo:
        with PhaseRunner(spec, arrays, VIEW, prepare=prepare) as runner:
            parents = runner.prepared
            run_ssl_stages(spec, arrays, tracker)
            for k, path, samples in todo:
                runner.fit(path, samples * n,
                           lambda trainable, k=k, path=path, samples=samples: search_tuner(
                               spec.with_search_seed(k), trainable, parents[k], tracker, path, samples, phases[k]),
                           resume=True, resume_errored=False,
                           interrupted_message=f"study {spec.name!r} was interrupted during its search; its "
                                               "state is saved: continue with --resume")
    else:
        print(f"the search of study {spec.name!r} is complete: summarising it from its records", file=sys.stderr)
        parents = prepare()
    return {k: _summarise_search(spec, k, phases[k], experiments[k], parents[k], tracker) for k in phases}


def _summarise_search(spec: StudySpec, search_seed: int, phase: str, experiments: list[tuple[str, int]],
                      parents: dict[str, str], tracker: StudyTracker) -> dict:
    """One search's summary from its Tune experiments' saved state: written to its file and to each
    strategy's parent run (which ends FINISHED); MLflow and Optuna reconciled after a hard kill."""
    results = [r for path, _ in experiments for r in experiment_results(path)]
    summary = {"study": spec.name, "search_seed": search_seed, "metric": spec.search.metric,
               "mode": spec.search.mode, "objectives": spec.search.objectives,
               "samples_per_strategy": spec.search.samples_per_strategy, "strategies": {}}
    for strategy, parent in parents.items():
        rows = [r for r in results if VIEW(r.config)[0] == strategy]
        tracker.settle(phase, strategy, [r.metrics for r in rows if r.metrics and r.error is None],
                       spec.epochs)
        part = summarise(rows, spec, strategy)
        summary["strategies"][strategy] = part
        for point in part.get("pareto_front", []):
            tracker.tag_trial(strategy, point["trial_id"], "pareto_front", "true", phase)
        tracker.finish(parent, part)
    _drop_orphan_runs(tracker, {r.metrics["trial_id"] for r in results if r.metrics}, phase)
    _reconcile_optuna(spec, results, phase)
    write_json(search_summary_file(spec, phase), summary)
    return summary


def _reconcile_optuna(spec: StudySpec, results: list, phase: str) -> None:
    """After a hard kill, Optuna's study may hold a trial as RUNNING whose end only Tune recorded,
    or one Tune never saved (it re-ran it). Once the search is over, the first is told its result
    (matched by its searched values) and the second is closed as FAIL, so the Optuna study holds
    every trial finished (optuna-dashboard; TPE in a later budget raise)."""
    keys = spec.search.objectives or [spec.search.metric]
    storage = optuna_storage(spec)
    for strategy in spec.strategies:
        try:
            study = optuna.load_study(study_name=optuna_study_name(spec, strategy, phase), storage=storage)
        except KeyError:
            continue
        running = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
        done = [r for r in results if VIEW(r.config)[0] == strategy and r.finished]
        for trial in running:
            match = next((r for r in done if searched_values(VIEW(r.config)[1], spec, strategy) == trial.params), None)
            values = [match.metrics.get(k) for k in keys] if match is not None and match.error is None else []
            if values and all(v is not None for v in values):
                study.tell(trial.number, values if spec.search.objectives else values[0])
            else:
                study.tell(trial.number, state=optuna.trial.TrialState.FAIL)
            print(f"note: Optuna trial {trial.number} of {strategy} was left running by an interrupted run: "
                  f"{'given its result' if values else 'closed as failed'}", file=sys.stderr)


def _plan(spec: StudySpec, tracker: StudyTracker, resume: bool, fresh: bool, phase: str,
          recorded: dict | None) -> list[tuple[str, int]]:
    """One search's Tune experiments and each one's samples per strategy: the first, and one more
    for each raise of ``search.samples_per_strategy`` on a resumed study (its Optuna studies carry
    on, so TPE learns from every earlier trial). Refuses a resume whose spec changed otherwise from
    ``recorded`` (the spec the study's search ran with, None when not resuming or not searched yet)."""
    first = search_experiment(spec, phase)
    plan_file = search_plan_file(spec, phase)
    if fresh:
        _reset(spec, tracker, phase)
    elif tune.Tuner.can_restore(first) and not resume:
        raise StudyError(f"{tune_storage(spec, phase)} already holds a search of study {spec.name!r}: pass "
                         "--resume to continue it or --fresh to start over")
    planned = json.loads(plan_file.read_text()) if plan_file.is_file() and not fresh else None
    if recorded is not None:
        before, now = recorded["search"]["samples_per_strategy"], spec.search.samples_per_strategy
        changes = {k: v for k, v in search_changes(spec, recorded).items() if k != "search.samples_per_strategy"}
        if now < before:
            changes["search.samples_per_strategy"] = (before, now)
        if changes:
            raise StudyError(f"--resume: the spec of study {spec.name!r} changed since its search started "
                             f"({describe_changes(changes)}); a resumed search keeps its spec (only a larger "
                             "search.samples_per_strategy and the repeats, compare, resources, ray and failure "
                             "settings may change): undo the change, start over with --fresh, or give the study "
                             "a new name")
        planned = planned or [{"name": first.rsplit("/", 1)[-1], "samples": before}]
    planned = planned or [{"name": first.rsplit("/", 1)[-1], "samples": spec.search.samples_per_strategy}]
    extra = spec.search.samples_per_strategy - sum(p["samples"] for p in planned)
    if extra > 0:
        planned.append({"name": f"{first.rsplit('/', 1)[-1]}-{len(planned) + 1}", "samples": extra})
        print(f"note: search.samples_per_strategy grew to {spec.search.samples_per_strategy}: {extra} more "
              "trial(s) per strategy, their samplers informed by every earlier trial", file=sys.stderr)
    write_json(plan_file, planned)
    return [(f"{tune_storage(spec, phase)}/{p['name']}", p["samples"]) for p in planned]


def _prepare_tracking(spec: StudySpec, arrays: ImageArrays, tracker: StudyTracker, search_seed: int) -> dict[str, str]:
    """Each strategy's parent run of the search with ``search_seed``, with the spec, the data
    manifest and the data set logged to it."""
    parents = {s: tracker.parent_run(s, spec.search_phase(search_seed), {"search_seed": str(search_seed)})
               for s in spec.strategies}
    for parent in parents.values():
        tracker.log_parent_inputs(parent, spec.model_dump(mode="json"), arrays.manifest,
                                  str(spec.data.path or arrays.manifest.get("source", "synthetic")))
    return parents


def search_callbacks(spec: StudySpec, parents: dict[str, str], tracker: StudyTracker, samples: int,
                     phase: str) -> tuple[MLflowTrialLogger, Progress]:
    """The search's Tune callbacks: its MLflow logger and its progress display."""
    logger = MLflowTrialLogger(spec.tracking.uri, tracker.experiment_id, parents,
                               {"study": spec.name, "phase": phase, "search_seed": str(spec.search.seed)},
                               spec.epochs, VIEW)
    return logger, Progress(VIEW, dict.fromkeys(spec.strategies, samples), spec.search.metric, spec.epochs,
                            mode=spec.search.mode)


def search_tuner(spec: StudySpec, trainable, parents: dict[str, str], tracker: StudyTracker, path: str,
                 samples: int, phase: str, callbacks: list | None = None) -> tune.Tuner:
    """The Tune experiment at ``path`` (storage/name) of the search ``phase`` (``spec`` carries its
    search seed) giving each strategy ``samples`` trials; ``callbacks`` default to
    :func:`search_callbacks`."""
    objectives = spec.search.objectives  # several: the searchers get them, the scheduler is FIFO
    metric = objectives or spec.search.metric
    mode = [spec.search.mode] * len(objectives) if objectives else spec.search.mode
    storage = optuna_storage(spec)
    searchers = {s: ResumableOptunaSearch(
        space={k: optuna_distribution(d) for k, d in spec.space(s).items()},
        metric=metric, mode=mode, sampler=optuna_sampler(spec.search), storage=storage,
        study_name=optuna_study_name(spec, s, phase)) for s in spec.strategies}
    bases = {s: spec.base_config(s, seed=spec.search.seed) for s in spec.strategies}
    searcher = StrategySearch(searchers, bases, samples, spec.search.max_concurrent, metric, mode)
    scheduler = (StrategyScheduler(lambda: ASHAScheduler(
                     metric=spec.search.metric, mode=spec.search.mode, time_attr="training_iteration",
                     max_t=spec.epochs, grace_period=spec.scheduler.grace_period,
                     reduction_factor=spec.scheduler.reduction_factor),
                     list(spec.strategies), spec.search.metric, spec.search.mode)
                 if spec.scheduler.type == "asha" else FIFOScheduler())
    # Tune queues as many pending trials as its ConcurrencyLimiter allows (else one, for a custom
    # searcher: trial actors would start one after another, each waiting for the last to import torch)
    cap = (spec.search.max_concurrent * len(spec.strategies) if spec.search.max_concurrent
           else trial_slots(spec))
    return tune.Tuner(
        trainable,
        tune_config=tune.TuneConfig(search_alg=searcher, scheduler=scheduler, max_concurrent_trials=cap,
                                    num_samples=samples * len(spec.strategies), reuse_actors=True),
        run_config=tune.RunConfig(
            name=path.rsplit("/", 1)[-1], storage_path=path.rsplit("/", 1)[0], verbose=0,
            failure_config=tune.FailureConfig(max_failures=spec.failure.max_failures),
            checkpoint_config=tune.CheckpointConfig(num_to_keep=None),  # CheckpointRetention deletes them
            callbacks=[*(callbacks or search_callbacks(spec, parents, tracker, samples, phase)), JsonLoggerCallback(),
                       CheckpointRetention()]))


def _drop_orphan_runs(tracker: StudyTracker, trial_ids: set[str], phase: str) -> None:
    """Runs of trials that a hard kill lost before Tune saved them are not part of the study:
    delete them so MLflow holds exactly one run per trial of the restored experiment."""
    for run in tracker.find_runs(phase=phase):
        tid = run.data.tags.get("trial_id")
        if tid and tid not in trial_ids:
            tracker.client.delete_run(run.info.run_id)
            print(f"note: deleted MLflow run {run.info.run_id} of trial {tid}, lost in an interrupted "
                  "run and re-run after resuming", file=sys.stderr)


def print_summary(summary: dict, spec: StudySpec) -> None:
    searched = f" with search seed {summary['search_seed']}" if len(spec.search_seeds) > 1 else ""
    print(f"\nsearch of study {spec.name!r}{searched} ({spec.search.metric}, {spec.search.mode}):")
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
