"""One writer per study: the same study started twice, a lock left by a dead holder, a lease held
from another machine, and two studies creating one new MLflow database at once."""
import json
import multiprocessing
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from study.errors import StudyError
from study.lock import LEASE_TAG, StudyLock, holding
from study.spec import load_spec
from study.tracking import StudyTracker


def _wait_for_lock(path, pid, timeout=120):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            if json.loads(path.read_text() or "{}").get("pid") == pid:
                return
        except (OSError, json.JSONDecodeError):
            pass
        time.sleep(0.2)
    raise AssertionError(f"pid {pid} did not take {path}")


@pytest.mark.slow
def test_the_same_study_started_twice_is_refused_and_a_dead_holders_lock_is_taken_over(tiny_spec_file):
    path = tiny_spec_file(name="twice", samples=40)  # still searching when it is killed
    spec = load_spec(path)
    lock_file = Path(spec.storage_path) / "twice" / "study.lock"
    first = subprocess.Popen([sys.executable, "-m", "study.cli", "run", str(path), "--search-only"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        _wait_for_lock(lock_file, first.pid)
        second = subprocess.run([sys.executable, "-m", "study.cli", "run", str(path), "--search-only"],
                                capture_output=True, text=True, timeout=120)
        assert second.returncode == 2
        assert (f"study: error: study 'twice' is already running: pid {first.pid} on host "
                f"{socket.gethostname()} (study run, since ") in second.stderr
    finally:
        os.killpg(first.pid, signal.SIGKILL)  # the group this test started: the driver and its Ray
        first.wait(timeout=60)
    # the holder is dead: its file lock went with it, and its lease in MLflow is taken over
    third = subprocess.run([sys.executable, "-m", "study.cli", "compare", str(path)], capture_output=True,
                           text=True, timeout=120)
    assert f"note: took over the lease of study 'twice' from pid {first.pid}" in third.stderr
    assert "its process is gone" in third.stderr
    assert "no finished repeat runs" in third.stderr  # it got past the lock to the command itself


def _lease(tracker, **holder):
    tracker.client.set_experiment_tag(tracker.experiment_id, LEASE_TAG, json.dumps(holder))


def test_a_lease_from_another_machine_is_refused_while_renewed_and_taken_over_when_stale(tiny_spec_file,
                                                                                       capsys):
    spec = load_spec(tiny_spec_file(name="lease"))
    tracker = StudyTracker.of(spec)
    _lease(tracker, host="node-7", pid=4242, command="study run", started=time.time(), heartbeat=time.time())
    with pytest.raises(StudyError, match=r"study 'lease' is already running: pid 4242 on host node-7 \(study run, "
                                         r"since .*\) holds its lease in MLflow \(renewed \d+ s ago\)"):
        with StudyLock(spec, "study repeat", tracker):
            pass
    _lease(tracker, host="node-7", pid=4242, command="study run", started=0, heartbeat=time.time() - 600)
    with holding(spec, "study repeat"):
        mine = json.loads(tracker.client.get_experiment(tracker.experiment_id).tags[LEASE_TAG])
        assert mine["pid"] == os.getpid() and mine["command"] == "study repeat"
    assert "took over the lease of study 'lease' from pid 4242 on host node-7" in capsys.readouterr().err
    released = json.loads(tracker.client.get_experiment(tracker.experiment_id).tags[LEASE_TAG])
    assert released["released"] is True
    with holding(spec, "study compare"):  # a released lease is free at once, without a note
        pass
    assert "took over" not in capsys.readouterr().err


def test_the_lock_file_is_exclusive_within_one_machine(tiny_spec_file):
    spec = load_spec(tiny_spec_file(name="local"))
    with StudyLock(spec, "study run"):
        with pytest.raises(StudyError, match=f"study 'local' is already running: pid {os.getpid()}"):
            with StudyLock(spec, "study repeat"):
                pass
    with StudyLock(spec, "study repeat"):  # released on exit
        pass


def _open_tracker(uri, name, barrier, out):
    barrier.wait()
    try:
        StudyTracker(uri, name, name)
        out.put((name, "ok"))
    except Exception as exc:  # noqa: BLE001 - reported to the test
        out.put((name, f"{type(exc).__name__}: {exc}"))


@pytest.mark.slow
def test_two_studies_creating_one_new_mlflow_database_at_once_both_start(tmp_path):
    """Without the lock the second process fails in alembic's migrations (seen: 'duplicate column
    name: storage_location')."""
    ctx = multiprocessing.get_context("spawn")
    uri = f"sqlite:///{tmp_path}/new.db"
    barrier, out = ctx.Barrier(2), ctx.Queue()
    procs = [ctx.Process(target=_open_tracker, args=(uri, f"study{i}", barrier, out)) for i in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
    assert sorted(out.get(timeout=5) for _ in procs) == [("study0", "ok"), ("study1", "ok")]
