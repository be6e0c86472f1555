"""The imbalance losses against hand-computed values on one 2x3 example.

logits [[2, 0, -1], [0.5, 1.5, 0]], targets [0, 2], training class counts [10, 60, 30]:
log p_t = [2 - log(e^2 + 1 + e^-1), 0 - log(e^0.5 + e^1.5 + 1)] = [-0.169846, -1.964369].
"""
import math

import pytest
import torch
import torch.nn.functional as F

from trainables.config import parse_config
from trainables.data import load_arrays
from trainables.errors import ConfigError
from trainables.strategies import LOSSES
from trainables.strategies.drw import drw_epoch
from trainables.strategies.losses import LossOptions, effective_number_weights, ldam_margins
from trainables.train import build_trial, run

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


def test_ldam_margins_and_loss_match_the_hand_computed_values():
    # n^(-1/4) for [10, 60, 30] = [0.562341, 0.359304, 0.427287], scaled so the largest is 0.5
    margins = ldam_margins(COUNTS, 0.5)
    assert margins.tolist() == pytest.approx([0.5, 0.319472, 0.379918], abs=1e-6)
    # true-class logits lowered by their margins (2 - 0.5, 0 - 0.379918), x 30, then cross entropy:
    # sample 1: 30 * [1.5, 0, -1] -> -log softmax_0 = log(1 + e^-45 + e^-75) ~ 2.86e-20
    # sample 2: 30 * [0.5, 1.5, -0.379918] -> -log softmax_2 = 45 + 11.39754 + log(1 + e^-30 + e^-56.39754)
    expected = (0.0 + (45.0 + 30 * 0.379918 + math.log1p(math.exp(-30.0)))) / 2
    assert value("ldam") == pytest.approx(expected, abs=1e-4)
    # no margins at scale 1: cross entropy
    assert value("ldam", max_margin=1e-12, scale=1.0) == pytest.approx(F.cross_entropy(LOGITS, TARGETS).item(), abs=1e-6)


@pytest.mark.parametrize("start, epochs, switch", [(0.8, 200, 160), (0.8, 6, 5), (0.5, 2, 1), (0.01, 10, 1),
                                                   (0.99, 10, 9)])
def test_drw_switches_at_its_fraction_of_the_epochs(start, epochs, switch):
    assert drw_epoch(start, epochs) == switch


def test_drw_hands_the_loss_its_class_weights_from_the_switch_epoch(tiny_config):
    cfg = parse_config(tiny_config | {"strategy": "ldam_drw", "epochs": 5, "device": "cpu"})
    t = build_trial(cfg, load_arrays(cfg.data))
    (hook,) = t.hooks
    labels = t.splits["train"].labels.cpu()
    expected = effective_number_weights(torch.bincount(labels, minlength=3), 0.9999)[labels]
    for epoch in range(5):  # round(0.8 x 5) = 4 plain epochs
        t.epoch = epoch
        hook.epoch_start(t)
        assert (t.loss_weights is None) == (epoch < 4)
    assert torch.equal(t.loss_weights, expected) and expected.unique().numel() == 3


def test_drw_weighs_the_loss_from_its_switch_epoch(tiny_config):
    seen = []
    run(tiny_config | {"strategy": "ldam_drw", "epochs": 3}, lambda m, c: seen.append(m))
    assert [m["train/drw"] for m in seen] == [0.0, 0.0, 1.0]  # round(0.8 x 3) = 2 plain epochs
    cfg = parse_config(tiny_config | {"strategy": "ldam_drw"})
    assert cfg.loss == "ldam" and cfg.loss_options.beta == 0.9999 and cfg.loss_options.drw_start == 0.8


@pytest.mark.parametrize("extra, message", [
    ({"loss": "class_weighted", "loss_options": {"drw_start": 0.5}}, "loss 'class_weighted' re-balances the classes"),
    ({"loss": "logit_adjusted", "loss_options": {"drw_start": 0.5}}, "loss 'logit_adjusted' re-balances the classes"),
    ({"strategy": "ldam_drw", "sampler": "class_balanced"}, "sampler 'class_balanced' re-balances the classes"),
    ({"strategy": "cascade", "loss": "ldam"}, "loss: 'ldam' sets margins on a linear head's logits"),
    ({"loss": "ldam", "loss_options": {"drw_start": 0.5}, "epochs": 1}, "needs at least 2 epochs"),
    ({"loss": "ce", "loss_options": {"drw_start": 1.0}}, "loss_options.drw_start: Input should be less than 1"),
])
def test_drw_refuses_what_it_cannot_do(tiny_config, extra, message):
    with pytest.raises(ConfigError, match=message):
        parse_config(tiny_config | extra)
