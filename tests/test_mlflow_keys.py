"""Class names MLflow refuses in metric keys become valid keys, checked before a search; when the
MLflow logger fails anyway, the runs it opened end FAILED instead of staying RUNNING."""
import numpy as np
import pytest
from mlflow import MlflowClient
from ray.tune.experiment import Trial

from study.tracking import MLflowTrialLogger, StudyTracker
from study.tune_adapter import SearchView
from trainables.metric_names import check_class_metric, class_key, class_keys
from trainables.metrics import classification_metrics

NAMES = ["normal", "pneumonia (viral)", "covid+", "tb, other", "🫁 lung"]


def test_class_names_become_metric_keys_mlflow_accepts(tmp_path):
    keys = class_keys(NAMES)
    assert keys == ["normal", "pneumonia _viral_", "covid_", "tb_ other", "_ lung"]
    assert class_key("a/b") == "a_b"  # no fake split
    y = np.array([0, 1, 2, 3, 4, 1])
    probs = np.eye(5)[[0, 1, 2, 3, 4, 0]]
    metrics = classification_metrics(y, probs, 0.1, NAMES, positive=2)
    assert metrics["recall_pneumonia _viral_"] == 0.5 and metrics["recall_covid_"] == 1.0
    client = MlflowClient(f"sqlite:///{tmp_path}/m.db")
    run = client.create_run(client.create_experiment("keys")).info.run_id
    for k, v in metrics.items():
        if not isinstance(v, list):
            client.log_metric(run, f"val/{k}", v, step=1)  # MLflow takes every key
    assert "val/recall_🫁 lung" not in client.get_run(run).data.metrics
    check_class_metric("val/recall_pneumonia _viral_", NAMES)
    with pytest.raises(ValueError, match=r"'val/recall_pneumonia \(viral\)' names no class of the data: recall_ "
                                         r"takes one of normal, pneumonia _viral_, covid_"):
        check_class_metric("val/recall_pneumonia (viral)", NAMES)


def test_two_classes_with_one_key_are_refused():
    with pytest.raises(ValueError, match=r"classes 'a\+b' and 'a,b' give one metric name recall_a_b; rename"):
        class_keys(["a+b", "a,b"])


def test_a_failing_logger_ends_its_runs_failed(tmp_path):
    uri = f"sqlite:///{tmp_path}/m.db"
    tracker = StudyTracker(uri, "fail", "fail")
    parent = tracker.parent_run("control", "search")
    logger = MLflowTrialLogger(uri, tracker.experiment_id, {"control": parent},
                               {"study": "fail", "phase": "search"}, 3, SearchView())
    logger.setup()
    trials = [Trial("trainable", config={"strategy": "control", "trial": {"seed": i}}, trial_id=f"t{i}", stub=True)
              for i in range(2)]
    for t in trials:
        logger.log_trial_start(t)
    logger.log_trial_result(1, trials[0], {"epoch": 1, "val/accuracy": 0.5})
    logger.log_trial_result(2, trials[1], {"epoch": 1, "val/bad(key)": 0.5})  # MLflow refuses the key
    with pytest.raises(RuntimeError, match="the MLflow logger failed: MlflowException"):
        logger.flush()  # the writer's error reaches the driver at its next call (Tune then stops)
    with pytest.raises(RuntimeError, match="the MLflow logger failed"):
        logger.log_trial_result(2, trials[0], {"epoch": 2, "val/accuracy": 0.5})
    runs = [r for r in tracker.find_runs(phase="search") if "trial_id" in r.data.tags]
    assert sorted(r.info.status for r in runs) == ["FAILED", "FAILED"]
    assert all(r.data.tags["error"].startswith("the MLflow logger failed: MlflowException") for r in runs)


def test_table_column_names_in_the_config_become_valid_param_keys():
    from study.tracking import flat_params

    params = flat_params({"data": {"table": {"filter": {"OriginalImage[Width": ["1"], "Frontal/Lateral": ["F"]}}}})
    assert params == {"data.table.filter.OriginalImage_Width": '["1"]', "data.table.filter.Frontal/Lateral": '["F"]'}


def test_predictions_that_cannot_be_stored_warn_and_tag_only_their_run(tmp_path):
    from ray import tune

    uri = f"sqlite:///{tmp_path}/m.db"
    blocker = tmp_path / "blocker"  # the experiment's artifact store is a file, not a folder: storing fails
    blocker.write_text("")
    MlflowClient(uri).create_experiment("preds", artifact_location=blocker.as_uri())
    tracker = StudyTracker(uri, "preds", "preds")
    parent = tracker.parent_run("control", "repeat")
    logger = MLflowTrialLogger(uri, tracker.experiment_id, {"control": parent},
                               {"study": "preds", "phase": "repeat"}, 3, SearchView(), predictions=True)
    logger.setup()
    trials = [Trial("trainable", config={"strategy": "control", "trial": {"seed": i}}, trial_id=f"t{i}", stub=True)
              for i in range(2)]
    for t in trials:
        logger.log_trial_start(t)
    folder = tmp_path / "checkpoint"
    folder.mkdir()
    (folder / "predictions.parquet").write_bytes(b"PAR1")
    with pytest.warns(UserWarning, match="trial t0: its predictions.parquet was not stored in MLflow"):
        logger.on_checkpoint(1, trials, trials[0], tune.Checkpoint.from_directory(str(folder)))
        logger.flush()
    assert (folder / "predictions.parquet").is_file()  # the checkpoint's file is left alone, the copy removed
    runs = {r.data.tags["trial_id"]: r for r in tracker.find_runs(phase="repeat") if "trial_id" in r.data.tags}
    assert runs["t0"].data.tags["predictions_error"].startswith(("NotADirectoryError", "FileExistsError", "OSError"))
    assert {r.info.status for r in runs.values()} == {"RUNNING"}  # neither run is failed by it
    assert "predictions_error" not in runs["t1"].data.tags
