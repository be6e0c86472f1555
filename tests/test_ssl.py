"""``init: ssl``: the in-domain SimCLR pre-stage runs once per setting and is reused from its cache."""
import math

import pytest
import torch

from trainables.config import parse_config
from trainables.data import load_arrays
from trainables.models import head_name
from trainables.self_supervised import nt_xent, pretrain, ssl_folder
from trainables.train import build_trial, resolve_device, run

SSL = {"epochs": 2, "batch_size": 32, "dim": 16}


def ssl_config(tiny_config, tmp_path, **change):
    data = {**tiny_config["data"], "cache_dir": str(tmp_path / "cache")}
    return tiny_config | {"init": "ssl", "ssl": SSL, "epochs": 1, "data": data} | change


def test_nt_xent_by_hand():
    e = torch.eye(2)
    # each view's partner has cosine 1, the two others 0: -log(e / (e + 2)) at T = 1
    assert nt_xent(e, e, 1.0).item() == pytest.approx(math.log((math.e + 2) / math.e), abs=1e-6)
    assert nt_xent(e, e, 0.1).item() < nt_xent(e, e.flip(0), 0.1).item()


def entries(tmp_path):
    return sorted(p for p in (tmp_path / "cache" / "ssl").iterdir() if p.is_dir())


def test_pre_stage_runs_once_and_a_second_trial_reuses_it(tiny_config, tmp_path):
    tiny_config["device"] = "cpu"  # the cached weights must give bit-identical numbers: a CPU promise
    first = run(ssl_config(tiny_config, tmp_path), lambda m, c: None)
    [entry] = entries(tmp_path)
    stamp = (entry / "weights.pt").stat().st_mtime_ns
    cfg = parse_config(ssl_config(tiny_config, tmp_path, seed=7))
    trial = build_trial(cfg, load_arrays(cfg.data))
    assert entries(tmp_path) == [entry] and (entry / "weights.pt").stat().st_mtime_ns == stamp
    weights = torch.load(entry / "weights.pt", weights_only=True)
    head = head_name(trial.model) + "."
    for name, value in trial.model.state_dict().items():
        if not name.startswith(head):
            assert torch.equal(value, weights[name]), name
    # a cached pre-stage gives the trial exactly the numbers of the run that computed it
    again = run(ssl_config(tiny_config, tmp_path), lambda m, c: None)
    assert {k: v for k, v in again.items() if "seconds" not in k} == {
        k: v for k, v in first.items() if "seconds" not in k}


def test_other_ssl_settings_are_another_entry_with_its_loss_curve(tiny_config, tmp_path):
    cfg = parse_config(ssl_config(tiny_config, tmp_path))
    arrays = load_arrays(cfg.data)
    path, curve = pretrain(cfg, arrays, resolve_device("cpu"))
    assert len(curve) == 2 and all(math.isfinite(v) and v > 0 for v in curve)
    other = parse_config(ssl_config(tiny_config, tmp_path, ssl={**SSL, "temperature": 0.5}))
    assert ssl_folder(other, arrays) != ssl_folder(cfg, arrays)
    assert ssl_folder(parse_config(ssl_config(tiny_config, tmp_path, seed=3)), arrays) == path.parent
    # the backbone's architecture and input are the pre-stage's: batch norm and normalisation make
    # another entry; the head's dropout (not in the pre-stage's network) does not
    for options in ({"batch_norm": False}, {"normalisation": "half"}):
        changed = parse_config(ssl_config(tiny_config, tmp_path, model_options=options))
        assert ssl_folder(changed, arrays) != ssl_folder(cfg, arrays), options
    dropped = parse_config(ssl_config(tiny_config, tmp_path, model_options={"dropout": 0.4}))
    assert ssl_folder(dropped, arrays) == path.parent


def test_study_runs_each_ssl_setting_once_and_logs_its_curve(tiny_spec_file, tmp_path):
    from mlflow import MlflowClient

    from study.spec import load_spec
    from study.ssl_stage import run_ssl_stages
    from study.tracking import StudyTracker

    path = tiny_spec_file(name="ssl")
    text = path.read_text().replace("  image_size: 16\n",
                                    f"  image_size: 16\n  cache_dir: {tmp_path}/cache\n")
    path.write_text(text.replace("training: {epochs: 3, batch_size: 32}",
                                 "training: {epochs: 3, batch_size: 32, init: ssl, "
                                 "ssl: {epochs: 3, batch_size: 32, dim: 16}}"))
    spec = load_spec(path)
    arrays = load_arrays(spec.data)
    tracker = StudyTracker(spec.tracking.uri, spec.experiment, spec.name)
    [run_id] = run_ssl_stages(spec, arrays, tracker)  # control and upsample share one setting
    [entry] = entries(tmp_path)
    stamp = (entry / "weights.pt").stat().st_mtime_ns
    assert run_ssl_stages(spec, arrays, tracker) == [run_id]
    assert (entry / "weights.pt").stat().st_mtime_ns == stamp
    client = MlflowClient(spec.tracking.uri)
    history = client.get_metric_history(run_id, "ssl/loss")
    assert [m.step for m in history] == [1, 2, 3] and all(math.isfinite(m.value) for m in history)
    run_ = client.get_run(run_id)
    assert run_.data.tags["strategies"] == "control,upsample" and run_.data.params["ssl.epochs"] == "3"
