"""VaB-AL as learned, dynamic per-sample weights (the method fixed in ../shared/VABAL.md).

A VAE reads the classifier's pooled stage outputs. Its latent space has one block of
``latent_per_class`` units per class, and a sample of class n is represented by the *absence* of
block n (``w_n``, the block's squared norm, is small). Every ``refresh_every`` classifier epochs
the VAE trains ``vae_epochs`` epochs on the current features, then scores every training sample's
difficulty ``s(x) = 1 - sum_n acc_n * pi_n(x)`` by batched Monte Carlo (all draws and all class
masks as tensor ops), and the scores become weights for the sampler, the loss, or both.

Scores are computed on un-augmented training images in their stored order, with the VAE in eval
mode and one set of MC draws shared by all samples, so a sample's weight does not depend on where
it sits in the data set (the public codes scored augmented, shuffled batches).
"""
from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Literal

import torch
import torch.nn.functional as F
from pydantic import ConfigDict, Field, model_validator
from torch import nn

from ..hooks import LoopState, TrialHook, register_hook
from ..models import MODELS, stage_outputs, staged_models
from ..registry import StrictModel
from ..seeds import stream_seed

HIDDEN = 128
SCORE_CHUNK_ELEMENTS = 1 << 24  # decoder outputs held at once while scoring (64 MB of float32)


class VabalConfig(StrictModel):
    """The VaB-AL knobs; every one is searchable from a spec as ``vabal.<knob>``."""

    model_config = ConfigDict(populate_by_name=True, serialize_by_alias=True)

    use_for: Literal["sampler", "loss", "both"]  # required: naming it is what turns VaB-AL on
    exponent: float = Field(1.0, gt=0)
    refresh_every: int = Field(4, ge=1)
    vae_epochs: int = Field(5, ge=1)
    mc_samples: int = Field(100, ge=1)
    lambda_: float = Field(1.0, ge=0, alias="lambda")
    latent_per_class: int = Field(10, ge=1)
    temperature: float = Field(1.0, gt=0)
    score_formula: Literal["posterior", "thesis"] = "posterior"
    w_min: float = Field(0.1, gt=0)
    w_max: float = Field(10.0, gt=0)
    vae_lr: float = Field(1e-3, gt=0)
    vae_batch_size: int = Field(128, ge=2)

    @model_validator(mode="after")
    def _clip_range(self) -> VabalConfig:
        if self.w_min > self.w_max:
            raise ValueError(f"w_min ({self.w_min}) must be <= w_max ({self.w_max})")
        return self

    @property
    def in_sampler(self) -> bool:
        return self.use_for in ("sampler", "both")

    @property
    def in_loss(self) -> bool:
        return self.use_for in ("loss", "both")


def _dense(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(cin, cout), nn.ReLU(), nn.BatchNorm1d(cout))


class VAE(nn.Module):
    """Per-stage embeddings (Linear + ReLU + BatchNorm to 128 each, concatenated), a 3-layer
    encoder to mu/logvar of ``latent_per_class x num_classes``, and a mirrored decoder."""

    def __init__(self, feature_dims: list[int], num_classes: int, latent_per_class: int) -> None:
        super().__init__()
        self.num_classes, self.latent_per_class = num_classes, latent_per_class
        width, latent = HIDDEN * len(feature_dims), latent_per_class * num_classes
        self.embed = nn.ModuleList(_dense(c, HIDDEN) for c in feature_dims)
        self.encoder = nn.Sequential(_dense(width, HIDDEN), _dense(HIDDEN, HIDDEN), _dense(HIDDEN, HIDDEN))
        self.mu = nn.Linear(HIDDEN, latent)
        self.logvar = nn.Linear(HIDDEN, latent)
        self.decoder = nn.Sequential(_dense(latent, HIDDEN), _dense(HIDDEN, HIDDEN),
                                     _dense(HIDDEN, HIDDEN), nn.Linear(HIDDEN, width))
        # keep[n] zeroes the latent block of class n (the sample "is" class n)
        keep = 1 - torch.eye(num_classes).repeat_interleave(latent_per_class, dim=1)
        self.register_buffer("keep", keep, persistent=False)

    def embedding(self, features: list[torch.Tensor]) -> torch.Tensor:
        return torch.cat([e(f) for e, f in zip(self.embed, features)], dim=1)

    def encode(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        e = self.encoder(h)
        return self.mu(e), self.logvar(e)

    def block_energy(self, z: torch.Tensor) -> torch.Tensor:
        """``w_n``: the squared norm of each class block of ``z`` (..., num_classes)."""
        return z.unflatten(-1, (self.num_classes, self.latent_per_class)).pow(2).sum(-1)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Decode any leading shape: (..., latent) -> (..., width)."""
        return self.decoder(z.flatten(0, -2)).unflatten(0, z.shape[:-1])


def kl_divergence(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(q(z|x) || N(0, I)) per sample."""
    return -0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).sum(-1)


def vae_loss(vae: VAE, features: list[torch.Tensor], labels: torch.Tensor, eps: torch.Tensor,
             lam: float) -> torch.Tensor:
    """Reconstruction (summed over features, mean over batch) + KLD + lambda * CE(softmax(-w), y),
    decoding with the label's block masked."""
    h = vae.embedding(features)
    mu, logvar = vae.encode(h)
    z = mu + eps * torch.exp(0.5 * logvar)
    recon = vae.decode(z * vae.keep[labels])
    rec = (recon - h.detach()).pow(2).sum(1).mean()
    ce = F.cross_entropy(-vae.block_energy(z), labels)
    return rec + kl_divergence(mu, logvar).mean() + lam * ce


@torch.no_grad()
def predict(vae: VAE, features: list[torch.Tensor]) -> torch.Tensor:
    """The VAE's class prediction: the block with the least energy (argmin w) at z = mu."""
    vae.eval()
    mu, _ = vae.encode(vae.embedding(features))
    return vae.block_energy(mu).argmin(1)


def smoothed_precision(pred: torch.Tensor, labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """acc_n = p(y = n | y_hat = n) with add-one smoothing: (correct + 1) / (predicted + 2)."""
    predicted = torch.bincount(pred, minlength=num_classes).double()
    correct = torch.bincount(pred[pred == labels], minlength=num_classes).double()
    return (correct + 1) / (predicted + 2)


def smoothed_prior(pred: torch.Tensor, num_classes: int) -> torch.Tensor:
    """prior_n = share of predictions that are n, add-one smoothed so no class has prior 0."""
    return (torch.bincount(pred, minlength=num_classes).double() + 1) / (len(pred) + num_classes)


def folded_decoder(vae: VAE) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The eval-mode decoder as four affine maps with ReLU between: each BatchNorm (an affine map
    in eval mode) is folded into the Linear that follows it. Exact up to float rounding."""
    layers, scale, shift = [], None, None
    for block in vae.decoder:
        linear = block[0] if isinstance(block, nn.Sequential) else block
        weight, bias = linear.weight, linear.bias
        if scale is not None:
            weight, bias = weight * scale, bias + weight @ shift
        layers.append((weight, bias))
        if isinstance(block, nn.Sequential):
            bn = block[2]
            scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
            shift = bn.bias - bn.running_mean * scale
    return layers


@torch.no_grad()
def difficulty(vae: VAE, features: list[torch.Tensor], eps: torch.Tensor, acc: torch.Tensor,
               prior: torch.Tensor, temperature: float = 1.0,
               formula: str = "posterior") -> torch.Tensor:
    """Per-sample difficulty ``1 - sum_n acc_n * pi_n(x)``, averaged over the MC draws ``eps``
    (mc_samples x latent, shared by every sample). ``L_n`` is the reconstruction error with block
    n masked plus the KLD, i.e. ``-log p(x | y_hat = n)`` up to a constant.

    ``posterior``: ``pi = softmax(-L / T + log prior)``; ``thesis``: ``pi = L * prior / sum(L * prior)``.

    All draws and class masks go through the decoder as one batch per chunk of samples. The
    squared error ``|W r + b - h|^2`` of the output layer is expanded as
    ``r.(G r + 2 W^T (b - h)) + |b - h|^2`` with ``G = W^T W``, so the decoder's output
    (width values per sample, draw and class) is never formed.
    """
    vae.eval()
    n, (m, classes) = len(features[0]), (len(eps), vae.num_classes)
    acc, log_prior, prior = (v.to(eps.device, torch.float32) for v in (acc, prior.log(), prior))
    *hidden, (w_out, b_out) = folded_decoder(vae)
    gram = w_out.T @ w_out
    chunk = max(1, SCORE_CHUNK_ELEMENTS // (m * classes * HIDDEN))
    scores = []
    for i in range(0, n, chunk):
        h = vae.embedding([f[i:i + chunk] for f in features])                      # (b, width)
        mu, logvar = vae.encode(h)
        z = mu[:, None] + eps[None] * torch.exp(0.5 * logvar)[:, None]             # (b, m, latent)
        r = z[:, :, None, :] * vae.keep                                            # (b, m, C, latent)
        for weight, bias in hidden:
            r = torch.addmm(bias, r.flatten(0, -2), weight.T).relu_().unflatten(0, r.shape[:-1])
        d = b_out - h                                                              # (b, width)
        cross = 2 * (d @ w_out)[:, None, None]                                     # (b, 1, 1, hidden)
        rec = (r @ gram).add_(cross).mul_(r).sum(-1) + d.pow(2).sum(-1)[:, None, None]  # (b, m, C)
        nll = rec.clamp_min(0) + kl_divergence(mu, logvar)[:, None, None]
        if formula == "posterior":
            pi = torch.softmax(-nll / temperature + log_prior, dim=-1)
        else:
            q = nll * prior
            pi = q / q.sum(-1, keepdim=True)
        scores.append((1 - (pi * acc).sum(-1)).mean(1))
    return torch.cat(scores)


def scores_to_weights(scores: torch.Tensor, exponent: float, w_min: float, w_max: float) -> torch.Tensor:
    """``(s / mean(s)) ** exponent`` clipped to ``[w_min, w_max]``."""
    s = scores.double()
    return (s / s.mean()).pow(exponent).clamp(w_min, w_max).float()


def effective_share(weights: torch.Tensor) -> float:
    """Kish's effective sample size of the weights as a share of the samples (1 = uniform)."""
    w = weights.double()
    return float(w.sum() ** 2 / (w * w).sum() / len(w))


class VaBAL:
    """The VAE, its optimiser and random stream, and the round schedule of one trial.

    ``refresh(train_features, train_labels, val_features, val_labels)`` trains the VAE for a round
    and returns the new per-sample weights (CPU, aligned with the training samples) and the round's
    metrics. All randomness (VAE init, minibatch order, reparameterisation and MC draws) comes from
    ``seed`` through one CPU generator, so results match across devices and resumes.
    """

    def __init__(self, cfg: VabalConfig, feature_dims: list[int], num_classes: int,
                 device: torch.device, seed: int) -> None:
        self.cfg, self.device, self.num_classes = cfg, device, num_classes
        self.gen = torch.Generator().manual_seed(seed + 1)
        with torch.random.fork_rng(devices=[]):  # the VAE is built on the CPU: seed only that generator
            torch.default_generator.manual_seed(seed)
            self.vae = VAE(feature_dims, num_classes, cfg.latent_per_class).to(device)
        cuda = device.type == "cuda"
        self.optimizer = torch.optim.Adam(self.vae.parameters(), lr=cfg.vae_lr, fused=cuda,
                                          capturable=cuda)
        self.latent = cfg.latent_per_class * num_classes
        self._graphed: GraphedVAEStep | None = None

    def due(self, epoch: int, epochs: int) -> bool:
        """A round ends after every ``refresh_every`` classifier epochs (not after the last)."""
        return epoch % self.cfg.refresh_every == 0 and epoch < epochs

    def _normal(self, *shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=self.gen).to(self.device)

    def train_vae(self, features: list[torch.Tensor], labels: torch.Tensor) -> float:
        """``vae_epochs`` epochs over the (fixed) features; returns the last epoch's mean loss.
        Each epoch's order and reparameterisation noise go to the device in one transfer. On CUDA
        full batches replay one captured graph of the whole step (see :class:`GraphedVAEStep`)."""
        self.vae.train()
        n, bs = len(labels), self.cfg.vae_batch_size
        if self.device.type == "cuda" and n >= bs:
            if self._graphed is None:
                self._graphed = GraphedVAEStep(self, features, labels)
            else:
                self._graphed.load(features)
        total = torch.zeros((), device=self.device)
        for _ in range(self.cfg.vae_epochs):
            order = torch.randperm(n, generator=self.gen).to(self.device)
            noise = self._normal(n, self.latent)
            total.zero_()
            for i in range(0, n - 1, bs):  # a last batch of one is skipped: BatchNorm needs two
                idx = order[i:i + bs]
                if self._graphed is not None and len(idx) == bs:
                    loss = self._graphed(idx, noise[i:i + bs])
                else:
                    loss = self.step([f[idx] for f in features], labels[idx], noise[i:i + bs])
                total += loss * len(idx)
        return float(total) / n

    def step(self, features: list[torch.Tensor], labels: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """One optimiser step of the VAE on a batch; returns the detached loss."""
        self.optimizer.zero_grad(set_to_none=True)
        return self.update(features, labels, noise)

    def update(self, features: list[torch.Tensor], labels: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """Loss, backward and optimiser step (gradients already cleared); the detached loss."""
        loss = vae_loss(self.vae, features, labels, noise, self.cfg.lambda_)
        loss.backward()
        self.optimizer.step()
        return loss.detach()

    def refresh(self, train_features: list[torch.Tensor], train_labels: torch.Tensor,
                val_features: list[torch.Tensor], val_labels: torch.Tensor
                ) -> tuple[torch.Tensor, dict[str, float]]:
        cfg = self.cfg
        vae_loss_value = self.train_vae(train_features, train_labels)
        val_pred = predict(self.vae, val_features)
        acc = smoothed_precision(val_pred, val_labels, self.num_classes)
        prior = smoothed_prior(predict(self.vae, train_features), self.num_classes)
        scores = difficulty(self.vae, train_features, self._normal(cfg.mc_samples, self.latent),
                            acc, prior, cfg.temperature, cfg.score_formula).cpu()
        if not torch.isfinite(scores).all():
            raise FloatingPointError("VaB-AL: non-finite difficulty scores")
        weights = scores_to_weights(scores, cfg.exponent, cfg.w_min, cfg.w_max)
        labels = train_labels.cpu()
        metrics = {
            "vabal/score_mean": float(scores.mean()), "vabal/score_std": float(scores.std()),
            "vabal/weight_max": float(weights.max()), "vabal/weight_min": float(weights.min()),
            "vabal/effective_share": effective_share(weights),
            "vabal/vae_accuracy": float((val_pred == val_labels).double().mean()),
            "vabal/vae_loss": vae_loss_value,
            **{f"vabal/score_mean_class{c}": float(scores[labels == c].mean())
               for c in range(self.num_classes) if (labels == c).any()},
        }
        return weights, metrics

    def state_dict(self) -> dict:
        return {"vae": self.vae.state_dict(), "optimizer": self.optimizer.state_dict(),
                "gen": self.gen.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.vae.load_state_dict(state["vae"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.gen.set_state(state["gen"].cpu())


class GraphedVAEStep:
    """The VAE's full training step (forward, backward, fused Adam) for a full batch, captured once
    per trial as a CUDA graph and replayed: one launch instead of a few hundred small kernels,
    which otherwise bound a refresh on a GPU. The round's features and labels live in static
    buffers (same shapes every round); each call copies in the batch's indices and noise. The first
    calls run eagerly on a side stream, as graph capture requires; they are real training steps."""

    WARMUP = 3

    def __init__(self, owner: VaBAL, features: list[torch.Tensor], labels: torch.Tensor) -> None:
        bs = owner.cfg.vae_batch_size
        self.owner = owner
        self.features = [f.clone() for f in features]
        self.labels = labels.clone()
        self.idx = torch.zeros(bs, dtype=torch.long, device=labels.device)
        self.noise = torch.zeros(bs, owner.latent, device=labels.device)
        self.graph: torch.cuda.CUDAGraph | None = None
        self.loss = torch.zeros((), device=labels.device)
        self.warm = 0

    def load(self, features: list[torch.Tensor]) -> None:
        for static, f in zip(self.features, features):
            static.copy_(f)

    def _batch(self) -> tuple[list[torch.Tensor], torch.Tensor]:
        return [f[self.idx] for f in self.features], self.labels[self.idx]

    def __call__(self, idx: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        self.idx.copy_(idx)
        self.noise.copy_(noise)
        if self.graph is None and self.warm < self.WARMUP:
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                loss = self.owner.step(*self._batch(), self.noise)
            torch.cuda.current_stream().wait_stream(side)
            self.warm += 1
            return loss
        if self.graph is None:
            self.owner.optimizer.zero_grad(set_to_none=True)  # the graph's backward writes the grads
            self.graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(self.graph):
                self.loss = self.owner.update(*self._batch(), self.noise)
        self.graph.replay()
        return self.loss.clone()


@torch.no_grad()
def pooled_stage_features(model: nn.Module, images: torch.Tensor,
                          inputs: Callable[[torch.Tensor], torch.Tensor],
                          batch_size: int) -> list[torch.Tensor]:
    """Global-average-pooled stage outputs of ``model`` (eval mode, no gradients) for ``images``
    in their stored order; ``inputs`` turns a uint8 batch into the model's un-augmented input."""
    was_training = model.training
    model.eval()
    parts: list[list[torch.Tensor]] = []
    for i in range(0, len(images), batch_size):
        outs = stage_outputs(model, inputs(images[i:i + batch_size]))
        parts.append([o.float().mean((2, 3)) for o in outs])
    model.train(was_training)
    return [torch.cat(stage) for stage in zip(*parts)]


def feature_dims(model: nn.Module, example: torch.Tensor) -> list[int]:
    """The channel count of each stage output, from one forward pass of ``example``."""
    return [f.shape[1] for f in pooled_stage_features(model, example, lambda x: x, len(example))]


@register_hook("vabal")
class VabalHook(TrialHook):
    """VaB-AL in the loop: builds the VAE on the model's stage outputs (setup); after every
    ``refresh_every`` epochs (not after the last) extracts the pooled stage features of train and
    val (un-augmented, stored order), runs a VAE round and sets the new per-sample weights for the
    sampler, the loss or both (epoch end); checkpoints the VAE, its optimiser and stream, and the
    weights. Active when the trial config has a ``vabal`` section."""

    @classmethod
    def active(cls, cfg: Any) -> bool:
        return cfg.vabal is not None

    @classmethod
    def validate(cls, cfg: Any) -> None:
        """``sampler: vabal`` needs VaB-AL sampling; VaB-AL needs a single model that lists its
        stage outputs and a refresh before the last epoch; ``use_for`` sampler/both sets the sampler."""
        if cfg.vabal is None:
            if cfg.sampler == "vabal":
                raise ValueError("sampler: 'vabal' samples by VaB-AL weights; add a vabal: section "
                                 "with use_for sampler or both")
            return
        if cfg.cascade:
            raise ValueError("vabal: the cascade's two networks list no stage outputs; use VaB-AL "
                             "with a single model")
        if cfg.vabal.refresh_every >= cfg.epochs:
            raise ValueError(f"vabal.refresh_every ({cfg.vabal.refresh_every}) must be < epochs "
                             f"({cfg.epochs}): otherwise the weights are never refreshed")
        if not MODELS.get(cfg.model).has_stages:
            raise ValueError(f"vabal: model {cfg.model!r} cannot list its stage outputs, which "
                             f"VaB-AL reads; use one of {', '.join(staged_models())}")
        if cfg.vabal.in_sampler:
            if cfg.sampler not in ("uniform", "vabal"):
                raise ValueError(f"sampler: vabal.use_for={cfg.vabal.use_for} samples by the VaB-AL "
                                 f"weights; leave sampler unset or 'vabal' (got {cfg.sampler!r})")
            cfg.sampler = "vabal"
        elif cfg.sampler == "vabal":
            raise ValueError("sampler: 'vabal' needs vabal.use_for sampler or both (it is 'loss')")

    def setup(self, state: LoopState) -> None:
        dims = feature_dims(state.model, state.eval_inputs(state.splits["train"].images[:2]))
        self.vabal = VaBAL(self.cfg.vabal, dims, len(state.class_names), state.device,
                           stream_seed(self.cfg.seed, "vabal"))
        self.weights: torch.Tensor | None = None

    def epoch_end(self, state: LoopState) -> dict[str, float]:
        return self.refresh(state) if self.vabal.due(state.epoch, self.cfg.epochs) else {}

    def refresh(self, state: LoopState) -> dict[str, float]:
        """End of a round: features of the current classifier, a VAE round, new weights; returns
        the round's metrics (``vabal/*``)."""
        start = time.perf_counter()
        with state.autocast():
            feats = {s: pooled_stage_features(state.model, state.splits[s].images, state.eval_inputs,
                                              4 * self.cfg.batch_size) for s in ("train", "val")}
        weights, metrics = self.vabal.refresh(feats["train"], state.splits["train"].labels,
                                              feats["val"], state.splits["val"].labels)
        self.use(state, weights)
        return metrics | {"vabal/refresh_s": time.perf_counter() - start}

    def use(self, state: LoopState, weights: torch.Tensor | None) -> None:
        """Give ``weights`` (CPU, one per training sample, or None) to the sampler, the loss or both."""
        self.weights = weights
        state.sampler_weights = weights if self.cfg.vabal.in_sampler else None
        state.loss_weights = weights if self.cfg.vabal.in_loss else None

    def state_dict(self) -> dict:
        return {**self.vabal.state_dict(), "weights": self.weights}

    def load_state_dict(self, state: LoopState, saved: dict) -> None:
        self.vabal.load_state_dict(saved)
        weights = saved["weights"]
        self.use(state, None if weights is None else weights.cpu())  # the samplers draw on the CPU
