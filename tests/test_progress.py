"""The phase progress callback: Tune pickles its callbacks with the experiment (resume) and ships them
to the cluster under Ray Client; the copy must still print its status, never touch a missing bar."""

from types import SimpleNamespace

from ray import cloudpickle

from study.progress import Progress, plural


def _trial(status: str, strategy: str, value: float, epoch: int) -> SimpleNamespace:
    return SimpleNamespace(status=status, config={"strategy": strategy}, trial_id=f"{strategy}_{epoch}",
                           last_result={"epoch": epoch, "val_auroc": value}, error_file=None)


def test_progress_survives_pickling_and_reports_in_a_log(capsys):
    progress = Progress(lambda c: (c["strategy"], c), {"control": 2, "weighted": 1}, "val_auroc", epochs=4)
    progress.setup()  # not a terminal under pytest: plain lines, no bar
    copy = cloudpickle.loads(cloudpickle.dumps(progress))  # as Tune and Ray Client do
    trials = [_trial("TERMINATED", "control", 0.7, 4), _trial("TERMINATED", "weighted", 0.8, 2),
              _trial("RUNNING", "control", float("nan"), 1)]
    for t in trials[:2]:
        copy.on_trial_complete(0, trials, t)
    copy.on_experiment_end(trials)
    out, err = capsys.readouterr()
    assert "[control] 1/2 trial control_4: 4/4 epochs, val_auroc 0.7000 (full budget)" in out
    assert "[weighted] 1/1 trial weighted_2: 2/4 epochs, val_auroc 0.8000 (stopped early)" in out
    assert "search: 2/3 trials done" in err and "1 running, 1 stopped early, 0 failed" in err
    assert "best val_auroc: control 0.700 weighted 0.800" in err


def test_plural():
    assert [plural(1, "epoch"), plural(2, "epoch"), plural(3, "strategy"), plural(2, "day")] == [
        "1 epoch", "2 epochs", "3 strategies", "2 days"]
