"""RSNA Pneumonia Detection Challenge (Shih et al. 2019, Radiology: AI), stage 2: 26,684 DICOM films
(``stage_2_train_images/<patientId>.dcm``), one per patient; ``stage_2_detailed_class_info.csv``
gives each one of ``Normal``, ``No Lung Opacity / Not Normal``, ``Lung Opacity`` (one row per
opacity box, so repeated rows of one film are collapsed and counted). No official test labels:
split by patient. For the two-class task, point ``table`` at ``stage_2_train_labels.csv`` with
``label: Target``."""
from ..config import PRESETS

PRESETS.register("rsna_pneumonia")({
    "source": "table",
    "table": {
        "file": "stage_2_detailed_class_info.csv",
        "image": "patientId",
        "image_suffix": ".dcm",
        "label": "class",
        "target": {"normal": ["Normal"], "not_normal": ["No Lung Opacity / Not Normal"],
                   "opacity": ["Lung Opacity"]},
        "patient": "patientId",
    },
    "split": "random",
    "positive_class": "opacity",
    "normal_class": "normal",
})
