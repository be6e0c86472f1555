"""Models by name (``MODELS``); importing this package registers every model module."""
from . import cifar_resnet, simple_cnn, torchvision_models  # noqa: F401  (register the models)
from .registry import (
           MODELS,
           ModelEntry,
           build_model,
           normalisation,
           register_model,
           stage_outputs,
           staged_models,
)

__all__ = ["MODELS", "ModelEntry", "build_model", "normalisation", "register_model", "stage_outputs",
           "staged_models"]
