"""The repeat phase: each strategy's best searched config re-run over paired seeds, to the full
epoch budget, evaluated on the test split the search never used; with several search seeds, the
best config of each search is repeated over the same seeds.

Seed s gives every strategy the same split (fixed, or derived from s with ``vary_split``), initial
weights, data order and augmentation stream (see :mod:`trainables.train`). Runs already FINISHED in
MLflow are not run again, so raising ``repeats.seeds`` (or adding search seeds) later only runs the
new ones.
"""
from __future__ import annotations

import json
import sys

import pyarrow.fs
from ray import tune
from ray.tune.logger import JsonLoggerCallback

from trainables.data import ImageArrays, load_arrays
from trainables.metric_names import lower_is_better

from .checkpoints import CheckpointRetention
from .layout import check_writable, repeat_plan_file, tune_storage
from .preflight import check_data
from .progress import Progress
from .results import REPEAT, repeat_runs, search_bests
from .runtime import PhaseRunner
from .spec import StudySpec
from .tracking import MLflowTrialLogger, StudyTracker, check_tracking_uri, write_json
from .tune_adapter import RepeatView


def run_repeats(spec: StudySpec, resume: bool = False, arrays: ImageArrays | None = None) -> None:
    """Run every (strategy, search seed, seed) triple not yet FINISHED in MLflow, as one Tune grid (FIFO); with
    ``resume``, first finish the grid an interrupted run left. Ray starts only when there is work."""
    check_tracking_uri(spec.tracking.uri)
    check_writable(spec)
    tracker = StudyTracker.of(spec)
    configs = {key: best["config"] for key, best in search_bests(spec, tracker).items()}
    view = RepeatView(configs, spec.repeats.vary_split, spec.repeats.first_seed, primary=spec.search.seed)
    plan_path, storage = repeat_plan_file(spec), tune_storage(spec, REPEAT)
    plan = json.loads(plan_path.read_text()) if plan_path.is_file() else {"runs": 0}
    interrupted_message = (f"the repeats of study {spec.name!r} were interrupted; their state is saved: "
                           "continue with --resume")
    parents = {s: tracker.parent_run(s, REPEAT) for s in spec.strategies}
    interrupted_grid = f"{storage}/{plan.get('name')}"
    restore = bool(resume and plan.get("name") and not plan.get("done") and tune.Tuner.can_restore(interrupted_grid))
    if restore or _missing(spec, tracker):
        arrays = arrays if arrays is not None else load_arrays(spec.data)
        check_data(spec, arrays)
        with PhaseRunner(spec, arrays, view) as runner:
            if restore:  # finish the interrupted grid first
                runner.fit(interrupted_grid, len(plan["pairs"]), None, resume=True, resume_errored=True,
                           interrupted_message=interrupted_message)
            if missing := _missing(spec, tracker, delete_unfinished=True):
                plan = {"runs": plan["runs"] + 1, "name": f"repeat-{plan['runs'] + 1}", "done": False,
                        "pairs": missing}
                write_json(plan_path, plan)
                runner.fit(f"{storage}/{plan['name']}", len(missing),
                           lambda trainable: _grid(spec, trainable, plan["name"], missing, view, tracker, parents),
                           resume=False, resume_errored=False, interrupted_message=interrupted_message)
    else:
        print(f"the repeats of study {spec.name!r} are complete: nothing to run", file=sys.stderr)
    write_json(plan_path, plan | {"done": True})
    for parent in parents.values():
        tracker.finish(parent)


def reset_repeats(spec: StudySpec, tracker: StudyTracker) -> None:
    """Drop the study's repeat runs, grids and plan: they repeated the configs of a search that
    ``--fresh`` replaces, so none of them may pair with the new search's."""
    for run in tracker.find_runs(phase=REPEAT):
        tracker.client.delete_run(run.info.run_id)
    fs, path = pyarrow.fs.FileSystem.from_uri(tune_storage(spec, REPEAT))
    if fs.get_file_info(path).type != pyarrow.fs.FileType.NotFound:
        fs.delete_dir(path)
    repeat_plan_file(spec).unlink(missing_ok=True)


def _missing(spec: StudySpec, tracker: StudyTracker, delete_unfinished: bool = False) -> list[tuple[str, int, int]]:
    """The (strategy, search seed, seed) triples without a FINISHED repeat run; with
    ``delete_unfinished`` the runs that failed or were interrupted without --resume are deleted
    (they run again)."""
    done, unfinished = repeat_runs(spec, tracker)
    if delete_unfinished:
        for run in unfinished:
            tracker.client.delete_run(run.info.run_id)
    wanted = {(s, k, seed) for s in spec.strategies for k in spec.search_seeds for seed in spec.repeat_seeds}
    return sorted(wanted - set(done))


def _grid(spec: StudySpec, trainable, name: str, pairs: list, view: RepeatView, tracker: StudyTracker,
          parents: dict[str, str]) -> tune.Tuner:
    """A Tune grid over the (strategy, search seed, seed) triples, every run logged to MLflow under
    its parent."""
    logger = MLflowTrialLogger(spec.tracking.uri, tracker.experiment_id, parents,
                               {"study": spec.name, "phase": REPEAT}, spec.epochs, view, predictions=True)
    compared = spec.repeats.metrics[0]
    progress = Progress(view, {REPEAT: len(pairs)}, f"best/{compared}" if spec.repeats.use == "best"
                        else compared, spec.epochs, phase=REPEAT,
                        mode="min" if lower_is_better(compared) else "max")
    return tune.Tuner(
        trainable, param_space=view.param_space(pairs),
        tune_config=tune.TuneConfig(num_samples=1, reuse_actors=True),
        run_config=tune.RunConfig(
            name=name, storage_path=tune_storage(spec, REPEAT), verbose=0,
            failure_config=tune.FailureConfig(max_failures=spec.failure.max_failures),
            checkpoint_config=tune.CheckpointConfig(num_to_keep=None),  # CheckpointRetention deletes them
            callbacks=[logger, progress, JsonLoggerCallback(), CheckpointRetention()]))
