"""LR policies on torch's schedulers: their curves, their wiring into the loop, gradient clipping."""
import pytest
import torch

from trainables.config import parse_config
from trainables.data import load_arrays
from trainables.errors import ConfigError
from trainables.strategies import LR_POLICIES
from trainables.strategies.lr_policies import LROptions
from trainables.train import build_trial, run, train_one_epoch


def policy(name, epochs=5, steps=4, lr=0.1, **options):
    param = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([param], lr=lr, momentum=0.9)
    return opt, LR_POLICIES.get(name)(opt, epochs, steps, LROptions(**options))


def batch_lrs(opt, pol, steps):
    lrs = []
    for _ in range(steps):
        lrs.append(pol.lr())
        opt.step()
        pol.after_batch()
    return lrs


def test_onecycle_rises_to_lr_at_pct_start_then_anneals():
    opt, pol = policy("onecycle", epochs=5, steps=4, lr=0.1, pct_start=0.25)
    lrs = batch_lrs(opt, pol, 20)
    assert lrs[0] == pytest.approx(0.1 / 25)
    assert max(lrs) == pytest.approx(0.1, rel=1e-3) and lrs.index(max(lrs)) == 4  # 0.25 * 20 - 1
    assert all(a < b for a, b in zip(lrs[:5], lrs[1:5])) and all(a > b for a, b in zip(lrs[4:], lrs[5:]))
    assert lrs[-1] < 1e-4


def test_cosine_warms_up_linearly_then_anneals_to_zero():
    opt, pol = policy("cosine", epochs=5, steps=4, lr=0.1, warmup_epochs=1)
    lrs = batch_lrs(opt, pol, 20) + [pol.lr()]
    assert lrs[:5] == pytest.approx([0.025, 0.04375, 0.0625, 0.08125, 0.1])
    assert all(a > b for a, b in zip(lrs[4:], lrs[5:])) and lrs[-1] == pytest.approx(0, abs=1e-12)
    opt, pol = policy("cosine", epochs=5, steps=4, lr=0.1)
    assert batch_lrs(opt, pol, 1) == [0.1]


@pytest.mark.parametrize("metric, values", [("val/loss", [1.0, 0.9, 0.95, 0.96, 0.97]),
                                            ("val/sensitivity", [0.5, 0.6, 0.55, 0.5, 0.4])])
def test_plateau_reduces_after_patience_epochs_without_improvement(metric, values):
    opt, pol = policy("plateau", lr=0.1, metric=metric, factor=0.5, patience=1)
    lrs = []
    for v in values:
        pol.after_batch()  # per-batch steps do not move a plateau schedule
        pol.after_epoch({metric: v})
        lrs.append(pol.lr())
    assert lrs == pytest.approx([0.1, 0.1, 0.1, 0.05, 0.05])


def advance(opt, pol, val_loss):
    lrs = batch_lrs(opt, pol, 4)
    pol.after_epoch({"val/loss": val_loss})
    return lrs + [pol.lr()]


@pytest.mark.parametrize("name", LR_POLICIES.names())
def test_state_round_trips_through_a_weights_only_checkpoint(name, tmp_path):
    options = {"metric": "val/loss", "patience": 0, "factor": 0.5, "warmup_epochs": 1}
    opt, pol = policy(name, **options)
    advance(opt, pol, 1.0)
    advance(opt, pol, 2.0)
    torch.save({"optimizer": opt.state_dict(), "policy": pol.state_dict()}, tmp_path / "c.pt")
    expected = advance(opt, pol, 3.0) + advance(opt, pol, 0.5)
    state = torch.load(tmp_path / "c.pt", weights_only=True)
    opt2, pol2 = policy(name, **options)
    opt2.load_state_dict(state["optimizer"])  # the loop restores the optimiser first
    pol2.load_state_dict(state["policy"])
    assert advance(opt2, pol2, 3.0) + advance(opt2, pol2, 0.5) == expected
    if name != "constant":
        assert len(set(expected)) > 1


def test_loop_reports_the_lr_per_epoch(tiny_config):
    lrs = []
    run(tiny_config | {"lr_policy": "onecycle", "epochs": 4, "lr_options": {"pct_start": 0.5}},
        lambda m, c: lrs.append(m["train/lr"]))  # the LR after each epoch's last step
    assert lrs[0] < lrs[1] > lrs[2] > lrs[3]
    assert lrs[1] == pytest.approx(1e-3, rel=0.05) and lrs[3] < 1e-3 / 25


def test_gradient_clipping_bounds_every_step(tiny_config):
    arrays = load_arrays(parse_config(tiny_config).data)
    moved = {}
    for clip in (None, 1e-3):
        cfg = parse_config(tiny_config | {"optimizer": "sgd", "momentum": 0.0, "lr": 0.5,
                                          "grad_clip": clip})
        trial = build_trial(cfg, arrays)
        before = torch.cat([p.detach().flatten().clone() for p in trial.model.parameters()])
        train_one_epoch(trial)
        after = torch.cat([p.detach().flatten() for p in trial.model.parameters()])
        moved[clip] = float((after - before).norm())
    steps = -(-len(trial.train_labels_cpu) // cfg.batch_size)
    assert moved[1e-3] <= steps * 0.5 * 1e-3 * (1 + 1e-5)
    assert moved[None] > 10 * moved[1e-3]


@pytest.mark.parametrize("change, message", [
    ({"lr_policy": "cosine", "epochs": 2, "lr_options": {"warmup_epochs": 2}},
     r"lr_options.warmup_epochs \(2\) must be < epochs \(2\)"),
    ({"lr_options": {"metric": "train/loss"}}, "lr_options.metric: expected val/<metric>"),
    ({"grad_clip": 0}, "grad_clip: Input should be greater than 0"),
])
def test_bad_lr_options_name_the_field(tiny_config, change, message):
    with pytest.raises(ConfigError, match=message):
        parse_config(tiny_config | change)
