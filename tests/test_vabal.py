"""VaB-AL: the checks of ../shared/VABAL.md on real training with the VAE, plus its plumbing."""
import math
import re
import shutil

import pytest
import torch

from trainables.config import parse_config
from trainables.data import load_arrays
from trainables.errors import ConfigError
from trainables.models import MODELS
from trainables.strategies import PRESETS, SAMPLERS
from trainables.strategies.vabal import (
    VAE,
    VaBAL,
    VabalConfig,
    difficulty,
    kl_divergence,
    pooled_stage_features,
    scores_to_weights,
    smoothed_precision,
    smoothed_prior,
)
from trainables.train import build_trial, run

DIMS = [16, 32, 64]


def features(n, seed=0, scale=1.0):
    gen = torch.Generator().manual_seed(seed)
    return [scale * torch.randn(n, d, generator=gen) for d in DIMS]


def trained_vabal(cfg=None, n=120, classes=3, seed=0):
    """A VaBAL whose VAE has trained a round on random features with labels 0..classes-1."""
    vabal = VaBAL(cfg or VabalConfig(use_for="both", vae_epochs=2), DIMS, classes, torch.device("cpu"), seed)
    labels = torch.arange(n) % classes
    vabal.train_vae(features(n, seed), labels)
    return vabal, labels


def test_rare_hard_class_is_scored_hardest_and_the_vae_beats_the_majority_rate():
    # covid is rare (3.4% of the synthetic set) and partly confusable with pneumonia
    cfg = {"strategy": "vabal_both", "epochs": 3, "num_threads": 2, "batch_size": 64, "lr": 1e-3,
           "vabal": {"refresh_every": 1},
           "data": {"source": "synthetic", "synthetic": {"n": 1200, "seed": 0}, "load_size": 18,
                    "image_size": 16, "val_fraction": 0.25, "test_fraction": 0.25}}
    rounds = []
    run(cfg, lambda m, ckpt: rounds.append(m) if "vabal/score_mean" in m else None)
    assert len(rounds) == 2  # refreshes after epochs 1 and 2, none after the last epoch
    arrays = load_arrays(parse_config(cfg).data)
    covid = arrays.class_names.index("covid")
    second = rounds[-1]
    rare = second[f"vabal/score_mean_class{covid}"]
    others = [second[f"vabal/score_mean_class{c}"] for c in range(3) if c != covid]
    assert all(rare > o for o in others), second
    val_labels = build_trial(parse_config(cfg), arrays).splits["val"].labels
    majority = float(torch.bincount(val_labels).max()) / len(val_labels)
    assert second["vabal/vae_accuracy"] > majority
    for m in rounds:
        assert m["vabal/weight_max"] <= 10.0 and m["vabal/refresh_s"] > 0


def test_scores_stay_with_their_samples_when_the_data_set_is_permuted():
    vabal, labels = trained_vabal()
    feats = features(120, seed=1)
    eps = torch.randn(50, vabal.latent, generator=torch.Generator().manual_seed(0))
    acc = smoothed_precision(labels.roll(1), labels, 3)
    prior = smoothed_prior(labels, 3)
    perm = torch.randperm(120, generator=torch.Generator().manual_seed(2))
    scores = difficulty(vabal.vae, feats, eps, acc, prior)
    permuted = difficulty(vabal.vae, [f[perm] for f in feats], eps, acc, prior)
    torch.testing.assert_close(permuted, scores[perm], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(scores_to_weights(permuted, 2.0, 0.1, 10.0),
                               scores_to_weights(scores, 2.0, 0.1, 10.0)[perm], rtol=1e-5, atol=1e-6)
    assert scores.std() > 0  # samples really differ, so the check above can fail


def test_features_are_read_unaugmented_in_stored_order(tiny_config):
    tiny_config |= {"strategy": "vabal_both", "augment": "standard", "vabal": {"refresh_every": 1}}
    t = build_trial(parse_config(tiny_config), load_arrays(parse_config(tiny_config).data))
    images = t.splits["train"].images
    perm = torch.randperm(len(images), generator=torch.Generator().manual_seed(0))
    plain = pooled_stage_features(t.model, images, t.eval_inputs, 64)
    shuffled = pooled_stage_features(t.model, images[perm], t.eval_inputs, 64)
    for a, b in zip(plain, shuffled):
        torch.testing.assert_close(b, a[perm], rtol=1e-4, atol=1e-5)
    assert t.model.training  # the trial's mode is restored


def test_batched_scores_equal_a_naive_loop_over_draws_and_classes():
    vabal, labels = trained_vabal()
    vae, feats = vabal.vae.eval(), features(7, seed=3)
    eps = torch.randn(5, vabal.latent, generator=torch.Generator().manual_seed(1))
    acc, prior = torch.tensor([0.9, 0.6, 0.5]).double(), torch.tensor([0.5, 0.3, 0.2]).double()
    for formula in ("posterior", "thesis"):
        expected = []
        with torch.no_grad():
            h = vae.embedding(feats)
            mu, logvar = vae.encode(h)
            kld = kl_divergence(mu, logvar)
            for i in range(7):
                per_draw = []
                for e in eps:
                    z = mu[i] + e * torch.exp(0.5 * logvar[i])
                    nll = torch.stack([(vae.decode((z * vae.keep[n])[None])[0] - h[i]).pow(2).sum() + kld[i]
                                       for n in range(3)]).double()
                    if formula == "posterior":
                        pi = torch.softmax(-nll / 2.0 + prior.log(), 0)
                    else:
                        pi = nll * prior / (nll * prior).sum()
                    per_draw.append(1 - (acc * pi).sum())
                expected.append(torch.stack(per_draw).mean())
        got = difficulty(vae, feats, eps, acc, prior, temperature=2.0, formula=formula)
        torch.testing.assert_close(got.double(), torch.stack(expected), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("formula", ["posterior", "thesis"])
@pytest.mark.parametrize("exponent", [0.25, 1.0, 4.0])
def test_weights_are_finite_and_positive_even_for_a_class_never_predicted(formula, exponent):
    vabal, labels = trained_vabal(VabalConfig(use_for="both", vae_epochs=1, score_formula=formula, exponent=exponent))
    never = torch.zeros(120, dtype=torch.long)  # the VAE "predicts" class 0 only
    acc, prior = smoothed_precision(never, labels, 3), smoothed_prior(never, 3)
    assert (prior > 0).all() and (acc > 0).all() and (acc < 1).all()
    eps = torch.randn(30, vabal.latent, generator=torch.Generator().manual_seed(0))
    for scale in (1.0, 1e3):  # huge reconstruction errors must not overflow the posterior
        scores = difficulty(vabal.vae, features(120, seed=4, scale=scale), eps, acc, prior,
                            formula=formula)
        w = scores_to_weights(scores, exponent, 0.1, 10.0)
        assert torch.isfinite(scores).all() and torch.isfinite(w).all()
        assert (w >= 0.1).all() and (w <= 10.0).all()


def test_refresh_reports_the_round_metrics_and_aligned_weights():
    vabal, labels = trained_vabal(VabalConfig(use_for="both", vae_epochs=1, mc_samples=10))
    weights, metrics = vabal.refresh(features(120), labels, features(60, seed=5), torch.arange(60) % 3)
    assert weights.shape == (120,) and weights.dtype == torch.float32
    for key in ("vabal/score_mean", "vabal/score_std", "vabal/weight_max", "vabal/vae_accuracy",
                "vabal/effective_share", "vabal/score_mean_class0"):
        assert math.isfinite(metrics[key]), key
    assert 0 < metrics["vabal/effective_share"] <= 1


def trial_with_weights(tiny_config, use_for):
    tiny_config |= {"strategy": f"vabal_{use_for}", "vabal": {"refresh_every": 1}}
    t = build_trial(parse_config(tiny_config), load_arrays(parse_config(tiny_config).data))
    n = len(t.train_labels_cpu)
    next(h for h in t.hooks if h.name == "vabal").use(t, torch.linspace(0.1, 10.0, n))  # far from uniform
    return t


def test_use_for_loss_weights_the_loss_but_not_the_sampling(tiny_config):
    t = trial_with_weights(tiny_config, "loss")
    state = t.data_gen.get_state()
    uniform = SAMPLERS.get("uniform")(t.train_labels_cpu, 3, torch.Generator().set_state(state), None)
    assert torch.equal(t.epoch_order().cpu(), uniform)
    assert t.sampler_weights is None and torch.equal(t.loss_weights, torch.linspace(0.1, 10.0, len(uniform)))


def test_use_for_sampler_weights_the_sampling_but_not_the_loss(tiny_config):
    t = trial_with_weights(tiny_config, "sampler")
    assert t.cfg.sampler == "vabal" and t.loss_weights is None
    draws = torch.cat([t.epoch_order().cpu() for _ in range(30)])
    n = len(t.train_labels_cpu)
    heavy, light = (draws >= n // 2).sum(), (draws < n // 2).sum()
    assert heavy > 2 * light  # weights rise linearly with the index: the top half is drawn more


def test_use_for_both_weights_both(tiny_config):
    t = trial_with_weights(tiny_config, "both")
    assert t.cfg.sampler == "vabal" and t.loss_weights is not None and t.sampler_weights is not None


def test_first_round_samples_like_control(tiny_config):
    """Before the first refresh VaB-AL sampling is the uniform shuffle: paired with control."""
    orders = {}
    for strategy in ("control", "vabal_sampler"):
        cfg = parse_config(tiny_config | {"strategy": strategy, "epochs": 5})
        orders[strategy] = build_trial(cfg, load_arrays(cfg.data)).epoch_order()
    assert torch.equal(orders["control"], orders["vabal_sampler"])


@pytest.mark.parametrize("name", [n for n in MODELS.names() if MODELS.get(n).has_stages])
def test_every_backbone_with_stages_runs_a_round(tiny_config, name):
    tiny_config |= {"strategy": "vabal_both", "model": name, "epochs": 2, "batch_size": 16,
                    "vabal": {"refresh_every": 1, "mc_samples": 8, "vae_epochs": 1}}
    tiny_config["data"]["synthetic"]["n"] = 120
    if MODELS.get(name).norm == "imagenet":
        tiny_config["data"] |= {"load_size": 36, "image_size": 32}
    history = []
    run(tiny_config, lambda m, ckpt: history.append(m))
    assert math.isfinite(history[0]["vabal/score_mean"]) and "vabal/score_mean" not in history[1]


def test_a_backbone_without_stages_is_a_config_error(tiny_config):
    with pytest.raises(ConfigError, match="vabal: model 'squeezenet1_0' cannot list its stage outputs"):
        parse_config(tiny_config | {"strategy": "vabal_loss", "model": "squeezenet1_0", "epochs": 5})


@pytest.mark.parametrize("change, message", [
    ({"strategy": "vabal_both", "sampler": "class_balanced"}, "sampler: vabal.use_for=both"),
    ({"strategy": "vabal_loss", "sampler": "vabal"}, "sampler: 'vabal' needs vabal.use_for"),
    ({"sampler": "vabal"}, "add a vabal: section"),
    ({"vabal": {"use_for": "loss", "w_min": 2.0, "w_max": 1.0}}, "vabal: w_min (2.0) must be <= w_max"),
    ({"vabal": {"use_for": "loss", "score_formula": "bayes"}}, "vabal.score_formula"),
    ({"strategy": "vabal_loss", "vabal": {"mc_sample": 3}}, "vabal.mc_sample: Extra inputs"),
    ({"strategy": "vabal_loss", "epochs": 4}, "vabal.refresh_every (4) must be < epochs (4)"),
    ({"vabal": {"exponent": 2.0}}, "vabal.use_for: Field required"),
])
def test_bad_vabal_config_names_the_field(change, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        parse_config(change)


def test_preset_knobs_merge_with_explicit_ones_and_lambda_keeps_its_name():
    cfg = parse_config({"strategy": "vabal_both", "vabal": {"exponent": 2.0, "lambda": 0.5}})
    assert cfg.vabal.use_for == "both" and cfg.vabal.exponent == 2.0 and cfg.vabal.lambda_ == 0.5
    dumped = cfg.model_dump(mode="json")["vabal"]
    assert dumped["lambda"] == 0.5 and "lambda_" not in dumped
    assert parse_config(cfg.model_dump(mode="json")) == cfg


@pytest.mark.parametrize("name", [n for n in PRESETS.names() if n.startswith("vabal_")])
def test_vabal_presets_augment_and_use_their_weights(name):
    cfg = parse_config({"strategy": name})
    assert cfg.augment == "standard" and cfg.vabal.use_for == name.removeprefix("vabal_")


def test_vae_masks_exactly_the_label_block():
    vae = VAE(DIMS, 3, 4)
    z = torch.ones(3, 12)
    masked = z * vae.keep[torch.tensor([0, 1, 2])]
    assert masked.view(3, 3, 4).sum(-1).tolist() == [[0, 4, 4], [4, 0, 4], [4, 4, 0]]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a CUDA device")
def test_graphed_vae_step_on_cuda_follows_the_cpu_trajectory():
    """Same seed: the CPU's eager steps and CUDA's warm-up + graph replays (with a partial last
    batch run eagerly in between) train the VAE to the same weights."""
    cfg = VabalConfig(use_for="both", vae_epochs=3, vae_batch_size=32)
    feats, labels = features(150, seed=6), torch.arange(150) % 3
    trained = {}
    for device in ("cpu", "cuda"):
        vabal = VaBAL(cfg, DIMS, 3, torch.device(device), seed=0)
        losses = [vabal.train_vae([f.to(device) for f in feats], labels.to(device)) for _ in range(2)]
        trained[device] = (losses, {k: v.cpu() for k, v in vabal.vae.state_dict().items()})
        if device == "cuda":
            assert vabal._graphed is not None and vabal._graphed.graph is not None
    assert trained["cuda"][0] == pytest.approx(trained["cpu"][0], rel=1e-3)
    for k, v in trained["cpu"][1].items():
        torch.testing.assert_close(trained["cuda"][1][k].float(), v.float(), rtol=1e-3, atol=1e-3)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_a_vabal_sampler_trial_resumes_on_cuda(tiny_config, tmp_path):
    """The weights come back on the CPU, where the sampler draws with the CPU data generator."""
    tiny_config |= {"strategy": "vabal_both", "epochs": 3, "device": "cuda",
                    "vabal": {"refresh_every": 1, "mc_samples": 10, "vae_epochs": 1}}
    saved = []
    run(tiny_config, lambda m, ckpt: saved.append(shutil.copytree(ckpt, tmp_path / str(m["epoch"]))))
    resumed = []
    run(tiny_config, lambda m, ckpt: resumed.append(m), checkpoint_dir=tmp_path / "1")
    assert [m["epoch"] for m in resumed] == [2, 3] and "vabal/score_mean" in resumed[0]
