"""MixUp and Balanced-MixUp: the arithmetic of mixing inputs and labels, the Beta draws, the
class-balanced partners, and the loss the loop builds from the mixed targets. (Training, seeded
reproducibility and bit-identical resume of both hooks: tests/test_hooks.py, over every hook.)"""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from trainables.config import parse_config
from trainables.data import load_arrays
from trainables.hooks import TrialHook
from trainables.strategies.freeze import train_mode
from trainables.strategies.mixup import BalancedMixUp, MixUp, mix
from trainables.train import build_trial, run, train_one_epoch


def test_mix_weighs_inputs_and_labels():
    x, partner = torch.full((2, 1, 2, 2), 1.0), torch.full((2, 1, 2, 2), 5.0)
    idx, other = torch.tensor([3, 7]), torch.tensor([7, 3])
    mixed, targets = mix(x, partner, [(1.0, idx)], other, 0.25)
    assert torch.equal(mixed, torch.full((2, 1, 2, 2), 0.25 * 1 + 0.75 * 5))  # 4.0
    assert [w for w, _ in targets] == [0.25, 0.75] and targets[0][1] is idx and targets[1][1] is other
    # a second mixing scales the first's weights: they still sum to 1
    _, again = mix(mixed, partner, targets, idx, 0.5)
    assert [w for w, _ in again] == [0.125, 0.375, 0.5]


def test_the_loop_sums_the_weighted_losses_of_the_mixed_targets(tiny_config):
    """train_one_epoch with a hook that mixes the batch with its reverse at lambda 0.3 (one batch, lr 0):
    the loss is 0.3 CE(y) + 0.7 CE(y reversed) on the mixed input, as Zhang et al. 2018 define it, and
    the accuracy counts each target by its weight."""
    cfg = parse_config(tiny_config | {"batch_size": 512, "device": "cpu"})
    t = build_trial(cfg, load_arrays(cfg.data))

    class Reverse(TrialHook):
        def batch(self, state, x, targets):
            return mix(x, x.flip(0), targets, targets[0][1].flip(0), 0.3)

    t.hooks = [Reverse(cfg)]
    for group in t.optimizer.param_groups:
        group["lr"] = 0.0
    before = t.data_gen.get_state()
    order = t.epoch_order()
    t.data_gen.set_state(before)
    x = t.train_inputs(order)
    train_mode(t.model)
    torch.manual_seed(0)  # the same dropout masks in both forward passes
    with torch.no_grad():
        logits = t.model(0.3 * x + 0.7 * x.flip(0))
    labels = t.splits["train"].labels
    a, b = labels[order], labels[order.flip(0)]
    torch.manual_seed(0)
    metrics = train_one_epoch(t)
    expected = 0.3 * F.cross_entropy(logits, a) + 0.7 * F.cross_entropy(logits, b)
    assert metrics["train/loss"] == pytest.approx(float(expected), rel=1e-5)
    hits = 0.3 * (logits.argmax(1) == a).float().mean() + 0.7 * (logits.argmax(1) == b).float().mean()
    assert metrics["train/accuracy"] == pytest.approx(float(hits), abs=1e-6)


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
