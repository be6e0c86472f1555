"""CheXpert (Irvin et al. 2019, AAAI): 224,316 films of 65,240 patients, ``train.csv`` and the
radiologist-labelled ``valid.csv`` (used here as the test split), 14 observations per row as 1, 0,
blank or -1 (uncertain); the patient is ``patientNNNNN`` in the path. Default task: Pneumonia against
No Finding on frontal films, the uncertainty policy a knob (``table.uncertain``: ``ignore`` is
U-Ignore, ``positive`` U-Ones, ``negative`` U-Zeros)."""
from ..config import PRESETS

OBSERVATIONS = ["No Finding", "Enlarged Cardiomediastinum", "Cardiomegaly", "Lung Opacity", "Lung Lesion",
                "Edema", "Consolidation", "Pneumonia", "Atelectasis", "Pneumothorax", "Pleural Effusion",
                "Pleural Other", "Fracture", "Support Devices"]

PRESETS.register("chexpert")({
    "source": "table",
    "table": {
        "split_files": {"train": "train.csv", "test": "valid.csv"},
        "image": "Path",
        "label_columns": OBSERVATIONS,
        "target": {"pneumonia": ["Pneumonia"], "normal": ["No Finding"]},
        "conflict": "drop",
        "uncertain": "ignore",
        "filter": {"Frontal/Lateral": ["Frontal"]},
    },
    "patient_regex": r"(patient\d+)",
    "split": "predefined",
    "val_from_train": 0.1,
    "positive_class": "pneumonia",
    "normal_class": "normal",
})
