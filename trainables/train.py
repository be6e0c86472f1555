"""One trial: train a model with one strategy, evaluate every epoch, report and checkpoint.

``run(config, report)`` is the whole trial. It knows nothing of Ray or MLflow: the study engine
wraps ``report`` (metrics dict + checkpoint folder, once per epoch) and passes the checkpoint folder
back in to resume. Every random source comes from ``config["seed"]`` through separate streams
(model init, dropout, data order, augmentation), so the same seed gives the same numbers on CPU,
and strategies that differ in one dimension still share the others' randomness (paired seeds).
"""
from __future__ import annotations

import copy
import math
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .config import TrialConfig, parse_config
from .data import ImageArrays, load_arrays, split_indices
from .data.augment import AUGMENTS, centre_crop
from .errors import TrainingDiverged
from .hooks import TrialHook, active_hooks
from .metrics import choose_threshold, classification_metrics, operating_point_metrics, resolve_class
from .models import build_model, normalisation
from .predictions import prediction_frame, write_predictions
from .seeds import stream_seed
from .strategies import FREEZES, INITS, LOSSES, LR_POLICIES, OPTIMIZERS, SAMPLERS
from .strategies.freeze import train_mode
from .strategies.lr_policies import LRPolicy
from .strategies.samplers import epoch_steps

if TYPE_CHECKING:
    import pandas as pd

Report = Callable[[dict, str | None], None]
CHECKPOINT_FILE = "trial.pt"


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device: 'cuda' requested but torch sees no CUDA device")
    return torch.device(name)


class SharedRows:
    """A split's rows of the shared uint8 image array ``[N, C, H, W]`` (the cache entry or Ray's
    object store, mapped read-only by every trial on the node), gathered per batch: a trial on the
    CPU holds no copy of its split. Indexed like a tensor (positions or a slice) and returns uint8
    ``[B, C, H, W]`` tensors."""

    def __init__(self, source: np.ndarray, index: np.ndarray) -> None:
        self.source, self.index = source, index

    def __len__(self) -> int:
        return len(self.index)

    @property
    def shape(self) -> tuple[int, ...]:
        return (len(self.index), *self.source.shape[1:])

    def __getitem__(self, key: torch.Tensor | slice) -> torch.Tensor:
        rows = self.index[key.numpy() if isinstance(key, torch.Tensor) else key]
        return torch.from_numpy(self.source[np.atleast_1d(rows)])


@dataclass
class SplitTensors:
    """One split's uint8 images and labels: copied to the trial's GPU once, or on the CPU read in
    place from the shared array (:class:`SharedRows`)."""

    images: torch.Tensor | SharedRows
    labels: torch.Tensor

    @classmethod
    def of(cls, arrays: ImageArrays, index: np.ndarray, device: torch.device) -> SplitTensors:
        labels = torch.from_numpy(arrays.labels[index]).to(device)
        if device.type == "cpu":
            return cls(SharedRows(arrays.images, index), labels)
        return cls(torch.from_numpy(arrays.images[index]).to(device), labels)


@dataclass
class TrialState:
    """Everything the epoch functions and the strategy hooks share; built once per ``run``."""

    cfg: TrialConfig
    device: torch.device
    class_names: list[str]
    positive: int
    splits: dict[str, SplitTensors]
    model: nn.Module
    mean: torch.Tensor
    std: torch.Tensor
    optimizer: torch.optim.Optimizer
    policy: LRPolicy
    loss_fn: Callable
    data_gen: torch.Generator
    aug_gen: torch.Generator
    train_labels_cpu: torch.Tensor
    sampler: str = "uniform"  # the sampler of this epoch's order (cRT switches it in its second stage)
    arrays: ImageArrays | None = None  # the prepared arrays (patient ids and files of the predictions)
    index: dict[str, np.ndarray] = field(default_factory=dict)  # each split's rows of the arrays
    hooks: list[TrialHook] = field(default_factory=list)
    sampler_weights: torch.Tensor | None = None  # per-sample weights (CPU) a hook gives the sampler
    loss_weights: torch.Tensor | None = None  # per-sample weights (CPU) a hook gives the loss
    epoch: int = 0
    best: dict = field(default_factory=dict)  # monitor value, epoch, val metrics, model state
    predictions: list = field(default_factory=list)  # per-sample test predictions of the epoch tested

    def inputs(self, images: torch.Tensor) -> torch.Tensor:
        x = (images - self.mean) / self.std
        return x.contiguous(memory_format=torch.channels_last) if self.cfg.channels_last else x

    def train_inputs(self, idx: torch.Tensor, gen: torch.Generator | None = None) -> torch.Tensor:
        """Training samples ``idx`` as augmented, normalised model input (the ``augment`` dimension,
        drawing from ``gen``, by default the trial's augmentation stream)."""
        images = self.splits["train"].images[idx].float().div_(255)
        return self.inputs(AUGMENTS.get(self.cfg.augment)(images, self.cfg.data.image_size, gen or self.aug_gen))

    def eval_inputs(self, images: torch.Tensor) -> torch.Tensor:
        """A uint8 batch as un-augmented (centre-cropped, normalised) model input."""
        return self.inputs(centre_crop(images.float().div_(255), self.cfg.data.image_size))

    def epoch_order(self) -> torch.Tensor:
        """This epoch's training indices from the configured sampler (which may read the weights)."""
        return SAMPLERS.get(self.sampler)(self.train_labels_cpu, len(self.class_names),
                                          self.data_gen, self.sampler_weights).to(self.device)

    def split_predictions(self, split: str, features: bool = False) -> Predictions:
        """The trial model's centre-crop predictions of ``split`` (:func:`predict`)."""
        return predict(self, split, features=features)

    def autocast(self):
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.cfg.amp == "bf16")


def build_network(cfg: TrialConfig, class_names: list[str], channels: int, init_path: Path | None,
                  hooks: list[TrialHook]) -> nn.Module:
    """The trial's model with its initial weights (from ``init_path``) and frozen parts, or the
    network a hook makes of such models (the cascade's two)."""

    def one(num_classes: int) -> nn.Module:
        model = build_model(cfg.model, num_classes, channels, cfg.model_options)
        INITS.get(cfg.init)(model, cfg.model, init_path)
        FREEZES.get(cfg.freeze)(model)
        return model

    for hook in hooks:
        if (network := hook.network(class_names, one)) is not None:
            return network
    return one(len(class_names))


def build_trial(cfg: TrialConfig, arrays: ImageArrays) -> TrialState:
    """Split the data, move it to the device once, and build model, optimiser and strategy parts."""
    hooks = active_hooks(cfg)
    device = resolve_device(cfg.device)
    if device.type == "cpu" and cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    positive = resolve_class(arrays.class_names, cfg.data.positive_class)
    index = split_indices(arrays, cfg.data)
    splits = {s: SplitTensors.of(arrays, idx, device) for s, idx in index.items()}
    channels = arrays.images.shape[1]

    torch.manual_seed(stream_seed(cfg.seed, "init"))
    init_path = cfg.init_path
    for hook in hooks:
        init_path = hook.initial_weights(arrays, device) or init_path
    model = build_network(cfg, arrays.class_names, channels, init_path, hooks).to(device)
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    torch.manual_seed(stream_seed(cfg.seed, "dropout"))
    mean, std = (t.to(device) for t in normalisation(cfg.model, channels, cfg.model_options.normalisation))

    train_labels = torch.from_numpy(arrays.labels[index["train"]])
    probe = SAMPLERS.get(cfg.sampler)(train_labels, arrays.num_classes, torch.Generator(), None)
    optimizer = OPTIMIZERS.get(cfg.optimizer)(
        [p for p in model.parameters() if p.requires_grad], cfg.lr, cfg.weight_decay, cfg.momentum)
    t = TrialState(
        cfg=cfg, device=device, class_names=arrays.class_names, positive=positive, splits=splits,
        model=model, mean=mean, std=std, optimizer=optimizer,
        policy=LR_POLICIES.get(cfg.lr_policy)(optimizer, cfg.epochs, epoch_steps(len(probe), cfg.batch_size),
                                              cfg.lr_options),
        loss_fn=LOSSES.get(cfg.loss)(torch.bincount(train_labels, minlength=arrays.num_classes),
                                     cfg.loss_options),
        data_gen=torch.Generator().manual_seed(stream_seed(cfg.seed, "data")),
        aug_gen=torch.Generator(device=device).manual_seed(stream_seed(cfg.seed, "augment")),
        train_labels_cpu=train_labels,
        sampler=cfg.sampler,
        arrays=arrays,
        index=index,
        hooks=hooks,
    )
    for hook in hooks:
        hook.setup(t)
    return t


def train_one_epoch(t: TrialState) -> dict[str, float]:
    """One pass over the sampler's order: batched device-side augmentation, one step per batch. A
    hook may mix the batch (``batch``): the loss is then the weighted sum over the mixed targets."""
    cfg, train = t.cfg, t.splits["train"]
    train_mode(t.model)
    order = t.epoch_order()
    weights = None if t.loss_weights is None else t.loss_weights.to(t.device)  # once per epoch
    loss_sum = torch.zeros((), device=t.device, dtype=torch.float64)
    correct = torch.zeros((), device=t.device, dtype=torch.float64)  # weighted by the targets' weights
    seen = 0
    start = time.perf_counter()
    for i in range(0, len(order), cfg.batch_size):
        idx = order[i:i + cfg.batch_size]
        if len(idx) < 2:  # BatchNorm cannot train on a single sample (epoch_steps counts without it)
            continue
        x = t.train_inputs(idx)
        targets = [(1.0, idx)]  # (weight, training samples whose labels the loss reads)
        for hook in t.hooks:
            x, targets = hook.batch(t, x, targets)
        with t.autocast():
            logits = t.model(x)
        loss = sum(w * t.loss_fn(logits.float(), train.labels[j], sample_weight=None if weights is None else weights[j])
                   for w, j in targets)
        t.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.grad_clip:
            nn.utils.clip_grad_norm_(t.model.parameters(), cfg.grad_clip)
        t.optimizer.step()
        t.policy.after_batch()
        loss_sum += loss.detach() * len(idx)
        predicted = logits.argmax(1)
        correct += sum(w * (predicted == train.labels[j]).sum() for w, j in targets)
        seen += len(idx)
    mean_loss = float(loss_sum) / max(seen, 1)
    if not math.isfinite(mean_loss):
        raise TrainingDiverged(f"training loss is {mean_loss} at epoch {t.epoch + 1}; "
                               f"lower lr (now {cfg.lr:g}) or check the data")
    return {"train/loss": mean_loss, "train/accuracy": float(correct) / max(seen, 1),
            "train/lr": t.policy.lr(), "train/epoch_seconds": time.perf_counter() - start}


@dataclass
class Predictions:
    """One model's predictions on one split: class probabilities float64 ``[N, C]``, true labels int64
    ``[N]``, the mean negative log-likelihood, and (when asked) penultimate features float32 ``[N, D]``."""

    split: str
    probs: np.ndarray
    labels: np.ndarray
    loss: float
    tta: int = 0
    features: np.ndarray | None = None


def penultimate(model: nn.Module) -> nn.Module:
    """The model's last ``nn.Linear``, whose input is the penultimate features."""
    return [m for m in model.modules() if isinstance(m, nn.Linear)][-1]


@torch.no_grad()
def predict(t: TrialState, split: str, model: nn.Module | None = None, tta: int = 0,
            features: bool = False) -> Predictions:
    """Centre-crop predictions of ``model`` (default the trial's) on one split. With ``tta`` > 0 the
    prediction is the mean softmax over the centre crop and ``tta`` views augmented by
    ``tta_augment`` (the same seeded views at every call). ``features`` keeps the input of the last
    linear layer for the centre crop."""
    model = model or t.model
    model.eval()
    data, size, augment = t.splits[split], t.cfg.data.image_size, AUGMENTS.get(t.cfg.tta_augment)
    gen = torch.Generator(device=t.device).manual_seed(stream_seed(t.cfg.seed, "tta"))
    probs, feats, loss_sum = [], [], 0.0
    hook = penultimate(model).register_forward_hook(
        lambda _m, args, _out: feats.append(args[0].float().flatten(1).cpu())) if features else None
    try:
        for i in range(0, len(data.labels), 4 * t.cfg.batch_size):
            seen = len(feats)
            images = data.images[i:i + 4 * t.cfg.batch_size].float().div_(255)
            views = [centre_crop(images, size)] + [augment(images, size, gen) for _ in range(tta)]
            with t.autocast():
                log_p = torch.stack([torch.log_softmax(model(t.inputs(v)).float(), 1) for v in views])
            log_p = torch.logsumexp(log_p, 0) - math.log(len(views))  # log of the mean softmax
            y = data.labels[i:i + len(images)]
            loss_sum += float(F.nll_loss(log_p, y, reduction="sum"))
            probs.append(log_p.exp().cpu())
            del feats[seen + 1:]  # the centre crop's features, not the TTA views'
    finally:
        if hook is not None:
            hook.remove()
    p = torch.cat(probs).numpy().astype(np.float64)
    p /= p.sum(1, keepdims=True)  # float32 softmax rows sum to 1 only within ~1e-7
    return Predictions(split, p, data.labels.cpu().numpy(), loss_sum / len(p), tta,
                       torch.cat(feats).numpy() if features else None)


def _name(split: str, tta: int) -> str:
    return f"{split}_tta" if tta else split


def decision_threshold(t: TrialState, val: Predictions) -> float | None:
    """The positive-class threshold of ``evaluation.decision``, fixed on the model's validation
    predictions; None for the argmax."""
    rule = t.cfg.evaluation.decision_rule
    if rule is None:
        return None
    return choose_threshold(rule, val.labels == t.positive, val.probs[:, t.positive])


def scored(t: TrialState, pred: Predictions, threshold: float | None) -> dict[str, float | list]:
    """Every metric of one split's predictions, named ``<split>/*`` (``<split>_tta/*`` with TTA)."""
    metrics = classification_metrics(pred.labels, pred.probs, pred.loss, t.class_names, t.positive, threshold)
    return {f"{_name(pred.split, pred.tta)}/{k}": v for k, v in metrics.items()}


def evaluate(t: TrialState, split: str, model: nn.Module | None = None, tta: int = 0) -> dict[str, float | list]:
    """All metrics of ``model`` (default the trial's) on one split (see :func:`predict`), decided
    by ``evaluation.decision`` on the same model's validation predictions."""
    pred = predict(t, split, model, tta)
    val = pred if split == "val" or t.cfg.evaluation.decision_rule is None else predict(t, "val", model, tta)
    return scored(t, pred, decision_threshold(t, val))


def tested(t: TrialState, model: nn.Module, val: Predictions) -> tuple[dict[str, float | list], Predictions]:
    """The test metrics of ``model`` given its validation predictions ``val``: decided as
    configured, at every operating point fixed on ``val``, and with TTA; and its test predictions."""
    cfg = t.cfg
    test = predict(t, "test", model, features=cfg.evaluation.features)
    out = scored(t, test, decision_threshold(t, val))
    pairs = [(val, test)]
    if cfg.tta:
        val_tta, test_tta = predict(t, "val", model, cfg.tta), predict(t, "test", model, cfg.tta)
        out |= scored(t, test_tta, decision_threshold(t, val_tta))
        pairs.append((val_tta, test_tta))
    for v, p in pairs:
        out |= operating_point_metrics(cfg.evaluation.operating_points, v.labels, v.probs, p.labels, p.probs,
                                       t.positive, _name(p.split, p.tta))
    return out, test


def prediction_rows(t: TrialState, model: str, pred: Predictions) -> pd.DataFrame:
    """One model's predictions of a split as rows of the predictions file."""
    index, files = t.index[pred.split], t.arrays.manifest.get("files")
    if files is not None:
        root = str(t.cfg.data.path).rstrip("/") + "/"
        files = [files[i].removeprefix(root) for i in index]
    return prediction_frame(model, index, pred.labels, pred.probs, t.class_names, t.arrays.patient_ids[index],
                            files, pred.features)


def _improved(t: TrialState, value: float) -> bool:
    if not t.best:
        return True
    return value > t.best["value"] if t.cfg.monitor_mode == "max" else value < t.best["value"]


def _best_model(t: TrialState) -> nn.Module:
    model = copy.deepcopy(t.model)
    model.load_state_dict(t.best["state"])
    return model


def save_checkpoint(t: TrialState, folder: Path) -> None:
    torch.save({
        "epoch": t.epoch,
        "model": t.model.state_dict(),
        "optimizer": t.optimizer.state_dict(),
        "policy": t.policy.state_dict(),
        "torch_rng": torch.get_rng_state(),
        "cuda_rng": torch.cuda.get_rng_state_all() if t.device.type == "cuda" else [],
        "data_gen": t.data_gen.get_state(),
        "aug_gen": t.aug_gen.get_state(),
        "hooks": {h.name: h.state_dict() for h in t.hooks},
        "best": t.best,
    }, folder / CHECKPOINT_FILE)


def load_checkpoint(t: TrialState, folder: str | Path) -> None:
    state = torch.load(Path(folder) / CHECKPOINT_FILE, map_location=t.device, weights_only=True)
    t.model.load_state_dict(state["model"])
    for hook in t.hooks:  # before the optimiser's state: a hook may have replaced the optimiser (cRT)
        hook.load_state_dict(t, state["hooks"][hook.name])
    t.optimizer.load_state_dict(state["optimizer"])
    t.policy.load_state_dict(state["policy"])
    torch.set_rng_state(state["torch_rng"].cpu())
    if state["cuda_rng"] and t.device.type == "cuda":
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda_rng"]])
    t.data_gen.set_state(state["data_gen"].cpu())
    t.aug_gen.set_state(state["aug_gen"].cpu())
    t.best = state["best"]
    t.epoch = state["epoch"]


def run(config: dict | TrialConfig, report: Report, checkpoint_dir: str | Path | None = None,
        data: ImageArrays | None = None) -> dict:
    """Train one trial for ``config["epochs"]`` epochs, calling ``report(metrics, checkpoint_dir)``
    after each. ``data`` are prepared arrays (else loaded from ``config["data"]``, cached);
    ``checkpoint_dir`` resumes a trial. Returns the last epoch's metrics.

    Every epoch reports ``train/*`` and ``val/*``; the last epoch (or every epoch with
    ``test_every_epoch``) adds ``test/*`` and ``test_at_<operating point>/*`` for the final model,
    ``best/val/*``, ``best/test/*``, ``best/test_at_<operating point>/*`` and ``best/epoch`` for the
    model of the best ``monitor`` epoch, and writes both models' test predictions
    (:mod:`trainables.predictions`) into that epoch's checkpoint folder.
    """
    cfg = parse_config(config)
    t = build_trial(cfg, data if data is not None else load_arrays(cfg.data))
    if checkpoint_dir is not None:
        load_checkpoint(t, checkpoint_dir)
    metrics: dict = {}
    while t.epoch < cfg.epochs:
        for hook in t.hooks:
            hook.epoch_start(t)
        metrics = train_one_epoch(t)
        for hook in t.hooks:
            hook.trained(t)
        val_pred = predict(t, "val")
        val = scored(t, val_pred, decision_threshold(t, val_pred))
        val |= operating_point_metrics(cfg.evaluation.operating_points, val_pred.labels, val_pred.probs,
                                       val_pred.labels, val_pred.probs, t.positive, "val")
        t.policy.after_epoch(val)
        t.epoch += 1
        metrics |= val
        for hook in t.hooks:
            metrics |= hook.epoch_end(t)
        if cfg.tta:
            metrics |= evaluate(t, "val", tta=cfg.tta)
        if _improved(t, val[cfg.monitor]):
            t.best = {"value": val[cfg.monitor], "epoch": t.epoch,
                      "state": {k: v.detach().clone() for k, v in t.model.state_dict().items()},
                      "val": {k: v for k, v in val.items() if not isinstance(v, list)}}
        if t.epoch == cfg.epochs or cfg.test_every_epoch:
            best_model = _best_model(t)
            final_test, final_pred = tested(t, t.model, val_pred)
            best_test, best_pred = tested(t, best_model, predict(t, "val", best_model))
            metrics |= final_test | {f"best/{k}": v for k, v in (t.best["val"] | best_test).items()}
            metrics["best/epoch"] = t.best["epoch"]
            t.predictions = [prediction_rows(t, "final", final_pred), prediction_rows(t, "best", best_pred)]
        metrics["epoch"] = t.epoch
        folder = Path(tempfile.mkdtemp(prefix="cxr-ckpt-"))
        try:
            save_checkpoint(t, folder)
            if t.predictions:
                write_predictions(t.predictions, folder)
                t.predictions = []
            report(metrics, str(folder))
        finally:
            shutil.rmtree(folder, ignore_errors=True)
    return metrics
