"""Throwaway servers on loopback for the benchmarks and the tests (tests/conftest.py imports this
module): a multi-node Ray cluster, Debian's PostgreSQL (``initdb`` +
``postgres``, in a folder of its own, on a free port) and a real ``mlflow server``. Each is stopped by
the pid it was started with; nothing is killed by name."""
from __future__ import annotations

import glob
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from study.server import server_argv


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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

    def _ray_start(self, *args: str, temp_dir: str, resources: tuple[str, ...] = ("--num-cpus=1",)) -> float:
        common = [*resources, "--object-store-memory=500000000", "--disable-usage-stats",
                  f"--temp-dir={temp_dir}", f"--dashboard-agent-listen-port={free_port()}"]
        start = time.perf_counter()
        r = subprocess.run([self.ray, "start", *args, *common], env=self.env, capture_output=True,
                           text=True, timeout=180)
        self.track()
        assert r.returncode == 0, r.stdout + r.stderr
        return time.perf_counter() - start

    def start_head(self, dashboard: bool = False, resources: tuple[str, ...] = ("--num-cpus=1",)) -> float:
        """The head node, with ``resources`` (``ray start``'s flags, e.g. ``("--num-cpus=0",
        '--resources={"slot": 32}')``)."""
        self.client_port = free_port()
        args = ["--head", f"--port={self.port}", f"--ray-client-server-port={self.client_port}"]
        if dashboard:
            self.dashboard_port = free_port()
            args += ["--include-dashboard=true", "--dashboard-host=127.0.0.1",
                     f"--dashboard-port={self.dashboard_port}"]
        else:
            args += ["--include-dashboard=false"]
        return self._ray_start(*args, temp_dir=self.temp_dir, resources=resources)

    def add_node(self, resources: tuple[str, ...] = ("--num-cpus=1",)) -> float:
        """Another node, with its own temp dir inside the head's, as on a separate machine (two nodes
        sharing one session dir share its runtime_env working_dir, which one node's GC deletes)."""
        nodes = len(self.raylets())
        return self._ray_start(f"--address={self.address}", temp_dir=f"{self.temp_dir}/n{nodes}",
                               resources=resources)

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


def pg_bin(tool: str) -> str | None:
    """A PostgreSQL server tool (Debian keeps them in /usr/lib/postgresql/<version>/bin)."""
    installed = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{tool}"))
    return shutil.which(tool) or (installed[-1] if installed else None)


@contextmanager
def postgres(*databases: str) -> Iterator[str]:
    """A new PostgreSQL cluster on 127.0.0.1 (trust authentication, fsync on) with ``databases``;
    yields its SQLAlchemy URL without a database (append ``/name``). As root the server runs as the
    ``postgres`` user (it refuses root)."""
    initdb, server_bin, ready_bin = pg_bin("initdb"), pg_bin("postgres"), pg_bin("pg_isready")
    if initdb is None or server_bin is None or ready_bin is None:
        raise RuntimeError("PostgreSQL's server is not installed (apt-get install postgresql)")
    root = Path(tempfile.mkdtemp(prefix="pg-", dir="/tmp"))
    as_user: list[str] = []
    if os.geteuid() == 0:
        shutil.chown(root, "postgres", "postgres")
        as_user = ["runuser", "-u", "postgres", "--"]
    port = free_port()
    data = root / "data"
    subprocess.run([*as_user, initdb, "-D", str(data), "-A", "trust", "-U", "postgres", "--no-instructions"],
                   check=True, capture_output=True, timeout=120)
    server = subprocess.Popen(
        [*as_user, server_bin, "-D", str(data), "-h", "127.0.0.1", "-p", str(port),
         "-k", str(root), "-c", "max_connections=300"],
        stdout=subprocess.DEVNULL, stderr=open(root / "server.log", "w"), start_new_session=True)
    try:
        for _ in range(300):
            ready = subprocess.run([ready_bin, "-h", "127.0.0.1", "-p", str(port)],
                                   capture_output=True)
            if ready.returncode == 0:
                break
            if server.poll() is not None:
                raise RuntimeError(f"PostgreSQL exited: {(root / 'server.log').read_text()[-2000:]}")
            time.sleep(0.1)
        for database in databases:
            subprocess.run([*as_user, "psql", "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "-q", "-c",
                            f"CREATE DATABASE {database}"], check=True, capture_output=True, timeout=60)
        yield f"postgresql://postgres@127.0.0.1:{port}"
    finally:
        server.send_signal(signal.SIGINT)  # PostgreSQL's fast shutdown
        try:
            server.wait(timeout=60)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        shutil.rmtree(root, ignore_errors=True)


@contextmanager
def mlflow_server(backend_store_uri: str, workers: int = 1) -> Iterator[tuple[str, subprocess.Popen]]:
    """``mlflow server`` as ``study tracking-server`` runs it, on a free loopback port, artifacts in a
    temporary folder; yields its URL and process."""
    folder = Path(tempfile.mkdtemp(prefix="mlflow-server-"))
    port = free_port()
    argv = server_argv(backend_store_uri, str(folder / "artifacts"), port=port, workers=workers)
    proc = subprocess.Popen(argv, cwd=folder, stdout=subprocess.DEVNULL, stderr=open(folder / "server.log", "w"),
                            start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2):
                    break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"mlflow server did not start: {(folder / 'server.log').read_text()[-2000:]}")
                time.sleep(0.5)
        yield url, proc
    finally:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        except ProcessLookupError:
            proc.wait()
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":  # a smoke check: python benchmarks/_services.py
    with postgres("mlflow") as pg, mlflow_server(f"{pg}/mlflow") as (url, _):
        print(pg, url, file=sys.stderr)
