"""Models by name (``MODELS``); importing this package registers every model module."""
from . import cifar_resnet, simple_cnn, torchvision_models  # noqa: F401  (register the models)
from .registry import (
           MODELS,
           ModelEntry,
           ModelOptions,
           build_model,
           check_model_options,
           head,
           head_name,
           normalisation,
           register_model,
           stage_outputs,
           staged_models,
)

__all__ = ["MODELS", "ModelEntry", "ModelOptions", "build_model", "check_model_options", "head", "head_name", "normalisation", "register_model", "stage_outputs",
           "staged_models"]
