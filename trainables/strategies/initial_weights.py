"""Initial weights (``init`` dimension): ``fn(model, model_name, path) -> None`` loads in place.

Pretrained weights come from local files only, read with ``torch.load(..., weights_only=True)``;
nothing is downloaded. Every entry keeps the freshly initialised head (sized for the data set's
classes), adapts an RGB first convolution to grey input by summing its input channels, and checks
that exactly the head was left out.
"""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from ..errors import ConfigError
from ..models import head_name
from ..registry import Registry

INITS: Registry[Callable[[nn.Module, str, Path | None], None]] = Registry("init")
MOCO_PREFIX = "module.encoder_q."
NEEDS_PATH, NO_PATH = {"moco"}, {"scratch", "ssl"}  # imagenet: init_path or torchvision's cache


def check_init_path(init: str, init_path: Path | None) -> None:
    """Cross-field rule of the init dimension: MoCo needs its checkpoint file, scratch and ssl read
    none (``ValueError`` naming ``init_path``)."""
    if init in NEEDS_PATH and init_path is None:
        raise ValueError(f"init_path: init {init!r} needs the MoCo checkpoint file")
    if init in NO_PATH and init_path is not None:
        raise ValueError(f"init_path: init {init!r} reads no file")


def load_backbone(model: nn.Module, state: dict[str, torch.Tensor], source: Path) -> None:
    """Load ``state`` into ``model`` except its head; a 3-channel first convolution is summed over
    its input channels for a grey model. The head's keys must be the only missing ones."""
    head = f"{head_name(model)}."
    own = model.state_dict()
    state = {k: v for k, v in state.items() if not k.startswith(head)}
    for k, v in state.items():
        if k in own and v.dim() == 4 and own[k].shape[1] == 1 and v.shape[1] == 3:
            state[k] = v.sum(1, keepdim=True)
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as exc:
        raise ConfigError(f"init_path: {source} does not fit the model ({str(exc).splitlines()[-1].strip()})"
                          ) from None
    head_keys = sorted(k for k in own if k.startswith(head))
    if sorted(missing) != head_keys or unexpected:
        raise ConfigError(f"init_path: {source} does not fit the model: expected exactly the head "
                          f"{head_keys} missing, got missing {sorted(missing)[:6]} and unexpected "
                          f"{sorted(unexpected)[:6]}")


def torchvision_weights_file(model_name: str) -> tuple[Path, str]:
    """Where torchvision's cache keeps ``model_name``'s default ImageNet weights, and their URL."""
    import torchvision.models as tvm

    try:
        weights = tvm.get_model_weights(model_name).DEFAULT
    except ValueError:
        raise ConfigError(f"init: no torchvision ImageNet weights for model {model_name!r}") from None
    return Path(torch.hub.get_dir()) / "checkpoints" / weights.url.rsplit("/", 1)[-1], weights.url


@INITS.register("scratch")
def scratch(model: nn.Module, model_name: str, path: Path | None) -> None:
    """Keep the seeded random initialisation."""


@INITS.register("imagenet")
def imagenet(model: nn.Module, model_name: str, path: Path | None) -> None:
    """torchvision's ImageNet weights: ``path``, else torchvision's cache
    ``$TORCH_HOME/hub/checkpoints/<name>-<hash>.pth``."""
    if path is None:
        path, url = torchvision_weights_file(model_name)
        if not path.is_file():
            raise ConfigError(f"init: ImageNet weights for {model_name} not found at {path}; nothing is "
                              f"downloaded: put {url} there, or set init_path to a copy")
    elif not path.is_file():
        raise ConfigError(f"init_path: {path} does not exist")
    _load_file(model, path)


@INITS.register("ssl")
def ssl(model: nn.Module, model_name: str, path: Path | None) -> None:
    """The in-domain self-supervised backbone, pretrained and cached by :mod:`trainables.self_supervised`
    (the loop runs or finds the pre-stage and passes its weights file)."""
    _load_file(model, path)


def _load_file(model: nn.Module, path: Path) -> None:
    load_backbone(model, torch.load(path, map_location="cpu", weights_only=True), path)


@INITS.register("moco")
def moco(model: nn.Module, model_name: str, path: Path | None) -> None:
    """A MoCo v1/v2 checkpoint (facebookresearch/moco): the query encoder without its fc head."""
    if path is None or not path.is_file():
        raise ConfigError(f"init_path: MoCo checkpoint {path} does not exist")
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    if "state_dict" not in checkpoint:
        raise ConfigError(f"init_path: {path} has no 'state_dict' (not a MoCo checkpoint)")
    state = {k.removeprefix(MOCO_PREFIX): v for k, v in checkpoint["state_dict"].items()
             if k.startswith(MOCO_PREFIX) and not k.startswith(f"{MOCO_PREFIX}fc.")}
    load_backbone(model, state, path)
