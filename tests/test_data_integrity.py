"""Nothing silently wrong in the data: hidden and OS files, bit depths, COVIDx lines, names in two
split folders, stale cache entries, shapes and paths a source cannot take, classes too small to
split. Each case is an example of a kind; the right value of each is asserted."""
import struct
import warnings
import zlib

import numpy as np
import pytest
from PIL import Image, PngImagePlugin

from study.preflight import check_data
from study.spec import load_spec
from trainables.data import DataConfig, load_arrays
from trainables.data.decode import decode
from trainables.errors import ConfigError, DataError


def cfg(tmp_path, **kw) -> DataConfig:
    return DataConfig(cache_dir=tmp_path / "cache", load_size=kw.pop("load_size", 16),
                      image_size=kw.pop("image_size", 16), **kw)


def grey(path, value, size=20):
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(abs(hash(str(path))) % 2**32)
    Image.fromarray(np.clip(value + rng.integers(-3, 4, (size, size)), 0, 255).astype(np.uint8)).save(path)


def deep_png(path, array, sbit=None):
    """A 16-bit grey PNG, with an sBIT chunk when given."""
    path.parent.mkdir(parents=True, exist_ok=True)
    info = PngImagePlugin.PngInfo()
    if sbit is not None:
        info.add(b"sBIT", bytes([sbit]))
    Image.fromarray(np.asarray(array, np.uint16)).save(path, pnginfo=info)


# 1. hidden and OS-made files ------------------------------------------------------------------

def test_hidden_and_os_files_at_any_depth_are_never_data(tmp_path):
    root = tmp_path / "imgs"
    for i in range(12):
        grey(root / "covid" / f"c{i}.png", 40 + 10 * i)
        grey(root / "normal" / f"n{i}.png", 200 - 5 * i)
    for i in range(6):  # a notebook's checkpoint copies, as in the bug report
        (root / "covid" / ".ipynb_checkpoints").mkdir(exist_ok=True)
        (root / "covid" / ".ipynb_checkpoints" / f"c{i}-checkpoint.png").write_bytes(
            (root / "covid" / f"c{i}.png").read_bytes())
    grey(root / "covid" / "._c0.png", 10)  # AppleDouble
    grey(root / "normal" / "__MACOSX" / "n0.png", 10)
    grey(root / "normal" / "sub" / ".hidden" / "x.png", 10)
    (root / "normal" / "Thumbs.db").write_bytes(b"not an image")
    (root / "normal" / "desktop.ini").write_text("[.ShellClassInfo]")
    (root / ".DS_Store").write_bytes(b"\0")
    (root / "__MACOSX").mkdir()
    grey(root / "normal" / "sub" / "deep.png", 120)  # a real sub-folder is read (recursively)
    arrays = load_arrays(cfg(tmp_path, source="imagefolder", path=root))
    assert arrays.class_names == ["covid", "normal"]
    assert arrays.class_counts().tolist() == [12, 13]
    assert arrays.manifest["os_files_ignored"] == 9
    assert not any("checkpoint" in f or "/." in f or "MACOSX" in f for f in arrays.manifest["files"])


def test_byte_identical_files_under_two_patients_are_reported_with_a_count(tmp_path):
    root = tmp_path / "imgs"
    for i in range(4):
        grey(root / "covid" / f"c{i}.png", 40 + 30 * i)
        grey(root / "normal" / f"n{i}.png", 90 + 30 * i)
    for i in range(2):  # copies under another name are another "patient" in an image folder
        (root / "covid" / f"copy of c{i}.png").write_bytes((root / "covid" / f"c{i}.png").read_bytes())
    with pytest.warns(UserWarning, match=r"data: 2 image file\(s\) are byte-identical to a file of another "
                                         r"patient \(2 group\(s\), e\.g\. .*c0.png and .*copy of c0.png\)"):
        arrays = load_arrays(cfg(tmp_path, source="imagefolder", path=root))
    assert len(set(arrays.manifest["digests"])) == 8
    with pytest.warns(UserWarning, match="byte-identical"):  # the cached entry says so again
        load_arrays(cfg(tmp_path, source="imagefolder", path=root))


# 2. bit depths ---------------------------------------------------------------------------------

def _levels(array: np.ndarray) -> int:
    return len(np.unique(array))


def test_twelve_bit_values_in_16_bit_files_span_the_8_bit_range(tmp_path):
    ramp = np.tile(np.linspace(0, 4095, 64).round(), (64, 1))
    deep_png(tmp_path / "a.png", ramp)
    deep_png(tmp_path / "b.png", ramp[:, ::-1])
    out = [decode(tmp_path / f, 64) for f in ("a.png", "b.png")]
    assert out[0].bits == 12 and out[0].image.dtype == np.uint16
    root = tmp_path / "set"
    deep_png(root / "x" / "a.png", ramp)
    deep_png(root / "y" / "b.png", ramp[:, ::-1])
    arrays = load_arrays(cfg(tmp_path, source="imagefolder", path=root, load_size=64, image_size=64))
    assert arrays.manifest["bit_depth"] == {"high_depth_files": 2, "bits": 12, "divisor": 4095}
    assert arrays.images.min() == 0 and arrays.images.max() == 255
    assert _levels(arrays.images[0]) == 64  # not 17 grey levels (4095 / 257)


def test_one_divisor_for_the_data_set_a_dim_16_bit_file_stays_dim(tmp_path):
    root = tmp_path / "set"
    deep_png(root / "x" / "bright.png", np.full((32, 32), 4095))
    deep_png(root / "y" / "dim.png", np.full((32, 32), 200))  # under 256, in a 12-bit data set
    arrays = load_arrays(cfg(tmp_path, source="imagefolder", path=root))
    dim = arrays.manifest["files"].index(str(root / "y" / "dim.png"))
    assert arrays.images[dim].max() == round(200 * 255 / 4095)  # 12, not 200 (a divisor of 255)
    assert arrays.images[1 - dim].min() == 255


def test_png_sbit_sets_the_depth_when_present(tmp_path):
    root = tmp_path / "set"
    deep_png(root / "x" / "a.png", np.full((32, 32), 1000), sbit=12)  # 12 significant bits, max 1000
    deep_png(root / "y" / "b.png", np.full((32, 32), 2000), sbit=12)
    arrays = load_arrays(cfg(tmp_path, source="imagefolder", path=root))
    assert arrays.manifest["bit_depth"]["bits"] == 12
    assert sorted(int(arrays.images[i].max()) for i in range(2)) == [round(1000 * 255 / 4095),
                                                                      round(2000 * 255 / 4095)]


def test_16_bit_files_under_256_everywhere_map_like_8_bit_and_full_range_by_65535(tmp_path):
    low = tmp_path / "low"
    deep_png(low / "x" / "a.png", np.full((32, 32), 200))
    deep_png(low / "y" / "b.png", np.full((32, 32), 100))
    arrays = load_arrays(cfg(tmp_path, source="imagefolder", path=low))
    assert arrays.manifest["bit_depth"]["bits"] == 8 and sorted(arrays.images.max(axis=(1, 2, 3))) == [100, 200]
    full = tmp_path / "full"
    deep_png(full / "x" / "a.png", np.full((32, 32), 65535))
    deep_png(full / "y" / "b.png", np.full((32, 32), 32768))
    arrays = load_arrays(cfg(tmp_path, source="imagefolder", path=full))
    assert arrays.manifest["bit_depth"]["divisor"] == 65535
    assert sorted(arrays.images.max(axis=(1, 2, 3))) == [128, 255]


def _png_16bit_rgb(path, h=8, w=8):
    """A 16-bit RGB PNG written by hand (Pillow writes none)."""
    rows = b"".join(b"\0" + struct.pack(f">{3 * w}H", *([4095] * 3 * w)) for _ in range(h))

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


def test_a_16_bit_colour_png_is_named_not_truncated_to_its_high_byte(tmp_path):
    root = tmp_path / "set"
    for c in ("x", "y"):
        grey(root / c / "ok.png", 100)
    _png_16bit_rgb(root / "x" / "colour16.png")
    with pytest.raises(DataError, match=r"colour16.png \(ValueError: 16-bit colour PNG is not supported"):
        load_arrays(cfg(tmp_path, source="imagefolder", path=root))


# 3. COVIDx lines ---------------------------------------------------------------------------------

def covidx_folder(root, lines_for):
    """12 covid and 12 normal images; ``lines_for(i, name, label)`` writes each metadata line."""
    lines = []
    for label, value in (("COVID-19", 60), ("normal", 180)):
        for i in range(1, 13):
            name = f"{'COVID' if label == 'COVID-19' else 'Normal'}({i}).png"
            grey(root / "images" / name, value)
            lines.append(lines_for(i, name, label))
    (root / "train.txt").write_text("\n".join(lines) + "\n")
    return root


def test_covidx_patient_ids_with_spaces_are_read_from_the_right(tmp_path):
    root = covidx_folder(tmp_path / "cx", lambda i, name, label: (
        f"{'COVID' if label == 'COVID-19' else 'N'} {i} {name} {label} sirm" if i % 2
        else f"p{label[0]}{i} {name} {label}"))
    arrays = load_arrays(cfg(tmp_path, source="covidx", path=root))
    assert arrays.class_counts().tolist() == [12, 12]  # all 12 covid images, not 6
    assert "COVID 7" in set(arrays.patient_ids) and "pC8" in set(arrays.patient_ids)
    assert len(set(arrays.patient_ids)) == 24


def test_covidx_line_without_a_file_name_names_file_and_line(tmp_path):
    root = covidx_folder(tmp_path / "cx", lambda i, name, label: f"p{i} {name} {label} src")
    with open(root / "train.txt", "a") as f:
        f.write("just two\n")
    with pytest.raises(DataError, match=r"data.metadata: .*train.txt:25: expected 'patient_id filename label "
                                        r"\[source\]' with an image file name, got 'just two'"):
        load_arrays(cfg(tmp_path, source="covidx", path=root))


def test_covidx_missing_files_are_counted_per_class_and_an_error_by_default(tmp_path):
    root = covidx_folder(tmp_path / "cx", lambda i, name, label: f"p{i} {name} {label} src")
    for i in (1, 2, 3):
        (root / "images" / f"COVID({i}).png").unlink()
    with pytest.raises(DataError, match=r"3 file\(s\) named in the metadata are not under .* \(COVID-19: 3 of "
                                        r"12\): .*train.txt:1: COVID\(1\).png"):
        load_arrays(cfg(tmp_path, source="covidx", path=root))
    with pytest.warns(UserWarning, match=r"skipped 3 metadata entries with no image file \(COVID-19: 3 of 12\)"):
        arrays = load_arrays(cfg(tmp_path, source="covidx", path=root, strict=False))
    assert arrays.class_counts().tolist() == [9, 12]


# 4. one name in two split folders ----------------------------------------------------------------

def two_split_folders(root):
    """train/ and test/ hold the same 10 file names; train.txt and test.txt label them differently."""
    for split, value, label in (("train", 60, "covid"), ("test", 180, "normal")):
        lines = []
        for i in range(10):
            grey(root / split / f"img{i}.png", value)
            lines.append(f"{split}{i} img{i}.png {label if i % 2 else 'pneumonia'} src")
        (root / f"{split}.txt").write_text("\n".join(lines) + "\n")
    return root


def test_a_name_resolves_in_its_metadata_files_own_split_folder_first(tmp_path):
    root = two_split_folders(tmp_path / "cx")
    arrays = load_arrays(cfg(tmp_path, source="covidx", path=root))
    files = arrays.manifest["files"]
    assert len(files) == len(set(files)) == 20
    for f, label, patient in zip(files, arrays.labels, arrays.patient_ids):
        folder = f.split("/")[-2]
        assert folder == patient.rstrip("0123456789")  # train.txt's rows read train/, test.txt's test/
        assert arrays.class_names[label] in ({"covid", "pneumonia"} if folder == "train" else {"normal", "pneumonia"})


def test_a_name_matching_several_files_outside_its_split_folder_is_an_error(tmp_path):
    root = two_split_folders(tmp_path / "cx")
    (root / "all.txt").write_text((root / "train.txt").read_text())
    (root / "train.txt").unlink()
    (root / "test.txt").unlink()
    with pytest.raises(DataError, match=r"all.txt:1: img0.png matches 2 files under .*: .*test/img0.png, "
                                        r".*train/img0.png"):
        load_arrays(cfg(tmp_path, source="covidx", path=root))


def test_a_file_named_by_two_rows_is_an_error(tmp_path):
    root = covidx_folder(tmp_path / "cx", lambda i, name, label: f"p{i} {name} {label} src")
    with open(root / "train.txt", "a") as f:
        f.write("p99 COVID(1).png normal src\n")
    with pytest.raises(DataError, match=r"train.txt:25: .*COVID\(1\).png is already named by .*train.txt:1"):
        load_arrays(cfg(tmp_path, source="covidx", path=root))


# 5. stale cache entries --------------------------------------------------------------------------

def test_relabelled_rows_and_strictness_are_in_the_cache_key(tmp_path):
    root = covidx_folder(tmp_path / "cx", lambda i, name, label: f"p{i} {name} {label} src")
    first = load_arrays(cfg(tmp_path, source="covidx", path=root))
    meta = root / "train.txt"
    meta.write_text(meta.read_text().replace("COVID(1).png COVID-19", "COVID(1).png normal"))
    second = load_arrays(cfg(tmp_path, source="covidx", path=root))
    assert second.manifest["key"] != first.manifest["key"]
    assert second.class_counts().tolist() == [11, 13]
    (root / "images" / "Normal(5).png").write_bytes(b"broken")
    with pytest.warns(UserWarning, match="skipped 1 unreadable"):
        load_arrays(cfg(tmp_path, source="covidx", path=root, strict=False))
    with pytest.raises(DataError, match=r"cannot read 1 image file\(s\) \(normal: 1 of 13\)"):
        load_arrays(cfg(tmp_path, source="covidx", path=root))  # strict again: checked, not the old entry


# 6. shapes and paths a source cannot take --------------------------------------------------------

def test_a_multi_label_medmnist_file_is_one_message(tmp_path):
    rng = np.random.default_rng(0)
    npz = {f"{s}_images": rng.integers(0, 255, (10, 28, 28), dtype=np.uint8) for s in ("train", "val", "test")}
    npz |= {f"{s}_labels": rng.integers(0, 2, (10, 14)) for s in ("train", "val", "test")}
    np.savez(tmp_path / "chestmnist.npz", **npz)
    with pytest.raises(DataError, match=r"train_labels has shape \(10, 14\), a multi-label set; source medmnist "
                                        r"reads single-label sets"):
        load_arrays(cfg(tmp_path, source="medmnist", path=tmp_path / "chestmnist.npz"))


def test_a_file_where_a_folder_is_expected_and_the_reverse(tmp_path):
    (tmp_path / "x.png").write_bytes(b"")
    with pytest.raises(DataError, match=r"data.path: .*x.png is a file; source 'imagefolder' reads a folder"):
        load_arrays(cfg(tmp_path, source="imagefolder", path=tmp_path / "x.png"))
    with pytest.raises(DataError, match=r"data.path: .* is a folder; source 'medmnist' reads a file"):
        load_arrays(cfg(tmp_path, source="medmnist", path=tmp_path))


def test_an_unwritable_cache_folder_is_a_note_and_the_data_are_used(tmp_path):
    root = tmp_path / "imgs"
    for i in range(3):
        grey(root / "a" / f"{i}.png", 50)
        grey(root / "b" / f"{i}.png", 150)
    blocker = tmp_path / "file"
    blocker.write_text("a file, not a folder")
    with pytest.warns(UserWarning, match=r"data.cache_dir: cannot write the cache in .*file.*used without being "
                                         r"cached"):
        arrays = load_arrays(DataConfig(source="imagefolder", path=root, cache_dir=blocker / "cache",
                                        load_size=16, image_size=16))
    assert arrays.class_counts().tolist() == [3, 3]


# 7. a class too small to split: one error in the driver, before any Ray work ---------------------

SPEC = """
name: small
data: {{source: imagefolder, path: {root}, load_size: 16, image_size: 16, positive_class: {positive}}}
training: {{epochs: 2, batch_size: 8}}
strategies: {{control: control}}
search: {{space: {{lr: {{choice: [0.001]}}}}, samples_per_strategy: 1, metric: {metric}}}
repeats: {{metrics: [{repeat_metric}]}}
tracking: {{uri: "sqlite:///{tmp}/mlflow.db"}}
storage_path: {tmp}/results
"""


def small_spec(tmp_path, positive="covid", metric="val/balanced_accuracy", repeat_metric="test/sensitivity"):
    root = tmp_path / "imgs"
    for i in range(6):
        grey(root / "normal" / f"n{i}.png", 150)
        grey(root / "covid" / f"c{i}.png", 50)
    path = tmp_path / "small.yaml"
    path.write_text(SPEC.format(root=root, tmp=tmp_path, positive=positive, metric=metric,
                                repeat_metric=repeat_metric))
    return path, root


def test_a_class_with_one_image_is_one_error_before_ray(tmp_path, capsys):
    from study.cli import main

    path, root = small_spec(tmp_path)
    for f in sorted((root / "covid").iterdir())[1:]:
        f.unlink()
    assert main(["run", str(path)]) == 2
    err = capsys.readouterr().err
    assert "study: error: data: class 'covid' has 1 patient(s); a train/val/test split needs at least 3" in err
    assert not (tmp_path / "results" / "small" / "search").exists()  # no Tune experiment was started


def test_classes_and_class_metrics_a_spec_names_are_checked_against_the_data(tmp_path):
    path, root = small_spec(tmp_path, positive="pneumonia")
    spec = load_spec(path)
    arrays = load_arrays(spec.data)
    with pytest.raises(ConfigError, match=r"data.positive_class: 'pneumonia' is not one of the classes"):
        check_data(spec, arrays)
    path, _ = small_spec(tmp_path, repeat_metric="test/recall_COVID-19")
    with pytest.raises(ConfigError, match=r"repeats.metrics: 'test/recall_COVID-19' names no class of the data: "
                                          r"recall_ takes one of covid, normal"):
        check_data(load_spec(path), arrays)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_data(load_spec(small_spec(tmp_path, metric="val/recall_covid")[0]), arrays)


# 9. a typo in a compared metric is caught when the spec is read ------------------------------------

def test_a_misspelt_repeat_metric_is_a_spec_error(tmp_path):
    from study.errors import SpecError

    path, _ = small_spec(tmp_path, repeat_metric="test/sensitivty")
    with pytest.raises(SpecError, match=r"repeats.metrics: expected test/<metric> with metric in .*got "
                                        r"'test/sensitivty'"):
        load_spec(path)
