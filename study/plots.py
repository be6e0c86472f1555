"""Report figures (matplotlib, Agg), each returned as PNG bytes."""
from __future__ import annotations

import io
import math

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

COLORS = plt.get_cmap("tab10").colors


def palette(strategies: list[str]) -> dict[str, tuple]:
    """One colour per strategy, by its place in the spec, for every figure of a report."""
    return {s: COLORS[i % len(COLORS)] for i, s in enumerate(strategies)}


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def _grid(n: int, width: float = 4.2, height: float = 3.4):
    cols = min(n, 3)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(width * cols, height * rows), squeeze=False,
                             layout="constrained")
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    return fig, list(axes.flat[:n])


def paired_strips(long: pd.DataFrame, metrics: list[str], strategies: list[str], colors: dict) -> bytes:
    """Per metric: a box per strategy, every seed's values joined by a line across strategies."""
    fig, axes = _grid(len(metrics))
    x = np.arange(len(strategies))
    for ax, metric in zip(axes, metrics):
        wide = long.pivot(index="seed", columns="strategy", values=metric).reindex(columns=strategies)
        for _, row in wide.iterrows():
            ax.plot(x, row.to_numpy(float), color="0.75", lw=0.8, zorder=1)
        ax.boxplot([wide[s].dropna() for s in strategies], positions=x, widths=0.5, showfliers=False,
                   zorder=2)
        for i, s in enumerate(strategies):
            ax.scatter(np.full(wide[s].notna().sum(), x[i]), wide[s].dropna(), s=14, color=colors[s], zorder=3)
        ax.set_xticks(x, strategies, rotation=30, ha="right")
        ax.set_title(metric)
    fig.suptitle("Repeats: one line per seed, joined across strategies")
    return _png(fig)


def sensitivity_vs_ppv(long: pd.DataFrame, strategies: list[str], sens: str, ppv: str, colors: dict) -> bytes:
    """The trade-off the thesis kept meeting: each seed's (sensitivity, PPV), per strategy."""
    fig, ax = plt.subplots(figsize=(5.5, 4.5))
    for s in strategies:
        part = long[long.strategy == s]
        ax.scatter(part[sens], part[ppv], s=18, alpha=0.6, color=colors[s], label=s)
        ax.scatter(part[sens].mean(), part[ppv].mean(), s=120, marker="X", color=colors[s], edgecolor="black")
    ax.set_xlabel(sens)
    ax.set_ylabel(ppv)
    ax.set_xlim(-0.02, 1.02)
    ax.set_ylim(-0.02, 1.02)
    ax.legend(fontsize=8, loc="lower left")
    ax.set_title("Sensitivity vs PPV per seed (X: mean)")
    return _png(fig)


def validation_curves(curves: dict[str, np.ndarray], metric: str, colors: dict) -> bytes:
    """Mean per-epoch validation metric per strategy, with a +-1 std band over seeds.
    ``curves[strategy]`` is a seeds x epochs array."""
    fig, ax = plt.subplots(figsize=(6, 4))
    for s, arr in curves.items():
        epochs = np.arange(1, arr.shape[1] + 1)
        mean, std = np.nanmean(arr, 0), np.nanstd(arr, 0)
        ax.plot(epochs, mean, color=colors[s], label=s)
        ax.fill_between(epochs, mean - std, mean + std, color=colors[s], alpha=0.15)
    ax.set_xlabel("epoch")
    ax.set_ylabel(metric)
    ax.legend(fontsize=8)
    ax.set_title(f"{metric} over epochs (mean +- std over seeds)")
    return _png(fig)


def critical_difference(mean_ranks: dict[str, float], cd: float, metric: str) -> bytes:
    """Demšar's CD diagram: strategies on the mean-rank axis (1 = best); strategies joined by a
    bar are not significantly different (Nemenyi, rank difference < CD)."""
    items = sorted(mean_ranks.items(), key=lambda kv: kv[1])
    k = len(items)
    fig, ax = plt.subplots(figsize=(7, 1.2 + 0.35 * k))
    ax.set_xlim(0.5, k + 0.5)
    ax.set_ylim(-k - 1, 2)
    ax.axhline(0, color="black", lw=1)
    for r in range(1, k + 1):
        ax.plot([r, r], [0, 0.15], color="black", lw=1)
        ax.text(r, 0.3, str(r), ha="center", fontsize=8)
    ax.plot([1, 1 + cd], [1.3, 1.3], color="black", lw=2)
    ax.text(1 + cd / 2, 1.5, f"CD = {cd:.2f}", ha="center", fontsize=8)
    for i, (name, rank) in enumerate(items):
        y = -(i + 1) * 0.8
        ax.plot([rank, rank], [0, y], color="0.4", lw=0.8)
        ax.text(rank + 0.05, y, f"{name} ({rank:.2f})", va="center", fontsize=8)
    level = 0.25
    for i in range(k):  # maximal groups whose rank range is within the CD
        j = max(j for j in range(i, k) if items[j][1] - items[i][1] < cd)
        if j > i and not (i > 0 and items[j][1] - items[i - 1][1] < cd):
            ax.plot([items[i][1], items[j][1]], [-level, -level], color="tab:red", lw=3)
            level += 0.25
    ax.axis("off")
    ax.set_title(f"Critical difference diagram: {metric}", fontsize=9)
    return _png(fig)


def confusion_matrices(matrices: dict[str, np.ndarray], class_names: list[str], colors: dict) -> bytes:
    """Confusion matrices summed over seeds, one per strategy, each row (true class) normalised to 1:
    the share in the cell and its colour, the count below it."""
    fig, axes = _grid(len(matrices), 3.4, 3.2)
    for ax, (s, cm) in zip(axes, matrices.items()):
        norm = cm / np.maximum(cm.sum(1, keepdims=True), 1)
        ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
        for (r, c), v in np.ndenumerate(cm):
            ax.text(c, r, f"{norm[r, c]:.2f}\n({int(v)})", ha="center", va="center", fontsize=7,
                    color="white" if norm[r, c] > 0.5 else "black")
        ticks = range(len(class_names))
        ax.set_xticks(ticks, class_names, rotation=30, ha="right", fontsize=8)
        ax.set_yticks(ticks, class_names, fontsize=8)
        ax.set_title(s, fontsize=9, color=colors.get(s, "black"), fontweight="bold")
        ax.set_xlabel("predicted", fontsize=8)
        ax.set_ylabel("true", fontsize=8)
    fig.suptitle("Test confusion matrices summed over seeds, rows normalised")
    return _png(fig)
