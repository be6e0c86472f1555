"""The background writer of trials' MLflow child runs: the Tune callback (:class:`study.tracking.
MLflowTrialLogger`) only queues what a trial did, and a process of its own writes it, so neither a
slow tracking store nor MLflow's own CPU work (its SQLAlchemy store builds an ORM object per metric:
~15 ms of CPU for one epoch's ``log_batch`` on SQLite) takes time from the driver's event loop,
which hundreds of trials report to. A thread would not do: it would hold the driver's GIL for that
CPU work (measured in ``benchmarks/driver_scale.py``: the driver then took 18 results/s of 64
trials instead of 54).

- **Batched:** the writer takes everything queued at once and writes each run's new epochs in one
  ``log_batch`` (1,000 metrics a call, MLflow's limit); a backlog therefore shrinks the number of
  calls instead of growing the lag. The confusion matrices of a run's last epoch are stored once,
  as it ends (an artifact per epoch doubled the calls).
- **Concurrent on a tracking server:** different runs' calls go out ``SERVER_CALLS`` at a time (each
  run's own in order), so the server's work, its database's and the network's round trip overlap
  instead of adding up (``benchmarks/writer_alone.py``: a two-worker ``mlflow server`` on
  PostgreSQL took 58 epochs/s one call at a time, 103 four at a time). A SQLite file takes one
  writer at a time: written in order.
- **Bounded:** the driver's queue holds at most ``capacity`` items, and at most as many again are
  sent to the writer and not yet written. When both are full, queuing waits (the
  driver then stops taking results and the trials wait in ``tune.report``): back-pressure, nothing
  dropped, memory bounded.
- **Nothing lost:** :meth:`MLflowWriter.flush` returns once everything queued is written. The logger
  flushes at each of Tune's experiment snapshots (so a snapshot never claims a result MLflow lacks:
  after a hard kill, every result past it is reported again by the restored trial and logged then),
  at the experiment's end, and when the driver exits (Ctrl+C included).
- **Exactly once:** a trial's run is found again by its tags and epochs it already holds are
  skipped, so a restored trial never writes an epoch twice. The writer process ends the moment the
  driver is gone, so a killed driver's writer never races the resumed study's.
- **Patient with a busy SQLite file:** a write that finds the database locked (``mlflow ui`` or
  optuna-dashboard reading it) is tried again for up to ``LOCKED_RETRY_S``; MLflow's HTTP client
  retries a tracking server's transient errors itself.
- **Fails loudly:** when a write fails otherwise, every run the writer opened and did not end is
  ended FAILED with the error, and the driver's next call raises it (Tune then stops the
  experiment); a warning the writer gives (a predictions file it could not store) is given again on
  the driver at its next call. A writer process that dies is an error too.
"""
from __future__ import annotations

import atexit
import contextlib
import json
import os
import queue
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import warnings
from collections import deque
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path

from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunTag

PARENT = "mlflow.parentRunId"
BATCH_METRICS = 1000  # MLflow's limit of metrics in one log_batch (and of entities in all)
BATCH_PARAMS = 100  # MLflow's limit of params in one log_batch
LOCKED_RETRY_S = 60.0  # how long a write waits for a locked SQLite database
LAG_SAMPLES = 20_000  # the report-to-row lags kept for :meth:`MLflowWriter.lags` (most recent)
POLL_S = 0.5  # how often the driver, waiting, looks for the writer's error
SERVER_CALLS = 4  # a tracking server's calls in flight at once (different runs)


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


_STOP = None  # the item that ends the writer
_CHILD = "import sys, json; sys.path[:0] = json.loads(sys.argv[1]); from study.mlflow_writer import serve; serve()"


class MLflowWriter:
    """A background process writing trials' child runs to the tracking store at ``uri`` in
    ``experiment_id`` (to a tracking server, ``server_calls`` calls in flight at once). Queue items
    with :meth:`put`; :meth:`flush` waits for them; :meth:`close`
    flushes and ends the process. Any call after the writer failed raises ``RuntimeError("the
    MLflow logger failed: <Type>: <message>")``.

    The process is ``python -c`` importing this module (no main module to import again, as
    multiprocessing's spawn would), connected by a socket pair: a feeder thread sends what is
    queued, a reader thread takes back what was written, the lags, warnings and errors. The writer
    sees the socket close when the driver is gone."""

    def __init__(self, uri: str, experiment_id: str, capacity: int = 10_000, server_calls: int = SERVER_CALLS) -> None:
        ours, theirs = socket.socketpair()
        self._process = subprocess.Popen(
            [sys.executable, "-c", _CHILD, json.dumps(sys.path), str(theirs.fileno())],
            pass_fds=(theirs.fileno(),), start_new_session=True)
        theirs.close()
        self._conn = Connection(ours.detach())
        self._conn.send((uri, experiment_id, server_calls))  # not in its argv, which any local user can read
        self._queue: queue.Queue = queue.Queue(maxsize=capacity)
        self._changed = threading.Condition()
        self._capacity = capacity
        self._put = self._sent = self._done = self.written = self.calls = 0
        self._lags: deque[tuple[float, float]] = deque(maxlen=LAG_SAMPLES)  # (written at, lag)
        self._error: str | None = None
        self._warnings: list[str] = []
        self._ended = False  # the reader saw the process's end
        self._feeder = threading.Thread(target=self._feed, name="mlflow-writer-feeder", daemon=True)
        self._reader = threading.Thread(target=self._read, name="mlflow-writer-reader", daemon=True)
        self._feeder.start()
        self._reader.start()
        atexit.register(self._at_exit)

    def put(self, item: RunStart | EpochResult | RunArtifact | RunEnd) -> None:
        """Queue one item; waits while the queue is full (back-pressure)."""
        while True:
            self._check()
            try:
                self._queue.put(item, timeout=POLL_S)
            except queue.Full:
                continue
            with self._changed:
                self._put += 1
            return

    def flush(self) -> None:
        """Wait until everything queued is written; raise the writer's error if a write failed."""
        with self._changed:
            while True:
                self._check()
                if self._done >= self._put:
                    return
                self._changed.wait(POLL_S)

    def close(self) -> None:
        """Flush, then end the process."""
        atexit.unregister(self._at_exit)
        try:
            self.flush()
            self._queue.put(_STOP)
            self._process.wait()
        finally:
            if self._process.poll() is None:
                self._process.kill()
                self._process.wait()
            self._feeder.join(timeout=5)
            self._reader.join(timeout=5)
            self._conn.close()
        self._check(alive=False)

    @property
    def backlog(self) -> int:
        """Items queued and not written yet."""
        return self._put - self._done

    def lags(self, since: float = 0.0) -> list[float]:
        """Seconds from a trial's report to its epoch's row in MLflow, for the epochs written after
        ``since`` (epoch seconds) among the most recent ``LAG_SAMPLES``."""
        with self._changed:
            return [lag for written, lag in self._lags if written >= since]

    def _check(self, alive: bool = True) -> None:
        """Give the writer's warnings, raise its error; with ``alive``, a writer that ended is one."""
        with self._changed:
            pending, self._warnings = self._warnings, []
            if self._error is None and alive and self._ended:
                self._error = f"its process ended (exit code {self._process.poll()})"
            error = self._error
        for text in pending:
            warnings.warn(text, stacklevel=3)
        if error is not None:
            raise RuntimeError(f"the MLflow logger failed: {error}")

    def _feed(self) -> None:
        """Send what is queued, as many items as are waiting in one message, until the stop item;
        at most ``capacity`` items are ever sent and not yet written."""
        while True:
            with self._changed:
                while self._sent - self._done >= self._capacity and not self._ended:
                    self._changed.wait()
                room = self._capacity - (self._sent - self._done)
            items = [self._queue.get()]
            while len(items) < room:
                try:
                    items.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            with self._changed:
                self._sent += len(items)
            try:
                self._conn.send(items)
            except OSError:  # the process ended: the reader says so
                return
            if items[-1] is _STOP:
                return

    def _read(self) -> None:
        """Take the writer's reports: ``("done", items, epochs, calls, lags)``, ``("warning", text)``,
        ``("error", text)``; the end of the connection is the end of the process."""
        while True:
            try:
                message = self._conn.recv()
            except (EOFError, OSError):
                with self._changed:
                    self._ended = True
                    self._changed.notify_all()
                return
            with self._changed:
                if message[0] == "done":
                    _, items, epochs, calls, lags = message
                    self._done += items
                    self.written += epochs
                    self.calls += calls
                    self._lags.extend(lags)
                elif message[0] == "warning":
                    self._warnings.append(message[1])
                elif self._error is None:
                    self._error = message[1]
                self._changed.notify_all()

    def _at_exit(self) -> None:
        """At interpreter exit (Ctrl+C included) write what is still queued."""
        with contextlib.suppress(Exception):
            self.close()


def serve() -> None:
    """The writer process (``sys.argv``: sys.path, the socket's fd; the socket's first message: the
    tracking URI, the experiment id and the calls in flight to a server): write what arrives until
    the stop item. It ends the moment the driver is gone, mid-call too (SQLite rolls back what it
    had not committed), and ignores Ctrl+C (the driver flushes, then stops it)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    conn = Connection(int(sys.argv[2]))
    uri, experiment_id, server_calls = conn.recv()
    items: queue.Queue = queue.Queue()  # bounded by the driver: it sends at most ``capacity`` unwritten items

    def receive() -> None:
        while True:
            try:
                for item in conn.recv():
                    items.put(item)
            except (EOFError, OSError):  # the driver is gone (it closes only after this process ended)
                os._exit(0)

    threading.Thread(target=receive, name="receive", daemon=True).start()
    store = _Store(uri, experiment_id, conn, server_calls)
    while True:
        batch = [items.get()]
        while len(batch) < 10 * BATCH_METRICS:
            try:
                batch.append(items.get_nowait())
            except queue.Empty:
                break
        try:
            if not store.failed:
                store.write([i for i in batch if i is not _STOP])
        except BaseException as exc:  # noqa: BLE001 - any failure ends the open runs and is raised on the driver
            store.fail(exc)
        store.report(len(batch))
        if any(i is _STOP for i in batch):
            return


class _Store:
    """The writer process's side: MLflow calls, the runs it opened, the last epoch each run holds."""

    def __init__(self, uri: str, experiment_id: str, conn: Connection, server_calls: int) -> None:
        self.client = MlflowClient(uri)
        self.experiment_id = experiment_id
        self.conn = conn
        self.failed = False
        self.epochs = self.calls = 0  # written since the last report
        self.lags: list[tuple[float, float]] = []
        self._counted = threading.Lock()  # guards the three above while runs are written concurrently
        server = uri.startswith(("http://", "https://")) and server_calls > 1
        self._pool = ThreadPoolExecutor(server_calls, thread_name_prefix="runs") if server else None
        self._runs: dict[str, str] = {}  # trial id -> run id
        self._last_epoch: dict[str, int] = {}  # trial id -> last epoch the run holds
        self._open: set[str] = set()  # run ids opened and not ended
        self._matrices: dict[str, dict | None] = {}  # trial id -> its last epoch's confusion matrices

    def report(self, items: int) -> None:
        """Tell the driver that ``items`` more are done, with the epochs, calls and lags since the last report."""
        with self._counted:
            done, self.lags = ("done", items, self.epochs, self.calls, self.lags), []
            self.epochs = self.calls = 0
        with contextlib.suppress(OSError):
            self.conn.send(done)

    def write(self, items: list) -> None:
        """Write ``items``: each trial's in order, its consecutive epochs in as few calls as possible;
        different trials' concurrently on a tracking server. Raises a trial's failure once every
        trial's writes have ended."""
        by_trial: dict[str, list] = {}
        for item in items:
            by_trial.setdefault(item.trial_id, []).append(item)
        if self._pool is None or len(by_trial) < 2:
            for trial_items in by_trial.values():
                self._write_trial(trial_items)
            return
        futures = [self._pool.submit(self._write_trial, trial_items) for trial_items in by_trial.values()]
        wait(futures)
        for future in futures:
            future.result()

    def _write_trial(self, items: list) -> None:
        """One trial's items, in order."""
        pending: list[EpochResult] = []
        for item in items:
            if isinstance(item, RunStart):
                self._start(item)
            elif isinstance(item, EpochResult):
                if item.epoch > self._last_epoch.get(item.trial_id, 0):  # else logged before a restore
                    self._last_epoch[item.trial_id] = item.epoch
                    pending.append(item)
            else:
                self._epochs(item.trial_id, pending)
                pending = []
                if isinstance(item, RunArtifact):
                    self._artifact(item)
                else:
                    self._end(item)
        self._epochs(items[0].trial_id, pending)

    def fail(self, exc: BaseException) -> None:
        """End every open run FAILED with ``exc`` and tell the driver; nothing is written after."""
        self.failed = True
        why = f"the MLflow logger failed: {describe(exc)}"
        for run_id in list(self._open):
            try:
                self.client.set_tag(run_id, "error", why)
                self.client.set_terminated(run_id, "FAILED")
            except Exception:  # noqa: BLE001 - the store itself may be what failed
                pass
        self._open.clear()
        with contextlib.suppress(OSError):
            self.conn.send(("error", describe(exc)))

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
        calls = 0
        for i in range(0, max(len(metrics), 1), BATCH_METRICS - len(tags)):
            self._call(self.client.log_batch, run_id, metrics=metrics[i:i + BATCH_METRICS - len(tags)], tags=tags if i == 0 else [])
            calls += 1
        self._matrices[trial_id] = next((r.matrices for r in reversed(results) if r.matrices),
                                        self._matrices.get(trial_id))
        now = time.time()
        with self._counted:
            self.calls += calls
            self.lags.extend((now, now - r.reported_at) for r in results)
            self.epochs += len(results)

    def _artifact(self, item: RunArtifact) -> None:
        run_id = self._runs[item.trial_id]
        try:
            self._call(self.client.log_artifact, run_id, str(item.path))
        except Exception as exc:  # noqa: BLE001 - any failure to store it leaves the run without the file
            why = describe(exc)
            with contextlib.suppress(OSError):
                self.conn.send(("warning", f"trial {item.trial_id}: its {item.path.name} was not stored in MLflow ({why})"))
            with contextlib.suppress(Exception):
                self.client.set_tag(run_id, item.error_tag, why)
        finally:
            shutil.rmtree(item.folder, ignore_errors=True)

    def _end(self, item: RunEnd) -> None:
        run_id = self._runs[item.trial_id]
        tags = end_tags(self._last_epoch.get(item.trial_id, 0), item.epochs, item.failed)
        if item.error:
            tags["error"] = item.error
        if matrices := self._matrices.pop(item.trial_id, None):
            self._call(self.client.log_dict, run_id, matrices, "confusion_matrices.json")
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
