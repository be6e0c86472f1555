"""Presets for the public chest X-ray data sets, one module each; importing this package registers
them in :data:`trainables.data.config.PRESETS`. ``data.preset: <name>`` fills the source, the label
columns and mapping, the patient rule and the official split; anything set beside it wins
(``data.table`` key by key)."""
from . import (  # noqa: F401  (register the presets)
    chexpert,
    covid_radiography,
    covidx,
    nih_chestxray14,
    pneumonia_kaggle,
    rsna_pneumonia,
)
