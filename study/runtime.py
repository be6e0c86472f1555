"""The Ray session of a phase and the one phase runner that the search and the repeats share:
prepare (in a thread while Ray starts), connect, wrap the trainable, restore or create a Tuner, fit,
detect an interruption, shut down."""
from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import ray
from ray import tune

from trainables.data import ImageArrays

from .cluster import check_shared_storage
from .errors import StudyError, StudyInterrupted
from .spec import StudySpec
from .tune_adapter import tune_trainable

RAY_ENV = {
    "RAY_AUTH_MODE": "disabled",
    "RAY_USAGE_STATS_ENABLED": "0",
    "TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S": "0",
    "RAY_AIR_NEW_OUTPUT": "0",
    "TUNE_DISABLE_AUTO_CALLBACK_LOGGERS": "0",
}


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


def trial_slots(spec: StudySpec) -> int:
    """How many of the spec's trials the connected Ray cluster runs at once (at least 1)."""
    have = ray.cluster_resources()
    slots = [have.get(key, 0.0) / need for key, need in (("CPU", spec.resources.cpu),
                                                          ("GPU", spec.resources.gpu)) if need]
    return max(1, int(min(slots))) if slots else 1


def interrupted(path: str, expected: int) -> bool:
    """Whether the Tune experiment at ``path`` holds fewer than ``expected`` trials or unfinished
    ones, by its state saved on disk (the grid an interrupted fit returns calls every trial
    TERMINATED, started or not)."""
    trials = tune.ExperimentAnalysis(path).trials
    return len(trials) < expected or any(t.status not in ("TERMINATED", "ERROR") for t in trials)


class PhaseRunner:
    """One phase's Ray session, as a context manager: on entry ``prepare()`` runs in a thread while
    Ray connects (its result is ``prepared``) and the trainable is wrapped with the prepared arrays
    (put into Ray's object store once), the ``view`` of the phase and the spec's resources; on exit
    a Ray this runner started is shut down. ``fit`` runs one Tune experiment to its end."""

    def __init__(self, spec: StudySpec, arrays: ImageArrays, view: Callable[[dict], tuple[str, dict]],
                 prepare: Callable[[], Any] = lambda: None) -> None:
        self.spec, self.arrays, self.view, self._prepare = spec, arrays, view, prepare
        self.prepared: Any = None
        self._started = False

    def __enter__(self) -> PhaseRunner:
        with ThreadPoolExecutor(1) as pool:
            prepared = pool.submit(self._prepare)
            self._started = connect_ray(self.spec, self.arrays.images.nbytes)
        try:
            self.prepared = prepared.result()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        resources = {"cpu": self.spec.resources.cpu, "gpu": self.spec.resources.gpu}
        self.trainable = tune.with_resources(
            tune.with_parameters(tune_trainable, data=self.arrays, view=self.view), resources)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._started:
            ray.shutdown()
            self._started = False

    def fit(self, path: str, expected: int, make: Callable[[Any], tune.Tuner] | None, *, resume: bool,
            resume_errored: bool, interrupted_message: str) -> list:
        """Run the experiment at ``path`` (``storage/name``): restored with ``resume`` when it can
        be, else a new Tuner from ``make(trainable)`` (None: it must be restorable). Returns its
        results; raises
        :class:`StudyInterrupted` with ``interrupted_message`` when it did not end with ``expected``
        finished trials."""
        if make is None or (resume and tune.Tuner.can_restore(path)):
            tuner = tune.Tuner.restore(path, self.trainable, resume_unfinished=True,
                                       resume_errored=resume_errored)
        else:
            tuner = make(self.trainable)
        results = list(tuner.fit())
        if interrupted(path, expected):
            raise StudyInterrupted(interrupted_message)
        return results
