"""Batched augmentation on the trial's device, with per-sample random parameters.

Every policy folds its geometric steps (affine, crop, flip) into one affine map per sample and
samples the whole batch with a single ``grid_sample``; photometric jitter is per-sample too. The
random draws come from the trial's ``torch.Generator`` so a seed fixes the augmentation stream.
(``torchvision.transforms.v2`` on a batch tensor draws one parameter set for the whole batch.)
"""
from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F

from ..registry import Registry

Augment = Callable[[torch.Tensor, int, torch.Generator], torch.Tensor]
AUGMENTS: Registry[Augment] = Registry("augment")


def _uniform(gen: torch.Generator, n: int, low: float, high: float) -> torch.Tensor:
    return torch.rand(n, generator=gen, device=gen.device) * (high - low) + low


def centre_crop(x: torch.Tensor, size: int) -> torch.Tensor:
    """Exact centre crop (no interpolation): validation and test views."""
    top = (x.shape[-2] - size) // 2
    left = (x.shape[-1] - size) // 2
    return x[..., top:top + size, left:left + size]


def _warp(x: torch.Tensor, size: int, inv: torch.Tensor, scale: torch.Tensor,
          centre: torch.Tensor) -> torch.Tensor:
    """Sample ``x`` [B, C, L, L] at ``size`` px: output coords u map to ``inv @ (scale * u + centre)``
    in x's normalised coords. ``inv`` [B, 2, 2], ``scale`` [B, 2], ``centre`` [B, 2]."""
    theta = torch.cat([inv * scale[:, None, :], (inv @ centre[:, :, None])], dim=2)
    grid = F.affine_grid(theta, [x.shape[0], x.shape[1], size, size], align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def _rotation_inverse(angle_deg: torch.Tensor, zoom: torch.Tensor) -> torch.Tensor:
    """Inverse of ``zoom * R(angle)`` as [B, 2, 2]."""
    a = torch.deg2rad(angle_deg)
    cos, sin = torch.cos(a) / zoom, torch.sin(a) / zoom
    return torch.stack([torch.stack([cos, sin], 1), torch.stack([-sin, cos], 1)], 1)


def _jitter(x: torch.Tensor, gen: torch.Generator, strength: float) -> torch.Tensor:
    """Per-sample brightness then contrast factors in [1 - strength, 1 + strength]."""
    b = _uniform(gen, len(x), 1 - strength, 1 + strength)[:, None, None, None]
    c = _uniform(gen, len(x), 1 - strength, 1 + strength)[:, None, None, None]
    x = (x * b).clamp_(0, 1)
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return ((x - mean) * c + mean).clamp_(0, 1)


@AUGMENTS.register("none")
def no_augment(x: torch.Tensor, size: int, gen: torch.Generator) -> torch.Tensor:
    return centre_crop(x, size)


@AUGMENTS.register("standard")
def standard(x: torch.Tensor, size: int, gen: torch.Generator) -> torch.Tensor:
    """Thesis policy: affine (rotation +-10 deg, shift +-10%, scale 0.85-1.15), random crop from
    the load size, horizontal flip p=0.5, brightness/contrast jitter in [0.9, 1.1]."""
    n, load = len(x), x.shape[-1]
    inv = _rotation_inverse(_uniform(gen, n, -10, 10), _uniform(gen, n, 0.85, 1.15))
    shift = _uniform(gen, 2 * n, -0.2, 0.2).view(n, 2)  # +-10% of the size = +-0.2 normalised
    offset = torch.randint(0, load - size + 1, (n, 2), generator=gen, device=gen.device)
    crop_centre = (size + 2 * offset.to(x.dtype)) / load - 1
    flip = torch.where(torch.rand(n, generator=gen, device=gen.device) < 0.5, -1.0, 1.0)
    scale = torch.stack([flip * size / load, torch.full_like(flip, size / load)], 1)
    return _jitter(_warp(x, size, inv, scale, crop_centre - shift), gen, 0.1)


@AUGMENTS.register("light")
def light(x: torch.Tensor, size: int, gen: torch.Generator) -> torch.Tensor:
    """Report 001: rotation +-5 deg, random resized crop (area 0.7-1.0, ratio 3/4-4/3), jitter 0.1."""
    n = len(x)
    inv = _rotation_inverse(_uniform(gen, n, -5, 5), torch.ones(n, device=x.device))
    area = _uniform(gen, n, 0.7, 1.0)
    ratio = torch.exp(_uniform(gen, n, math.log(3 / 4), math.log(4 / 3)))
    half = torch.stack([torch.sqrt(area * ratio), torch.sqrt(area / ratio)], 1).clamp_(max=1.0)
    centre = (torch.rand(n, 2, generator=gen, device=gen.device) * 2 - 1) * (1 - half)
    return _jitter(_warp(x, size, inv, half, centre), gen, 0.1)
