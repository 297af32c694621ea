"""tfless: Keras models, deployed without TensorFlow."""

from .errors import (
    InputError,
    MissingExtra,
    ModelFormatError,
    TflessError,
    UnsafeModelError,
    UnsupportedLayer,
)
from .export import export_onnx
from .graph import Graph, TensorSpec
from .model import Model, load

__version__ = "0.1.0"

__all__ = [
    "Graph", "InputError", "MissingExtra", "Model", "ModelFormatError", "TensorSpec",
    "TflessError", "UnsafeModelError", "UnsupportedLayer", "__version__", "export_onnx", "load",
]
