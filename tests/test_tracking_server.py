"""A real MLflow tracking server (``study tracking-server``: SQLite backend, served artifacts) on a
free loopback port, a tiny study logged to it over HTTP, read back over HTTP and in headless Chromium."""
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import require_tool, stop_group, wait_http
from mlflow import MlflowClient

from study.mlflow_writer import EpochResult, MLflowWriter, RunEnd, RunStart
from study.search import run_search
from study.spec import load_spec

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("ray")]


@pytest.fixture(scope="module")
def served_study(ray_local, port, tiny_spec_writer, tmp_path_factory):
    """The server, and a two-strategy study (2 trials each) searched against it."""
    root = tmp_path_factory.mktemp("served")
    uri = f"http://127.0.0.1:{(p := port())}"
    proc = subprocess.Popen(
        [sys.executable, "-m", "study.cli", "tracking-server", "--port", str(p),
         "--backend-store-uri", f"sqlite:///{root}/server.db", "--artifacts-destination", str(root / "art")],
        cwd=root, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        print(f"\nmlflow server ready in {wait_http(f'{uri}/health', 120, proc):.1f} s")
        spec = load_spec(tiny_spec_writer(root, name="served", samples=2), {"tracking": {"uri": uri}})
        run_search(spec)
        yield uri, spec, root
    finally:
        stop_group(proc)


def test_a_study_logs_to_the_tracking_server_over_http(served_study):
    uri, _, root = served_study
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("served")
    runs = client.search_runs([exp.experiment_id])
    parents = {r.info.run_id: r for r in runs if r.data.tags.get("role") == "parent"}
    kids = [r for r in runs if "trial_id" in r.data.tags]
    assert sorted(r.info.run_name for r in parents.values()) == ["control (search)", "upsample (search)"]
    assert len(kids) == 4 and all(r.data.tags["mlflow.parentRunId"] in parents for r in kids)
    assert all(r.info.status == "FINISHED" for r in runs)
    steps = [m.step for m in client.get_metric_history(kids[0].info.run_id, "val/loss")]
    assert steps == list(range(1, int(kids[0].data.tags["epochs_run"]) + 1))
    # artifacts go through the server into its --artifacts-destination, not the client's folders
    parent = next(iter(parents))
    assert {a.path for a in client.list_artifacts(parent)} >= {"spec.json", "summary.json"}
    assert list((root / "art").rglob("spec.json")) and not (root / "mlruns").exists()


def test_the_writer_writes_runs_concurrently_over_http_each_epoch_once_in_order(served_study, tmp_path):
    """Everything queued before the writer process is up arrives as one batch: 8 trials' runs are
    written ``SERVER_CALLS`` at a time, each run's own calls in order."""
    uri, _, _ = served_study
    client = MlflowClient(uri)
    exp = client.create_experiment("concurrent writes")
    writer = MLflowWriter(uri, exp)
    trials = [f"c{i}" for i in range(8)]
    for n, trial in enumerate(trials):
        writer.put(RunStart(trial, f"tags.trial_id = '{trial}'", trial, {"trial_id": trial}, {"lr": "0.1"}))
        for e in range(1, 13 + n):
            writer.put(EpochResult(trial, e, {"val/loss": 1 / e, "epoch": float(e)}, {}, {"val/confusion_matrix": [[e]]},
                                   time.time()))
        writer.put(RunEnd(trial, epochs=20))
    writer.close()
    assert writer.written == sum(12 + n for n in range(8))
    runs = {r.data.tags["trial_id"]: r for r in client.search_runs([exp])}
    assert sorted(runs) == trials
    for n, trial in enumerate(trials):
        run = runs[trial]
        assert run.info.status == "FINISHED" and run.data.tags["epochs_run"] == str(12 + n)
        assert [m.step for m in client.get_metric_history(run.info.run_id, "val/loss")] == list(range(1, 13 + n))
        path = client.download_artifacts(run.info.run_id, "confusion_matrices.json", str(tmp_path / trial))
        assert json.loads(Path(path).read_text()) == {"val/confusion_matrix": [[12 + n]]}


def chromium_dom(url: str, profile) -> str:
    """The DOM of ``url`` after the MLflow UI (a JS app) rendered, from headless Chromium."""
    chromium = require_tool("chromium")
    r = subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                        "--disable-background-networking", "--disable-component-update", "--disable-sync",
                        "--no-first-run", f"--user-data-dir={profile}", "--virtual-time-budget=20000",
                        "--dump-dom", url], capture_output=True, text=True, timeout=180)
    assert r.returncode == 0, r.stderr[-2000:]
    return r.stdout


@pytest.mark.browser
def test_the_mlflow_ui_lists_parent_and_child_runs(served_study, tmp_path):
    uri, _, _ = served_study
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("served")
    runs = client.search_runs([exp.experiment_id])
    parents = [r.info.run_name for r in runs if r.data.tags.get("role") == "parent"]
    kids = [r.info.run_name for r in runs if "trial_id" in r.data.tags]
    start = time.perf_counter()
    nested = chromium_dom(f"{uri}/#/experiments/{exp.experiment_id}/runs", tmp_path / "p1")
    took = time.perf_counter() - start
    assert all(f">{name}<" in nested for name in parents), nested[-3000:]
    assert not any(f">{name}<" in nested for name in kids)  # collapsed under their parents
    flat = chromium_dom(f"{uri}/#/experiments/{exp.experiment_id}/runs"
                        "?orderByKey=attributes.run_name&orderByAsc=true", tmp_path / "p2")
    assert all(f">{name}<" in flat for name in parents + kids), flat[-3000:]
    print(f"\nchromium rendered the runs page in {took:.1f} s")

