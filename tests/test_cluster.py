"""A real two-node Ray cluster on loopback: trials on both nodes, the shared-storage check, a node
failure mid-study, and remote launch through the Ray Jobs API (``study submit/status/logs``)."""
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import LoopbackCluster
from mlflow import MlflowClient

pytestmark = [pytest.mark.cluster, pytest.mark.slow, pytest.mark.xdist_group("cluster")]


@pytest.fixture(scope="module")
def cluster():
    """Head (with dashboard and jobs API) + one more node, 1 CPU each; stopped by pid at the end."""
    c = LoopbackCluster()
    try:
        head_s = c.start_head(dashboard=True)
        node_s = c.add_node()
        print(f"\nray start: head {head_s:.1f} s, second node {node_s:.1f} s")
        assert len(c.raylets()) == 2
        yield c
    finally:
        c.stop()


def study(*args, timeout=600, **kw):
    return subprocess.run([sys.executable, "-m", "study.cli", *args], capture_output=True, text=True,
                          timeout=timeout, **kw)


def children(spec_path: Path, name: str) -> list:
    client = MlflowClient(f"sqlite:///{spec_path.parent}/mlflow.db")
    exp = client.get_experiment_by_name(name)
    return [r for r in client.search_runs([exp.experiment_id]) if "trial_id" in r.data.tags] if exp else []


def test_trials_run_on_both_nodes(cluster, tiny_spec_file):
    """Through Ray Client (ray://); the node-failure test uses the GCS address, submit uses auto.
    Each node has one CPU. Eight full-length trials (FIFO) outlast the second node's actor start-up;
    with fewer, the head's warm actor could serve them all first."""
    path = tiny_spec_file(name="twonodes", samples=4, extra="storage_shared: true\n")
    r = study("run", str(path), "--search-only", "--address", f"ray://127.0.0.1:{cluster.client_port}",
              "--set", "scheduler.type=fifo")
    assert r.returncode == 0, r.stdout + r.stderr
    runs = children(path, "twonodes")
    assert len(runs) == 8 and all(run.info.status == "FINISHED" for run in runs)
    assert {run.data.tags["ray_node"] for run in runs} == set(cluster.raylets())


def test_local_storage_path_on_two_nodes_is_one_error_before_any_trial(cluster, tiny_spec_file):
    path = tiny_spec_file(name="localstore", samples=1)
    r = study("run", str(path), "--search-only", "--address", cluster.address)
    assert r.returncode == 2, r.stdout + r.stderr
    assert "study: error: storage_path:" in r.stderr and "the Ray cluster has 2 nodes" in r.stderr
    assert "storage_shared: true" in r.stderr and "Traceback" not in r.stderr
    assert not (path.parent / "results" / "localstore" / "search").exists() and not children(path, "localstore")


def test_submit_status_and_logs_through_the_jobs_api(cluster, tiny_spec_file):
    path = tiny_spec_file(name="submitted", samples=1, extra="storage_shared: true\n")
    jobs = f"http://127.0.0.1:{cluster.dashboard_port}"
    r = study("submit", str(path), "--address", jobs, "--search-only", timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    job = r.stdout.strip().splitlines()[-1]
    assert job.startswith("raysubmit_"), r.stdout
    logs = study("logs", job, "--follow", "--address", jobs)
    assert logs.returncode == 0, logs.stdout + logs.stderr
    assert "search of study 'submitted'" in logs.stdout and "control" in logs.stdout
    status = study("status", job, env={**cluster.env, "RAY_ADDRESS": jobs})  # address from the env
    assert status.returncode == 0 and status.stdout.startswith(f"{job}: SUCCEEDED"), status.stdout + status.stderr
    runs = children(path, "submitted")
    assert len(runs) == 2 and all(run.info.status == "FINISHED" for run in runs)
    bad = study("status", "raysubmit_nope", "--address", jobs)
    assert bad.returncode == 2 and "job 'raysubmit_nope'" in bad.stderr


def results_of(storage: Path, trial_id: str) -> list[dict]:
    """Every result Tune recorded for one trial (result.json is appended across restores)."""
    for f in storage.rglob("result.json"):
        rows = [json.loads(line) for line in f.read_text().splitlines() if line.strip()]
        if rows and rows[0].get("trial_id") == trial_id:
            return rows
    raise AssertionError(f"no result.json of trial {trial_id} under {storage}")


def test_a_node_dies_mid_study_and_its_trial_resumes_from_its_checkpoint(cluster, tiny_spec_file):
    """Runs last: it kills the second node."""
    text = tiny_spec_file(name="nodefail", samples=2, extra="storage_shared: true\n").read_text()
    path = tiny_spec_file(name="nodefail2")
    path.write_text(text.replace("  upsample: upsample\n", "").replace("name: nodefail", "name: nodefail2"))
    epochs = 8
    proc = subprocess.Popen(
        [sys.executable, "-m", "study.cli", "run", str(path), "--search-only", "--address", cluster.address,
         "--set", "scheduler.type=fifo", "--set", f"training.epochs={epochs}",
         "--set", "failure.max_failures=3", "--set", "data.synthetic.n=1500", "--set", "data.load_size=36",
         "--set", "data.image_size=32"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    (second,) = [node for node, (_, head) in cluster.raylets().items() if not head]
    try:
        victim, deadline = None, time.time() + 300
        while victim is None:  # a trial on the second node with a checkpoint past epoch 1
            assert time.time() < deadline and proc.poll() is None, "no trial reached epoch 2 on node 2"
            for run in children(path, "nodefail2"):
                if run.data.tags.get("ray_node") == second and run.data.metrics.get("epoch", 0) >= 2:
                    victim = run.data.tags["trial_id"]
            time.sleep(0.3)
        cluster.kill_raylet(second)
        killed_at = time.time()
        out, _ = proc.communicate(timeout=400)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, out

    rows = results_of(path.parent / "results", victim)
    reported = [int(row["epoch"]) for row in rows]
    nodes = [row["node_id"] for row in rows]
    assert reported == list(range(1, epochs + 1)), reported  # no epoch 1 again: not restarted
    moved = nodes.index(next(n for n in nodes if n != second))
    assert moved >= 2 and set(nodes[moved:]) == {n for n in cluster.raylets() if n != second}
    print(f"\nnode failure: killed at epoch {reported[moved - 1]}, trial resumed at epoch "
          f"{reported[moved]} on the head {rows[moved]['timestamp'] - killed_at:.1f} s after the kill")

    runs = children(path, "nodefail2")
    assert len(runs) == 2 and all(run.info.status == "FINISHED" for run in runs)
    (mine,) = [run for run in runs if run.data.tags["trial_id"] == victim]
    client = MlflowClient(f"sqlite:///{path.parent}/mlflow.db")
    steps = [m.step for m in client.get_metric_history(mine.info.run_id, "val/balanced_accuracy")]
    assert steps == list(range(1, epochs + 1))
