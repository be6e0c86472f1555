"""Test-time augmentation: mean softmax over the centre crop and n seeded augmented views."""
import math

import pytest
import torch

from trainables.config import parse_config
from trainables.data import load_arrays
from trainables.data.augment import AUGMENTS, centre_crop
from trainables.seeds import stream_seed
from trainables.train import build_trial, evaluate, run


def history(config):
    out = []
    run(config, lambda m, c: out.append(m))
    return out


def test_tta_adds_separate_metrics_and_leaves_the_rest_unchanged(tiny_config):
    tiny_config["device"] = "cpu"  # two trainings compared bit for bit: the CPU promise
    plain = history(tiny_config)
    tta = history(tiny_config | {"tta": 2})
    for a, b in zip(plain, tta):
        assert {k: v for k, v in b.items() if "_tta/" not in k and "seconds" not in k} == {
            k: v for k, v in a.items() if "seconds" not in k}
        assert "val_tta/sensitivity" in b and not any("_tta/" in k for k in a)
    final = tta[-1]
    for key in ("test_tta/accuracy", "test_tta/sensitivity", "best/test_tta/ppv", "val_tta/loss"):
        assert math.isfinite(final[key]), key


def test_tta_is_the_mean_softmax_over_plain_and_augmented_views(tiny_config):
    cfg = parse_config(tiny_config | {"tta": 2, "seed": 5})
    trial = build_trial(cfg, load_arrays(cfg.data))
    val = trial.splits["val"]
    assert len(val.labels) <= 4 * cfg.batch_size  # one evaluation batch, so one draw order
    images = val.images[:].float() / 255
    gen = torch.Generator(device=trial.device).manual_seed(stream_seed(5, "tta"))
    views = [centre_crop(images, 16)] + [AUGMENTS.get("standard")(images, 16, gen) for _ in range(2)]
    trial.model.eval()
    with torch.no_grad():
        p = torch.stack([torch.softmax(trial.model(trial.inputs(v)), 1) for v in views]).mean(0)
    ours = evaluate(trial, "val", tta=2)
    assert ours["val_tta/loss"] == pytest.approx(-p[torch.arange(len(p)), val.labels].log().mean().item(),
                                                 rel=1e-5)
    assert ours["val_tta/accuracy"] == pytest.approx((p.argmax(1) == val.labels).double().mean().item())
    assert evaluate(trial, "val", tta=2) == ours  # the same views at every evaluation
    assert ours != evaluate(trial, "val", tta=1)


def test_identity_views_give_the_plain_prediction(tiny_config):
    cfg = parse_config(tiny_config | {"tta": 3, "tta_augment": "none"})
    trial = build_trial(cfg, load_arrays(cfg.data))
    plain, tta = evaluate(trial, "val"), evaluate(trial, "val", tta=3)
    assert tta["val_tta/accuracy"] == plain["val/accuracy"]
    assert tta["val_tta/loss"] == pytest.approx(plain["val/loss"], rel=1e-6)
