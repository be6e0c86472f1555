"""The background MLflow writer on a real SQLite store: epochs batched, each written exactly once
(also after a restore), the queue bounded with back-pressure, a locked database waited for, the
logger's flush at Tune's snapshots, and a writer process that ends with its driver."""
import json
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

from mlflow import MlflowClient
from ray.tune.experiment import Trial

from study.mlflow_writer import EpochResult, MLflowWriter, RunEnd, RunStart
from study.tracking import MLflowTrialLogger, StudyTracker
from study.tune_adapter import SearchView

KEYS = [f"val/m{i}" for i in range(60)]  # a real search epoch has about this many metrics


@contextmanager
def locked(db):
    """Hold SQLite's exclusive lock on ``db`` (as a reader such as ``mlflow ui`` can) for the block."""
    con = sqlite3.connect(db, isolation_level=None)
    con.execute("BEGIN EXCLUSIVE")
    try:
        yield
    finally:
        con.execute("ROLLBACK")
        con.close()


def start(trial_id="t0"):
    return RunStart(trial_id, f"tags.trial_id = '{trial_id}'", f"run-{trial_id}", {"trial_id": trial_id},
                    {"lr": "0.1"})


def epoch(n, trial_id="t0"):
    return EpochResult(trial_id, n, {k: n / 100 for k in KEYS} | {"epoch": float(n)}, {"ray_node": "n1"},
                       {"val/confusion_matrix": [[n, 0], [0, n]]}, time.time())


def test_a_backlog_is_written_in_few_batches_each_epoch_once_and_a_restore_skips_logged_epochs(tmp_path):
    db = tmp_path / "m.db"
    client = MlflowClient(f"sqlite:///{db}")
    exp = client.create_experiment("w")
    writer = MLflowWriter(f"sqlite:///{db}", exp)
    with locked(db):  # the store is busy: the epochs queue up behind the run's start
        writer.put(start())
        for n in range(1, 31):
            writer.put(epoch(n))
        writer.put(epoch(12))  # a restored trial reporting an epoch again
        writer.put(RunEnd("t0", epochs=40))
        time.sleep(1.0)
        assert writer.backlog == 33
    writer.flush()
    assert writer.backlog == 0 and writer.written == 30
    assert writer.calls <= 4  # 1,830 metrics of 30 epochs: two log_batch calls once the lock is gone
    assert len(writer.lags()) == 30 and min(writer.lags()) >= 1.0  # each waited for the lock
    (run,) = client.search_runs([exp])
    assert run.info.status == "FINISHED" and run.data.params == {"lr": "0.1"}
    assert run.data.tags["epochs_run"] == "30" and run.data.tags["stopped_early"] == "true"
    for key in ("val/m0", "val/m59", "epoch"):
        assert [m.step for m in client.get_metric_history(run.info.run_id, key)] == list(range(1, 31))
    matrices = client.download_artifacts(run.info.run_id, "confusion_matrices.json", str(tmp_path))
    assert json.loads(Path(matrices).read_text()) == {"val/confusion_matrix": [[30, 0], [0, 30]]}  # the last
    writer.close()

    again = MLflowWriter(f"sqlite:///{db}", exp)  # the study resumed: a new driver, the same trial
    again.put(start())
    for n in range(28, 36):
        again.put(epoch(n))
    again.put(RunEnd("t0", epochs=40))
    again.close()
    (run,) = client.search_runs([exp])
    assert [m.step for m in client.get_metric_history(run.info.run_id, "val/m7")] == list(range(1, 36))
    assert run.data.tags["epochs_run"] == "35" and again.written == 5


def test_a_full_queue_holds_the_driver_back_until_the_store_takes_writes(tmp_path):
    db = tmp_path / "m.db"
    exp = MlflowClient(f"sqlite:///{db}").create_experiment("w")
    writer = MLflowWriter(f"sqlite:///{db}", exp, capacity=4)
    done = threading.Event()

    def driver():
        writer.put(start())
        for n in range(1, 11):
            writer.put(epoch(n))
        done.set()

    with locked(db):
        thread = threading.Thread(target=driver)
        thread.start()
        time.sleep(1.5)
        assert not done.is_set() and writer.backlog <= 2 * 4 + 1  # bounded: the queue, plus the batch being written
    thread.join(timeout=60)
    assert done.is_set()
    writer.close()
    assert writer.written == 10


def test_the_logger_flushes_at_each_experiment_snapshot(tmp_path):
    uri = f"sqlite:///{tmp_path}/m.db"
    tracker = StudyTracker(uri, "snap", "snap")
    parent = tracker.parent_run("control", "search")
    logger = MLflowTrialLogger(uri, tracker.experiment_id, {"control": parent},
                               {"study": "snap", "phase": "search"}, 3, SearchView())
    logger.setup()
    trial = Trial("trainable", config={"strategy": "control", "trial": {"seed": 3}}, trial_id="t3", stub=True)
    logger.log_trial_start(trial)
    for n in (1, 2):
        logger.log_trial_result(n, trial, {"epoch": n, "val/accuracy": n / 4, "reported_at": time.time()})
    assert logger.get_state() is None  # Tune keeps no state file for it
    (run,) = [r for r in tracker.find_runs(phase="search") if "trial_id" in r.data.tags]
    assert run.data.metrics == {"epoch": 2.0, "val/accuracy": 0.5}
    assert run.data.tags["seed"] == "3" and run.data.tags["mlflow.parentRunId"] == parent
    logger.log_trial_end(trial)
    logger.on_experiment_end(trials=[trial])
    assert tracker.client.get_run(run.info.run_id).info.status == "FINISHED"


DRIVER = """
import os, sys, time
from study.mlflow_writer import MLflowWriter, EpochResult, RunStart
writer = MLflowWriter(sys.argv[1], sys.argv[2])
writer.put(RunStart("t0", "tags.trial_id = 't0'", "run-t0", {"trial_id": "t0"}, {}))
writer.flush()
print(writer._process.pid, flush=True)
sys.stdin.readline()  # the store is locked now
for n in range(1, 6):
    writer.put(EpochResult("t0", n, {"epoch": float(n)}, {}, {}, time.time()))
time.sleep(1.0)  # sent: the writer waits for the lock
os.kill(os.getpid(), 9)
"""


def running(pid: int) -> bool:
    """Whether process ``pid`` exists and is not a zombie (Linux's /proc)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_a_killed_drivers_writer_ends_at_once_and_writes_nothing_after(tmp_path):
    """The writer process must not outlive its driver: a write it finished after the kill could
    race the resumed study's writer (which reads what the run holds) and log an epoch twice."""
    db = tmp_path / "m.db"
    client = MlflowClient(f"sqlite:///{db}")
    exp = client.create_experiment("w")
    script = tmp_path / "driver.py"
    script.write_text(DRIVER)
    driver = subprocess.Popen([sys.executable, str(script), f"sqlite:///{db}", exp], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True, cwd=Path(__file__).parents[1])
    writer_pid = int(driver.stdout.readline())
    with locked(db):
        driver.stdin.write("go\n")
        driver.stdin.flush()
        assert driver.wait(timeout=60) == -signal.SIGKILL
        deadline = time.monotonic() + 10
        while running(writer_pid):
            assert time.monotonic() < deadline, "the writer outlived its driver"
            time.sleep(0.1)
    time.sleep(1.0)
    (run,) = client.search_runs([exp])
    assert client.get_metric_history(run.info.run_id, "epoch") == []
