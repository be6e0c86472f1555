"""The background writer of trials' MLflow child runs: the Tune callback (:class:`study.tracking.
MLflowTrialLogger`) only queues what a trial did, and one thread writes it, so a slow tracking
store never stalls the driver's event loop, which hundreds of trials report to.

- **Batched:** the thread takes everything queued at once and writes each run's new epochs in one
  ``log_batch`` (1,000 metrics a call, MLflow's limit), with the run's latest confusion matrices
  once; a backlog therefore shrinks the number of calls instead of growing the lag.
- **Bounded:** the queue holds at most ``capacity`` items (and the batch being written at most
  as many again, plus one). When it is full, queuing waits (the
  driver then stops taking results and the trials wait in ``tune.report``): back-pressure, nothing
  dropped, memory bounded.
- **Nothing lost:** :meth:`flush` returns once everything queued is written. The logger flushes at
  each of Tune's experiment snapshots (so a snapshot never claims a result MLflow lacks: after a
  hard kill, every result past it is reported again by the restored trial and logged then), at the
  experiment's end, and when the process exits (Ctrl+C included).
- **Exactly once:** a trial's run is found again by its tags and epochs it already holds are
  skipped, so a restored trial never writes an epoch twice.
- **Patient with a busy SQLite file:** a write that finds the database locked (``mlflow ui`` or
  optuna-dashboard reading it) is tried again for up to ``LOCKED_RETRY_S``; MLflow's HTTP client
  retries a tracking server's transient errors itself.
- **Fails loudly:** when a write fails otherwise, every run the writer opened and did not end is ended FAILED
  with the error, and the next call from the driver raises it (Tune then stops the experiment).
"""
from __future__ import annotations

import atexit
import contextlib
import queue
import shutil
import threading
import time
import warnings
from collections import deque
from dataclasses import dataclass
from pathlib import Path

from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunTag

PARENT = "mlflow.parentRunId"
BATCH_METRICS = 1000  # MLflow's limit of metrics in one log_batch (and of entities in all)
BATCH_PARAMS = 100  # MLflow's limit of params in one log_batch
LOCKED_RETRY_S = 60.0  # how long a write waits for a locked SQLite database
LAG_SAMPLES = 100_000  # the report-to-row lags kept for :meth:`MLflowWriter.lags` (most recent)


@dataclass
class RunStart:
    """Open (or find again) the run of a trial: created with these tags and params when new."""

    trial_id: str
    query: str  # the MLflow filter that finds the trial's run again
    name: str
    tags: dict[str, str]
    params: dict[str, str]


@dataclass
class EpochResult:
    """One reported epoch: its numeric metrics (step = ``epoch``), tags, confusion matrices, and
    when the trial reported it (epoch seconds, the metrics' timestamp)."""

    trial_id: str
    epoch: int
    metrics: dict[str, float]
    tags: dict[str, str]
    matrices: dict[str, list]
    reported_at: float


@dataclass
class RunArtifact:
    """A local file to store in the trial's run, then delete with its ``folder``; a failure only
    warns and tags the run (``error_tag``)."""

    trial_id: str
    path: Path
    folder: Path
    error_tag: str


@dataclass
class RunEnd:
    """End the trial's run FINISHED (or FAILED, with its ``error``), tagged by :func:`end_tags`
    from the last epoch it holds and the trial's budget of ``epochs``."""

    trial_id: str
    epochs: int
    failed: bool = False
    error: str | None = None


def end_tags(epochs_run: int, epochs: int, failed: bool) -> dict[str, str]:
    """The tags a trial's run gets when it ends."""
    return {"stopped_early": str(not failed and epochs_run < epochs).lower(), "epochs_run": str(epochs_run)}


def describe(exc: BaseException) -> str:
    """``Type: first line of the message`` (at most 300 characters of it)."""
    return f"{type(exc).__name__}: {str(exc).splitlines()[0][:300] if str(exc) else ''}"


_STOP = object()


class MLflowWriter:
    """One background thread writing trials' child runs to the tracking store at ``uri`` in
    ``experiment_id``. Queue items with :meth:`put`; :meth:`flush` waits for them; :meth:`close`
    flushes and ends the thread. Raises the writer's error (the first failed write) from any call
    after it."""

    def __init__(self, uri: str, experiment_id: str, capacity: int = 10_000) -> None:
        self.client = MlflowClient(uri)
        self.experiment_id = experiment_id
        self._queue: queue.Queue = queue.Queue(maxsize=capacity)
        self._runs: dict[str, str] = {}  # trial id -> run id
        self._last_epoch: dict[str, int] = {}  # trial id -> last epoch the run holds
        self._open: set[str] = set()  # run ids opened and not ended
        self._error: BaseException | None = None
        self._lags: deque[tuple[float, float]] = deque(maxlen=LAG_SAMPLES)  # (written at, lag)
        self.written = 0  # epochs written
        self.calls = 0  # log_batch calls made for epochs
        self._thread = threading.Thread(target=self._loop, name="mlflow-writer", daemon=True)
        self._thread.start()
        atexit.register(self._at_exit)

    # -- the driver's side ---------------------------------------------------------------------
    def put(self, item: RunStart | EpochResult | RunArtifact | RunEnd) -> None:
        """Queue one item; waits while the queue is full (back-pressure)."""
        while True:
            self._raise()
            try:
                self._queue.put(item, timeout=0.5)
                return
            except queue.Full:
                continue

    def flush(self) -> None:
        """Wait until everything queued is written; raise the writer's error if a write failed."""
        self._raise()
        self._queue.join()
        self._raise()

    def close(self) -> None:
        """Flush, then end the thread."""
        atexit.unregister(self._at_exit)
        if self._thread.is_alive():
            self._queue.join()
            self._queue.put(_STOP)
            self._thread.join()
        self._raise()

    @property
    def backlog(self) -> int:
        """Items queued and not written yet."""
        return self._queue.unfinished_tasks

    def lags(self, since: float = 0.0) -> list[float]:
        """Seconds from a trial's report to its epoch's row in MLflow, for the epochs written after
        ``since`` (epoch seconds) among the most recent ``LAG_SAMPLES``."""
        return [lag for written, lag in list(self._lags) if written >= since]

    def _raise(self) -> None:
        if self._error is not None:
            raise RuntimeError(f"the MLflow logger failed: {describe(self._error)}") from self._error

    def _at_exit(self) -> None:
        """At interpreter exit (Ctrl+C included) write what is still queued."""
        if self._thread.is_alive() and self._error is None:
            self._queue.join()

    # -- the writer thread ---------------------------------------------------------------------
    def _loop(self) -> None:
        while True:
            items = [self._queue.get()]
            while len(items) < 10 * BATCH_METRICS:
                try:
                    items.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            try:
                if self._error is None:
                    self._write([i for i in items if i is not _STOP])
            except BaseException as exc:  # noqa: BLE001 - any failure ends the open runs and is raised on the driver
                self._error = exc
                self._fail_open_runs(exc)
            finally:
                for _ in items:
                    self._queue.task_done()
            if any(i is _STOP for i in items):
                return

    def _write(self, items: list) -> None:
        """Write ``items`` in order, each run's consecutive epochs in as few calls as possible."""
        pending: dict[str, list[EpochResult]] = {}
        for item in items:
            if isinstance(item, RunStart):
                self._start(item)
            elif isinstance(item, EpochResult):
                if item.epoch > self._last_epoch.get(item.trial_id, 0):  # else logged before a restore
                    self._last_epoch[item.trial_id] = item.epoch
                    pending.setdefault(item.trial_id, []).append(item)
            else:
                self._epochs(item.trial_id, pending.pop(item.trial_id, []))
                if isinstance(item, RunArtifact):
                    self._artifact(item)
                else:
                    self._end(item)
        for trial_id, results in pending.items():
            self._epochs(trial_id, results)

    def _start(self, item: RunStart) -> None:
        if item.trial_id in self._runs:  # started again in this experiment (after a failure)
            self._open.add(self._runs[item.trial_id])
            return
        found = self._call(self.client.search_runs, [self.experiment_id], item.query, max_results=1)
        if found:
            run_id = found[0].info.run_id
            self._call(self.client.update_run, run_id, status="RUNNING")
            self._last_epoch[item.trial_id] = int(found[0].data.metrics.get("epoch", 0))
        else:
            run_id = self._call(self.client.create_run, self.experiment_id, run_name=item.name, tags=item.tags).info.run_id
            params = [Param(k, v[:6000]) for k, v in item.params.items()]
            for i in range(0, len(params), BATCH_PARAMS):
                self._call(self.client.log_batch, run_id, params=params[i:i + BATCH_PARAMS])
        self._runs[item.trial_id] = run_id
        self._open.add(run_id)

    def _epochs(self, trial_id: str, results: list[EpochResult]) -> None:
        if not results:
            return
        run_id = self._runs[trial_id]
        metrics = [Metric(k, v, int(r.reported_at * 1000), r.epoch) for r in results for k, v in r.metrics.items()]
        tags = [RunTag(k, v) for k, v in results[-1].tags.items()]
        for i in range(0, max(len(metrics), 1), BATCH_METRICS - len(tags)):
            self._call(self.client.log_batch, run_id, metrics=metrics[i:i + BATCH_METRICS - len(tags)], tags=tags if i == 0 else [])
            self.calls += 1
        matrices = next((r.matrices for r in reversed(results) if r.matrices), None)
        if matrices:
            self._call(self.client.log_dict, run_id, matrices, "confusion_matrices.json")
        now = time.time()
        self._lags.extend((now, now - r.reported_at) for r in results)
        self.written += len(results)

    def _artifact(self, item: RunArtifact) -> None:
        run_id = self._runs[item.trial_id]
        try:
            self._call(self.client.log_artifact, run_id, str(item.path))
        except Exception as exc:  # noqa: BLE001 - any failure to store it leaves the run without the file
            why = describe(exc)
            warnings.warn(f"trial {item.trial_id}: its {item.path.name} was not stored in MLflow ({why})",
                          stacklevel=1)
            with contextlib.suppress(Exception):
                self.client.set_tag(run_id, item.error_tag, why)
        finally:
            shutil.rmtree(item.folder, ignore_errors=True)

    def _end(self, item: RunEnd) -> None:
        run_id = self._runs[item.trial_id]
        tags = end_tags(self._last_epoch.get(item.trial_id, 0), item.epochs, item.failed)
        if item.error:
            tags["error"] = item.error
        self._call(self.client.log_batch, run_id, tags=[RunTag(k, v) for k, v in tags.items()])
        self._call(self.client.set_terminated, run_id, "FAILED" if item.failed else "FINISHED")
        self._open.discard(run_id)

    def _call(self, method, *args, **kwargs):
        """``method(*args, **kwargs)``, tried again while the SQLite database is locked."""
        deadline = time.monotonic() + LOCKED_RETRY_S
        pause = 0.05
        while True:
            try:
                return method(*args, **kwargs)
            except Exception as exc:
                if "database is locked" not in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(pause)
                pause = min(2 * pause, 1.0)

    def _fail_open_runs(self, exc: BaseException) -> None:
        why = f"the MLflow logger failed: {describe(exc)}"
        for run_id in list(self._open):
            try:
                self.client.set_tag(run_id, "error", why)
                self.client.set_terminated(run_id, "FAILED")
            except Exception:  # noqa: BLE001 - the store itself may be what failed
                pass
        self._open.clear()
