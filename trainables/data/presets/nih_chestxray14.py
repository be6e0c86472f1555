"""NIH ChestX-ray14 (Wang et al. 2017, CVPR): 112,120 frontal films of 30,805 patients, labels mined
from reports in ``Data_Entry_2017.csv`` (or the 2020 revision ``Data_Entry_2017_v2020.csv``),
findings joined by ``|``, the official patient-wise ``train_val_list.txt`` / ``test_list.txt``.
Default task: pneumonia-like opacity (Pneumonia or Consolidation) against No Finding, PA films only;
films with other findings only, or with both, are left out and counted."""
from ..config import PRESETS

PRESETS.register("nih_chestxray14")({
    "source": "table",
    "table": {
        "file": "Data_Entry_2017*.csv*",
        "image": "Image Index",
        "labels_from": {"column": "Finding Labels", "sep": "|"},
        "target": {"pneumonia": ["Pneumonia", "Consolidation"], "normal": ["No Finding"]},
        "conflict": "drop",
        "patient": "Patient ID",
        "filter": {"View Position": ["PA"]},
        "split_files": {"train": "train_val_list.txt", "test": "test_list.txt"},
    },
    "split": "predefined",
    "val_from_train": 0.1,
    "positive_class": "pneumonia",
    "normal_class": "normal",
})
