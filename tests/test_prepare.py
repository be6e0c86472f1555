"""Preparation streams into the cache entry and resumes: a preparation killed midway keeps its
prefix (those files are not decoded again), and the entry it finishes equals one made in one go;
trials on the CPU read the entry in place instead of copying their split."""
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from PIL import Image

from trainables.data import DataConfig, load_arrays, split_indices
from trainables.data.prepare import STATE, open_images, prepare
from trainables.train import SharedRows, SplitTensors

N = 640

SLOW = """
import sys, time
from pathlib import Path
import trainables.data.prepare as p
real = p.decode
def slow(*a):
    time.sleep(0.01)
    return real(*a)
p.decode, p.SAVE_EVERY_S, p.CHUNK = slow, 0.05, 8
paths = sorted(Path(sys.argv[1]).glob("*.png"))
p.prepare(paths, 16, 1, Path(sys.argv[2]))
"""


@pytest.fixture
def pngs(tmp_path):
    rng = np.random.default_rng(0)
    folder = tmp_path / "png"
    folder.mkdir()
    for i in range(N):
        Image.fromarray(rng.integers(0, 255, (24, 20), dtype=np.uint8)).save(folder / f"{i:04d}.png")
    return sorted(folder.glob("*.png"))


def test_an_interrupted_preparation_resumes_after_its_prefix(pngs, tmp_path):
    whole = prepare(pngs, 16, 1, tmp_path / "whole")
    expected = np.array(open_images(tmp_path / "whole"))
    work = tmp_path / "work"
    proc = subprocess.Popen([sys.executable, "-c", SLOW, str(pngs[0].parent), str(work)], start_new_session=True)
    done = 0
    deadline = time.monotonic() + 120
    while done < 100 and time.monotonic() < deadline:
        time.sleep(0.05)
        try:
            done = len(json.loads((work / STATE).read_text())["errors"])
        except (OSError, ValueError):
            pass
    os.killpg(proc.pid, signal.SIGKILL)  # the preparer and its workers, mid-way
    proc.wait()
    assert 100 <= done < N
    for p in pngs[:done]:  # the prefix is not read again: removing its files changes nothing
        p.unlink()
    resumed = prepare(pngs, 16, 1, work)
    assert resumed.errors == [None] * N and resumed.digests == whole.digests
    assert np.array_equal(np.array(open_images(work)), expected)


def test_trials_on_the_cpu_read_the_entry_in_place(tmp_path):
    c = DataConfig(source="synthetic", load_size=20, image_size=16, cache_dir=tmp_path / "cache",
                   synthetic={"n": 300, "shares": {"covid": 0.3, "normal": 0.4, "pneumonia": 0.3}})
    load_arrays(c)
    arrays = load_arrays(c)  # from the cache entry: mapped read-only
    assert isinstance(arrays.images.base, np.memmap) and not arrays.images.flags.writeable
    train = split_indices(arrays, c)["train"]
    split = SplitTensors.of(arrays, train, torch.device("cpu"))
    assert isinstance(split.images, SharedRows) and split.images.source is arrays.images
    order = torch.tensor([5, 0, 3])
    assert torch.equal(split.images[order], torch.from_numpy(arrays.images[train[[5, 0, 3]]]))
    assert torch.equal(split.images[2:4], torch.from_numpy(arrays.images[train[2:4]]))
    assert split.images.shape == (len(train), 1, 20, 20)
