"""COVIDx CXR-3/CXR-4 (Wang et al. 2020, Sci. Rep.; Wu et al. 2023): ``train.txt``, ``val.txt`` and
``test.txt`` (``patient_id filename label source``) next to ``train/``, ``val/`` and ``test/``
folders, labels ``positive``/``negative``; the test file is the test split."""
from ..config import PRESETS

PRESETS.register("covidx")({
    "source": "covidx",
    "split": "predefined",
    "positive_class": "positive",
    "normal_class": "negative",
})
