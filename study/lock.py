"""One writer per study, and a tracking store created once.

A study command (``run``, ``repeat``, ``compare``) holds its study's lock while it works:

- an exclusive ``flock`` on ``<study folder>/study.lock``, holding the holder's host, pid, command
  and start time (the kernel releases it when the holder dies, so a dead holder's lock is taken over
  at once);
- a lease in MLflow, the experiment tag ``cxr.study_lock`` (host, pid, heartbeat), renewed every
  ``LEASE_S / 4`` seconds, for studies whose folder is on storage shared between machines, where a
  file lock does not reach: a lease younger than ``LEASE_S`` held by another process is refused; an
  older one (its holder stopped renewing it), or one of a dead process on this host, is taken over
  with a note.

A second start is one :class:`StudyError` naming the holder.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import sys
import threading
import time
from collections.abc import Iterator

from .errors import StudyError
from .layout import check_writable, study_dir
from .logs import library_logs
from .spec import StudySpec
from .tracking import StudyTracker, check_tracking_uri

LEASE_TAG = "cxr.study_lock"
LEASE_S = 120.0
LOCK_FILE = "study.lock"


def _holder(command: str) -> dict:
    return {"host": socket.gethostname(), "pid": os.getpid(), "command": command, "started": time.time(),
            "heartbeat": time.time()}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _describe(holder: dict) -> str:
    since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(holder.get("started", 0)))
    return f"pid {holder.get('pid')} on host {holder.get('host')} ({holder.get('command', '?')}, since {since})"


class StudyLock:
    """The study's lock (file and MLflow lease), as a context manager; see the module."""

    def __init__(self, spec: StudySpec, command: str, tracker=None) -> None:
        self.spec, self.command, self.tracker = spec, command, tracker
        self.path = study_dir(spec) / LOCK_FILE
        self._file = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.holder = {**_holder(command), "study": spec.name}

    def __enter__(self) -> StudyLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(self.path, "a+")
        try:
            fcntl.flock(self._file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._file.seek(0)
            try:
                holder = json.loads(self._file.read() or "{}")
            except json.JSONDecodeError:
                holder = {}
            self._close()
            raise StudyError(f"study {self.spec.name!r} is already running: {_describe(holder)} holds "
                             f"{self.path}; wait for it to end (or stop it) before starting another") from None
        self._file.seek(0)
        self._file.truncate()
        self._file.write(json.dumps(self.holder))
        self._file.flush()
        try:
            if self.tracker is not None:
                self._take_lease()
        except BaseException:
            self._close()
            raise
        return self

    def _take_lease(self) -> None:
        experiment = self.tracker.client.get_experiment(self.tracker.experiment_id)
        raw = experiment.tags.get(LEASE_TAG)
        if raw:
            lease = json.loads(raw)
            age = time.time() - lease.get("heartbeat", 0)
            mine = lease.get("host") == self.holder["host"] and lease.get("pid") == self.holder["pid"]
            dead_here = lease.get("host") == self.holder["host"] and not _alive(int(lease.get("pid", 0)))
            if not lease.get("released") and not mine and not dead_here and age < LEASE_S:
                raise StudyError(f"study {self.spec.name!r} is already running: {_describe(lease)} holds its "
                                 f"lease in MLflow (renewed {age:.0f} s ago); wait for it to end before "
                                 "starting another")
            if not lease.get("released") and not mine:
                why = "its process is gone" if dead_here else f"not renewed for {age:.0f} s"
                print(f"note: took over the lease of study {self.spec.name!r} from {_describe(lease)} ({why})",
                      file=sys.stderr)
        self._renew()
        self._thread = threading.Thread(target=self._heartbeat, name="study-lease", daemon=True)
        self._thread.start()

    def _renew(self, released: bool = False) -> None:
        lease = {**self.holder, "heartbeat": time.time(), **({"released": True} if released else {})}
        self.tracker.client.set_experiment_tag(self.tracker.experiment_id, LEASE_TAG, json.dumps(lease))

    def _heartbeat(self) -> None:
        while not self._stop.wait(LEASE_S / 4):
            try:
                self._renew()
            except Exception as exc:  # noqa: BLE001 - a failed renewal is retried at the next beat
                print(f"note: could not renew the study lease in MLflow ({type(exc).__name__})", file=sys.stderr)

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            try:
                self._renew(released=True)
            except Exception:  # noqa: BLE001 - the lease then expires on its own
                pass
        self._close()

    def _close(self) -> None:
        if self._file is not None:
            fcntl.flock(self._file, fcntl.LOCK_UN)
            self._file.close()
            self._file = None


@contextlib.contextmanager
def holding(spec: StudySpec, command: str) -> Iterator[StudyTracker]:
    """Check the tracking store and the study folder, then hold the study's lock for the block,
    the libraries' log records going to the study's log file (:mod:`study.logs`); yields the study's
    tracker."""
    check_tracking_uri(spec.tracking.uri)
    check_writable(spec)
    with library_logs(study_dir(spec) / "study.log"):
        tracker = StudyTracker.of(spec)
        with StudyLock(spec, command, tracker):
            yield tracker
