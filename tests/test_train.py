import math
import shutil

import numpy as np
import pytest
import torch
from conftest import TINY

from trainables.config import parse_config
from trainables.data import load_arrays
from trainables.errors import ConfigError, DataError, TrainingDiverged
from trainables.train import CHECKPOINT_FILE, build_trial, run, train_one_epoch


def collect(config, **kw):
    history = []
    final = run(config, lambda m, ckpt: history.append(m), **kw)
    return history, final


def scalars(m):
    """The metrics without wall-clock timings."""
    return {k: v for k, v in m.items() if not k.endswith(("epoch_seconds", "_s"))}


def test_reports_every_epoch_with_a_checkpoint(tiny_config):
    seen = []

    def report(metrics, ckpt):
        seen.append((metrics["epoch"], (ckpt is not None) and (CHECKPOINT_FILE in __import__("os").listdir(ckpt))))

    final = run(tiny_config, report)
    assert seen == [(1, True), (2, True)]
    for key in ("train/loss", "train/lr", "val/balanced_accuracy", "val/sensitivity", "val/recall_covid",
                "test/accuracy", "test/pr_auc", "best/test/sensitivity", "best/val/balanced_accuracy"):
        assert key in final and math.isfinite(final[key]), key
    assert final["best/epoch"] in (1, 2)
    assert len(final["test/confusion_matrix"]) == 3


def test_same_seed_same_numbers_other_seed_other_numbers(tiny_config):
    tiny_config |= {"augment": "standard", "device": "cpu"}  # bit-identical is the CPU promise
    a, _ = collect(tiny_config)
    b, _ = collect(tiny_config)
    assert [scalars(m) for m in a] == [scalars(m) for m in b]
    tiny_config["seed"] = 1
    c, _ = collect(tiny_config)
    assert a[-1]["train/loss"] != c[-1]["train/loss"]


@pytest.mark.parametrize("strategy, extra, epochs, stop_at", [
    ("control", {}, 3, 2),
    ("combined", {}, 3, 2),
    ("lr_onecycle", {}, 3, 2),
    ("lr_plateau_fast", {}, 3, 2),
    ("lr_cosine", {}, 3, 2),
    ("cascade", {}, 3, 2),
    ("crt", {"grad_clip": 0.1}, 4, 2),  # the end of cRT's stage 1 (epochs 1-2), resumed into stage 2
    ("crt", {"lr_policy": "cosine", "grad_clip": 0.1}, 4, 3),  # in stage 2, its own optimiser and LR policy
    ("tau_norm", {}, 3, 2),
    ("control", {"model_options": {"dropout": 0.5, "batch_norm": False, "normalisation": "half"},
                 "data": TINY["data"] | {"equalize": True}}, 3, 2),
    # VaB-AL rounds end at epochs 2 and 4: stop mid-round 2, the resumed run refreshes at epoch 4
    ("vabal_both", {"vabal": {"refresh_every": 2, "mc_samples": 20, "vae_epochs": 2}}, 5, 3),
])
def test_resume_is_bit_identical(tiny_config, tmp_path, strategy, extra, epochs, stop_at):
    tiny_config |= {"strategy": strategy, "epochs": epochs, "device": "cpu", **extra}
    full, _ = collect(tiny_config)

    class Interrupted(Exception):
        pass

    def stop(metrics, ckpt):
        if metrics["epoch"] == stop_at:
            shutil.copytree(ckpt, tmp_path / "ckpt")
            raise Interrupted

    with pytest.raises(Interrupted):
        run(tiny_config, stop)
    resumed, _ = collect(tiny_config, checkpoint_dir=tmp_path / "ckpt")
    assert [m["epoch"] for m in resumed] == list(range(stop_at + 1, epochs + 1))
    assert [scalars(m) for m in resumed] == [scalars(m) for m in full[stop_at:]]


def test_prepared_arrays_can_be_passed_in(tiny_config):
    tiny_config["device"] = "cpu"
    arrays = load_arrays(parse_config(tiny_config).data)
    _, from_arrays = collect(tiny_config, data=arrays)
    _, from_config = collect(tiny_config)
    assert scalars(from_arrays) == scalars(from_config)


def test_seed_pairs_strategies_that_differ_in_the_loss(tiny_config):
    arrays = load_arrays(parse_config(tiny_config).data)
    a = build_trial(parse_config(tiny_config | {"loss": "ce"}), arrays)
    b = build_trial(parse_config(tiny_config | {"loss": "class_weighted"}), arrays)
    for pa, pb in zip(a.model.parameters(), b.model.parameters()):
        assert torch.equal(pa, pb)
    assert torch.equal(a.data_gen.get_state(), b.data_gen.get_state())
    assert torch.equal(a.aug_gen.get_state(), b.aug_gen.get_state())


def test_nan_loss_stops_with_the_epoch(tiny_config):
    tiny_config |= {"optimizer": "sgd", "lr": 1e12, "momentum": 0.0, "epochs": 3}
    with pytest.raises(TrainingDiverged, match=r"training loss is (nan|inf) at epoch \d"):
        run(tiny_config, lambda m, c: None)


def test_divergence_is_detected_in_the_epoch_it_happens(tiny_config):
    arrays = load_arrays(parse_config(tiny_config).data)
    trial = build_trial(parse_config(tiny_config), arrays)
    with torch.no_grad():
        next(trial.model.parameters()).fill_(float("nan"))
    trial.epoch = 4
    with pytest.raises(TrainingDiverged, match="at epoch 5"):
        train_one_epoch(trial)


@pytest.mark.parametrize("change, message", [
    ({"epochs": -1}, "epochs: Input should be greater than or equal to 1"),
    ({"lr": -0.1}, "lr: Input should be greater than 0"),
    ({"sampler": "smote"}, "sampler: unknown sampler 'smote'"),
    ({"loss": "dice"}, "loss: unknown loss 'dice'"),
    ({"augment": "heavy"}, "augment: unknown augment 'heavy'"),
    ({"model": "vit"}, "model: unknown model 'vit'"),
    ({"strategy": "magic"}, "strategy: unknown strategy preset 'magic'"),
    ({"batchsize": 8}, "batchsize: Extra inputs are not permitted"),
    ({"data": {"source": "dicom"}}, "data.source: unknown data source 'dicom'"),
])
def test_bad_config_names_the_field(tiny_config, change, message):
    with pytest.raises(ConfigError, match=message):
        run(tiny_config | change, lambda m, c: None)


def test_bad_data_names_the_path_before_training(tiny_config, tmp_path):
    calls = []
    with pytest.raises(DataError, match=f"data.path: {tmp_path / 'missing'} does not exist"):
        run(tiny_config | {"data": {"source": "imagefolder", "path": str(tmp_path / "missing")}},
            lambda m, c: calls.append(m))
    few = tiny_config | {"data": {**tiny_config["data"], "synthetic": {"n": 40, "seed": 0}}}
    with pytest.raises(DataError, match="class 'covid' has 1 patient"):
        run(few, lambda m, c: calls.append(m))
    assert calls == []


def test_positive_class_must_exist(tiny_config):
    tiny_config["data"]["positive_class"] = "tuberculosis"
    with pytest.raises(ConfigError, match="data.positive_class: 'tuberculosis'"):
        run(tiny_config, lambda m, c: None)


def test_channels_last_and_bf16_autocast_run_on_cpu(tiny_config):
    tiny_config |= {"channels_last": True, "amp": "bf16", "epochs": 1, "device": "cpu"}
    _, final = collect(tiny_config)
    assert np.isfinite(final["val/loss"])


def test_paired_seed_gives_the_same_first_batch_to_strategies_that_differ_in_the_loss(tiny_config):
    from trainables.strategies import SAMPLERS

    arrays = load_arrays(parse_config(tiny_config).data)
    batches = []
    for loss in ("ce", "class_weighted"):
        trial = build_trial(parse_config(tiny_config | {"loss": loss, "seed": 7}), arrays)
        order = SAMPLERS.get(trial.cfg.sampler)(trial.train_labels_cpu, 3, trial.data_gen, None)
        batches.append(order[: trial.cfg.batch_size])
        assert trial.loss_fn is not None
    assert torch.equal(batches[0], batches[1])
