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
          centre: torch.Tensor, displacement: torch.Tensor | None = None) -> torch.Tensor:
    """Sample ``x`` [B, C, L, L] at ``size`` px: output coords u map to ``inv @ (scale * u + centre)``
    in x's normalised coords, plus ``displacement`` [B, size, size, 2] (normalised) when given.
    ``inv`` [B, 2, 2], ``scale`` [B, 2], ``centre`` [B, 2]."""
    theta = torch.cat([inv * scale[:, None, :], (inv @ centre[:, :, None])], dim=2)
    grid = F.affine_grid(theta, [x.shape[0], x.shape[1], size, size], align_corners=False)
    if displacement is not None:
        grid = grid + displacement
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


# Report 004's pipelines (Augmentor in the report): each step applies to a sample with probability
# ``REPORT_P``, drawn per sample; the geometric steps fold into one grid_sample.
REPORT_P = 0.1
REPORT_PIPELINES = ("baseline", "baseline_crop", "baseline_crop_distortion", "baseline_crop_zoom")


def _chosen(gen: torch.Generator, n: int, p: float) -> torch.Tensor:
    """A per-sample draw: True with probability ``p``, bool [n]."""
    return torch.rand(n, generator=gen, device=gen.device) < p


def centre_crop_step(half: torch.Tensor, gen: torch.Generator, p: float = REPORT_P) -> torch.Tensor:
    """Report 004's ``crop_centre``: with probability ``p`` a sample keeps the central part of its view,
    a random share of its area in [0.8, 1] (the report names no area), resized back. ``half``: the
    view's half extents [B, 2] (normalised); returns the new ones."""
    area = torch.where(_chosen(gen, len(half), p), _uniform(gen, len(half), 0.8, 1.0), 1.0)
    return half * area.sqrt()[:, None]


def zoom_step(half: torch.Tensor, centre: torch.Tensor, gen: torch.Generator, p: float = REPORT_P,
              area: float = 0.8) -> tuple[torch.Tensor, torch.Tensor]:
    """Report 004's random zoom (Augmentor ``zoom_random``, 80% of the area, probability 0.1): with
    probability ``p`` a sample's view shrinks to ``area`` of itself at a random place inside it,
    resized back. Returns the new half extents and centres [B, 2]."""
    zoom = torch.where(_chosen(gen, len(half), p), math.sqrt(area), 1.0)[:, None]
    shift = (torch.rand(len(half), 2, generator=gen, device=gen.device) * 2 - 1) * (1 - zoom)
    return half * zoom, centre + half * shift


def elastic_field(n: int, size: int, load: int, gen: torch.Generator, p: float = REPORT_P, grid: int = 10,
                  magnitude: int = 3) -> torch.Tensor:
    """Report 004's elastic distortion (Augmentor ``random_distortion``: a 10 x 10 grid of tiles, each
    inner vertex moved by a random whole number of pixels in [-magnitude, magnitude], probability
    0.1): per sample, a displacement field [n, size, size, 2] in normalised units of an image of
    ``load`` px, the vertex moves interpolated bilinearly between vertices; zero for samples not
    chosen (and on the border)."""
    moves = torch.randint(-magnitude, magnitude + 1, (n, 2, grid + 1, grid + 1), generator=gen, device=gen.device)
    moves[:, :, [0, -1], :] = 0
    moves[:, :, :, [0, -1]] = 0
    moves = moves * _chosen(gen, n, p)[:, None, None, None]
    field = F.interpolate(moves.float() * (2.0 / load), size=(size, size), mode="bilinear", align_corners=True)
    return field.permute(0, 2, 3, 1)


def _report_pipeline(x: torch.Tensor, size: int, gen: torch.Generator, zoom: bool = False,
                     distortion: bool = False) -> torch.Tensor:
    """Baseline (the centre ``size`` px of the load size) + crop, then zoom or distortion."""
    n, load = len(x), x.shape[-1]
    half = torch.full((n, 2), size / load, device=x.device, dtype=x.dtype)
    half = centre_crop_step(half, gen)
    # the baseline view is centre_crop's exactly, also when load - size is odd
    centre = torch.full_like(half, (2 * ((load - size) // 2) + size) / load - 1)
    if zoom:
        half, centre = zoom_step(half, centre, gen)
    field = elastic_field(n, size, load, gen).to(x.dtype) if distortion else None
    inv = torch.eye(2, device=x.device, dtype=x.dtype).expand(n, 2, 2)
    return _warp(x, size, inv, half, centre, field).clamp_(0, 1)


AUGMENTS.register("baseline")(no_augment)  # report 004's baseline: resize, then the centre crop


@AUGMENTS.register("baseline_crop")
def baseline_crop(x: torch.Tensor, size: int, gen: torch.Generator) -> torch.Tensor:
    """Report 004, pipeline 2: baseline + centre crop (probability 0.1)."""
    return _report_pipeline(x, size, gen)


@AUGMENTS.register("baseline_crop_distortion")
def baseline_crop_distortion(x: torch.Tensor, size: int, gen: torch.Generator) -> torch.Tensor:
    """Report 004, pipeline 3: baseline + crop + elastic distortion (10 x 10 grid, magnitude 3, 0.1)."""
    return _report_pipeline(x, size, gen, distortion=True)


@AUGMENTS.register("baseline_crop_zoom")
def baseline_crop_zoom(x: torch.Tensor, size: int, gen: torch.Generator) -> torch.Tensor:
    """Report 004, pipeline 4: baseline + crop + zoom (80% of the area, 0.1)."""
    return _report_pipeline(x, size, gen, zoom=True)
