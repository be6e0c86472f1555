"""The imbalance losses against hand-computed values on one 2x3 example.

logits [[2, 0, -1], [0.5, 1.5, 0]], targets [0, 2], training class counts [10, 60, 30]:
log p_t = [2 - log(e^2 + 1 + e^-1), 0 - log(e^0.5 + e^1.5 + 1)] = [-0.169846, -1.964369].
"""
import math

import pytest
import torch
import torch.nn.functional as F

from trainables.config import parse_config
from trainables.errors import ConfigError
from trainables.strategies import LOSSES
from trainables.strategies.losses import LossOptions
from trainables.train import run

LOGITS = torch.tensor([[2.0, 0.0, -1.0], [0.5, 1.5, 0.0]])
TARGETS = torch.tensor([0, 2])
COUNTS = torch.tensor([10, 60, 30])


def value(name, **options):
    return LOSSES.get(name)(COUNTS, LossOptions(**options))(LOGITS, TARGETS).item()


@pytest.mark.parametrize("name, options, expected", [
    # mean(-log p_t) = (0.169846 + 1.964369) / 2
    ("ce", {}, 1.0671074),
    # mean((1 - p_t)^2 * -log p_t) = (0.0041443 + 1.4520216) / 2
    ("focal", {"gamma": 2.0}, 0.7280829),
    # w_c = (1 - 0.9) / (1 - 0.9^n_c), scaled to mean 1: [1.286092, 0.839167, 0.874741];
    # (w_0 * 0.169846 + w_2 * 1.964369) / (w_0 + w_2)
    ("class_balanced", {"beta": 0.9}, 0.8962984),
    # cross entropy of logits + 0.5 * log([0.1, 0.6, 0.3])
    ("logit_adjusted", {"tau": 0.5}, 1.2320529),
    # cross entropy of logits + log([10, 60, 30])
    ("balanced_softmax", {}, 1.5131264),
])
def test_loss_matches_the_hand_computed_value(name, options, expected):
    assert value(name, **options) == pytest.approx(expected, abs=1e-6)


def test_limits_reduce_to_cross_entropy():
    ce = F.cross_entropy(LOGITS, TARGETS).item()
    assert value("focal", gamma=0.0) == pytest.approx(ce, abs=1e-6)
    assert value("class_balanced", beta=0.0) == pytest.approx(ce, abs=1e-6)
    assert value("logit_adjusted", tau=0.0) == pytest.approx(ce, abs=1e-6)
    assert value("balanced_softmax") == pytest.approx(value("logit_adjusted", tau=1.0), abs=1e-6)
    assert value("class_balanced", beta=0.999999) == pytest.approx(value("class_weighted"), abs=1e-4)


@pytest.mark.parametrize("name", LOSSES.names())
def test_sample_weights_weigh_the_per_sample_losses(name):
    fn = LOSSES.get(name)(COUNTS, LossOptions(gamma=2.0, beta=0.9, tau=0.5))
    first, second = fn(LOGITS[:1], TARGETS[:1]), fn(LOGITS[1:], TARGETS[1:])
    assert torch.allclose(fn(LOGITS, TARGETS, sample_weight=torch.tensor([1.0, 0.0])), first)
    assert torch.allclose(fn(LOGITS, TARGETS, sample_weight=torch.tensor([0.0, 2.0])), second)
    if name in ("ce", "focal", "logit_adjusted", "balanced_softmax"):  # no class weights
        mixed = fn(LOGITS, TARGETS, sample_weight=torch.tensor([3.0, 1.0]))
        assert torch.allclose(mixed, (3 * first + second) / 4)


@pytest.mark.parametrize("name", LOSSES.names())
def test_every_loss_trains_a_model(tiny_config, name):
    final = run(tiny_config | {"loss": name, "epochs": 1}, lambda m, c: None)
    assert math.isfinite(final["train/loss"]) and math.isfinite(final["val/loss"])


def test_bad_loss_option_names_the_field(tiny_config):
    with pytest.raises(ConfigError, match="loss_options.beta: Input should be less than 1"):
        parse_config(tiny_config | {"loss": "class_balanced", "loss_options": {"beta": 1.0}})
