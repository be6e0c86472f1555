"""MixUp and Balanced-MixUp: the arithmetic of mixing inputs and labels, the Beta draws, the
class-balanced partners, and the loss the loop builds from the mixed targets. (Training, seeded
reproducibility and bit-identical resume of both hooks: tests/test_hooks.py, over every hook.)"""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from trainables.config import parse_config
from trainables.data import load_arrays
from trainables.strategies.mixup import BalancedMixUp, MixUp, mix
from trainables.train import build_trial, run


def test_mix_weighs_inputs_and_labels():
    x, partner = torch.full((2, 1, 2, 2), 1.0), torch.full((2, 1, 2, 2), 5.0)
    idx, other = torch.tensor([3, 7]), torch.tensor([7, 3])
    mixed, targets = mix(x, partner, [(1.0, idx)], other, 0.25)
    assert torch.equal(mixed, torch.full((2, 1, 2, 2), 0.25 * 1 + 0.75 * 5))  # 4.0
    assert [w for w, _ in targets] == [0.25, 0.75] and targets[0][1] is idx and targets[1][1] is other
    # a second mixing scales the first's weights: they still sum to 1
    _, again = mix(mixed, partner, targets, idx, 0.5)
    assert [w for w, _ in again] == [0.125, 0.375, 0.5]


def test_the_loss_of_mixed_targets_is_the_lambda_weighted_sum():
    """As in Zhang et al. 2018: lambda CE(y_a) + (1 - lambda) CE(y_b), here by hand on two samples:
    logits [[2, 0], [0, 1]], y_a = [0, 1], y_b = [1, 0], lambda 0.3."""
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0]])
    ce_a = (-np.log(np.exp(2) / (np.exp(2) + 1)) - np.log(np.e / (np.e + 1))) / 2
    ce_b = (-np.log(1 / (np.exp(2) + 1)) - np.log(1 / (np.e + 1))) / 2
    targets = [(0.3, torch.tensor([0, 1])), (0.7, torch.tensor([1, 0]))]
    loss = sum(w * F.cross_entropy(logits, y) for w, y in targets)
    assert float(loss) == pytest.approx(0.3 * ce_a + 0.7 * ce_b, abs=1e-6)


@pytest.fixture
def state(tiny_config):
    cfg = parse_config(tiny_config | {"strategy": "balanced_mixup", "device": "cpu"})
    return build_trial(cfg, load_arrays(cfg.data))


def test_balanced_partners_are_drawn_class_balanced(state):
    hook = next(h for h in state.hooks if isinstance(h, BalancedMixUp))
    labels = state.splits["train"].labels.cpu()
    shares = np.bincount(labels[hook.partners(30000)].numpy(), minlength=3) / 30000
    counts = np.bincount(labels.numpy())
    assert counts.max() / counts.min() > 2  # the split itself is imbalanced (20/50/30)
    assert shares == pytest.approx([1 / 3] * 3, abs=0.02)


def test_balanced_mixup_mixes_a_little_of_a_balanced_batch(state):
    hook = next(h for h in state.hooks if isinstance(h, BalancedMixUp))
    idx = torch.arange(8)
    x = state.train_inputs(idx)
    lams = []
    for _ in range(200):
        _, targets = hook.batch(state, x, [(1.0, idx)])
        lams.append(targets[1][0])  # the balanced partner's weight: lambda ~ Beta(0.2, 1)
    assert np.mean(lams) == pytest.approx(0.2 / 1.2, abs=0.05) and np.median(lams) < 0.1


def test_mixup_permutes_the_batch_with_beta_lambda(tiny_config):
    cfg = parse_config(tiny_config | {"strategy": "mixup", "mixup": {"alpha": 1.0}, "device": "cpu"})
    state = build_trial(cfg, load_arrays(cfg.data))
    hook = next(h for h in state.hooks if isinstance(h, MixUp))
    idx = torch.arange(10, 26)
    x = state.train_inputs(idx)
    mixed, targets = hook.batch(state, x, [(1.0, idx)])
    (lam, first), (rest, partner) = targets
    assert first is idx and sorted(partner.tolist()) == idx.tolist() and lam + rest == pytest.approx(1)
    order = partner - 10
    assert torch.allclose(mixed, lam * x + rest * x[order])


@pytest.mark.parametrize("strategy", ["mixup", "balanced_mixup"])
def test_a_mixed_trial_trains_and_differs_from_control(tiny_config, strategy):
    losses = {}
    for name in ("control", strategy):
        seen = []
        run(tiny_config | {"strategy": name, "epochs": 1}, lambda m, c: seen.append(m))
        losses[name] = seen[-1]["train/loss"]
    assert np.isfinite(losses[strategy]) and losses[strategy] != losses["control"]
