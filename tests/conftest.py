"""Shared fixtures: a private data cache per test session, tiny trial configs and specs, free
ports, required system tools, and a real Ray cluster on loopback."""
from __future__ import annotations

import copy
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
from _services import LoopbackCluster, free_port  # noqa: E402, F401 - shared with the benchmarks (and re-exported)


@pytest.fixture(autouse=True, scope="session")
def _private_cache(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    mp.setenv("CXR_STUDY_CACHE", str(tmp_path_factory.mktemp("cache")))
    yield
    mp.undo()


TINY = {
    "seed": 0,
    "model": "simple_cnn",
    "epochs": 2,
    "batch_size": 32,
    "lr": 1e-3,
    "num_threads": 1,
    "data": {"source": "synthetic", "synthetic": {"n": 240, "seed": 3,
                                                  "shares": {"covid": 0.2, "normal": 0.5, "pneumonia": 0.3}},
             "load_size": 20, "image_size": 16},
}


@pytest.fixture
def tiny_config():
    """A trial config that trains in about a second on one CPU thread."""
    return copy.deepcopy(TINY)


@pytest.fixture(scope="session")
def ray_local():
    """One local Ray for the session (2 CPUs, small object store), shut down at the end."""
    import os

    from study.runtime import RAY_ENV

    for k, v in RAY_ENV.items():
        os.environ.setdefault(k, v)
    import ray

    ray.init(num_cpus=2, include_dashboard=False, object_store_memory=150 << 20,
             logging_level="WARNING", log_to_driver=False)
    yield ray
    ray.shutdown()


TINY_SPEC = """
name: {name}
data:
  source: synthetic
  synthetic: {{n: 300, seed: 3, shares: {{covid: 0.2, normal: 0.5, pneumonia: 0.3}}}}
  load_size: 20
  image_size: 16
model: simple_cnn
training: {{epochs: 3, batch_size: 32}}
strategies:
  control: control
  upsample: upsample
search:
  space:
    lr: {{loguniform: [1.0e-4, 3.0e-2]}}
  samples_per_strategy: {samples}
  max_concurrent: 2
scheduler: {{type: asha, grace_period: 1, reduction_factor: 2}}
tracking: {{uri: "sqlite:///{root}/mlflow.db"}}
failure: {{max_failures: 0}}
storage_path: {root}/results
"""


def write_tiny_spec(folder: Path, name: str = "tiny", samples: int = 3, extra: str = "") -> Path:
    """A tiny two-strategy study spec in ``folder`` (MLflow, Optuna and results there too)."""
    path = folder / f"{name}.yaml"
    path.write_text(TINY_SPEC.format(name=name, samples=samples, root=folder) + extra)
    return path


@pytest.fixture
def tiny_spec_file(tmp_path):
    """Write a tiny two-strategy study spec into a temp folder; returns a factory."""
    return lambda name="tiny", samples=3, extra="": write_tiny_spec(tmp_path, name, samples, extra)


@pytest.fixture(scope="session")
def tiny_spec_writer():
    """``write_tiny_spec`` for fixtures wider than one test (they bring their own folder)."""
    return write_tiny_spec


@pytest.fixture(scope="session")
def port():
    """``free_port`` as a fixture: ``port()`` gives a free loopback port."""
    return free_port


def require_tool(name: str) -> str:
    """The path of a system tool a test needs. Missing, the test fails (CI installs it in .ci/run)
    unless STUDY_ALLOW_MISSING_TOOLS=1 says to skip."""
    path = shutil.which(name)
    if path is None:
        message = f"{name} is not installed (apt-get install {name}; .ci/run installs it)"
        if os.environ.get("STUDY_ALLOW_MISSING_TOOLS") == "1":
            pytest.skip(message)
        pytest.fail(message)
    return path


def wait_http(url: str, timeout: float, proc: subprocess.Popen | None = None) -> float:
    """Poll ``url`` until it answers 200; returns the seconds it took."""
    import urllib.request

    start = time.perf_counter()
    while time.perf_counter() - start < timeout:
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"{proc.args[:4]} exited with {proc.returncode} before {url} answered")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return time.perf_counter() - start
        except OSError:
            pass
        time.sleep(0.3)
    raise AssertionError(f"{url} did not answer within {timeout} s")


def stop_group(proc: subprocess.Popen) -> None:
    """Kill the process group of a process this test started with ``start_new_session=True``."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(timeout=60)


