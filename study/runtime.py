"""The Ray session of a phase and the one phase runner that the search and the repeats share:
prepare (in a thread while Ray starts), connect, wrap the trainable, restore or create a Tuner, fit,
detect an interruption, shut down."""
from __future__ import annotations

import os
import socket
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
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
    # no CSV or TensorBoard files per trial (MLflow holds the curves; TensorBoard's logger took a fifth
    # of the driver's time per result): the tuners add Tune's JSON logger, whose result.json Tune reads
    "TUNE_DISABLE_AUTO_CALLBACK_LOGGERS": "1",
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
            probe_grpc(host or "127.0.0.1", port, address)
        # The Ray Client server starts a process per driver, which can die while starting
        # ("Initialization failure from server"); a second try gets a fresh one.
        attempts = 3 if address.startswith("ray://") else 1
        print(f"connecting to Ray at {address} ...", file=sys.stderr, flush=True)
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
    start = time.perf_counter()
    print(f"starting a local Ray ({spec.ray.num_cpus or os.cpu_count()} CPUs) ...", file=sys.stderr, flush=True)
    ray.init(num_cpus=spec.ray.num_cpus, num_gpus=spec.ray.num_gpus, include_dashboard=False,
             object_store_memory=spec.ray.object_store_memory or max(100 << 20, 4 * object_store_bytes),
             logging_level="WARNING", log_to_driver=False)
    print(f"Ray ready in {time.perf_counter() - start:.1f} s", file=sys.stderr, flush=True)
    return True


PROBE = b"GET / HTTP/1.0\r\n\r\n"  # an HTTP server answers with its status line; gRPC ignores it


def probe_grpc(host: str, port: str, address: str, timeout: float = 5.0) -> None:
    """Ray's GCS and its client server speak gRPC: on a connection, an HTTP/2 server sends a SETTINGS
    frame first, whatever it was sent. Anything else at ``address`` is one :class:`StudyError` saying what answered,
    instead of ``ray.init`` waiting for minutes."""
    try:
        with socket.create_connection((host, int(port)), timeout=timeout) as conn:
            conn.sendall(PROBE)
            first = conn.recv(64)
    except (OSError, ValueError) as exc:
        if isinstance(exc, TimeoutError | socket.timeout) and "timed out" in str(exc):
            raise StudyError(f"ray.address: {address} accepts connections but sent nothing within "
                             f"{timeout:g} s; Ray's GCS (or client server) answers at once: is this Ray's "
                             "port?") from None
        raise StudyError(f"ray.address: cannot reach Ray at {address} ({exc})") from None
    if len(first) >= 9 and first[3] == 0x04:  # an HTTP/2 SETTINGS frame: a gRPC server
        return
    said = first.split(b"\n")[0].decode("ascii", "replace").strip()[:80]
    what = f"it answered {said!r}" if said else "it closed the connection without a word"
    raise StudyError(f"ray.address: {address} is not Ray ({what}); give the Ray head's GCS address "
                     "(HOST:6379 by default), ray://HOST:10001 or auto")


def trial_slots(spec: StudySpec) -> int:
    """How many of the spec's trials the connected Ray cluster runs at once (at least 1)."""
    have = ray.cluster_resources()
    slots = [have.get(key, 0.0) / need for key, need in (("CPU", spec.resources.cpu),
                                                          ("GPU", spec.resources.gpu)) if need]
    return max(1, int(min(slots))) if slots else 1


def check_resources(spec: StudySpec) -> None:
    """A trial's request (``resources``) fits on one live node of the connected cluster, else one
    :class:`StudyError` (Tune would wait for ever, warning every minute). With
    ``ray.autoscaling: true`` an autoscaler may add such nodes, and the check is left to it."""
    if spec.ray.autoscaling:
        return
    need = {"CPU": spec.resources.cpu, "GPU": spec.resources.gpu}
    nodes = [n.get("Resources", {}) for n in ray.nodes() if n.get("Alive")]
    if any(all(node.get(k, 0.0) >= v for k, v in need.items() if v) for node in nodes):
        return
    biggest = max(nodes, key=lambda n: (n.get("GPU", 0.0), n.get("CPU", 0.0)), default={})
    where = spec.ray.address or "this machine (a local Ray)"
    raise StudyError(f"resources: a trial asks for {spec.resources.cpu:g} CPU and {spec.resources.gpu:g} GPU, "
                     f"but no node of the Ray cluster at {where} has that much (the largest of {len(nodes)} "
                     f"node(s): {biggest.get('CPU', 0):g} CPU, {biggest.get('GPU', 0):g} GPU); lower "
                     "resources.cpu / resources.gpu, or set ray.autoscaling: true if an autoscaler adds such nodes")


@dataclass
class TrialResult:
    """One trial of an experiment, as its state saved on disk holds it: its last metrics (empty when
    it reported none), its error (or None), its folder, its Tune config (which Tune's own ``Result``
    loses for a restored trial that never reported) and whether it finished (ended or failed; the
    grid an interrupted fit returns calls every trial TERMINATED, started or not)."""

    metrics: dict
    error: Exception | None
    path: str
    config: dict
    finished: bool


def experiment_results(path: str) -> list[TrialResult]:
    """Every trial of the Tune experiment at ``path`` (local or a URI), read from its saved state
    (no Ray needed)."""
    analysis = tune.ExperimentAnalysis(path)  # ResultGrid holds one Result per trial, in this order
    return [TrialResult(r.metrics or {}, r.error, r.path, t.config, t.status in ("TERMINATED", "ERROR"))
            for t, r in zip(analysis.trials, tune.ResultGrid(analysis), strict=True)]


def finished(path: str, expected: int) -> bool:
    """Whether the experiment at ``path`` exists and ended with ``expected`` finished trials."""
    if not tune.Tuner.can_restore(path):
        return False
    results = experiment_results(path)
    return len(results) >= expected and all(r.finished for r in results)


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
            check_resources(self.spec)
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
            resume_errored: bool, interrupted_message: str) -> list[TrialResult]:
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
        tuner.fit()
        results = experiment_results(path)
        if len(results) < expected or any(not r.finished for r in results):
            raise StudyInterrupted(interrupted_message)
        return results
