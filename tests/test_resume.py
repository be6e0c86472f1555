"""Interrupt a real ``study run`` (SIGINT, then SIGKILL), resume it, and count trials and runs."""
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mlflow import MlflowClient

from study.spec import load_spec

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("resume")]


def start(spec_path, *flags):
    return subprocess.Popen([sys.executable, "-m", "study.cli", "run", str(spec_path), *flags],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)


def wait_for_line(proc, needle, timeout=240):
    deadline = time.time() + timeout
    seen = []
    for line in proc.stdout:
        seen.append(line)
        if needle in line:
            return seen
        assert time.time() < deadline, "".join(seen)
    raise AssertionError(f"process ended before {needle!r}:\n{''.join(seen)}")


def stop_group(proc):
    """Kill what is left of the process group this test started (the driver's own Ray)."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(timeout=60)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL])
def test_interrupted_study_resumes_without_losing_or_duplicating_trials(tiny_spec_file, sig):
    path = tiny_spec_file(name=f"resume{sig.value}", samples=4)
    spec = load_spec(path)
    proc = start(path, "--search-only")
    try:
        wait_for_line(proc, "[control] 2/4")
        os.kill(proc.pid, sig)
        if sig == signal.SIGINT:
            out, _ = proc.communicate(timeout=120)
            assert proc.returncode == 130, out
            assert "continue with --resume" in out
            assert "Tuner.restore" not in out  # Ray's own advice goes to the study's log file
    finally:
        stop_group(proc)

    resumed = subprocess.run([sys.executable, "-m", "study.cli", "run", str(path), "--resume",
                              "--search-only"],
                             capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "control" in resumed.stdout and "upsample" in resumed.stdout

    client = MlflowClient(spec.tracking.uri)
    exp = client.get_experiment_by_name(spec.name)
    runs = client.search_runs([exp.experiment_id], "tags.phase = 'search'")
    for strategy in ("control", "upsample"):
        children = [r for r in runs if r.data.tags.get("strategy") == strategy and "trial_id" in r.data.tags]
        assert len(children) == 4, [r.data.tags["trial_id"] for r in children]
        assert len({r.data.tags["trial_id"] for r in children}) == 4
        assert all(r.info.status == "FINISHED" for r in children)
        for r in children:  # every epoch logged once: none twice by a restored trial, none lost
            steps = [m.step for m in client.get_metric_history(r.info.run_id, "val/loss")]
            assert steps == list(range(1, int(r.data.tags["epochs_run"]) + 1))
        parents = [r for r in runs if r.data.tags.get("strategy") == strategy
                   and r.data.tags.get("role") == "parent"]
        assert len(parents) == 1


def test_a_driver_killed_with_results_not_yet_in_mlflow_resumes_with_every_epoch_once(tiny_spec_file):
    """MLflow's database is locked (a reader holds it) while trials go on: the driver takes their
    results, which wait in the background writer's queue, and is killed then. The resumed study
    holds every epoch of every trial exactly once."""
    path = tiny_spec_file(name="backlog", samples=4)
    spec = load_spec(path)
    proc = start(path, "--search-only")

    def taken() -> int:
        """Epochs the driver took so far: Tune's own log of them, in the staging folder of the Ray
        session the driver started (named with its pid)."""
        files = Path("/tmp/ray").glob(f"session_*_{proc.pid}/artifacts/*/*/driver_artifacts/*/result.json")
        return sum(1 for f in files for line in f.read_text().splitlines() if line.strip())

    killed = False
    try:
        wait_for_line(proc, "[control] 1/4")
        for _ in range(20):  # a lock that falls on Tune's snapshot (which waits for the writer) sees no result
            con = sqlite3.connect(spec.tracking.uri.removeprefix("sqlite:///"), isolation_level=None)
            con.execute("BEGIN EXCLUSIVE")
            try:
                before, deadline = taken(), time.time() + 4  # shorter than the writer's patience
                while not killed and time.time() < deadline:
                    if taken() > before:  # an epoch the writer cannot have written
                        os.kill(proc.pid, signal.SIGKILL)
                        proc.wait(timeout=60)
                        killed = True
                    time.sleep(0.05)
            finally:
                con.execute("ROLLBACK")
                con.close()
            if killed:
                break
            time.sleep(1)
    finally:
        stop_group(proc)
    assert killed, "the driver took no result while MLflow was locked"
    client = MlflowClient(spec.tracking.uri)
    exp = client.get_experiment_by_name(spec.name)

    resumed = subprocess.run([sys.executable, "-m", "study.cli", "run", str(path), "--resume", "--search-only"],
                             capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    children = [r for r in client.search_runs([exp.experiment_id], "tags.phase = 'search'") if "trial_id" in r.data.tags]
    assert len(children) == 8 and len({r.data.tags["trial_id"] for r in children}) == 8
    assert all(r.info.status == "FINISHED" for r in children), [(r.info.status, r.data.tags) for r in children]
    for r in children:
        for key in ("val/loss", "epoch"):
            steps = [m.step for m in client.get_metric_history(r.info.run_id, key)]
            assert steps == list(range(1, int(r.data.tags["epochs_run"]) + 1)), (r.data.tags["trial_id"], key)


def test_interrupted_repeats_resume_without_duplicating_pairs(tiny_spec_file):
    path = tiny_spec_file(name="represume", samples=1, extra="repeats: {seeds: 4, first_seed: 0}\n")
    spec = load_spec(path)
    proc = start(path)
    try:
        wait_for_line(proc, "[repeat] 2/8")
        os.kill(proc.pid, signal.SIGINT)
        out, _ = proc.communicate(timeout=120)
        assert proc.returncode == 130, out
    finally:
        stop_group(proc)
    resumed = subprocess.run([sys.executable, "-m", "study.cli", "repeat", str(path), "--resume"],
                             capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    client = MlflowClient(spec.tracking.uri)
    exp = client.get_experiment_by_name(spec.name)
    children = [r for r in client.search_runs([exp.experiment_id], "tags.phase = 'repeat'")
                if "trial_id" in r.data.tags]
    pairs = [(r.data.tags["strategy"], r.data.tags["seed"]) for r in children]
    assert sorted(pairs) == sorted((s, str(k)) for s in ("control", "upsample") for k in range(4))
    assert all(r.info.status == "FINISHED" for r in children)
