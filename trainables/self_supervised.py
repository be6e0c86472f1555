"""In-domain self-supervised pretraining (``init: ssl``): SimCLR on the trial's *training* images
(labels unused), run once per (data, split, backbone, ssl settings) and cached on disk, so every
trial that asks for the same pre-stage loads the same weights instead of pretraining again.

The backbone is ``cfg.model`` with its head as a linear projection to ``ssl.dim`` features; two
augmented views per image, NT-Xent loss. Its randomness comes from ``ssl.seed`` only, inside a
forked RNG, so a trial's own streams are the same whether the pre-stage ran or was cached.
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import math
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field, field_validator

from .data import DataConfig, ImageArrays, split_indices
from .data.augment import AUGMENTS
from .data.cache import default_cache_dir
from .errors import TrainingDiverged
from .hooks import TrialHook, register_hook
from .models import ModelOptions, build_model, normalisation
from .registry import StrictModel

WEIGHTS, CURVE = "weights.pt", "curve.json"


class SSLConfig(StrictModel):
    """The in-domain SimCLR pre-stage of ``init: ssl`` (run once per distinct setting, cached)."""

    epochs: int = Field(20, ge=1)
    batch_size: int = Field(128, ge=4)
    lr: float = Field(1e-3, gt=0)
    temperature: float = Field(0.2, gt=0)
    dim: int = Field(64, ge=2)       # projection size: the backbone's head during pretraining
    augment: str = "standard"        # how the two views of an image are drawn
    seed: int = 0                    # shared by every trial: one pre-stage, whatever the trial seed

    _augment = field_validator("augment")(lambda v: AUGMENTS.check(v))


class PretrainSetting(Protocol):
    """The parts of a trial config (``TrialConfig``) that the pre-stage reads."""

    ssl: SSLConfig
    data: DataConfig
    model: str
    model_options: ModelOptions


@register_hook("ssl")
class SSLHook(TrialHook):
    """``init: ssl``: before the network is built, run (or find in the cache) the pre-stage and hand
    its weights file to the ``ssl`` init."""

    @classmethod
    def active(cls, cfg: Any) -> bool:
        return cfg.init == "ssl"

    def initial_weights(self, arrays: ImageArrays, device: torch.device) -> Path:
        return pretrain(self.cfg, arrays, device)[0]


def nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float) -> torch.Tensor:
    """SimCLR's loss: each view must pick its partner among the other 2N - 1 views (cosine / T)."""
    z = F.normalize(torch.cat([z1, z2]), dim=1)
    sim = (z @ z.T / temperature).fill_diagonal_(float("-inf"))
    n = len(z1)
    partner = torch.cat([torch.arange(n, 2 * n), torch.arange(n)]).to(z.device)
    return F.cross_entropy(sim, partner)


def ssl_key(cfg: PretrainSetting, arrays: ImageArrays) -> str:
    """Identity of a pre-stage: the data (cache key), the split, the input, backbone and settings."""
    data = arrays.manifest.get("key") or hashlib.sha256(arrays.images.tobytes()).hexdigest()
    split = [cfg.data.val_fraction, cfg.data.test_fraction, cfg.data.split_seed]
    if cfg.data.split != "auto" or cfg.data.val_from_train is not None:  # keys of earlier studies stay
        split += [cfg.data.split, cfg.data.val_from_train]
    blob = {"data": data, "split": split,
            "image_size": cfg.data.image_size, "channels": int(arrays.images.shape[1]),
            "model": cfg.model, "ssl": cfg.ssl.model_dump()}
    architecture = backbone_options(cfg.model_options)
    if architecture != ModelOptions():  # keys of earlier studies stay
        blob["model_options"] = architecture.model_dump()
    return hashlib.sha256(json.dumps(blob, sort_keys=True).encode()).hexdigest()[:24]


def backbone_options(options: ModelOptions) -> ModelOptions:
    """The parts of ``model_options`` the pre-stage's network shares with the trial's: its batch
    norm and input normalisation (the projection head has no dropout)."""
    return options.model_copy(update={"dropout": None})


def ssl_folder(cfg: PretrainSetting, arrays: ImageArrays) -> Path:
    return (cfg.data.cache_dir or default_cache_dir()) / "ssl" / f"{cfg.model}-{ssl_key(cfg, arrays)}"


def pretrain(cfg: PretrainSetting, arrays: ImageArrays, device: torch.device) -> tuple[Path, list[float]]:
    """The pre-stage's weights file and loss per epoch: from the cache, or trained now (one process
    at a time per entry: the others wait on a file lock and then read the entry)."""
    folder = ssl_folder(cfg, arrays)
    folder.parent.mkdir(parents=True, exist_ok=True)
    with open(folder.parent / f"{folder.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (folder / WEIGHTS).is_file():
            _store(folder, *simclr(cfg, arrays, device))
    return folder / WEIGHTS, json.loads((folder / CURVE).read_text())["loss"]


def _store(folder: Path, state: dict, curve: list[float]) -> None:
    tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}-"))
    try:
        torch.save(state, tmp / WEIGHTS)
        (tmp / CURVE).write_text(json.dumps({"loss": curve}))
        os.rename(tmp, folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def simclr(cfg: PretrainSetting, arrays: ImageArrays, device: torch.device) -> tuple[dict, list[float]]:
    """Train ``cfg.model`` with SimCLR on the training split; returns its state dict and the mean
    loss of every epoch."""
    s = cfg.ssl
    train = split_indices(arrays, cfg.data)["train"]
    images = torch.from_numpy(arrays.images[np.sort(train)]).to(device)
    channels = images.shape[1]
    augment = AUGMENTS.get(s.augment)
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(s.seed)
        architecture = backbone_options(cfg.model_options)
        model = build_model(cfg.model, s.dim, channels, architecture).to(device).train()
        mean, std = (t.to(device) for t in normalisation(cfg.model, channels, architecture.normalisation))
        optimizer = torch.optim.Adam(model.parameters(), lr=s.lr)
        order_gen = torch.Generator().manual_seed(s.seed)
        aug_gen = torch.Generator(device=device).manual_seed(s.seed)
        curve = []
        for _ in range(s.epochs):
            order, total, seen = torch.randperm(len(images), generator=order_gen), 0.0, 0
            for i in range(0, len(order), s.batch_size):
                idx = order[i:i + s.batch_size].to(device)
                if len(idx) < 2:
                    continue
                x = images[idx].float().div_(255)
                z1, z2 = (model((augment(x, cfg.data.image_size, aug_gen) - mean) / std) for _ in range(2))
                loss = nt_xent(z1, z2, s.temperature)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                total, seen = total + float(loss.detach()) * len(idx), seen + len(idx)
            curve.append(total / seen)
            if not math.isfinite(curve[-1]):
                raise TrainingDiverged(f"ssl: pretraining loss is {curve[-1]} at epoch {len(curve)}; "
                                         f"lower ssl.lr (now {s.lr:g})")
    return {k: v.cpu() for k, v in model.state_dict().items()}, curve
