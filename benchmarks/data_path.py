"""Data path benchmark: the seed reports' pipeline vs this project's, side by side in one run.

1. data only: augmented, normalised 32 px batches per second, no model, of
   (a) torchvision ImageFolder + PIL per-sample transforms + DataLoader (best num_workers), and
   (b) cached uint8 arrays + batched per-sample-random augmentation (``trainables.data.augment``);
2. end to end with ``simple_cnn`` at 32 px: (a) and (b) training images/s, and the pure model step
   rate with batches already in memory;
3. evaluation cost: the seconds per epoch of the metrics issue 17 added (AUROC, macro AUROC, MCC,
   Brier, ECE, and the quickstart's two operating points on validation) against a whole epoch of
   ours (training pass + validation predictions + every metric).

Usage: python benchmarks/data_path.py [--n 3000] [--size 256] [--repeats 3]
The last line printed is one JSON object with the headline figures.
"""
from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader
from torchvision import datasets
from torchvision import transforms as T

from study.synth import write_synthetic
from trainables.config import parse_config
from trainables.data import load_arrays
from trainables.data.augment import AUGMENTS
from trainables.metrics import calibration_metrics, operating_point_metrics, ranking_metrics
from trainables.models.registry import NORMS
from trainables.train import build_trial, decision_threshold, predict, scored, train_one_epoch

BATCH = 64
MEAN, STD = (sum(NORMS["cifar"][0]) / 3,), (sum(NORMS["cifar"][1]) / 3,)


def seed_style_loader(root: Path, workers: int) -> DataLoader:
    """What the reports ran: decode + per-sample PIL transforms in DataLoader workers."""
    tf = T.Compose([
        T.Grayscale(1), T.Resize(36),
        T.RandomAffine(10, translate=(0.1, 0.1), scale=(0.85, 1.15)),
        T.RandomCrop(32), T.RandomHorizontalFlip(), T.ColorJitter(brightness=0.1, contrast=0.1),
        T.ToTensor(), T.Normalize(MEAN, STD),
    ])
    return DataLoader(datasets.ImageFolder(str(root), transform=tf), batch_size=BATCH, shuffle=True,
                      num_workers=workers, persistent_workers=workers > 0,
                      generator=torch.Generator().manual_seed(0))


def time_loader(loader: DataLoader, max_batches: int, step=None) -> float:
    """Images per second over ``max_batches`` batches (after one warm-up batch)."""
    it = iter(loader)
    next(it)
    n, start = 0, time.perf_counter()
    for i, (x, y) in enumerate(it):
        if step is not None:
            step(x, y)
        n += len(x)
        if i + 1 >= max_batches:
            break
    return n / (time.perf_counter() - start)


def ours_data_only(trial, max_batches: int) -> float:
    train = trial.splits["train"]
    augment = AUGMENTS.get("standard")
    order = torch.randperm(len(train.labels), generator=torch.Generator().manual_seed(0))
    n, start = 0, time.perf_counter()
    for i in range(min(max_batches, len(order) // BATCH)):
        idx = order[i * BATCH:(i + 1) * BATCH]
        x = trial.inputs(augment(train.images[idx].float().div_(255), 32, trial.aug_gen))
        n += len(x)
    return n / (time.perf_counter() - start)


def model_step(trial):
    def step(x, y):
        loss = trial.loss_fn(trial.model(x), y)
        trial.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        trial.optimizer.step()
    return step


def new_metrics_seconds(labels, probs, repeats: int = 5) -> float:
    """Median seconds of the metrics issue 17 added, on one split's predictions: AUROC, macro AUROC
    and PR-AUC, Brier and ECE, MCC, and the quickstart's two operating points."""
    from sklearn.metrics import matthews_corrcoef

    rules = ["youden", {"specificity": 0.95}]
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        ranking_metrics(labels, probs, 0)
        calibration_metrics(labels, probs)
        matthews_corrcoef(labels == 0, probs.argmax(1) == 0)
        operating_point_metrics(rules, labels, probs, labels, probs, 0, "val")
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=3000)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(2)
    work = Path(tempfile.mkdtemp(prefix="bench-data-"))
    t0 = time.perf_counter()
    root = write_synthetic(work / "pngs", args.n, seed=0, size=args.size)
    print(f"wrote {args.n} synthetic PNGs at {args.size} px in {time.perf_counter() - t0:.1f}s")

    cfg = parse_config({"augment": "standard", "batch_size": BATCH, "num_threads": 2, "data": {
        "source": "covidx", "path": str(root), "load_size": 36, "image_size": 32,
        "cache_dir": str(work / "cache")}})
    t0 = time.perf_counter()
    arrays = load_arrays(cfg.data)
    decode_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    load_arrays(cfg.data)
    cached_s = time.perf_counter() - t0
    print(f"prepare: decode + resize {len(arrays.images)} files once {decode_s:.1f}s; "
          f"cached load {cached_s * 1000:.0f} ms")
    trial = build_trial(cfg, arrays)
    n_train = len(trial.splits["train"].labels)
    batches = n_train // BATCH

    # pick the seed-style pipeline's best num_workers for this machine
    by_workers = {w: time_loader(seed_style_loader(root, w), 15) for w in (0, 1, 2)}
    workers = max(by_workers, key=by_workers.get)
    print("seed-style num_workers:", {w: f"{v:.0f} img/s" for w, v in by_workers.items()},
          f"-> {workers}")

    rows: dict[str, list[float]] = {k: [] for k in (
        "a_data", "b_data", "a_train", "b_train", "model_step", "epoch_s", "new_metrics_s")}
    for _ in range(args.repeats):
        rows["a_data"].append(time_loader(seed_style_loader(root, workers), batches))
        rows["b_data"].append(ours_data_only(trial, batches))
        step = model_step(trial)
        trial.model.train()
        rows["a_train"].append(time_loader(seed_style_loader(root, workers), batches, step))
        start = time.perf_counter()
        epoch = train_one_epoch(trial)
        val = predict(trial, "val")
        scored(trial, val, decision_threshold(trial, val))
        rows["epoch_s"].append(time.perf_counter() - start)
        rows["b_train"].append(n_train / epoch["train/epoch_seconds"])
        rows["new_metrics_s"].append(new_metrics_seconds(val.labels, val.probs))
        # pure model step: the same number of batches, already augmented, in memory
        xs = [(trial.inputs(AUGMENTS.get("standard")(
            trial.splits["train"].images[i * BATCH:(i + 1) * BATCH].float() / 255, 32, trial.aug_gen)),
            trial.splits["train"].labels[i * BATCH:(i + 1) * BATCH]) for i in range(batches)]
        start = time.perf_counter()
        for x, y in xs:
            step(x, y)
        rows["model_step"].append(batches * BATCH / (time.perf_counter() - start))

    med = {k: statistics.median(v) for k, v in rows.items()}
    share = med["new_metrics_s"] / med["epoch_s"]
    print(f"evaluation: an epoch (train + validation predictions + metrics) {med['epoch_s']:.2f} s; the metrics "
          f"issue 17 added {med['new_metrics_s'] * 1000:.1f} ms of it ({100 * share:.2f}%)")
    print(f"\n{'pipeline':58s} {'img/s (median of ' + str(args.repeats) + ')':>24s}")
    labels = {
        "a_data": f"1a data only: ImageFolder + PIL + DataLoader({workers} workers)",
        "b_data": "1b data only: cached uint8 + batched augmentation",
        "a_train": "2a train simple_cnn: seed-style pipeline",
        "b_train": "2b train simple_cnn: this project (train_one_epoch)",
        "model_step": "2  pure model step, batches in memory",
    }
    for k, label in labels.items():
        print(f"{label:58s} {med[k]:24.0f}")
    speedup = med["b_data"] / med["a_data"]
    epoch_over_model = med["model_step"] / med["b_train"]
    print(f"\ndata-only speed-up (1b / 1a): {speedup:.1f}x; end-to-end speed-up (2b / 2a): "
          f"{med['b_train'] / med['a_train']:.2f}x; 2b epoch time / pure model time: "
          f"{epoch_over_model:.2f}")
    print(json.dumps({"speedup_vs_pil": round(speedup, 2),
                      "epoch_over_model_step": round(epoch_over_model, 3),
                      "new_metrics_epoch_share": round(share, 4)}))


if __name__ == "__main__":
    main()
