"""``study compare-across`` on two small synthetic studies run for real (an easy and a hard data
set): Friedman over the data sets from the means over each study's paired seeds, its report, and
one message for what it cannot compare."""
import base64
import io
import re
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from study.across import across_table
from study.errors import StudyError
from study.repeats import run_repeats
from study.results import repeat_table
from study.search import run_search
from study.spec import load_spec

pytestmark = pytest.mark.xdist_group("ray")

SPEC = """
name: {name}
data:
  source: synthetic
  synthetic: {{n: 240, seed: 5, difficulty: {difficulty}, shares: {{covid: 0.2, normal: 0.5, pneumonia: 0.3}}}}
  load_size: 20
  image_size: 16
model: simple_cnn
training: {{epochs: 2, batch_size: 32, lr: 3.0e-3}}
strategies: {{control: control, upsample: upsample, loss_weight: loss_weight}}
search: {{space: {{lr: {{choice: [3.0e-3]}}}}, samples_per_strategy: 1, max_concurrent: 2}}
scheduler: {{type: fifo}}
repeats: {{seeds: 3, metrics: [test/balanced_accuracy, test/auroc, test/brier]}}
tracking: {{uri: "sqlite:///{root}/mlflow.db"}}
failure: {{max_failures: 0}}
storage_path: {root}/results
"""


def write(root, name, difficulty):
    path = root / f"{name}.yaml"
    path.write_text(SPEC.format(name=name, difficulty=difficulty, root=root))
    return path


@pytest.mark.slow
def test_compare_across_two_data_sets(ray_local, tmp_path):
    paths = [write(tmp_path, "easy", 0.5), write(tmp_path, "hard", 2.0)]
    specs = [load_spec(p) for p in paths]
    for spec in specs:
        run_search(spec)
        run_repeats(spec)
    out = tmp_path / "across"
    r = subprocess.run([sys.executable, "-m", "study.cli", "compare-across", *map(str, paths), "--out", str(out)],
                       capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "test/balanced_accuracy: Friedman p = " in r.stdout and "over 2 data sets" in r.stdout
    assert "warning: 2 data sets: Friedman's test over so few blocks has little power" in r.stdout
    tables, _, _ = across_table(specs)
    for spec in specs:  # each data set's value is the mean over its paired seeds
        long = repeat_table(spec)
        expected = long.groupby("strategy")["test/auroc"].mean()
        assert tables["test/auroc"].loc[spec.name].to_dict() == pytest.approx(expected.to_dict())
    summary = __import__("json").loads((out / "across_summary.json").read_text())
    for metric, result in summary["friedman"].items():
        assert result["n"] == 2 and result["k"] == 3
        assert sum(result["mean_ranks"].values()) == pytest.approx(6)  # ranks 1..3 on each data set
    page = (out / "report.html").read_text()
    images = re.findall(r"src='data:image/png;base64,([^']+)'", page)
    assert len(images) == 3 and "<h2>test/brier</h2>" in page
    for data in images:
        Image.open(io.BytesIO(base64.b64decode(data))).verify()
    assert np.isfinite(tables["test/brier"].to_numpy()).all()


def test_compare_across_needs_two_studies_of_different_names(tmp_path):
    one = load_spec(write(tmp_path, "easy", 0.5))
    with pytest.raises(StudyError, match="give two or more specs"):
        across_table([one])
    with pytest.raises(StudyError, match="two specs name the same study"):
        across_table([one, one])
    with pytest.raises(StudyError, match="easy: no finished repeat runs in MLflow"):
        across_table([one, load_spec(write(tmp_path, "hard", 2.0))])
