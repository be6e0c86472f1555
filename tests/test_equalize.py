"""Histogram equalisation (report 002, ``data.equalize``): Pillow's ``ImageOps.equalize`` on every
prepared uint8 image, once, in every source (8-bit files at decode time, deep files once mapped to
8 bits, in-memory sources after building), and part of the cache key."""
import numpy as np
import pytest
from PIL import Image

from trainables.data import SOURCES, DataConfig, load_arrays
from trainables.data.decode import equalized


def test_equalized_spreads_four_grey_levels_over_the_range():
    # 1024 pixels in four equal groups: Pillow's step is (1024 - 256) // 255 = 3, so the levels map
    # to (1 + 0) // 3, (1 + 256) // 3, (1 + 512) // 3 and (1 + 768) // 3 = 0, 85, 171, 256 -> 255
    image = np.repeat(np.array([10, 20, 30, 40], np.uint8), 256).reshape(1, 1, 32, 32)
    out = equalized(image)
    assert out.shape == image.shape and out.dtype == np.uint8
    assert out[0, 0, :8].tolist() == [[0] * 32] * 8 and out[0, 0, 24:].tolist() == [[255] * 32] * 8
    assert sorted(np.unique(out).tolist()) == [0, 85, 171, 255]


def test_equalized_keeps_a_constant_image_and_treats_channels_apart():
    flat = np.full((1, 2, 16, 16), 7, np.uint8)
    assert np.array_equal(equalized(flat), flat)
    ramp = np.repeat(np.array([10, 20, 30, 40], np.uint8), 256).reshape(32, 32)
    rgb = np.stack([ramp, np.full_like(ramp, 7), ramp // 2])[None]
    out = equalized(rgb)
    assert np.array_equal(out[0, 0], equalized(ramp[None, None])[0, 0]) and (out[0, 1] == 7).all()
    assert np.array_equal(out[0, 2], out[0, 0])  # same ranks in the third channel: same result


def _low_contrast_folder(root):
    """Class folders of dim, low-contrast 8-bit PNGs and 12-bit deep PNGs."""
    rng = np.random.default_rng(1)
    for c in ("covid", "normal", "pneumonia"):
        (root / c).mkdir(parents=True)
        for i in range(4):
            Image.fromarray(rng.integers(100, 130, (40, 36), dtype=np.uint8), "L").save(root / c / f"g{i}.png")
            Image.fromarray(rng.integers(1000, 1500, (40, 36), dtype=np.uint16)).save(root / c / f"d{i}.png")
    return root


@pytest.fixture
def source_configs(tmp_path):
    """A config of every source that needs no data-set layout of its own."""
    rng = np.random.default_rng(0)
    npz = {}
    for split, n in (("train", 12), ("val", 6), ("test", 6)):
        npz[f"{split}_images"] = rng.integers(90, 140, (n, 28, 28), dtype=np.uint8)
        npz[f"{split}_labels"] = rng.integers(0, 2, n)
    np.savez(tmp_path / "set.npz", **npz)
    return {
        "synthetic": {"source": "synthetic", "synthetic": {"n": 60}},
        "imagefolder": {"source": "imagefolder", "path": _low_contrast_folder(tmp_path / "folder")},
        "medmnist": {"source": "medmnist", "path": tmp_path / "set.npz"},
    }


@pytest.mark.parametrize("source", ["synthetic", "imagefolder", "medmnist"])
def test_every_source_equalises_each_prepared_image_once(tmp_path, source_configs, source):
    assert source in SOURCES
    settings = source_configs[source] | {"load_size": 24, "image_size": 16, "cache_dir": tmp_path / "cache"}
    plain = load_arrays(DataConfig(**settings))
    equal = load_arrays(DataConfig(**settings, equalize=True))
    assert equal.manifest["key"] != plain.manifest["key"]  # its own cache entry
    assert np.array_equal(equal.images, equalized(np.asarray(plain.images)))

    def mean_range(images):  # each image's own contrast
        flat = np.asarray(images, np.int64).reshape(len(images), -1)
        return (flat.max(1) - flat.min(1)).mean()

    assert mean_range(equal.images) > mean_range(plain.images)
    again = load_arrays(DataConfig(**settings, equalize=True))  # from the cache: not equalised twice
    assert np.array_equal(again.images, equal.images)


def test_equalisation_leaves_the_keys_of_earlier_entries_alone(tmp_path):
    from trainables.data.sources.synthetic import SyntheticSource

    assert "equalize" not in SyntheticSource(DataConfig()).params()
    assert SyntheticSource(DataConfig(equalize=True)).params()["equalize"] is True
