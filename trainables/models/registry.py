"""The model registry: each entry builds a network for ``num_classes`` and ``in_channels`` and says
which normalisation statistics it expects, whether it lists its stage outputs and whether batch
normalisation is a choice; ``model_options`` (:class:`ModelOptions`) set the head's dropout, the
batch norm and the input normalisation of any registered model."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch
from pydantic import Field
from torch import nn

from ..registry import Registry, StrictModel

# Per-channel statistics (thesis: CIFAR for the 32 px ResNet18, ImageNet for 224 px models; report
# 002: 0.5 and 0.5 after histogram equalisation).
NORMS = {
    "cifar": ((0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)),
    "imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
    "half": ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
}


class ModelOptions(StrictModel):
    """``model_options`` in a trial config: knobs of the network itself, searchable like any field.

    - ``dropout``: the probability of dropout on the head's input (report 001 swept it, report 003
      used 0.2); None keeps the architecture's own (0.2 for simple_cnn, 0.5 for vgg16 and
      squeezenet1_0, none for the ResNets and DenseNet); 0 turns it off (vgg16's classifier keeps
      the dropout after its first layer: only the head's input is this knob).
    - ``batch_norm``: batch normalisation after each convolution (report 001 swept it), for the
      models that offer the choice (``simple_cnn``; ``vgg16``, whose batch-norm variant is
      torchvision's ``vgg16_bn``); None keeps the architecture's default.
    - ``normalisation``: the input's per-channel mean and std: ``model`` (the architecture's:
      CIFAR or ImageNet statistics), ``cifar``, ``imagenet`` or ``half`` (0.5 and 0.5, report 002).
    """

    dropout: float | None = Field(None, ge=0, lt=1)
    batch_norm: bool | None = None
    normalisation: Literal["model", "cifar", "imagenet", "half"] = "model"


@dataclass(frozen=True)
class ModelEntry:
    build: Callable[..., nn.Module]
    norm: str
    has_stages: bool = False  # can list its stage outputs (``stage_outputs``), which VaB-AL reads
    batch_norm: tuple[bool, ...] = (True,)  # the choices it is built with, its default first
    linear_head: bool = True  # its head (:func:`head_name`) is an ``nn.Linear`` (else a 1x1 convolution)


MODELS: Registry[ModelEntry] = Registry("model")


def register_model(name: str, norm: str, has_stages: bool = False, batch_norm: tuple[bool, ...] = (True,),
                   linear_head: bool = True):
    """Decorator: register ``fn(num_classes, in_channels) -> nn.Module`` under ``name``. A model
    built with or without batch norm lists both choices (its default first) in ``batch_norm``, and
    its ``fn`` takes a ``batch_norm`` keyword; ``linear_head`` says whether its head is linear."""

    def add(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        MODELS.register(name)(ModelEntry(fn, norm, has_stages, batch_norm, linear_head))
        return fn

    return add


def staged_models() -> list[str]:
    """The registered models that list their stage outputs."""
    return [n for n in MODELS if MODELS.get(n).has_stages]


def check_model_options(name: str, options: ModelOptions) -> None:
    """Cross-field rule of ``model_options``: ``batch_norm`` must be a choice the model offers.
    Raises ``ValueError`` naming the field."""
    choices = MODELS.get(name).batch_norm
    if options.batch_norm is not None and options.batch_norm not in choices:
        offer = [n for n in MODELS if len(MODELS.get(n).batch_norm) > 1]
        raise ValueError(f"model_options.batch_norm: {name} is built {'with' if choices[0] else 'without'} batch "
                         f"norm only; the models with the choice are {', '.join(offer)}")


def build_model(name: str, num_classes: int, in_channels: int, options: ModelOptions | None = None) -> nn.Module:
    """The registered model ``name`` with a head of ``num_classes`` outputs for ``in_channels``
    input channels, built as ``options`` say (:class:`ModelOptions`; the defaults when None).
    Raises ``ValueError`` for a batch-norm choice the model does not offer."""
    entry, options = MODELS.get(name), options or ModelOptions()
    check_model_options(name, options)
    choice = entry.batch_norm[0] if options.batch_norm is None else options.batch_norm
    model = entry.build(num_classes, in_channels, **({"batch_norm": choice} if len(entry.batch_norm) > 1 else {}))
    if options.dropout is not None:
        set_head_dropout(model, options.dropout)
    return model


def head_name(model: nn.Module) -> str:
    """The output layer: the model's last ``Linear`` or ``Conv2d`` (``fc``, ``classifier.6``, ...)."""
    return [name for name, m in model.named_modules() if isinstance(m, nn.Linear | nn.Conv2d)][-1]


def head(model: nn.Module) -> nn.Module:
    """The model's output layer (:func:`head_name`)."""
    return model.get_submodule(head_name(model))


class DropoutLinear(nn.Linear):
    """A linear head with dropout on its input; its parameters and state-dict keys are a plain
    ``nn.Linear``'s, so weights files load into it unchanged."""

    def __init__(self, head: nn.Linear, p: float) -> None:
        super().__init__(head.in_features, head.out_features, head.bias is not None, device="meta")
        self.weight, self.bias = head.weight, head.bias  # the head's own (seeded) initial values
        self.dropout = nn.Dropout(p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(self.dropout(x))


def set_head_dropout(model: nn.Module, p: float) -> None:
    """Dropout ``p`` on the input of the model's head: the ``nn.Dropout`` right before it in its
    ``nn.Sequential`` gets ``p``; a linear head without one becomes a :class:`DropoutLinear`.
    Raises ``ValueError`` for another kind of head."""
    name = head_name(model)
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name)
    before = parent[int(child) - 1] if isinstance(parent, nn.Sequential) and child.isdigit() and int(child) else None
    if isinstance(before, nn.Dropout):
        before.p = p
    elif type(head := parent.get_submodule(child)) is nn.Linear:
        setattr(parent, child, DropoutLinear(head, p))
    else:
        raise ValueError(f"model_options.dropout: the head of {type(model).__name__} ({name}) is neither linear "
                         "nor preceded by a dropout layer")


def normalisation(name: str, channels: int, choice: str = "model") -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and std as [1, C, 1, 1] tensors: the model's statistics, or ``choice``'s
    (:class:`ModelOptions` ``normalisation``); grey input uses the channel average."""
    mean, std = (torch.tensor(v) for v in NORMS[MODELS.get(name).norm if choice == "model" else choice])
    if channels == 1:
        mean, std = mean.mean(0, keepdim=True), std.mean(0, keepdim=True)
    return mean.view(1, -1, 1, 1), std.view(1, -1, 1, 1)


def stage_outputs(model: nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
    """The outputs of the model's stages (residual blocks groups), for models that list them."""
    if not hasattr(model, "stages"):
        raise ValueError(f"{type(model).__name__} cannot list its stage outputs")
    x = model.stem(x)
    outs = []
    for stage in model.stages():
        x = stage(x)
        outs.append(x)
    return outs
