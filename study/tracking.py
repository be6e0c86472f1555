"""MLflow conventions: one experiment per study, a parent run per strategy and phase, one child
run per trial written from the driver by a Tune logger callback.

Runs are found again by their tags (study, phase, strategy, trial_id), so a resumed study
continues its runs instead of opening second ones.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import math
import os
import re
import shutil
import socket
import tempfile
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pyarrow.fs
from mlflow import MlflowClient
from mlflow.entities import DatasetInput, InputTag, Metric, RunTag
from ray.tune.logger import LoggerCallback

from trainables.predictions import PREDICTIONS_FILE

from .errors import TrackingError
from .mlflow_writer import (
    PARENT,
    EpochResult,
    MLflowWriter,
    RunArtifact,
    RunEnd,
    RunStart,
    describe,
    end_tags,
)
from .spec import StudySpec

os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")  # a line per run end is noise


def check_tracking_uri(uri: str, timeout: float = 5.0) -> None:
    """Fail fast with one message when the tracking store is unreachable or unusable."""
    parsed = urlparse(uri)
    if parsed.scheme in ("http", "https"):
        host, port = parsed.hostname, parsed.port or (443 if parsed.scheme == "https" else 80)
        try:
            socket.create_connection((host, port), timeout=timeout).close()
        except OSError as exc:
            raise TrackingError(f"tracking.uri: cannot reach MLflow at {uri} ({exc})") from None
        try:
            MlflowClient(uri).search_experiments(max_results=1)
        except Exception as exc:  # noqa: BLE001 - any failure here means the server is unusable
            raise TrackingError(f"tracking.uri: {uri} does not answer as an MLflow server "
                                f"({type(exc).__name__}: {str(exc).splitlines()[0][:200]})") from None
    elif parsed.scheme == "sqlite":
        folder = Path(uri.removeprefix("sqlite:///")).resolve().parent
        if not folder.is_dir() or not os.access(folder, os.W_OK):
            raise TrackingError(f"tracking.uri: folder {folder} of {uri} does not exist or is not writable")
    elif parsed.scheme not in ("postgresql", "mysql", "mssql", "databricks", "file"):
        raise TrackingError(f"tracking.uri: unsupported scheme in {uri!r} (use sqlite:///, http://, "
                            "postgresql://, mysql://)")


@contextlib.contextmanager
def sqlite_init_lock(uri: str) -> Iterator[None]:
    """Hold an exclusive lock beside a SQLite database file (``<db>.init-lock``) for the block, so
    two processes never create its tables at once (alembic fails on the second); other URIs need
    none."""
    if not uri.startswith("sqlite:///"):
        yield
        return
    path = Path(uri.removeprefix("sqlite:///")).resolve()
    with open(path.with_name(path.name + ".init-lock"), "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


_NOT_IN_PARAM_KEY = re.compile(r"[^\w./\- ]")


def flat_params(config: dict, prefix: str = "") -> dict[str, str]:
    """Nested config -> flat ``{"data.load_size": "36", "lr": "0.001"}`` for MLflow params (unset
    values, None, are left out; characters MLflow refuses in a key, such as the brackets of a table
    column named in ``data.table.filter``, become ``_``)."""
    out: dict[str, str] = {}
    for k, v in config.items():
        key = _NOT_IN_PARAM_KEY.sub("_", f"{prefix}{k}")
        if v is None:
            continue
        if isinstance(v, dict):
            out |= flat_params(v, f"{key}.")
        else:
            out[key] = json.dumps(v) if isinstance(v, list | tuple) else str(v)
    return out


def numeric_metrics(result: dict) -> dict[str, float]:
    """The trial's own metrics (``split/name`` and ``epoch``), without Tune's bookkeeping keys."""
    return {k: float(v) for k, v in result.items()
            if (("/" in k and not k.startswith("config/")) or k == "epoch")
            and isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)}


class StudyTracker:
    """Experiment and parent runs of one study, on one tracking URI."""

    def __init__(self, uri: str, experiment: str, study: str) -> None:
        self.uri, self.study = uri, study
        with sqlite_init_lock(uri):  # the client and its first call create a new database's tables
            self.client = MlflowClient(uri)
            found = self.client.get_experiment_by_name(experiment)
            if found is not None and found.lifecycle_stage == "deleted":
                self.client.restore_experiment(found.experiment_id)
            self.experiment_id = (found.experiment_id if found is not None
                                  else self.client.create_experiment(experiment))

    @classmethod
    def of(cls, spec: StudySpec) -> StudyTracker:
        """The tracker of a spec's study: its tracking URI and experiment."""
        return cls(spec.tracking.uri, spec.experiment, spec.name)

    def find_runs(self, **tags: str) -> list:
        query = " and ".join(f"tags.{k} = '{v}'" for k, v in {"study": self.study, **tags}.items())
        return self.client.search_runs([self.experiment_id], query, max_results=10000)

    def settle(self, phase: str, strategy: str, last_results: list[dict], epochs: int) -> None:
        """Close the runs of trials that Tune records as finished but a hard kill left RUNNING in
        MLflow (the trial ended just before the kill, its end never logged), with the last result."""
        last = {r["trial_id"]: r for r in last_results if "trial_id" in r}
        for run in self.find_runs(phase=phase, strategy=strategy):
            result = last.get(run.data.tags.get("trial_id"))
            if result is None or run.info.status != "RUNNING":
                continue
            epoch = int(result.get("epoch", 0))
            if run.data.metrics.get("epoch", 0) < epoch:
                log_epoch(self.client, run.info.run_id, result, epoch)
            for k, v in end_tags(epoch, epochs, failed=False).items():
                self.client.set_tag(run.info.run_id, k, v)
            self.client.set_terminated(run.info.run_id, "FINISHED")

    def parent_run(self, strategy: str, phase: str, tags: dict[str, str] | None = None) -> str:
        """The run id of the strategy's parent run for this phase, created once (with ``tags``)."""
        runs = [r for r in self.find_runs(strategy=strategy, phase=phase) if PARENT not in r.data.tags]
        if runs:
            return runs[0].info.run_id
        run = self.client.create_run(self.experiment_id, run_name=f"{strategy} ({phase})", tags={
            "study": self.study, "strategy": strategy, "phase": phase, "role": "parent", **(tags or {})})
        return run.info.run_id

    def log_parent_inputs(self, run_id: str, spec_dict: dict, manifest: dict, source: str) -> None:
        """Spec and data manifest as artifacts, the data set as an MLflow input."""
        from mlflow.data.dataset_source_registry import _dataset_source_registry, resolve_dataset_source
        from mlflow.data.meta_dataset import MetaDataset

        self.client.log_dict(run_id, spec_dict, "spec.json")
        self.client.log_dict(run_id, manifest, "data_manifest.json")
        local = [s for s in _dataset_source_registry.sources if s._get_source_type() == "local"][:1]
        dataset = MetaDataset(resolve_dataset_source(source, candidate_sources=local or None),
                              name=spec_dict["data"]["source"],
                              digest=str(manifest.get("key", ""))[:20] or None)
        self.client.log_inputs(run_id, [DatasetInput(dataset._to_mlflow_entity(),
                                                     [InputTag("mlflow.data.context", "train")])])

    def tag_trial(self, strategy: str, trial_id: str, key: str, value: str, phase: str = "search") -> None:
        """Set a tag on the run of one trial of a search (``phase``)."""
        for run in self.find_runs(strategy=strategy, phase=phase, trial_id=trial_id):
            self.client.set_tag(run.info.run_id, key, value)

    def finish(self, run_id: str, summary: dict | None = None, failed: bool = False) -> None:
        if summary is not None:
            self.client.log_dict(run_id, summary, "summary.json")
        self.client.set_terminated(run_id, "FAILED" if failed else "FINISHED")


class MLflowTrialLogger(LoggerCallback):
    """Writes one child run per Tune trial from the driver: flat params (of the validated trial
    config the phase's ``view`` gives), per-epoch metrics with step = epoch, tags, FINISHED/FAILED
    status, under the parent run of the trial's strategy. The callbacks only queue; a background
    :class:`~study.mlflow_writer.MLflowWriter` writes, batched, and is flushed at each of Tune's
    experiment snapshots and at the experiment's end (see :mod:`study.mlflow_writer`).
    Picklable (Tune saves it with the experiment); the writer is created in ``setup``. A restored
    trial finds its run again by ``trial_id`` and skips epochs it already logged. With ``predictions``
    the per-sample test predictions a trial writes beside a checkpoint become the run's
    ``predictions.parquet`` artifact (read from Tune's storage, wherever the trial ran)."""

    predictions = False  # a logger pickled before predictions were stored (an interrupted grid) has none

    def __init__(self, uri: str, experiment_id: str, parents: dict[str, str], tags: dict[str, str],
                 epochs: int, view, predictions: bool = False) -> None:
        self.uri, self.experiment_id, self.parents = uri, experiment_id, parents
        self.tags, self.epochs, self.view, self.predictions = tags, epochs, view, predictions
        self.writer: MLflowWriter | None = None
        self._started: set[str] = set()  # trials whose run start is queued

    def setup(self, *args, **kwargs) -> None:
        self.writer = MLflowWriter(self.uri, self.experiment_id)
        self._started = set()

    def __getstate__(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k not in ("writer", "_started")}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update({**state, "writer": None, "_started": set()})

    def flush(self) -> None:
        """Wait until everything the trials reported so far is in MLflow."""
        if self.writer is not None:
            self.writer.flush()

    def get_state(self) -> None:
        """Called as Tune saves its experiment snapshot: MLflow first holds every result the
        snapshot records, so that after a hard kill no epoch is missing from a resumed trial's run."""
        self.flush()

    def on_experiment_end(self, trials: list, **info) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None

    def _start(self, trial) -> None:
        if trial.trial_id in self._started:
            return
        self._started.add(trial.trial_id)
        strategy, config = self.view(trial.config)
        query = (f"tags.trial_id = '{trial.trial_id}' and tags.phase = '{self.tags['phase']}' "
                 f"and tags.strategy = '{strategy}' and tags.study = '{self.tags['study']}'")
        extra = self.view.run_tags(trial.config) if hasattr(self.view, "run_tags") else {}
        tags = {**self.tags, "strategy": strategy, PARENT: self.parents[strategy], "trial_id": trial.trial_id,
                "seed": str(config.get("seed", 0)), **extra}
        name = self.view.run_name(trial.config) if hasattr(self.view, "run_name") else f"{strategy}-{trial.trial_id}"
        self.writer.put(RunStart(trial.trial_id, query, name, tags, flat_params(config)))

    def log_trial_start(self, trial) -> None:
        self._start(trial)

    def log_trial_result(self, iteration: int, trial, result: dict) -> None:
        self._start(trial)
        tags = {"ray_node": str(result["node_id"])} if "node_id" in result else {}
        matrices = {k: v for k, v in result.items() if k.endswith("confusion_matrix") and isinstance(v, list)}
        self.writer.put(EpochResult(trial.trial_id, int(result.get("epoch", iteration)), numeric_metrics(result),
                                    tags, matrices, float(result.get("reported_at", time.time()))))

    def on_checkpoint(self, iteration: int, trials: list, trial, checkpoint, **info) -> None:
        """Store the predictions file of a tested epoch in the trial's run: copied here from Tune's
        storage (a later checkpoint may delete it), stored by the writer. A failure is the run's
        alone: a warning and the run's ``predictions_error`` tag (the compare stage then names the
        run as having no predictions), not a failed experiment."""
        if not self.predictions:
            return
        source = f"{checkpoint.path}/{PREDICTIONS_FILE}"
        folder = Path(tempfile.mkdtemp(prefix="cxr-predictions-"))
        try:
            if checkpoint.filesystem.get_file_info(source).type == pyarrow.fs.FileType.NotFound:
                shutil.rmtree(folder)
                return
            pyarrow.fs.copy_files(source, str(folder / PREDICTIONS_FILE), source_filesystem=checkpoint.filesystem,
                                  destination_filesystem=pyarrow.fs.LocalFileSystem())
        except Exception as exc:  # noqa: BLE001 - unreadable: the run goes without predictions
            shutil.rmtree(folder, ignore_errors=True)
            warnings.warn(f"trial {trial.trial_id}: its predictions were not stored in MLflow ({describe(exc)})",
                          stacklevel=1)
            return
        self._start(trial)
        self.writer.put(RunArtifact(trial.trial_id, folder / PREDICTIONS_FILE, folder, "predictions_error"))

    def log_trial_end(self, trial, failed: bool = False) -> None:
        self._start(trial)
        error = None
        if failed and trial.error_file and Path(trial.error_file).is_file():
            error = error_line(Path(trial.error_file).read_text())
        self.writer.put(RunEnd(trial.trial_id, self.epochs, failed, error))


def log_epoch(client: MlflowClient, run_id: str, result: dict, epoch: int,
              tags: list[RunTag] | None = None) -> None:
    """One epoch's numeric metrics (step = epoch) and ``tags``, in batches MLflow accepts."""
    now = int(time.time() * 1000)
    metrics = [Metric(k, v, now, epoch) for k, v in numeric_metrics(result).items()]
    for i in range(0, len(metrics), 200):
        client.log_batch(run_id, metrics=metrics[i:i + 200], tags=(tags or []) if i == 0 else [])


def error_line(text: str) -> str:
    """The last non-empty line of a traceback: the exception and its message."""
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    return lines[-1][:500] if lines else ""


def write_json(path: Path, payload: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=path.parent, delete=False, suffix=".tmp") as f:
        json.dump(payload, f, indent=2, default=str)
    os.replace(f.name, path)
