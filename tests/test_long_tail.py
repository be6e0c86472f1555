"""``search_spaces/long_tail.yaml`` end to end at tiny size: every long-tail baseline (LDAM-DRW, the
MixUps, cRT, tau-norm) is searched with its own knob, repeated over paired seeds and compared with
the thesis' strategies and the modern losses, through the real Ray Tune, Optuna and MLflow."""
from pathlib import Path

import pytest
from mlflow import MlflowClient

from study.repeats import run_repeats
from study.report import run_compare
from study.results import repeat_table
from study.search import run_search
from study.spec import load_spec

SPEC = Path(__file__).parents[1] / "search_spaces" / "long_tail.yaml"


@pytest.mark.slow
@pytest.mark.xdist_group("ray")
def test_the_long_tail_study_runs_end_to_end(ray_local, tmp_path):
    spec = load_spec(SPEC, {
        "data": {"synthetic": {"n": 300, "seed": 3, "shares": {"covid": 0.2, "normal": 0.5, "pneumonia": 0.3}},
                 "load_size": 20, "image_size": 16},
        "training": {"epochs": 3, "batch_size": 32},
        "search": {"samples_per_strategy": 1, "startup_trials": 1,
                   "strategy_space": {"crt": {"crt.epochs": {"choice": [1]}}}},
        "scheduler": {"type": "fifo"},
        "repeats": {"seeds": 2, "metrics": ["test/sensitivity", "test/balanced_accuracy"]},
        "tracking": {"uri": f"sqlite:///{tmp_path}/mlflow.db"},
        "storage_path": str(tmp_path / "results"),
    })
    assert len(spec.strategies) == 12
    (summary,) = run_search(spec).values()
    for name in ("ldam_drw", "mixup", "balanced_mixup", "crt", "tau_norm"):
        assert summary["strategies"][name]["best"] is not None, name
    assert summary["strategies"]["mixup"]["best"]["searched"].keys() >= {"lr", "mixup.alpha",
                                                                         "model_options.dropout"}

    run_repeats(spec)
    table = repeat_table(spec)
    assert len(table) == 12 * 2 and set(table.seed) == {100, 101}
    client = MlflowClient(spec.tracking.uri)
    exp = client.get_experiment_by_name("long_tail")
    runs = {r.info.run_name: r for r in client.search_runs([exp.experiment_id], "tags.phase = 'repeat'")}
    # each strategy's defining metric reached MLflow from its repeat runs
    assert runs["crt-seed100"].data.metrics["train/crt"] == 1.0
    assert 0.0 <= runs["tau_norm-seed100"].data.metrics["val/tau"] <= 2.0
    assert runs["ldam_drw-seed100"].data.metrics["train/drw"] == 1.0

    summary = run_compare(spec)
    assert len(summary["comparisons"]["test/sensitivity"]) == 11  # each strategy against control
    assert "tau_norm" in open(summary["report_html"]).read()
