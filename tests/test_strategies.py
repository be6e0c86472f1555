import pytest
import torch
import torch.nn.functional as F

from trainables.config import parse_config
from trainables.models import build_model
from trainables.strategies import LOSSES, LR_POLICIES, OPTIMIZERS, PRESETS, SAMPLERS
from trainables.strategies.losses import LossOptions, normalised_inverse_frequency
from trainables.strategies.lr_policies import LROptions

LABELS = torch.tensor([0] * 10 + [1] * 200 + [2] * 90)


@pytest.mark.parametrize("name", SAMPLERS.names())
def test_samplers_give_valid_seeded_orders(name):
    fn = SAMPLERS.get(name)
    a = fn(LABELS, 3, torch.Generator().manual_seed(1), None)
    b = fn(LABELS, 3, torch.Generator().manual_seed(1), None)
    c = fn(LABELS, 3, torch.Generator().manual_seed(2), None)
    assert a.dtype == torch.int64 and a.min() >= 0 and a.max() < len(LABELS)
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_uniform_visits_every_sample_once():
    order = SAMPLERS.get("uniform")(LABELS, 3, torch.Generator().manual_seed(0), None)
    assert sorted(order.tolist()) == list(range(len(LABELS)))


def test_class_balanced_draws_classes_equally():
    gen = torch.Generator().manual_seed(0)
    draws = torch.cat([SAMPLERS.get("class_balanced")(LABELS, 3, gen, None) for _ in range(40)])
    shares = torch.bincount(LABELS[draws], minlength=3).double() / len(draws)
    assert torch.allclose(shares, torch.full((3,), 1 / 3, dtype=torch.double), atol=0.01)


def test_undersample_takes_the_rarest_class_count_of_each_class():
    order = SAMPLERS.get("undersample")(LABELS, 3, torch.Generator().manual_seed(0), None)
    assert torch.bincount(LABELS[order]).tolist() == [10, 10, 10]
    assert len(set(order.tolist())) == 30


@pytest.mark.parametrize("name", LOSSES.names())
def test_losses_accept_the_per_sample_weight_hook(name):
    torch.manual_seed(0)
    logits, y = torch.randn(6, 3, requires_grad=True), torch.tensor([0, 1, 2, 1, 1, 2])
    fn = LOSSES.get(name)(torch.bincount(LABELS), LossOptions())
    plain = fn(logits, y)
    assert torch.isfinite(plain)
    assert torch.allclose(fn(logits, y, sample_weight=torch.full((6,), 3.0)), plain)
    weighted = fn(logits, y, sample_weight=torch.tensor([1.0, 0, 0, 0, 0, 0]))
    assert torch.allclose(weighted, fn(logits[:1], y[:1]))
    weighted.backward()
    assert torch.isfinite(logits.grad).all()


def test_class_weighted_matches_torch_weighted_cross_entropy():
    counts = torch.bincount(LABELS)
    w = normalised_inverse_frequency(counts)
    assert w.mean() == pytest.approx(1.0)
    assert (w[0] / w[1]).item() == pytest.approx(20.0)
    logits, y = torch.randn(8, 3), torch.tensor([0, 1, 2, 1, 1, 2, 0, 1])
    ours = LOSSES.get("class_weighted")(counts, LossOptions())(logits, y)
    assert torch.allclose(ours, F.cross_entropy(logits, y, weight=w))


@pytest.mark.parametrize("name", OPTIMIZERS.names())
def test_optimisers_step(name):
    model = build_model("simple_cnn", 3, 1)
    opt = OPTIMIZERS.get(name)(model.parameters(), lr=0.01, weight_decay=1e-4, momentum=0.9)
    before = [p.detach().clone() for p in model.parameters()]
    model(torch.randn(4, 1, 16, 16)).sum().backward()
    opt.step()
    assert any(not torch.equal(a, p) for a, p in zip(before, model.parameters()))


@pytest.mark.parametrize("name", LR_POLICIES.names())
def test_lr_policies_report_and_round_trip_state(name):
    opt = torch.optim.SGD(build_model("simple_cnn", 3, 1).parameters(), lr=0.1)
    policy = LR_POLICIES.get(name)(opt, epochs=3, steps_per_epoch=4, options=LROptions())
    for _ in range(4):
        opt.step()
        policy.after_batch()
    policy.after_epoch({"val/loss": 1.0})
    assert policy.lr() > 0
    policy.load_state_dict(policy.state_dict())


@pytest.mark.parametrize("name", PRESETS.names())
def test_presets_are_valid_trial_configs(name):
    cfg = parse_config({"strategy": name}).model_dump(mode="json")
    for dim, value in PRESETS.get(name).items():
        assert cfg[dim] == value if not isinstance(value, dict) else value.items() <= cfg[dim].items()


def test_explicit_knob_overrides_the_preset():
    assert parse_config({"strategy": "combined", "loss": "ce"}).loss == "ce"
