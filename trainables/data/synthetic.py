"""Deterministic synthetic chest X-rays: normal, pneumonia and covid, several images per patient.

Each patient has an anatomy (lung size and position, body width, rib phase) and, for the diseased
classes, a lesion pattern; each of the patient's images re-draws the nuisances (shift, rotation,
contrast, exposure, noise, an occasional wire or marker). Pneumonia is a focal dense consolidation,
usually in one lower zone; covid is bilateral, peripheral, multifocal faint ground-glass haze, which
some (atypical, viral) pneumonia patients show too.
``difficulty`` scales lesion visibility down and nuisance up (1.0 = default).
"""
from __future__ import annotations

import numpy as np

from ..progress import progress_bar
from .arrays import ImageArrays

CLASS_NAMES = ["covid", "normal", "pneumonia"]
# COVIDx train split shares (thesis: 468 covid, 7966 normal, 5458 pneumonia).
DEFAULT_SHARES = {"covid": 0.034, "normal": 0.573, "pneumonia": 0.393}
# Share of pneumonia patients whose X-ray shows covid-like haze: the classes overlap, as viral
# pneumonia and COVID-19 do, so trading sensitivity for PPV is real.
ATYPICAL_PNEUMONIA = 0.1
GENERATOR_VERSION = 2


def _blobs(xx: np.ndarray, yy: np.ndarray, cx, cy, sx, sy, amp) -> np.ndarray:
    """Sum of axis-aligned Gaussian blobs; blob parameters are 1-d arrays of equal length."""
    if len(cx) == 0:
        return np.zeros_like(xx)
    d = ((xx[None] - cx[:, None, None]) / sx[:, None, None]) ** 2
    d = d + ((yy[None] - cy[:, None, None]) / sy[:, None, None]) ** 2
    return (amp[:, None, None] * np.exp(-0.5 * d)).sum(0)


def _haze(rng: np.random.Generator, difficulty: float) -> list[tuple[float, float, float, float, float]]:
    """Bilateral, peripheral, multifocal faint ground-glass haze."""
    return [(side, rng.uniform(0.7, 0.98), rng.uniform(0.3, 0.9), rng.uniform(0.08, 0.14),
             rng.uniform(0.14, 0.26) / difficulty)
            for side in (-1.0, 1.0) for _ in range(rng.integers(2, 4))]


def _patient(rng: np.random.Generator, label: str, difficulty: float) -> dict:
    lesions: list[tuple[float, float, float, float, float]] = []  # (side, x, y, size, amplitude)
    if label == "pneumonia":
        if rng.random() < ATYPICAL_PNEUMONIA:  # viral/atypical pneumonia: covid-like haze
            lesions += _haze(rng, difficulty)
        if not lesions or rng.random() < 0.5:
            side = rng.choice([-1.0, 1.0])
            for _ in range(rng.integers(1, 3)):
                lesions.append((side, rng.uniform(0.25, 0.75), rng.uniform(0.55, 0.9),
                                rng.uniform(0.12, 0.22), rng.uniform(0.45, 0.75) / difficulty))
    elif label == "covid":
        lesions += _haze(rng, difficulty)
    return {
        "lung_w": rng.uniform(0.26, 0.34), "lung_h": rng.uniform(0.55, 0.68),
        "lung_gap": rng.uniform(0.08, 0.14), "body_w": rng.uniform(0.78, 0.95),
        "rib_phase": rng.uniform(0, 2 * np.pi), "rib_freq": rng.uniform(7, 9),
        "lesions": lesions,
    }


def render(rng: np.random.Generator, p: dict, size: int, difficulty: float) -> np.ndarray:
    """Render one image of patient ``p`` as uint8 ``[size, size]``."""
    # Nuisance pose: the image grid is rotated, shifted and scaled before anatomy is drawn.
    ang = np.deg2rad(rng.normal(0, 4 * difficulty))
    shift = rng.normal(0, 0.04 * difficulty, 2)
    scale = rng.uniform(0.92, 1.08)
    lin = (np.arange(size) + 0.5) / size * 2 - 1
    gy, gx = np.meshgrid(lin, lin, indexing="ij")
    xx = (np.cos(ang) * gx - np.sin(ang) * gy) / scale - shift[0]
    yy = (np.sin(ang) * gx + np.cos(ang) * gy) / scale - shift[1]

    body = 1.0 / (1.0 + np.exp((np.abs(xx) - p["body_w"]) * 25))
    img = 0.15 + 0.55 * body  # soft tissue brighter than air
    lungs = np.zeros_like(xx)
    lesion = np.zeros_like(xx)
    for side in (-1.0, 1.0):
        cx = side * (p["lung_gap"] + p["lung_w"])
        ex = ((xx - cx) / p["lung_w"]) ** 2 + ((yy - 0.02) / p["lung_h"]) ** 2
        lung = 1.0 / (1.0 + np.exp((ex - 1.0) * 12))
        lungs = lungs + lung
        mine = [spot for spot in p["lesions"] if spot[0] == side]
        if mine:
            arr = np.array(mine)
            # lesion x is a fraction from the mediastinum (0) to the lateral edge (1)
            lx = cx + side * (arr[:, 1] - 0.5) * 2 * p["lung_w"] * 0.8
            ly = 0.02 + (arr[:, 2] - 0.5) * 2 * p["lung_h"] * 0.8
            jitter = rng.normal(0, 0.02, (len(arr), 2))
            lesion = lesion + lung * _blobs(xx, yy, lx + jitter[:, 0], ly + jitter[:, 1],
                                            arr[:, 3], arr[:, 3] * 1.2, arr[:, 4])
    ribs = 0.06 * (0.5 + 0.5 * np.sin(yy * p["rib_freq"] * np.pi + p["rib_phase"] + 0.8 * xx ** 2))
    heart = _blobs(xx, yy, np.array([0.08]), np.array([0.25]), np.array([0.18]), np.array([0.22]),
                   np.array([0.35]))
    img = img - 0.45 * lungs + lungs * ribs + heart * body + 0.55 * lesion
    if rng.random() < 0.15:  # ECG wire / line artefact
        a, b = rng.uniform(-1, 1, 2)
        img = img + 0.5 * np.exp(-(((yy - a * xx - b) / 0.015) ** 2))
    if rng.random() < 0.1:  # radiographer's marker in a corner
        mx, my = rng.choice([-0.8, 0.8], 2)
        img = img + 0.6 * ((np.abs(gx - mx) < 0.06) & (np.abs(gy - my) < 0.06))
    contrast = rng.uniform(0.8, 1.2)
    exposure = rng.normal(0, 0.05 * difficulty)
    img = (img - 0.4) * contrast + 0.4 + exposure
    img = img + rng.normal(0, 0.04 * difficulty, img.shape)
    return (np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8)


def generate(n: int, size: int, seed: int = 0, difficulty: float = 1.0,
             shares: dict[str, float] | None = None, images_per_patient: float = 3.0,
             progress: bool = False) -> ImageArrays:
    """Generate ``n`` grey images of ``size`` px with the given class shares, seeded (a progress bar
    on stderr with ``progress``)."""
    shares = dict(DEFAULT_SHARES if shares is None else shares)
    if set(shares) != set(CLASS_NAMES):
        raise ValueError(f"synthetic shares need exactly the classes {CLASS_NAMES}")
    rng = np.random.default_rng(seed)
    total = sum(shares.values())
    counts = np.floor(np.array([shares[c] / total for c in CLASS_NAMES]) * n).astype(int)
    counts[np.argmax(counts)] += n - counts.sum()
    images = np.empty((n, 1, size, size), np.uint8)
    labels = np.empty(n, np.int64)
    patients = []
    i = 0
    bar = progress_bar(desc="rendering images", unit="img", total=n, disable=not progress)
    for k, (name, count) in enumerate(zip(CLASS_NAMES, counts)):
        done = 0
        pnum = 0
        while done < count:
            per = min(count - done, 1 + rng.poisson(images_per_patient - 1))
            p = _patient(rng, name, difficulty)
            for _ in range(per):
                images[i, 0] = render(rng, p, size, difficulty)
                labels[i] = k
                patients.append(f"{name}-{pnum:05d}")
                i += 1
                bar.update(1)
            done += per
            pnum += 1
    bar.close()
    return ImageArrays(images, labels, list(CLASS_NAMES), np.array(patients),
                       manifest={"source": "synthetic", "generator_version": GENERATOR_VERSION})
