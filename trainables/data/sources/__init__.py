"""Data sources by name, one module each; importing this package registers them all in
:data:`trainables.data.config.SOURCES`."""
from . import covidx, imagefolder, medmnist, synthetic, table  # noqa: F401  (register the sources)
from .base import FileTable, Source

__all__ = ["FileTable", "Source"]
