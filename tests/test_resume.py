"""Interrupt a real ``study run`` (SIGINT, then SIGKILL), resume it, and count trials and runs."""
import os
import signal
import subprocess
import sys
import time

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
        for r in children:  # no epoch logged twice by a restored trial
            steps = [m.step for m in client.get_metric_history(r.info.run_id, "val/loss")]
            assert steps == sorted(set(steps))
        parents = [r for r in runs if r.data.tags.get("strategy") == strategy
                   and r.data.tags.get("role") == "parent"]
        assert len(parents) == 1


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
