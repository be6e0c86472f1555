"""Preparation at scale: decoding a data set into the cache entry, against torchvision, side by side.

1. rate: ``N`` synthetic 1024 px PNGs and ``N_DICOM`` 12-bit DICOMs prepared at load size 256 by
   (a) this project (``load_arrays``: parallel workers streaming into the cache's ``.npy``, hashes
   and all) and (b) torchvision ``ImageFolder`` + PIL decode/resize/centre-crop through a
   ``DataLoader`` (DICOMs through a pydicom loader that scales by the image's maximum: no rescale,
   window or MONOCHROME1), the same number of processes; images/s, medians, the order alternating;
2. memory: peak RSS of the preparing process and its workers (summed, sampled every 50 ms), for N
   and N/10;
3. sharing: the memory that trials reading the entry take, one trial and two at once, measured as
   the sum of the trial processes' PSS (shared pages split between their users) minus that of the
   same processes before they touch the data; each trial gathers every training image once in
   batches, as an epoch does. ``second_trial_rss_growth`` is how much the data memory grows when a
   second trial shares the entry (0: the entry is held once; 1: each trial holds a copy). The old
   way (each trial copying its split into its own tensor) runs beside it.

Files are generated from 64 base images (PNG bytes made unique by a text chunk, so no two files are
identical but decoding costs the same). Needs about 17 GB of disk at the default N.

Usage: python benchmarks/prepare_scale.py [--n 20000] [--n-dicom 2000] [--repeats 3] [--dir /tmp]
The last line printed is one JSON object with the headline figures.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path

import numpy as np

SIZE = 256
BASES = 64


def png_variant(png: bytes, i: int) -> bytes:
    """``png`` with a tEXt chunk naming ``i`` before IEND: other bytes, the same pixels."""
    data = b"id\x00" + str(i).encode()
    chunk = struct.pack(">I", len(data)) + b"tEXt" + data + struct.pack(">I", zlib.crc32(b"tEXt" + data))
    return png[:-12] + chunk + png[-12:]


def write_files(root: Path, n: int, n_dicom: int) -> None:
    import io

    from PIL import Image
    from pydicom.uid import generate_uid
    from test_dicom import write_dicom

    from trainables.data import synthetic

    base = synthetic.generate(BASES, 1024, seed=0)
    pngs = []
    for img in base.images:
        buf = io.BytesIO()
        Image.fromarray(img[0]).save(buf, "PNG")
        pngs.append(buf.getvalue())
    for c in ("a", "b"):
        (root / "png" / c).mkdir(parents=True, exist_ok=True)
        (root / "dcm" / c).mkdir(parents=True, exist_ok=True)
    for i in range(n):
        (root / "png" / "ab"[i % 2] / f"{i:06d}.png").write_bytes(png_variant(pngs[i % BASES], i))
    deep = (base.images[:, 0].astype(np.uint16) * 16)  # 12-bit
    for i in range(n_dicom):
        write_dicom(root / "dcm" / "ab"[i % 2] / f"{i:06d}.dcm", deep[i % BASES], bits_stored=12,
                    WindowCenter=2048, WindowWidth=4096, SeriesInstanceUID=generate_uid())


def ours(folder: Path, cache: Path) -> float:
    from trainables.data import DataConfig, load_arrays

    shutil.rmtree(cache, ignore_errors=True)
    start = time.perf_counter()
    arrays = load_arrays(DataConfig(source="imagefolder", path=folder, load_size=SIZE, image_size=SIZE,
                                    cache_dir=cache))
    return len(arrays.images) / (time.perf_counter() - start)


def dicom_loader(path: str):
    import pydicom
    from PIL import Image

    arr = pydicom.dcmread(path).pixel_array.astype(np.float32)
    return Image.fromarray((arr * (255.0 / max(float(arr.max()), 1.0))).astype(np.uint8))


def torchvision_rate(folder: Path, dicom: bool) -> float:
    import torch
    from torch.utils.data import DataLoader
    from torchvision import datasets
    from torchvision import transforms as T

    tf = T.Compose([T.Grayscale(1), T.Resize(SIZE), T.CenterCrop(SIZE), T.PILToTensor()])
    kw = {"loader": dicom_loader, "is_valid_file": lambda p: p.endswith(".dcm")} if dicom else {}
    ds = datasets.ImageFolder(str(folder), transform=tf, **kw)
    loader = DataLoader(ds, batch_size=64, num_workers=os.cpu_count() or 1)
    start = time.perf_counter()
    n = 0
    for x, _ in loader:
        n += len(x)
        assert x.dtype == torch.uint8
    return n / (time.perf_counter() - start)


def tree_rss_mb(pid: int) -> float:
    """RSS (MB) of a process and all its descendants, summed (shared pages counted in each)."""
    total, todo = 0.0, [pid]
    while todo:
        p = todo.pop()
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) / 1024
            for task in Path(f"/proc/{p}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
        except (FileNotFoundError, ProcessLookupError):
            continue
    return total


def peak_rss_mb(folder: Path, cache: Path, subset: int | None) -> float:
    """Peak summed RSS (MB) of a fresh process preparing ``folder`` (its first ``subset`` files) and
    of its worker processes, sampled every 50 ms."""
    code = f"""
import shutil
from trainables.data import DataConfig, load_arrays
from trainables.data.sources.imagefolder import ImageFolderSource
scan = ImageFolderSource.scan
def limited(self):
    t = scan(self)
    keep = slice(0, {subset or 0} or None)
    t.paths, t.labels, t.patient_ids = t.paths[keep], t.labels[keep], t.patient_ids[keep]
    return t
ImageFolderSource.scan = limited
shutil.rmtree({str(cache)!r}, ignore_errors=True)
load_arrays(DataConfig(source="imagefolder", path={str(folder)!r}, load_size={SIZE}, image_size={SIZE},
                       cache_dir={str(cache)!r}))
"""
    proc = subprocess.Popen([sys.executable, "-c", code])
    peak = 0.0
    while proc.poll() is None:
        peak = max(peak, tree_rss_mb(proc.pid))
        time.sleep(0.05)
    if proc.returncode:
        raise RuntimeError(f"preparation failed with exit code {proc.returncode}")
    return peak


TRIAL = """
import sys, time
import numpy as np, torch
from trainables.data import DataConfig, load_arrays, split_indices
from trainables.train import SplitTensors
cfg = DataConfig(source="imagefolder", path=sys.argv[1], load_size={size}, image_size={size}, cache_dir=sys.argv[2])
arrays = load_arrays(cfg)
train = split_indices(arrays, cfg)["train"]
print("ready", flush=True)
sys.stdin.readline()
if sys.argv[3] == "shared":
    images = SplitTensors.of(arrays, train, torch.device("cpu")).images
else:  # the old way: each trial copies its split into its own tensor
    images = torch.from_numpy(arrays.images[train])
total = 0.0
for i in range(0, len(train), 64):
    total += float(images[torch.arange(i, min(i + 64, len(train)))].float().mean())
print("done", flush=True)
sys.stdin.readline()
"""


def pss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no Pss in smaps_rollup")


def trials_memory(folder: Path, cache: Path, k: int, mode: str) -> float:
    """Data memory (MB) of ``k`` concurrent trials: PSS after reading minus PSS before."""
    procs = [subprocess.Popen([sys.executable, "-c", TRIAL.format(size=SIZE), str(folder), str(cache), mode],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True) for _ in range(k)]
    try:
        for p in procs:
            assert p.stdout.readline().strip() == "ready"
        before = sum(pss_mb(p.pid) for p in procs)
        for p in procs:
            p.stdin.write("\n")
            p.stdin.flush()
        for p in procs:
            assert p.stdout.readline().strip() == "done"
        return sum(pss_mb(p.pid) for p in procs) - before
    finally:
        for p in procs:
            p.stdin.close()
            p.wait(timeout=60)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=20000)
    ap.add_argument("--n-dicom", type=int, default=2000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--dir", default=tempfile.gettempdir())
    args = ap.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # test_dicom.write_dicom
    root = Path(tempfile.mkdtemp(prefix="prepare-scale-", dir=args.dir))
    cache = root / "cache"
    try:
        t0 = time.perf_counter()
        write_files(root, args.n, args.n_dicom)
        print(f"wrote {args.n} PNGs and {args.n_dicom} DICOMs at 1024 px in {time.perf_counter() - t0:.0f} s "
              f"({os.cpu_count()} CPUs, workers: one per CPU for both)", flush=True)
        rates: dict[str, list[float]] = {k: [] for k in ("ours_png", "tv_png", "ours_dcm", "tv_dcm")}
        for r in range(args.repeats):  # the order alternates: the files outgrow the page cache
            runs = [("ours_png", lambda: ours(root / "png", cache)),
                    ("tv_png", lambda: torchvision_rate(root / "png", dicom=False)),
                    ("ours_dcm", lambda: ours(root / "dcm", cache / "d")),
                    ("tv_dcm", lambda: torchvision_rate(root / "dcm", dicom=True))]
            for key, run in (runs if r % 2 == 0 else [runs[1], runs[0], runs[3], runs[2]]):
                rates[key].append(run())
            print(f"repeat {r + 1}: " + ", ".join(f"{k} {v[-1]:.0f} img/s" for k, v in rates.items()), flush=True)
        med = {k: statistics.median(v) for k, v in rates.items()}
        print("\n| files | this project (img/s) | torchvision ImageFolder (img/s) | ratio |\n|---|---|---|---|")
        print(f"| {args.n} PNG 1024 px | {med['ours_png']:.0f} | {med['tv_png']:.0f} | "
              f"{med['ours_png'] / med['tv_png']:.2f} |")
        print(f"| {args.n_dicom} DICOM 12-bit 1024 px | {med['ours_dcm']:.0f} | {med['tv_dcm']:.0f} | "
              f"{med['ours_dcm'] / med['tv_dcm']:.2f} |")
        small = peak_rss_mb(root / "png", cache / "small", args.n // 10)
        full = peak_rss_mb(root / "png", cache / "full", None)
        print(f"\npeak RSS of preparation: {small:.0f} MB for {args.n // 10} files, {full:.0f} MB for {args.n}")
        ours(root / "png", cache)  # the entry the trials read
        entry_mb = sum(f.stat().st_size for f in cache.rglob("images.npy")) / 2**20
        mem = {(mode, k): trials_memory(root / "png", cache, k, mode) for mode in ("shared", "copy") for k in (1, 2)}
        growth = {mode: mem[(mode, 2)] / mem[(mode, 1)] - 1 for mode in ("shared", "copy")}
        print(f"\ntrials reading the entry ({entry_mb:.0f} MB), data memory (sum of PSS growth):")
        print("| trials | this project (shared map) | a copy per trial |\n|---|---|---|")
        for k in (1, 2):
            print(f"| {k} | {mem[('shared', k)]:.0f} MB | {mem[('copy', k)]:.0f} MB |")
        print(f"| growth with the second | {growth['shared']:.1%} | {growth['copy']:.1%} |")
        own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"(this benchmark's own process peaked at {own:.0f} MB)")
        print(json.dumps({"prepare_img_per_s": round(med["ours_png"], 1),
                          "prepare_over_torchvision": round(med["ours_png"] / med["tv_png"], 3),
                          "prepare_dicom_over_torchvision": round(med["ours_dcm"] / med["tv_dcm"], 3),
                          "prepare_peak_rss_mb": round(full, 1), "prepare_peak_rss_mb_tenth": round(small, 1),
                          "second_trial_rss_growth": round(growth["shared"], 4),
                          "second_trial_rss_growth_copy": round(growth["copy"], 4),
                          "n": args.n, "n_dicom": args.n_dicom, "cpus": os.cpu_count()}))
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
