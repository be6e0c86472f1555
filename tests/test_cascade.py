"""Report 001's cascade: two binary classifiers trained in one trial, combined to the 3 classes."""
import math

import pytest
import torch
import torch.nn.functional as F

from trainables.config import parse_config
from trainables.data import load_arrays
from trainables.errors import ConfigError
from trainables.models import build_model
from trainables.models.cascade import Cascade
from trainables.train import build_trial, run

NORMAL = 1  # synthetic classes: covid, normal, pneumonia


def cascade():
    torch.manual_seed(0)
    return Cascade(build_model("simple_cnn", 2, 1), build_model("simple_cnn", 2, 1), NORMAL, 3).eval()


def test_output_combines_the_two_stages():
    model, x = cascade(), torch.randn(5, 1, 16, 16)
    p1, p2 = torch.softmax(model.stage1(x), 1), torch.softmax(model.stage2(x), 1)
    p = torch.softmax(model(x), 1)
    assert torch.allclose(p.sum(1), torch.ones(5))
    assert torch.allclose(p[:, NORMAL], p1[:, 0], atol=1e-6)
    assert torch.allclose(p[:, 0], p1[:, 1] * p2[:, 0], atol=1e-6)  # covid
    assert torch.allclose(p[:, 2], p1[:, 1] * p2[:, 1], atol=1e-6)  # pneumonia


def test_cross_entropy_is_the_sum_of_the_two_binary_losses():
    model, x = cascade(), torch.randn(6, 1, 16, 16)
    y = torch.tensor([0, 1, 2, 1, 0, 2])
    infected = y != NORMAL
    stage1 = F.cross_entropy(model.stage1(x), infected.long(), reduction="none")
    stage2 = F.cross_entropy(model.stage2(x), (y == 2).long(), reduction="none") * infected
    assert torch.allclose(F.cross_entropy(model(x), y, reduction="none"), stage1 + stage2, atol=1e-5)
    model.train()
    F.cross_entropy(model(x[y == NORMAL]), y[y == NORMAL]).backward()
    # zero up to rounding: the normal class's loss does not depend on stage 2
    assert max(float(p.grad.abs().max()) for p in model.stage2.parameters()) < 1e-6
    assert max(float(p.grad.abs().max()) for p in model.stage1.parameters()) > 1e-3


def test_a_cascade_trial_reports_the_usual_metrics(tiny_config):
    final = run(tiny_config | {"strategy": "cascade"}, lambda m, c: None)
    for key in ("val/sensitivity", "test/ppv", "best/test/balanced_accuracy", "test/recall_normal"):
        assert math.isfinite(final[key]), key
    assert len(final["test/confusion_matrix"]) == 3


def test_the_normal_class_must_exist(tiny_config):
    cfg = parse_config(tiny_config | {"cascade": True,
                                      "data": {**tiny_config["data"], "normal_class": "healthy"}})
    with pytest.raises(ConfigError, match="data.normal_class: 'healthy' is not one of the classes"):
        build_trial(cfg, load_arrays(cfg.data))
