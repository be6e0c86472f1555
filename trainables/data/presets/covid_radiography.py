"""COVID-19 Radiography Database (Chowdhury et al. 2020, IEEE Access; Rahman et al. 2021):
``<class>/images/`` (and ``<class>/masks/``, skipped) for COVID, Lung_Opacity, Normal and Viral
Pneumonia, file names ``<class>-<n>.png`` without patient ids: split at random by image."""
from ..config import PRESETS

PRESETS.register("covid_radiography")({
    "source": "imagefolder",
    "split": "random",
    "positive_class": "COVID",
    "normal_class": "Normal",
})
