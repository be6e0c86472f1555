import os
import time
import warnings

import numpy as np
import pytest
from PIL import Image

from study.synth import write_synthetic
from trainables.data import DataConfig, load_arrays, split_by_patient, split_indices, synthetic
from trainables.data.arrays import ImageArrays
from trainables.data.inspect import describe
from trainables.errors import DataError


def cfg(tmp_path, **kw) -> DataConfig:
    return DataConfig(cache_dir=tmp_path / "cache", load_size=kw.pop("load_size", 24),
                      image_size=kw.pop("image_size", 16), **kw)


def write_mixed_folder(root, per_class=3):
    """Class folders holding 8-bit grey PNG, RGB JPEG and 16-bit grey PNG files of mixed sizes."""
    rng = np.random.default_rng(0)
    for c in ("covid", "normal", "pneumonia"):
        (root / c).mkdir(parents=True)
        for i in range(per_class):
            h, w = rng.integers(30, 80, 2)
            Image.fromarray(rng.integers(0, 255, (h, w), dtype=np.uint8), "L").save(root / c / f"g{i}.png")
            Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8), "RGB").save(root / c / f"r{i}.jpg")
            deep = rng.integers(0, 65535, (h, w), dtype=np.uint16)
            Image.fromarray(deep).save(root / c / f"d{i}.png")
    return root


def test_imagefolder_reads_every_mode_and_size(tmp_path):
    root = write_mixed_folder(tmp_path / "imgs")
    arrays = load_arrays(cfg(tmp_path, source="imagefolder", path=root))
    assert arrays.images.shape == (27, 1, 24, 24) and arrays.images.dtype == np.uint8
    assert arrays.class_names == ["covid", "normal", "pneumonia"]
    assert arrays.class_counts().tolist() == [9, 9, 9]
    assert len(set(arrays.patient_ids)) == 27
    # 16-bit images are scaled to the full 8-bit range, not clipped at 255
    deep = [i for i, f in enumerate(arrays.manifest["files"]) if f.endswith("d0.png")]
    assert arrays.images[deep].max() > 200 and arrays.images[deep].min() < 60


def test_rgb_channels_kept_when_asked(tmp_path):
    root = write_mixed_folder(tmp_path / "imgs", per_class=1)
    arrays = load_arrays(cfg(tmp_path, source="imagefolder", path=root, channels=3))
    assert arrays.images.shape == (9, 3, 24, 24)


def test_corrupt_file_is_an_error_or_with_strict_false_skipped_with_a_warning(tmp_path):
    root = write_mixed_folder(tmp_path / "imgs", per_class=1)
    bad = root / "normal" / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n this is not an image")
    with pytest.raises(DataError, match=r"data.path: cannot read 1 image file\(s\) \(normal: 1 of 4\): "
                                        r".*broken.png \(UnidentifiedImageError: .*; set data.strict: false"):
        load_arrays(cfg(tmp_path, source="imagefolder", path=root))
    with pytest.warns(UserWarning, match=r"skipped 1 unreadable image\(s\) \(normal: 1 of 4\): .*broken.png"):
        arrays = load_arrays(cfg(tmp_path, source="imagefolder", path=root, strict=False, load_size=26))
    assert len(arrays.images) == 9 and arrays.manifest["skipped"] == 1
    assert arrays.manifest["dropped"] == {"missing": {}, "unreadable": {"normal": 1}}


def test_missing_path_and_empty_class_folder(tmp_path):
    with pytest.raises(DataError, match=f"data.path: {tmp_path / 'nope'} does not exist"):
        load_arrays(cfg(tmp_path, source="imagefolder", path=tmp_path / "nope"))
    root = write_mixed_folder(tmp_path / "imgs", per_class=1)
    (root / "tb").mkdir()
    with pytest.raises(DataError, match=f"class folder {root / 'tb'} has no images"):
        load_arrays(cfg(tmp_path, source="imagefolder", path=root))


def test_cache_hit_and_invalidation(tmp_path):
    root = write_mixed_folder(tmp_path / "imgs", per_class=1)
    c = cfg(tmp_path, source="imagefolder", path=root)
    first = load_arrays(c)
    second = load_arrays(c)
    assert second.manifest["created"] == first.manifest["created"]  # read back, not rebuilt
    np.testing.assert_array_equal(first.images, second.images)
    entries = set((tmp_path / "cache").iterdir())
    target = root / "covid" / "g0.png"
    Image.fromarray(np.zeros((40, 40), np.uint8), "L").save(target)
    os.utime(target, ns=(time.time_ns(), time.time_ns() + 10**9))
    third = load_arrays(c)
    assert third.manifest["key"] != first.manifest["key"]
    assert len(set((tmp_path / "cache").iterdir()) - entries) == 1
    changed = third.manifest["files"].index(str(target))
    assert third.images[changed].max() == 0


def test_synth_writer_round_trips_through_covidx_and_imagefolder(tmp_path):
    out = write_synthetic(tmp_path / "synth", n=60, seed=4, size=32)
    truth = synthetic.generate(60, 32, seed=4)
    via_covidx = load_arrays(cfg(tmp_path, source="covidx", path=out, load_size=32, image_size=32))
    order = np.argsort([os.path.basename(f) for f in via_covidx.manifest["files"]], kind="stable")
    names = sorted(f"{p}-{i:06d}.png" for i, p in enumerate(truth.patient_ids))
    assert [os.path.basename(via_covidx.manifest["files"][i]) for i in order] == names
    # PNG is lossless and 32 -> 32 px is no resize: pixels and patients come back exactly
    by_name = {f"{p}-{i:06d}.png": i for i, p in enumerate(truth.patient_ids)}
    for k, f in enumerate(via_covidx.manifest["files"]):
        i = by_name[os.path.basename(f)]
        np.testing.assert_array_equal(via_covidx.images[k], truth.images[i])
        assert via_covidx.patient_ids[k] == truth.patient_ids[i]
        assert via_covidx.class_names[via_covidx.labels[k]] == truth.class_names[truth.labels[i]]
    via_folder = load_arrays(cfg(tmp_path, source="imagefolder", path=out, load_size=32, image_size=32))
    assert sorted(via_folder.class_counts().tolist()) == sorted(truth.class_counts().tolist())


def test_covidx_reports_metadata_entries_without_files(tmp_path):
    out = write_synthetic(tmp_path / "synth", n=40, seed=1, size=24)
    meta = out / "metadata.txt"
    meta.write_text(meta.read_text() + "p9 missing.png covid synthetic\n")
    with pytest.warns(UserWarning, match=r"skipped 1 metadata entries with no image file \(covid: 1 of \d+\)"):
        arrays = load_arrays(cfg(tmp_path, source="covidx", path=out, strict=False))
    assert arrays.manifest["dropped"]["missing"] == {"covid": 1}
    with pytest.raises(DataError, match=r"1 file\(s\) named in the metadata are not under .*\(covid: 1 of "
                                        r"\d+\): .*metadata.txt:41: missing.png"):
        load_arrays(cfg(tmp_path, source="covidx", path=out))


def test_medmnist_npz(tmp_path):
    rng = np.random.default_rng(0)
    arrays = {}
    for split, n in (("train", 30), ("val", 10), ("test", 12)):
        arrays[f"{split}_images"] = rng.integers(0, 255, (n, 28, 28), dtype=np.uint8)
        arrays[f"{split}_labels"] = rng.integers(0, 2, (n, 1))
    np.savez(tmp_path / "pneumoniamnist.npz", **arrays)
    c = cfg(tmp_path, source="medmnist", path=tmp_path / "pneumoniamnist.npz", class_names=["normal", "pneumonia"])
    data = load_arrays(c)
    assert data.images.shape == (52, 1, 24, 24)
    split = split_indices(data, c)
    assert [len(split[s]) for s in ("train", "val", "test")] == [30, 10, 12]
    assert describe(c)["cache"]["exists"] and "splits" not in describe(c)  # one array file: nothing to list
    rgb = {k: (np.repeat(v[..., None], 3, -1) if k.endswith("images") else v) for k, v in arrays.items()}
    np.savez(tmp_path / "rgb.npz", **rgb)
    data3 = load_arrays(cfg(tmp_path, source="medmnist", path=tmp_path / "rgb.npz", load_size=28,
                            image_size=28))
    np.testing.assert_array_equal(data3.images[:30, 0], arrays["train_images"])
    del arrays["val_labels"]
    np.savez(tmp_path / "broken.npz", **arrays)
    with pytest.raises(DataError, match="has no array 'val_labels'"):
        load_arrays(cfg(tmp_path, source="medmnist", path=tmp_path / "broken.npz"))


def _arrays(n_patients_per_class=(10, 40, 30), per_patient=3):
    labels, patients = [], []
    for c, k in enumerate(n_patients_per_class):
        for p in range(k):
            labels += [c] * per_patient
            patients += [f"{c}-{p}"] * per_patient
    n = len(labels)
    return ImageArrays(np.zeros((n, 1, 4, 4), np.uint8), np.array(labels), ["a", "b", "c"],
                       np.array(patients))


def test_split_by_patient_is_disjoint_stratified_and_seeded():
    arrays = _arrays()
    s0 = split_by_patient(arrays, 0.2, 0.2, seed=0)
    assert sum(len(v) for v in s0.values()) == len(arrays.labels)
    pats = {k: set(arrays.patient_ids[v]) for k, v in s0.items()}
    assert not (pats["train"] & pats["val"] or pats["train"] & pats["test"] or pats["val"] & pats["test"])
    for idx in s0.values():
        assert set(arrays.labels[idx]) == {0, 1, 2}
    assert len(pats["val"]) == round(10 * 0.2) + round(40 * 0.2) + round(30 * 0.2)
    again = split_by_patient(arrays, 0.2, 0.2, seed=0)
    other = split_by_patient(arrays, 0.2, 0.2, seed=1)
    assert all(np.array_equal(s0[k], again[k]) for k in s0)
    assert not np.array_equal(s0["test"], other["test"])


def test_split_needs_three_patients_per_class():
    with pytest.raises(DataError, match="data: class 'a' has 2 patient"):
        split_by_patient(_arrays((2, 10, 10)), 0.2, 0.2, seed=0)


def test_synthetic_is_deterministic_and_has_covidx_shares():
    a = synthetic.generate(1000, 24, seed=7)
    b = synthetic.generate(1000, 24, seed=7)
    np.testing.assert_array_equal(a.images, b.images)
    shares = a.class_counts() / 1000
    assert shares.tolist() == pytest.approx([0.034, 0.573, 0.393], abs=0.002)
    assert len(set(a.patient_ids)) < 1000  # several images per patient
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert not np.array_equal(a.images, synthetic.generate(1000, 24, seed=8).images)
