"""Chest X-Ray Images (Pneumonia) (Kermany et al. 2018, Cell): ``chest_xray/{train,val,test}/
{NORMAL,PNEUMONIA}/``, 5,856 paediatric films; the patient is in the file name (``person123_bacteria_456``,
``IM-0115-0001``, ``NORMAL2-IM-1427-0001``). The official validation folder holds 16 images, so
validation is carved from train by patient (``val_from_train``)."""
from ..config import PRESETS

PRESETS.register("pneumonia_kaggle")({
    "source": "imagefolder",
    "patient_regex": r"^(person\d+|(?:NORMAL2-)?IM-\d+)",
    "split": "predefined",
    "val_from_train": 0.15,
    "positive_class": "PNEUMONIA",
    "normal_class": "NORMAL",
})
