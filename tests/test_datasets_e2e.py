"""Whole studies on the public data sets' native layouts (synthesised stand-ins): ``study run``
(search, paired repeats, compare) on the pneumonia-set folders, COVIDx with its test file and an
RSNA-style DICOM table; one trial on each of the other presets' layouts; ``study data inspect``."""
import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient
from test_datasets import _chexpert_layout, _dicom, chexpert_rows, nih, pneumonia_layout, write_images  # noqa: F401

from trainables.predictions import PREDICTIONS_FILE, read_predictions

SPEC = """
name: {name}
data: {data}
model: simple_cnn
training: {{epochs: 2, batch_size: 16, num_threads: 1}}
strategies:
  control: control
  upsample: upsample
search:
  space:
    lr: {{loguniform: [1.0e-3, 3.0e-2]}}
  samples_per_strategy: 1
  startup_trials: 1
  max_concurrent: 2
scheduler: {{type: fifo}}
repeats: {{seeds: 3}}
tracking: {{uri: "sqlite:///{root}/mlflow.db"}}
failure: {{max_failures: 0}}
storage_path: {root}/results
"""


def study(*args):
    return subprocess.run([sys.executable, "-m", "study.cli", *args], capture_output=True, text=True)


def spec(tmp_path, name: str, data: dict) -> str:
    data = {"load_size": 20, "image_size": 16, **data}
    path = tmp_path / f"{name}.yaml"
    path.write_text(SPEC.format(name=name, data=json.dumps(data, default=str), root=tmp_path))
    return str(path)


def covidx_layout(root) -> None:
    for split, n in (("train", 24), ("val", 8), ("test", 8)):
        rows = [f"{split}{i} {split}_{i}.png {'positive' if i % 3 == 0 else 'negative'} bimcv" for i in range(n)]
        (root / split).mkdir(parents=True)
        (root / f"{split}.txt").write_text("\n".join(rows) + "\n")
        write_images(root / split, [r.split()[1] for r in rows])


def dicom_table(root) -> None:
    """An RSNA-style folder: detailed class info (one row per box) and DICOMs named by patientId."""
    rows = []
    (root / "stage_2_train_images").mkdir(parents=True)
    for i in range(36):
        cls = ["Normal", "No Lung Opacity / Not Normal", "Lung Opacity"][i % 3]
        pid = f"{i:08x}-0000-4000-8000-000000000000"
        rows += [(pid, cls)] * (2 if cls == "Lung Opacity" else 1)
        _dicom(root / "stage_2_train_images" / f"{pid}.dcm", 37 * i + 300 * (i % 3))
    pd.DataFrame(rows, columns=["patientId", "class"]).to_csv(root / "stage_2_detailed_class_info.csv", index=False)


LAYOUTS = {
    "pneumonia_kaggle": lambda root: pneumonia_layout(root),
    "covidx": covidx_layout,
    "rsna_pneumonia": dicom_table,
}


@pytest.mark.slow
@pytest.mark.parametrize("preset", list(LAYOUTS))
def test_a_study_runs_end_to_end_on_the_native_layout(tmp_path, preset):
    root = tmp_path / "data"
    LAYOUTS[preset](root)
    path = spec(tmp_path, preset.replace("_", ""), {"preset": preset, "path": root})
    r = study("run", path)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "compare (3 paired seeds, baseline control" in r.stdout
    assert (tmp_path / "results" / preset.replace("_", "") / "report" / "report.html").is_file()
    # every repeat run's predictions name real files under data.path and their patients
    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    runs = [r for r in client.search_runs([client.get_experiment_by_name(preset.replace("_", "")).experiment_id],
                                          "tags.phase = 'repeat'") if "trial_id" in r.data.tags]
    assert len(runs) == 6
    frame = read_predictions(client.download_artifacts(runs[0].info.run_id, PREDICTIONS_FILE))
    assert len(frame) > 0 and all((root / f).is_file() for f in frame.file)
    assert frame.patient.str.len().gt(0).all()


@pytest.mark.slow
def test_one_trial_on_the_nih_and_chexpert_layouts(nih, chexpert_rows, tmp_path):  # noqa: F811
    root, _, _ = nih
    r = study("trial", spec(tmp_path, "nih", {"preset": "nih_chestxray14", "path": root}))
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.count("\nepoch ") == 2 and '"test/sensitivity"' in r.stdout
    cx = tmp_path / "CheXpert-v1.0-small"
    cx.mkdir()
    _chexpert_layout(cx, chexpert_rows)
    r = study("trial", spec(tmp_path, "chexpert", {"preset": "chexpert", "path": cx,
                                                   "table": {"uncertain": "positive"}}))
    assert r.returncode == 0, r.stderr[-3000:]


def test_study_data_inspect_prints_the_resolved_data(tmp_path):
    pneumonia_layout(tmp_path / "chest_xray")
    path = spec(tmp_path, "insp", {"preset": "pneumonia_kaggle", "path": tmp_path / "chest_xray"})
    r = study("data", "inspect", path)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].startswith("source: imagefolder (preset pneumonia_kaggle), path ")
    assert "files: 76 found, 0 named but missing" in r.stdout and "split: official" in r.stdout
    header = next(i for i, line in enumerate(lines) if line.split()[:3] == ["split", "NORMAL", "PNEUMONIA"])
    test_row = lines[header + 3].split()
    # 5 children with pneumonia (2 films each), 10 normal films of 10 patients (IM-n, NORMAL2-IM-n)
    assert test_row == ["test", "10", "10", "20", "15"]
    assert "not prepared yet" in lines[-1]
    info = json.loads(study("data", "inspect", path, "--json").stdout)
    assert sum(s["images"] for s in info["splits"].values()) == 76
    assert np.sum([s["per_class"]["PNEUMONIA"] for s in info["splits"].values()]) == 38
    bad = study("data", "inspect", path, "--set", "data.table={file: x.csv, image: f, label: y}")
    assert bad.returncode == 2 and "data.table: required by source 'table' and read by no other source" in bad.stderr
