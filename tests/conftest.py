"""Shared fixtures: a private data cache per test session, tiny trial configs and specs, free
ports, required system tools, and a real Ray cluster on loopback."""
from __future__ import annotations

import copy
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest


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


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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


def _start_time(pid: int) -> str | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def _children() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        kids.setdefault(ppid, []).append(int(stat.parent.name))
    return kids


class LoopbackCluster:
    """A real multi-node Ray cluster on this host, started with ``ray start`` into a private temp
    dir. Its processes are found by that temp dir (GCS, raylets, agents, monitors) or its GCS port
    (the Ray Client server) in their command line, plus their descendants (workers, job drivers),
    and only those are ever stopped, by pid: never ``ray stop``, which stops every Ray on the host."""

    def __init__(self) -> None:
        self.temp_dir = tempfile.mkdtemp(prefix="rc", dir="/tmp")  # short: Unix socket paths
        self.port = free_port()
        self.dashboard_port: int | None = None
        self.client_port: int | None = None  # Ray Client (ray://)
        self.owned: dict[int, str] = {}  # pid -> start time, so a reused pid is never killed
        from study.runtime import RAY_ENV

        venv_bin = str(Path(sys.executable).parent)
        self.env = {**os.environ, **RAY_ENV, "PATH": f"{venv_bin}:{os.environ.get('PATH', '')}"}
        self.ray = str(Path(sys.executable).parent / "ray")

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _ray_start(self, *args: str, temp_dir: str) -> float:
        common = ["--num-cpus=1", "--object-store-memory=500000000", "--disable-usage-stats",
                  f"--temp-dir={temp_dir}", f"--dashboard-agent-listen-port={free_port()}"]
        start = time.perf_counter()
        r = subprocess.run([self.ray, "start", *args, *common], env=self.env, capture_output=True,
                           text=True, timeout=180)
        self.track()
        assert r.returncode == 0, r.stdout + r.stderr
        return time.perf_counter() - start

    def start_head(self, dashboard: bool = False) -> float:
        self.client_port = free_port()
        args = ["--head", f"--port={self.port}", f"--ray-client-server-port={self.client_port}"]
        if dashboard:
            self.dashboard_port = free_port()
            args += ["--include-dashboard=true", "--dashboard-host=127.0.0.1",
                     f"--dashboard-port={self.dashboard_port}"]
        else:
            args += ["--include-dashboard=false"]
        return self._ray_start(*args, temp_dir=self.temp_dir)

    def add_node(self) -> float:
        """Another node, with its own temp dir inside the head's, as on a separate machine (two nodes
        sharing one session dir share its runtime_env working_dir, which one node's GC deletes)."""
        nodes = len(self.raylets())
        return self._ray_start(f"--address={self.address}", temp_dir=f"{self.temp_dir}/n{nodes}")

    def _cmdlines(self) -> dict[int, str]:
        out = {}
        for f in Path("/proc").glob("[0-9]*/cmdline"):
            try:
                text = f.read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if self.temp_dir in text or re.search(rf"--address=\S+:{self.port}(\s|$)", text):
                out[int(f.parent.name)] = text  # the Ray Client server names only the GCS address
        return out

    def track(self) -> None:
        """Remember every live process of this cluster (roots by temp dir, and their descendants)."""
        kids, todo = _children(), list(self._cmdlines())
        while todo:
            pid = todo.pop()
            if pid not in self.owned and (start := _start_time(pid)) is not None:
                self.owned[pid] = start
                todo += kids.get(pid, [])

    def raylets(self) -> dict[str, tuple[int, bool]]:
        """node id -> (raylet pid, is head)."""
        out = {}
        for pid, cmd in self._cmdlines().items():
            if "/raylet/raylet " in cmd:
                node = cmd.split("--node_id=")[1].split()[0]
                out[node] = (pid, "node:__internal_head__" in cmd)
        return out

    def kill_raylet(self, node_id: str) -> None:
        """kill -9 one node's raylet (a node failure); its workers die with it."""
        self.track()
        os.kill(self.raylets()[node_id][0], signal.SIGKILL)

    def stop(self) -> None:
        self.track()
        for sig, pause in ((signal.SIGTERM, 3.0), (signal.SIGKILL, 0.0)):
            for pid, start in self.owned.items():
                if _start_time(pid) == start:
                    try:
                        os.kill(pid, sig)
                    except ProcessLookupError:
                        pass
            time.sleep(pause)
        shutil.rmtree(self.temp_dir, ignore_errors=True)
