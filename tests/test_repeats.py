"""Repeat and compare phases on a real local Ray and MLflow: paired seeds, adding seeds later,
and a report whose every image decodes."""
import base64
import io
import re

import pytest
from mlflow import MlflowClient
from PIL import Image

from study.repeats import run_repeats
from study.report import run_compare
from study.results import repeat_table
from study.search import run_search
from study.spec import load_spec
from study.tune_adapter import repeat_config
from trainables.predictions import PREDICTIONS_FILE, probabilities, read_predictions

pytestmark = pytest.mark.xdist_group("ray")

EXTRA = """
repeats: {seeds: 6, first_seed: 10}
"""
SETTINGS = {"scheduler": {"type": "fifo"},
            "training": {"epochs": 2, "evaluation": {"operating_points": ["youden", {"specificity": 0.9}]}},
            "repeats": {"metrics": ["test/sensitivity", "test/auroc", "test_at_youden/sensitivity"]}}


def test_repeat_config_pairs_by_seed():
    best = {"seed": 0, "lr": 0.01, "data": {"split_seed": 3}}
    fixed = repeat_config(best, 12, vary_split=False)
    varied = repeat_config(best, 12, vary_split=True)
    assert fixed["seed"] == varied["seed"] == 12
    assert fixed["data"]["split_seed"] == 3 and varied["data"]["split_seed"] == 12
    assert best["seed"] == 0  # the best config is not modified


@pytest.mark.slow
def test_search_repeat_compare_and_add_seeds_later(ray_local, tiny_spec_file):
    path = tiny_spec_file(name="rep", samples=1, extra=EXTRA)
    spec = load_spec(path, SETTINGS)
    run_search(spec)
    run_repeats(spec)
    client = MlflowClient(spec.tracking.uri)
    exp = client.get_experiment_by_name("rep")
    runs = client.search_runs([exp.experiment_id], "tags.phase = 'repeat'")
    parents = {r.data.tags["strategy"]: r.info.run_id for r in runs if r.data.tags.get("role") == "parent"}
    children = [r for r in runs if "trial_id" in r.data.tags]
    assert set(parents) == {"control", "upsample"} and len(children) == 12
    assert {(r.data.tags["strategy"], r.data.tags["seed"]) for r in children} == {
        (s, str(k)) for s in ("control", "upsample") for k in range(10, 16)}
    for r in children:
        assert r.data.tags["mlflow.parentRunId"] == parents[r.data.tags["strategy"]]
        assert r.info.status == "FINISHED" and r.data.params["seed"] == r.data.tags["seed"]
        assert "test/sensitivity" in r.data.metrics and "best/test/sensitivity" in r.data.metrics
        assert {"test/auroc", "test_at_spec90/specificity", "best/test_at_youden/threshold"} <= set(r.data.metrics)
        # the per-sample predictions round-trip: both models, every test image once, float32 probabilities
        frame = read_predictions(client.download_artifacts(r.info.run_id, PREDICTIONS_FILE))
        final = frame[frame.model == "final"]
        assert len(frame) == 2 * len(final) and final["index"].is_unique
        assert final.label.value_counts().sum() == len(final) and str(final.prob_covid.dtype) == "float32"
        assert probabilities(final).sum(1) == pytest.approx(1, abs=1e-5)
        assert float(final.prob_covid.round(6).nunique()) > 1
        assert ("features" in frame) == (r.data.tags["seed"] == "10")  # the first seed keeps its features
        threshold = r.data.metrics["test_at_youden/threshold"]
        called = probabilities(final)[:, 0] >= threshold
        is_covid = final.label.to_numpy() == 0
        assert r.data.metrics["test_at_youden/sensitivity"] == pytest.approx(called[is_covid].mean())
    table = repeat_table(spec)
    assert len(table) == 12 and table["test/sensitivity"].between(0, 1).all()

    summary = run_compare(spec)
    assert summary["seeds"] == 6
    assert len(summary["verdicts"]["test/sensitivity"]) == 1
    assert summary["verdicts"]["test/sensitivity"][0].startswith("upsample ")
    html = open(summary["report_html"]).read()
    images = re.findall(r"src='data:image/png;base64,([^']+)'", html)
    assert len(images) >= 4
    for data in images:
        Image.open(io.BytesIO(base64.b64decode(data))).verify()
    assert "test/sensitivity" in html and "<table" in html
    for figure in ("roc_pr", "reliability", "embedding"):
        assert f"<figure id='{figure}'>" in html
    assert "<h2>Discrimination and operating points</h2>" in html and "patient bootstrap 95% CI low" in html
    assert summary["auroc"][0]["seeds"] == 6
    study_runs = client.search_runs([exp.experiment_id], "tags.phase = 'compare'")
    assert [a.path for a in client.list_artifacts(study_runs[0].info.run_id)] == ["report"]
    assert "report/report.html" in {a.path for a in client.list_artifacts(study_runs[0].info.run_id, "report")}

    # more seeds later: only the new pairs run
    more = load_spec(path, {**SETTINGS, "repeats": {**SETTINGS["repeats"], "seeds": 8}})
    run_repeats(more)
    children = [r for r in client.search_runs([exp.experiment_id], "tags.phase = 'repeat'")
                if "trial_id" in r.data.tags]
    assert len(children) == 16
    first = {r.info.run_id for r in runs if "trial_id" in r.data.tags}
    assert first <= {r.info.run_id for r in children}  # the first twelve were kept, not re-run
    assert run_compare(more)["seeds"] == 8
