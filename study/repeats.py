"""The repeat phase: each strategy's best searched config re-run over paired seeds, to the full
epoch budget, evaluated on the test split the search never used.

Seed s gives every strategy the same split (fixed, or derived from s with ``vary_split``), initial
weights, data order and augmentation stream (see :mod:`trainables.train`). Pairs already FINISHED in
MLflow are not run again, so raising ``repeats.seeds`` later only runs the new seeds.
"""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import ray
from ray import tune

from trainables.data import ImageArrays, load_arrays

from .errors import StudyError, StudyInterrupted
from .launch import Progress, connect_ray, interrupted, study_dir, tune_storage
from .spec import StudySpec
from .tracking import MLflowTrialLogger, StudyTracker, check_tracking_uri, write_json
from .trainable import RepeatView, tune_trainable

PHASE = "repeat"


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


def seeds(spec: StudySpec) -> list[int]:
    return list(range(spec.repeats.first_seed, spec.repeats.first_seed + spec.repeats.seeds))


def repeat_runs(tracker: StudyTracker) -> tuple[dict[tuple[str, int], object], list]:
    """The study's repeat runs: (strategy, seed) -> FINISHED run, and the runs that are not."""
    done, unfinished = {}, []
    for run in tracker.find_runs(phase=PHASE):
        tags = run.data.tags
        if "trial_id" not in tags:
            continue
        if run.info.status == "FINISHED":
            done[(tags["strategy"], int(tags["seed"]))] = run
        else:
            unfinished.append(run)
    return done, unfinished


def run_repeats(spec: StudySpec, resume: bool = False, arrays: ImageArrays | None = None) -> None:
    """Run every (strategy, seed) pair not yet FINISHED in MLflow, as one Tune grid (FIFO)."""
    check_tracking_uri(spec.tracking.uri)
    tracker = StudyTracker(spec.tracking.uri, spec.experiment, spec.name)
    configs = best_configs(spec, tracker)
    plan_path = study_dir(spec) / "repeat_plan.json"
    plan = json.loads(plan_path.read_text()) if plan_path.is_file() else {"runs": 0}
    wanted = {(s, k) for s in spec.strategies for k in seeds(spec)}
    arrays = arrays if arrays is not None else load_arrays(spec.data)
    started = connect_ray(spec, arrays.images.nbytes)
    try:
        parents = {s: tracker.parent_run(s, PHASE) for s in spec.strategies}
        view = RepeatView(configs, spec.repeats.vary_split)
        trainable = tune.with_resources(
            tune.with_parameters(tune_trainable, data=arrays, view=view),
            {"cpu": spec.resources.cpu, "gpu": spec.resources.gpu})
        storage = tune_storage(spec, PHASE)
        name = plan.get("name")
        if resume and name and not plan.get("done") and tune.Tuner.can_restore(f"{storage}/{name}"):
            _fit(tune.Tuner.restore(f"{storage}/{name}", trainable, resume_unfinished=True,
                                    resume_errored=True), spec, f"{storage}/{name}", len(plan["pairs"]))
        done, unfinished = repeat_runs(tracker)
        missing = sorted(wanted - set(done))
        for run in unfinished:  # failed or interrupted without --resume: these pairs run again
            tracker.client.delete_run(run.info.run_id)
        if missing:
            plan = {"runs": plan["runs"] + 1, "name": f"repeat-{plan['runs'] + 1}", "done": False,
                    "pairs": missing}
            write_json(plan_path, plan)
            space = {"run": tune.grid_search([{"strategy": s, "seed": k} for s, k in missing])}
            logger = MLflowTrialLogger(spec.tracking.uri, tracker.experiment_id, parents,
                                       {"study": spec.name, "phase": PHASE}, spec.epochs, view)
            tuner = tune.Tuner(
                trainable, param_space=space,
                tune_config=tune.TuneConfig(num_samples=1, reuse_actors=True),
                run_config=tune.RunConfig(
                    name=plan["name"], storage_path=storage, verbose=0,
                    failure_config=tune.FailureConfig(max_failures=spec.failure.max_failures),
                    checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
                    callbacks=[logger, Progress(view, {PHASE: len(missing)}, _compared_metric(spec),
                                                spec.epochs, phase=PHASE)]))
            _fit(tuner, spec, f"{storage}/{plan['name']}", len(missing))
        write_json(plan_path, plan | {"done": True})
    finally:
        if started:
            ray.shutdown()
    for parent in parents.values():
        tracker.finish(parent)


def _compared_metric(spec: StudySpec) -> str:
    metric = spec.repeats.metrics[0]
    return f"best/{metric}" if spec.repeats.use == "best" else metric


def _fit(tuner: tune.Tuner, spec: StudySpec, path: str, expected: int) -> None:
    tuner.fit()
    if interrupted(path, expected):
        raise StudyInterrupted(f"the repeats of study {spec.name!r} were interrupted; their state is "
                               "saved: continue with --resume")


def repeat_table(spec: StudySpec, tracker: StudyTracker | None = None) -> pd.DataFrame:
    """Long table of the FINISHED repeat runs in MLflow: strategy, seed, run_id and every metric
    of ``repeats.metrics`` (final epoch, or the best-validation epoch with ``use: best``)."""
    tracker = tracker or StudyTracker(spec.tracking.uri, spec.experiment, spec.name)
    rows = []
    wanted = set(seeds(spec))
    for (strategy, seed), run in repeat_runs(tracker)[0].items():
        if strategy not in spec.strategies or seed not in wanted:
            continue
        row = {"strategy": strategy, "seed": seed, "run_id": run.info.run_id}
        for metric in spec.repeats.metrics:
            key = f"best/{metric}" if spec.repeats.use == "best" else metric
            row[metric] = run.data.metrics.get(key)
        rows.append(row)
    return pd.DataFrame(rows, columns=["strategy", "seed", "run_id", *spec.repeats.metrics])
