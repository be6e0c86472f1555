"""Decoupling (Kang et al. 2020): tau-normalisation's arithmetic and its choice of tau against hand
values, cRT's two stages (stage 1's best backbone kept bit for bit, BatchNorm statistics included,
the head alone retrained with class-balanced sampling and its own optimiser), the normalised head
that a tau-norm trial evaluates, and the combinations each refuses."""
import math
import shutil

import numpy as np
import pytest
import torch

from trainables.config import parse_config
from trainables.data import load_arrays
from trainables.errors import ConfigError
from trainables.models import head_name
from trainables.strategies.decoupling import choose_tau, tau_normalised
from trainables.train import CHECKPOINT_FILE, build_trial, run


def test_tau_normalised_divides_each_class_row_by_its_norm_to_the_tau():
    w = torch.tensor([[3.0, 4.0], [0.0, 2.0], [0.0, 0.0]])
    assert torch.allclose(tau_normalised(w, 1.0), torch.tensor([[0.6, 0.8], [0.0, 1.0], [0.0, 0.0]]))
    half = torch.tensor([[3 / math.sqrt(5), 4 / math.sqrt(5)], [0.0, 2 / math.sqrt(2)], [0.0, 0.0]])
    assert torch.allclose(tau_normalised(w, 0.5), half)
    assert torch.equal(tau_normalised(w, 0.0), w)


def test_choose_tau_takes_the_first_tau_that_stops_the_head_favouring_the_large_norm_class():
    # class 0's weight has norm 2, class 1's norm 1: class-1 samples [1, 1.5] score 2^(1 - tau) for
    # class 0 against 1.5 for class 1, so they are right once 2^(1 - tau) < 1.5, i.e. tau > 0.415
    weight = torch.tensor([[2.0, 0.0], [0.0, 1.0]])
    features = np.array([[1.0, 0.0]] * 5 + [[1.0, 1.5]] * 5)
    labels = np.array([0] * 5 + [1] * 5)
    assert choose_tau(features, labels, weight, [0.0, 0.25, 0.4]) == 0.0  # all tie at 0.5: the first
    assert choose_tau(features, labels, weight, [0.0, 0.25, 0.5, 1.0]) == 0.5


def _checkpoints(config, tmp_path):
    """Run a trial; keep each epoch's checkpoint; return the metrics and the saved states."""
    history, saved = [], []

    def report(metrics, ckpt):
        history.append(metrics)
        shutil.copytree(ckpt, tmp_path / f"e{metrics['epoch']}")
        saved.append(torch.load(tmp_path / f"e{metrics['epoch']}" / CHECKPOINT_FILE, weights_only=True))

    run(config, report)
    return history, saved


def test_crt_retrains_only_the_head_of_stage_1s_best_model(tiny_config, tmp_path):
    config = tiny_config | {"strategy": "crt", "epochs": 4, "crt": {"epochs": 2}, "device": "cpu"}
    history, saved = _checkpoints(config, tmp_path)
    assert [m["train/crt"] for m in history] == [0.0, 0.0, 1.0, 1.0]
    stage1_best = saved[1]["best"]
    head = head_name(build_trial(parse_config(config), load_arrays(parse_config(config).data)).model) + "."
    final = saved[3]["model"]
    for k, v in stage1_best["state"].items():
        if k.startswith(head):
            assert not torch.equal(final[k], v), k  # re-initialised and retrained
        else:
            assert torch.equal(final[k], v), k  # frozen: weights and BatchNorm statistics
    assert history[-1]["best/epoch"] in (3, 4)  # the best model is a retrained classifier


def test_crt_stage_2_samples_class_balanced_with_an_optimiser_of_the_head(tiny_config):
    cfg = parse_config(tiny_config | {"strategy": "crt", "epochs": 3, "crt": {"epochs": 1}, "device": "cpu"})
    t = build_trial(cfg, load_arrays(cfg.data))
    (hook,) = t.hooks
    t.best = {"state": {k: v.clone() for k, v in t.model.state_dict().items()}}
    t.epoch = 2
    hook.epoch_start(t)
    head = t.model.get_submodule(head_name(t.model))
    assert t.sampler == "class_balanced" and t.best == {}
    assert [p for g in t.optimizer.param_groups for p in g["params"]] == list(head.parameters())
    assert [n for n, p in t.model.named_parameters() if p.requires_grad] == [
        f"{head_name(t.model)}.{n}" for n, _ in head.named_parameters()]
    order = t.epoch_order().cpu()
    counts = torch.bincount(t.train_labels_cpu[order], minlength=3).double()
    assert counts.min() / counts.max() > 0.5  # the covid share is 0.2 of the data, a third of the draws


def test_a_tau_norm_trial_evaluates_the_normalised_head_and_trains_the_raw_one(tiny_config, tmp_path):
    config = tiny_config | {"strategy": "tau_norm", "epochs": 3, "device": "cpu"}
    history, saved = _checkpoints(config, tmp_path)
    taus = parse_config(config).tau_norm.taus
    assert all(m["val/tau"] in taus for m in history)
    for m, state in zip(history, saved):
        trained = state["hooks"]["tau_norm"]["trained_head"]
        head = head_name(build_trial(parse_config(config), load_arrays(parse_config(config).data)).model)
        assert torch.allclose(state["model"][f"{head}.weight"], tau_normalised(trained["weight"], m["val/tau"]))
        assert not state["model"][f"{head}.bias"].any()
    # training went on from the trained head: the next epoch's starting weights are not the normalised ones
    assert not torch.equal(saved[0]["hooks"]["tau_norm"]["trained_head"]["weight"],
                           saved[1]["hooks"]["tau_norm"]["trained_head"]["weight"])


@pytest.mark.parametrize("change, message", [
    ({"strategy": "crt", "crt": {"epochs": 2}}, r"crt.epochs: 2 of the trial's 2 epochs leave none"),
    ({"strategy": "crt", "epochs": 4, "mixup": {}}, r"crt: mixup would also act on the re-balanced stage 2"),
    ({"strategy": "crt", "epochs": 4, "loss_options": {"drw_start": 0.5}}, r"crt: loss_options.drw_start"),
    ({"strategy": "crt", "epochs": 4, "loss": "logit_adjusted"}, r"crt: loss 'logit_adjusted' re-balances"),
    ({"strategy": "crt", "epochs": 4, "loss": "ldam"}, r"crt: loss 'ldam' re-balances"),
    ({"strategy": "crt", "epochs": 4, "lr_policy": "cosine", "crt": {"epochs": 1},
      "lr_options": {"warmup_epochs": 1}}, r"crt.epochs: stage 2 runs its own LR policy"),
    ({"strategy": "tau_norm", "crt": {"epochs": 1}}, r"crt and tau_norm are two ways"),
    ({"strategy": "tau_norm", "cascade": True}, r"tau_norm: the cascade has two heads"),
    ({"strategy": "tau_norm", "model": "squeezenet1_0"}, r"tau_norm: squeezenet1_0's head is not a linear layer"),
    ({"strategy": "tau_norm", "tau_norm": {"taus": [-1]}}, r"tau_norm.taus: Value error, tau must be >= 0|tau must"),
])
def test_decoupling_refuses_what_it_cannot_do_naming_the_field(tiny_config, change, message):
    with pytest.raises(ConfigError, match=message):
        parse_config(tiny_config | change)
