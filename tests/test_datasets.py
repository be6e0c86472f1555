"""The public chest X-ray data sets in their native layouts, each preset on the real label files the
``torchxrayvision`` wheel ships (read from the installed package, never downloaded), with images
synthesised for a sample of rows; every expected count is computed here from the real table with
pandas, independently of the source's code. Plus the generic table source's rules and messages."""
import gzip
import importlib.util
import io
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from trainables.data import DataConfig, load_arrays, split_indices
from trainables.data.config import PRESETS
from trainables.data.inspect import describe
from trainables.errors import DataError

LABELS = Path(importlib.util.find_spec("torchxrayvision").submodule_search_locations[0]) / "data"
SIZE = 16


def real_table(name: str) -> pd.DataFrame:
    return pd.read_csv(LABELS / name, dtype=str, keep_default_na=False)


def write_images(root: Path, relative_paths) -> None:
    """A distinct small grey image per path (seeded by the path: no byte-identical copies)."""
    for rel in relative_paths:
        rng = np.random.default_rng(zlib.crc32(str(rel).encode()))
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (20, 24), dtype=np.uint8)).save(path)


def cfg(tmp_path, **kw) -> DataConfig:
    return DataConfig(cache_dir=tmp_path / "cache", load_size=SIZE, image_size=SIZE, **kw)


def split_of(arrays, c) -> dict[str, set]:
    return {s: set(np.asarray(arrays.manifest["files"])[idx]) for s, idx in split_indices(arrays, c).items()}


# ---------------------------------------------------------------- NIH ChestX-ray14


@pytest.fixture(scope="module")
def nih(tmp_path_factory):
    """200 real rows of Data_Entry_2017_v2020 (pneumonia-like, no finding, others; PA and AP),
    gzipped as shipped, images in images_001/images/, split lists by real patient id."""
    root = tmp_path_factory.mktemp("nih")
    df = real_table("Data_Entry_2017_v2020.csv.gz")
    pneumonia = df[df["Finding Labels"].str.contains("Pneumonia|Consolidation")]
    normal = df[df["Finding Labels"] == "No Finding"]
    rest = df.drop(pneumonia.index).drop(normal.index)
    sample = pd.concat([pneumonia.sample(70, random_state=0), normal.sample(90, random_state=0),
                        rest.sample(40, random_state=0)])
    with gzip.open(root / "Data_Entry_2017_v2020.csv.gz", "wt") as f:
        sample.to_csv(f, index=False)
    write_images(root / "images_001" / "images", sample["Image Index"])
    patients = sorted(sample["Patient ID"].unique())
    test = sample["Patient ID"].isin(patients[::4])
    (root / "test_list.txt").write_text("\n".join(sample[test]["Image Index"]) + "\n")
    (root / "train_val_list.txt").write_text("\n".join(sample[~test]["Image Index"]) + "\n")
    return root, sample, test


def test_nih_preset_on_the_real_data_entry_file(nih, tmp_path):
    root, sample, test = nih
    c = cfg(tmp_path, preset="nih_chestxray14", path=root)
    arrays = load_arrays(c)
    pa = sample[sample["View Position"] == "PA"]
    findings = pa["Finding Labels"].str.split("|").map(set)
    is_pneumonia = findings.map(lambda f: bool(f & {"Pneumonia", "Consolidation"}))
    is_normal = findings.map(lambda f: "No Finding" in f)
    assert arrays.class_names == ["normal", "pneumonia"]
    assert arrays.class_counts().tolist() == [int(is_normal.sum()), int(is_pneumonia.sum())]
    dropped = arrays.manifest["dropped"]
    assert dropped["filter View Position"] == int((sample["View Position"] != "PA").sum())
    assert dropped["no class"] == int((~is_pneumonia & ~is_normal).sum())
    kept = pa[is_pneumonia | is_normal]
    by_file = dict(zip(kept["Image Index"], kept["Patient ID"]))
    assert {Path(f).name: p for f, p in zip(arrays.manifest["files"], arrays.patient_ids)} == by_file
    splits = split_of(arrays, c)
    test_files = set(sample[test]["Image Index"]) & set(kept["Image Index"])
    assert {Path(f).name for f in splits["test"]} == test_files  # the official test list
    assert splits["val"] and not splits["val"] & splits["train"]
    val_patients = {by_file[Path(f).name] for f in splits["val"]}
    assert not val_patients & {by_file[Path(f).name] for f in splits["train"]}


def test_inspect_says_what_the_data_resolve_to(nih, tmp_path):
    root, sample, _ = nih
    info = describe(cfg(tmp_path, preset="nih_chestxray14", path=root))
    pa = sample[sample["View Position"] == "PA"]
    assert info["dropped"]["filter View Position"] == len(sample) - len(pa)
    assert info["split"] == "official" and info["files_missing"] == 0
    assert sum(s["images"] for s in info["splits"].values()) == info["files_found"]
    assert info["sampled"] == {"PNG L 24x20": sum(info["sampled"].values())}
    assert info["cache"]["exists"] is False


# ---------------------------------------------------------------- CheXpert


@pytest.fixture(scope="module")
def chexpert_rows():
    df = real_table("chexpert_train.csv.gz")
    picks = [df[df["Pneumonia"] == "1.0"].head(40), df[df["Pneumonia"] == "-1.0"].head(30),
             df[(df["No Finding"] == "1.0")].head(60), df[df["Frontal/Lateral"] == "Lateral"].head(15)]
    return pd.concat(picks).drop_duplicates("Path")


def _chexpert_layout(root: Path, rows: pd.DataFrame) -> None:
    """train.csv / valid.csv as the data set ships them (paths start with CheXpert-v1.0-small/),
    the valid file holding a fifth of the patients."""
    patient = rows["Path"].str.extract(r"(patient\d+)")[0]
    valid = patient.isin(sorted(patient.unique())[::5])
    rows[~valid].to_csv(root / "train.csv", index=False)
    rows[valid].assign(Path=rows[valid]["Path"].str.replace("/train/", "/valid/")).to_csv(root / "valid.csv",
                                                                                          index=False)
    write_images(root, [p.split("/", 1)[1] for p in rows[~valid]["Path"]])
    write_images(root, [p.split("/", 1)[1].replace("train/", "valid/", 1) for p in rows[valid]["Path"]])


@pytest.mark.parametrize("policy", ["ignore", "positive", "negative"])
def test_chexpert_preset_uncertainty_policies_on_real_rows(chexpert_rows, tmp_path, policy):
    root = tmp_path / "CheXpert-v1.0-small"
    root.mkdir()
    _chexpert_layout(root, chexpert_rows)
    c = cfg(tmp_path, preset="chexpert", path=root, table={"uncertain": policy})
    arrays = load_arrays(c)
    frontal = chexpert_rows[chexpert_rows["Frontal/Lateral"] == "Frontal"]
    pneu, normal = frontal["Pneumonia"], frontal["No Finding"] == "1.0"
    positive = (pneu == "1.0") | ((pneu == "-1.0") if policy == "positive" else False)
    undecided = (pneu == "-1.0") if policy == "ignore" else pd.Series(False, index=frontal.index)
    is_pneumonia = positive & ~undecided
    is_normal = normal & ~positive & ~undecided
    assert arrays.class_counts().tolist() == [int(is_normal.sum()), int(is_pneumonia.sum())]
    if policy == "ignore":
        assert arrays.manifest["dropped"]["uncertain"] == int(undecided.sum())
    patients = pd.Series([p.split("/")[-3] for p in arrays.manifest["files"]])
    assert (patients.values == arrays.patient_ids).all()  # patientNNNNN from the path
    splits = split_of(arrays, c)
    assert all("/valid/" in f for f in splits["test"]) and not any("/valid/" in f for f in splits["train"])


# ---------------------------------------------------------------- RSNA Pneumonia (DICOM)


def _dicom(path: Path, value: int) -> None:
    from test_dicom import write_dicom

    write_dicom(path, np.full((20, 24), value, np.uint16), "MONOCHROME1", bits_stored=12)


@pytest.fixture(scope="module")
def rsna(tmp_path_factory):
    """Real stage-2 labels (one row per opacity box) for 60 patients, zipped as shipped, their DICOMs
    named by patientId, and a detailed class file for the same patients."""
    root = tmp_path_factory.mktemp("rsna")
    with zipfile.ZipFile(LABELS / "kaggle_stage_2_train_labels.csv.zip") as z:
        df = pd.read_csv(io.BytesIO(z.read(z.namelist()[0])), dtype=str, keep_default_na=False)
    boxes = df.groupby("patientId").size()
    ids = list(boxes[boxes > 1].index[:20]) + list(df[df["Target"] == "0"]["patientId"].iloc[:40])
    sample = df[df["patientId"].isin(ids)]
    with zipfile.ZipFile(root / "stage_2_train_labels.csv.zip", "w") as z:
        z.writestr("stage_2_train_labels.csv", sample.to_csv(index=False))
    detailed = sample.assign(**{"class": np.where(sample["Target"] == "1", "Lung Opacity", np.where(
        sample["patientId"].isin(ids[20:40]), "Normal", "No Lung Opacity / Not Normal"))})
    detailed[["patientId", "class"]].to_csv(root / "stage_2_detailed_class_info.csv", index=False)
    (root / "stage_2_train_images").mkdir()
    for k, pid in enumerate(ids):
        _dicom(root / "stage_2_train_images" / f"{pid}.dcm", 100 * k)
    return root, sample, ids


def test_rsna_preset_reads_dicoms_one_row_per_patient(rsna, tmp_path):
    root, sample, ids = rsna
    arrays = load_arrays(cfg(tmp_path, preset="rsna_pneumonia", path=root))
    assert arrays.class_names == ["normal", "not_normal", "opacity"]
    assert arrays.class_counts().tolist() == [20, 20, 20]
    assert arrays.manifest["dropped"]["duplicate rows"] == len(sample) - len(ids)
    assert sorted(arrays.patient_ids) == sorted(ids)
    first = arrays.manifest["files"].index(str(root / "stage_2_train_images" / f"{ids[1]}.dcm"))
    assert arrays.images[first].min() == arrays.images[first].max() == round(255 - 100 * 255 / 4095)


def test_rsna_two_class_task_on_the_real_labels_file(rsna, tmp_path):
    root, sample, ids = rsna
    c = cfg(tmp_path, preset="rsna_pneumonia", path=root,
            table={"file": "stage_2_train_labels.csv.zip", "label": "Target",
                   "target": {"opacity": ["1"], "normal": ["0"]}})
    arrays = load_arrays(c)
    per_patient = sample.drop_duplicates("patientId")["Target"]
    assert arrays.class_counts().tolist() == [int((per_patient == "0").sum()), int((per_patient == "1").sum())]


# ---------------------------------------------------------------- folder layouts


def pneumonia_layout(root: Path) -> dict[str, list[str]]:
    """chest_xray/{train,val,test}/{NORMAL,PNEUMONIA}/ with the set's file names; two films of some
    children. Returns the files per split."""
    files = {"train": [], "val": [], "test": []}
    for split, n in (("train", 12), ("val", 2), ("test", 5)):
        base = {"train": 0, "val": 100, "test": 200}[split]
        for i in range(n):
            files[split] += [f"NORMAL/IM-{base + i:04d}-0001.jpeg", f"NORMAL/NORMAL2-IM-{base + i:04d}-0001.jpeg",
                             f"PNEUMONIA/person{base + i}_bacteria_{2 * i}.jpeg",
                             f"PNEUMONIA/person{base + i}_virus_{2 * i + 1}.jpeg"]
    for split, names in files.items():
        write_images(root / split, names)
    (root / "__MACOSX").mkdir()
    return files


def test_the_pneumonia_set_layout_is_two_classes_with_its_official_split(tmp_path):
    files = pneumonia_layout(tmp_path / "chest_xray")
    c = cfg(tmp_path, preset="pneumonia_kaggle", path=tmp_path / "chest_xray")
    arrays = load_arrays(c)
    assert arrays.class_names == ["NORMAL", "PNEUMONIA"]  # not test/train/val
    splits = split_of(arrays, c)
    assert {str(Path(f).relative_to(tmp_path / "chest_xray/test")) for f in splits["test"]} == set(files["test"])
    patients = dict(zip(arrays.manifest["files"], arrays.patient_ids))
    by_split = {s: {patients[f] for f in fs} for s, fs in splits.items()}
    assert not by_split["train"] & by_split["val"] and not by_split["val"] & by_split["test"]
    assert "person3" in by_split["train"] | by_split["val"] and len(by_split["val"]) >= 2
    assert patients[str(tmp_path / "chest_xray/train/PNEUMONIA/person3_bacteria_6.jpeg")] == "person3"
    assert all("val/" not in f.split("chest_xray/")[1][:4] for f in splits["val"])  # carved from train


def test_split_folders_without_a_preset_keep_their_split(tmp_path):
    pneumonia_layout(tmp_path / "chest_xray")
    c = cfg(tmp_path, source="imagefolder", path=tmp_path / "chest_xray")
    arrays = load_arrays(c)
    assert arrays.class_names == ["NORMAL", "PNEUMONIA"]
    assert [len(v) for v in split_of(arrays, c).values()] == [48, 8, 20]
    random = split_of(arrays, cfg(tmp_path, source="imagefolder", path=tmp_path / "chest_xray", split="random"))
    assert sum(map(len, random.values())) == 76 and random["test"] != split_of(arrays, c)["test"]


def test_covid_radiography_layout_skips_masks_with_a_note(tmp_path):
    root = tmp_path / "COVID-19_Radiography_Dataset"
    for c in ("COVID", "Normal", "Lung_Opacity", "Viral Pneumonia"):
        write_images(root / c / "images", [f"{c}-{i}.png" for i in range(1, 5)])
        write_images(root / c / "masks", [f"{c}-{i}.png" for i in range(1, 5)])
    with pytest.warns(UserWarning, match="skipped 16 file\\(s\\) in masks/"):
        arrays = load_arrays(cfg(tmp_path, preset="covid_radiography", path=root))
    assert arrays.class_counts().tolist() == [4, 4, 4, 4]
    assert not any("/masks/" in f for f in arrays.manifest["files"])


def test_covidx_test_file_is_the_test_split(tmp_path):
    root = tmp_path / "covidx"
    lines = {}
    for split, n in (("train", 12), ("val", 4), ("test", 4)):
        rows = [f"{split}{i} {split}_{i}.png {'positive' if i % 3 == 0 else 'negative'} bimcv" for i in range(n)]
        lines[split] = rows
        (root / split).mkdir(parents=True)
        (root / f"{split}.txt").write_text("\n".join(rows) + "\n")
        write_images(root / split, [r.split()[1] for r in rows])
    c = cfg(tmp_path, preset="covidx", path=root)
    arrays = load_arrays(c)
    assert arrays.class_names == ["negative", "positive"]
    splits = split_of(arrays, c)
    assert {Path(f).name for f in splits["test"]} == {r.split()[1] for r in lines["test"]}
    assert {Path(f).name for f in splits["val"]} == {r.split()[1] for r in lines["val"]}


@pytest.mark.parametrize("name", PRESETS.names())
def test_every_preset_validates_and_is_documented(name):
    c = DataConfig(preset=name, path="/data")
    assert c.source in ("table", "imagefolder", "covidx")
    assert importlib.import_module(f"trainables.data.presets.{name}").__doc__.strip()
    dumped = c.model_dump(mode="json", exclude_none=True)  # as a trial config carries it
    assert "preset" not in dumped  # applied once: a null set beside a preset stays null in trials
    assert DataConfig.model_validate(dumped).model_dump() == c.model_dump()


# ---------------------------------------------------------------- table rules and messages


def small_table(root: Path, rows: list[tuple[str, str, str, str]], **extra) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    frame = pd.DataFrame(rows, columns=["file", "finding", "pid", "split"])
    frame.to_csv(root / "labels.tsv", sep="\t", index=False)
    write_images(root / "img", frame["file"])
    return root


ROWS = [(f"a{i}.png", "Pneumonia" if i % 2 else "No Finding", f"p{i // 2}", "test" if i >= 16 else "train")
        for i in range(24)]


def test_table_with_a_class_column_split_column_and_a_tsv_sniffed(tmp_path):
    root = small_table(tmp_path / "t", ROWS)
    c = cfg(tmp_path, source="table", path=root, table={"file": "labels.tsv", "image": "file", "label": "finding",
                                                         "patient": "pid", "split": "split"})
    arrays = load_arrays(c)
    assert arrays.class_names == ["No Finding", "Pneumonia"] and arrays.class_counts().tolist() == [12, 12]
    splits = split_of(arrays, c)
    assert len(splits["test"]) == 8 and len(splits["val"]) > 0


@pytest.mark.parametrize("table, message", [
    ({"image": "filename"}, r"data.table.image: column\(s\) \['filename'\] not in labels.tsv \(columns: file, "),
    ({"filter": {"finding": ["Edema"]}}, r"data.table.filter.finding: no row has \['Edema'\] \(values there: "),
    ({"label_columns": None, "label": None, "labels_from": {"column": "finding"}},
     r"table.target: required with table.labels_from"),
    ({"target": {"covid": ["COVID-19"], "normal": ["No Finding"]}}, r"class\(es\) \['covid'\] have no image"),
    ({"target": {"sick": ["Pneumonia"], "any": ["Pneumonia", "No Finding"]}},
     r"data.table.conflict: labels.tsv:3 matches classes \['sick', 'any'\]"),
])
def test_table_mistakes_are_one_message_naming_the_field(tmp_path, table, message):
    root = small_table(tmp_path / "t", ROWS)
    base = {"file": "labels.tsv", "image": "file", "label": "finding", "patient": "pid"}
    with pytest.raises((DataError, ValueError), match=message):
        load_arrays(cfg(tmp_path, source="table", path=root, table={**base, **table}))


def test_missing_files_are_an_error_or_a_counted_warning(tmp_path):
    root = small_table(tmp_path / "t", ROWS)
    (root / "img" / "a3.png").unlink()
    table = {"file": "labels.tsv", "image": "file", "label": "finding", "patient": "pid"}
    with pytest.raises(DataError, match=r"1 image file\(s\) named in the table are not under .*\(Pneumonia: 1 of 12\)"
                                        r": labels.tsv:5: a3.png"):
        load_arrays(cfg(tmp_path, source="table", path=root, table=table))
    with pytest.warns(UserWarning, match=r"skipped 1 table rows with no image file \(Pneumonia: 1 of 12\)"):
        arrays = load_arrays(cfg(tmp_path, source="table", path=root, table=table, strict=False))
    assert arrays.class_counts().tolist() == [12, 11]


def test_a_patient_in_two_official_splits_is_an_error_naming_the_patient(tmp_path):
    rows = [*ROWS[:-1], ("a23.png", "Pneumonia", "p0", "test")]  # p0 also has train films
    root = small_table(tmp_path / "t", rows)
    c = cfg(tmp_path, source="table", path=root, table={"file": "labels.tsv", "image": "file", "label": "finding",
                                                         "patient": "pid", "split": "split"})
    with pytest.raises(DataError, match=r"1 patient\(s\) are in two official splits .* patient 'p0' in "
                                        r"\['test', 'train'\]"):
        split_indices(load_arrays(c), c)


def test_a_class_without_test_patients_is_an_error_naming_it(tmp_path):
    rows = [(f, "Pneumonia" if s == "train" and int(f[1:-4]) % 2 else "No Finding", p, s) for f, _, p, s in ROWS]
    root = small_table(tmp_path / "t", rows)
    c = cfg(tmp_path, source="table", path=root, table={"file": "labels.tsv", "image": "file", "label": "finding",
                                                         "patient": "pid", "split": "split"})
    with pytest.raises(DataError, match=r"the test split has no image of class\(es\) \['Pneumonia'\]"):
        split_indices(load_arrays(c), c)


def test_a_bare_file_name_matching_two_files_is_an_error(tmp_path):
    root = small_table(tmp_path / "t", ROWS)
    write_images(root / "copy", ["a1.png"])
    with pytest.raises(DataError, match=r"data.table.image: labels.tsv:3: a1.png matches 2 files"):
        load_arrays(cfg(tmp_path, source="table", path=root,
                        table={"file": "labels.tsv", "image": "file", "label": "finding", "patient": "pid"}))


def test_a_null_set_beside_a_preset_stays_null_in_the_trial_config():
    c = DataConfig(preset="chexpert", path="/data", val_from_train=None, table={"filter": {}})
    again = DataConfig.model_validate(c.model_dump(mode="json", exclude_none=True))
    assert again.val_from_train is None and again.table.filter == {}


def test_a_missing_file_is_not_replaced_by_another_of_the_same_name(tmp_path):
    root = tmp_path / "t"
    write_images(root, ["other/study1/view1.png", "p2/study1/view1.png"])
    pd.DataFrame({"Path": ["data/p1/study1/view1.png", "data/p2/study1/view1.png"], "y": ["a", "b"]}).to_csv(
        root / "labels.csv", index=False)
    with pytest.raises(DataError, match=r"1 image file\(s\) named in the table are not under .*labels.csv:2: "
                                        r"data/p1/study1/view1.png"):
        load_arrays(cfg(tmp_path, source="table", path=root, table={"file": "labels.csv", "image": "Path",
                                                                     "label": "y"}))


def test_split_lists_match_paths_bare_names_and_the_image_suffix(tmp_path):
    root = tmp_path / "t"
    ids = [f"id{i}" for i in range(24)]
    write_images(root / "imgs", [f"{i}.png" for i in ids])
    pd.DataFrame({"pid": ids, "y": ["a", "b"] * 12}).to_csv(root / "labels.csv", index=False)
    (root / "test.txt").write_text("\n".join(f"imgs/{i}.png" for i in ids[:8]) + "\n")  # paths
    (root / "train.txt").write_text("\n".join(f"{i}.png" for i in ids[8:]) + "\n")  # bare names
    c = cfg(tmp_path, source="table", path=root, table={
        "file": "labels.csv", "image": "pid", "image_suffix": ".png", "label": "y", "patient": "pid",
        "split_files": {"train": "train.txt", "test": "test.txt"}})
    arrays = load_arrays(c)
    assert len(arrays.labels) == 24 and "not in split_files" not in arrays.manifest["dropped"]
    assert {Path(f).stem for f in split_of(arrays, c)["test"]} == set(ids[:8])


def test_short_rows_read_as_blanks(tmp_path):
    root = tmp_path / "t"
    write_images(root, [f"x{i}.png" for i in range(12)])
    (root / "labels.csv").write_text("file,y,extra\n" + "".join(f"x{i}.png,{'ab'[i % 2]}\n" for i in range(12)))
    arrays = load_arrays(cfg(tmp_path, source="table", path=root, table={"file": "labels.csv", "image": "file",
                                                                          "label": "y"}))
    assert arrays.class_counts().tolist() == [6, 6]
