"""The search phase on a real local Ray, real Optuna and real MLflow (SQLite)."""
import json

import optuna
import pytest
from conftest import free_port
from mlflow import MlflowClient

from study.errors import StudyError, TrackingError
from study.layout import optuna_storage_uri, repeat_plan_file, study_dir
from study.search import run_search
from study.spec import load_spec

pytestmark = pytest.mark.xdist_group("ray")


def test_tiny_study_runs_every_strategy_with_the_same_budget(ray_local, tiny_spec_file):
    spec = load_spec(tiny_spec_file())
    (summary,) = run_search(spec).values()
    assert set(summary["strategies"]) == {"control", "upsample"}
    for part in summary["strategies"].values():
        assert part["trials"] == 3 and not part["failed"]
        assert part["best"]["epochs"] == 3 and 0 <= part["best"]["score"] <= 1
        assert set(part["best"]["searched"]) == {"lr"}
    # grace_period 1, reduction factor 2: ASHA stops the weaker trials early
    assert sum(p["stopped_early"] for p in summary["strategies"].values()) >= 1
    on_disk = json.loads((study_dir(spec) / "search_summary.json").read_text())
    assert on_disk["strategies"]["control"]["trials"] == 3

    client = MlflowClient(spec.tracking.uri)
    exp = client.get_experiment_by_name("tiny")
    runs = client.search_runs([exp.experiment_id])
    parents = {r.data.tags["strategy"]: r for r in runs if r.data.tags.get("role") == "parent"}
    assert set(parents) == {"control", "upsample"}
    assert {a.path for a in client.list_artifacts(parents["control"].info.run_id)} >= {
        "spec.json", "data_manifest.json", "summary.json"}
    assert parents["control"].inputs.dataset_inputs
    children = [r for r in runs if "trial_id" in r.data.tags]
    assert len(children) == 6 and len({r.data.tags["trial_id"] for r in children}) == 6
    stopped = 0
    for child in children:
        tags = child.data.tags
        assert tags["mlflow.parentRunId"] == parents[tags["strategy"]].info.run_id
        assert tags["phase"] == "search" and tags["study"] == "tiny" and tags["seed"] == "0"
        assert child.info.status == "FINISHED"
        assert {"lr", "sampler", "data.load_size", "data.synthetic.n"} <= set(child.data.params)
        assert not any(k.startswith(("config/", "pid", "timestamp")) for k in child.data.metrics)
        epochs = int(tags["epochs_run"])
        history = client.get_metric_history(child.info.run_id, "val/balanced_accuracy")
        assert [m.step for m in history] == list(range(1, epochs + 1))
        stopped += tags["stopped_early"] == "true"
        assert (tags["stopped_early"] == "true") == (epochs < 3)
    assert stopped == sum(p["stopped_early"] for p in summary["strategies"].values())

    studies = optuna.get_all_study_summaries(optuna_storage_uri(spec))
    assert {s.study_name: s.n_trials for s in studies} == {"tiny.control.search": 3,
                                                         "tiny.upsample.search": 3}

    with pytest.raises(StudyError, match="already holds a search of study 'tiny': pass --resume"):
        run_search(spec)


@pytest.mark.slow
def test_a_diverging_trial_is_recorded_as_failed_and_the_study_goes_on(ray_local, tiny_spec_file, capsys):
    extra = "\n".join(["", "  blowup: {optimizer: sgd, momentum: 0.0, sampler: uniform, loss: ce, augment: none}"])
    text = tiny_spec_file(name="failing", samples=2).read_text()
    text = text.replace("  upsample: upsample", "  upsample: upsample" + extra)
    text = text.replace("lr: {loguniform: [1.0e-4, 3.0e-2]}", "lr: {loguniform: [1.0e-4, 3.0e-2]}\n"
                        "  strategy_space:\n    blowup:\n      lr: {loguniform: [1.0e+25, 1.0e+30]}")
    path = tiny_spec_file(name="failing2")
    path.write_text(text.replace("name: failing", "name: failing2"))
    spec = load_spec(path)
    (summary,) = run_search(spec).values()
    blown = summary["strategies"]["blowup"]
    assert blown["best"] is None and len(blown["failed"]) == 2
    assert all("TrainingDiverged: training loss is" in f["error"] for f in blown["failed"])
    assert summary["strategies"]["control"]["best"] is not None
    client = MlflowClient(spec.tracking.uri)
    exp = client.get_experiment_by_name("failing2")
    failed = client.search_runs([exp.experiment_id], "tags.strategy = 'blowup'")
    children = [r for r in failed if "trial_id" in r.data.tags]
    assert len(children) == 2
    assert all(r.info.status == "FAILED" and "TrainingDiverged" in r.data.tags["error"] for r in children)
    # a study with no result for a strategy never exits 0
    from study.cli import main

    capsys.readouterr()
    assert main(["run", str(path), "--resume", "--search-only"]) == 2
    assert "study: error: the search of blowup has no successful trial" in capsys.readouterr().err


def test_unreachable_tracking_server_is_one_error_before_any_work(tiny_spec_file):
    port = free_port()
    spec = load_spec(tiny_spec_file(), {"tracking": {"uri": f"http://127.0.0.1:{port}"}})
    with pytest.raises(TrackingError, match=f"tracking.uri: cannot reach MLflow at http://127.0.0.1:{port}"):
        run_search(spec)
    assert not study_dir(spec).exists()


@pytest.mark.slow
def test_fresh_replaces_the_previous_search(ray_local, tiny_spec_file):
    spec = load_spec(tiny_spec_file(name="again", samples=1))
    run_search(spec)
    client = MlflowClient(spec.tracking.uri)
    experiment = client.get_experiment_by_name("again").experiment_id
    first = client.search_runs([experiment])
    # a repeat of the first search's config: the fresh search's configs must not pair with it
    stale = client.create_run(experiment, tags={"study": "again", "phase": "repeat", "strategy": "control",
                                                "seed": "100", "trial_id": "old"}).info.run_id
    client.set_terminated(stale)
    repeat_plan_file(spec).write_text('{"runs": 1, "name": "repeat-1", "done": true, "pairs": []}')
    (summary,) = run_search(spec, fresh=True).values()
    assert all(p["trials"] == 1 for p in summary["strategies"].values())
    client = MlflowClient(spec.tracking.uri)
    live = client.search_runs([client.get_experiment_by_name("again").experiment_id])
    assert len(live) == len(first) == 4  # two parents, two trials; the first search's runs are deleted
    assert not {r.info.run_id for r in live} & {r.info.run_id for r in first}
    assert client.get_run(stale).info.lifecycle_stage == "deleted" and not repeat_plan_file(spec).exists()
    studies = optuna.get_all_study_summaries(optuna_storage_uri(spec))
    assert {s.study_name: s.n_trials for s in studies} == {"again.control.search": 1, "again.upsample.search": 1}


def test_vabal_knobs_are_searched_and_round_metrics_reach_mlflow(ray_local, tiny_spec_file):
    text = tiny_spec_file(name="vabal", samples=2).read_text()
    text = text.replace("  control: control\n  upsample: upsample\n", "  control: control\n  vabal: {strategy: "
                        "vabal_both, vabal: {refresh_every: 1, mc_samples: 10}}\n")
    text = text.replace("  samples_per_strategy:", "  strategy_space:\n    vabal:\n"
                        "      vabal.exponent: {loguniform: [0.5, 2.0]}\n"
                        "      vabal.lambda: {loguniform: [0.1, 10.0]}\n"
                        "  samples_per_strategy:")
    text = text.replace("scheduler: {type: asha, grace_period: 1, reduction_factor: 2}",
                        "scheduler: {type: fifo}")
    path = tiny_spec_file(name="vabal")
    path.write_text(text + "\nrepeats: {seeds: 2}\n")
    spec = load_spec(path)
    (summary,) = run_search(spec).values()
    best = summary["strategies"]["vabal"]["best"]
    assert set(best["searched"]) == {"lr", "vabal.exponent", "vabal.lambda"}
    client = MlflowClient(spec.tracking.uri)
    exp = client.get_experiment_by_name("vabal")
    children = client.search_runs([exp.experiment_id], "tags.strategy = 'vabal'")
    children = [r for r in children if "trial_id" in r.data.tags]
    assert len(children) == 2
    for child in children:
        params = child.data.params
        assert params["vabal.use_for"] == "both" and params["sampler"] == "vabal"
        assert params["vabal.refresh_every"] == "1" and "vabal.lambda" in params
        rounds = client.get_metric_history(child.info.run_id, "vabal/score_mean")
        assert [m.step for m in rounds] == [1, 2]  # a round after epochs 1 and 2, none after 3
    control = [r for r in client.search_runs([exp.experiment_id], "tags.strategy = 'control'")
               if "trial_id" in r.data.tags]
    assert control and not any(k.startswith("vabal") for r in control for k in r.data.params)


def test_settle_closes_runs_that_a_hard_kill_left_running(tmp_path):
    """Tune saved the trial as finished, but the driver died before logging its end."""
    from study.tracking import StudyTracker

    tracker = StudyTracker(f"sqlite:///{tmp_path}/mlflow.db", "settle", "settle")
    tags = {"study": "settle", "phase": "search", "strategy": "control"}
    ended = tracker.client.create_run(tracker.experiment_id, tags={**tags, "trial_id": "a"}).info.run_id
    other = tracker.client.create_run(tracker.experiment_id, tags={**tags, "trial_id": "b"}).info.run_id
    tracker.client.log_metric(ended, "epoch", 2, step=2)
    tracker.settle("search", "control", [{"trial_id": "a", "epoch": 3, "val/loss": 0.5}], epochs=3)
    run = tracker.client.get_run(ended)
    assert run.info.status == "FINISHED" and run.data.tags["stopped_early"] == "false"
    assert run.data.tags["epochs_run"] == "3" and run.data.metrics["val/loss"] == 0.5
    assert tracker.client.get_run(other).info.status == "RUNNING"  # not finished in Tune: untouched


@pytest.mark.slow
def test_one_live_trial_per_strategy_makes_the_search_reproducible(ray_local, tiny_spec_file):
    """Strategies share both CPUs, but with ``max_concurrent: 1`` each strategy's TPE and ASHA see
    its trials one after another: two searches give the same configs, scores and early stops,
    TPE's model-based suggestions (after its 10 random ones) included."""
    searched = {}
    for name in ("same1", "same2"):
        path = tiny_spec_file(name=name, samples=12)
        path.write_text(path.read_text().replace("max_concurrent: 2", "max_concurrent: 1"))
        spec = load_spec(path)
        run_search(spec)
        client = MlflowClient(spec.tracking.uri)
        runs = [r for r in client.search_runs([client.get_experiment_by_name(name).experiment_id])
                if "trial_id" in r.data.tags]
        searched[name] = {s: sorted((float(r.data.params["lr"]), r.data.tags["epochs_run"],
                                     r.data.metrics["val/balanced_accuracy"])
                                    for r in runs if r.data.tags["strategy"] == s)
                          for s in ("control", "upsample")}
        spans = sorted((r.info.start_time, r.info.end_time, r.data.tags["strategy"]) for r in runs)
        assert any(a[1] > b[0] and a[2] != b[2] for a, b in zip(spans, spans[1:])), \
            "no two strategies' trials ran at the same time"
    assert searched["same1"] == searched["same2"]
    assert all(len(v) == 12 for v in searched["same1"].values())
