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


def _band_axes(ax, bands: dict, colors: dict, label: str) -> None:
    from .predictions import GRID

    for s, band in bands.items():
        scores = np.array(band.scores)
        ax.plot(GRID, band.mean, color=colors[s],
                label=f"{s} ({label} {scores.mean():.3f} ± {scores.std(ddof=1) if len(scores) > 1 else 0:.3f})")
        ax.fill_between(GRID, np.clip(band.mean - band.std, 0, 1), np.clip(band.mean + band.std, 0, 1),
                        color=colors[s], alpha=0.12)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.01)
    ax.legend(fontsize=7, loc="lower right" if label == "AUROC" else "upper right")


def roc_and_pr(roc: dict, pr: dict, prevalence: float, positive: str, colors: dict) -> bytes:
    """ROC and precision-recall curves of the positive class per strategy: the mean over seeds
    (``Band``), a band of one standard deviation, and the mean AUROC / AP ± SD in the legend."""
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4.6), layout="constrained")
    a.plot([0, 1], [0, 1], color="0.7", lw=0.8, ls="--")
    _band_axes(a, roc, colors, "AUROC")
    a.set_xlabel("1 - specificity (false-positive rate)")
    a.set_ylabel("sensitivity")
    a.set_title(f"ROC, {positive} vs rest (mean ± SD over seeds)")
    b.axhline(prevalence, color="0.7", lw=0.8, ls="--")
    _band_axes(b, pr, colors, "AP")
    b.set_xlabel("sensitivity (recall)")
    b.set_ylabel("PPV (precision)")
    b.set_title(f"Precision-recall, {positive} (dashed: prevalence {prevalence:.3f})")
    return _png(fig)


def reliability_diagrams(bins: dict[str, pd.DataFrame], ece: dict[str, float], colors: dict) -> bytes:
    """Per strategy: the accuracy of each top-class confidence bin (pooled over seeds) against its
    mean confidence; the diagonal is perfect calibration; bar width marks the bin, shade its share."""
    fig, axes = _grid(len(bins), 3.6, 3.4)
    for ax, (s, table) in zip(axes, bins.items()):
        ax.plot([0, 1], [0, 1], color="0.6", lw=0.8, ls="--")
        share = (table["count"] / max(1, table["count"].sum())).to_numpy()
        bars = ax.bar(table["low"], table["accuracy"].fillna(0), width=table["high"] - table["low"], align="edge",
                      color=colors.get(s, "C0"), edgecolor="black", lw=0.4)
        for bar, part in zip(bars, share):
            bar.set_alpha(0.25 + 0.75 * part / max(share.max(), 1e-9))
        filled = table["count"] > 0
        ax.plot(table["confidence"][filled], table["accuracy"][filled], "o-", color="black", ms=3, lw=0.8)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_xlabel("confidence (top-class probability)", fontsize=8)
        ax.set_ylabel("accuracy", fontsize=8)
        ax.set_title(f"{s}: ECE {ece[s]:.3f}", fontsize=9, color=colors.get(s, "black"), fontweight="bold")
    fig.suptitle("Reliability diagrams, test split pooled over seeds")
    return _png(fig)


def embeddings(coords: dict[str, tuple[np.ndarray, np.ndarray, str]], class_names: list[str], seed: int) -> bytes:
    """Per strategy, the 2-D embedding (t-SNE or PCA) of the test split's penultimate features of one
    seed, each point coloured by its true class. ``coords[strategy]`` is (points [N, 2], labels [N], method)."""
    fig, axes = _grid(len(coords), 3.8, 3.6)
    for ax, (s, (points, labels, method)) in zip(axes, coords.items()):
        for c, name in enumerate(class_names):
            mask = labels == c
            ax.scatter(points[mask, 0], points[mask, 1], s=6 if mask.mean() > 0.2 else 12, alpha=0.7,
                       color=COLORS[c % len(COLORS)], label=f"{name} ({mask.sum()})", zorder=3 if mask.mean() < 0.2 else 2)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(f"{s} ({method})", fontsize=9)
        ax.legend(fontsize=7, markerscale=1.5)
    fig.suptitle(f"Penultimate features of the test split, seed {seed}, coloured by true class")
    return _png(fig)
