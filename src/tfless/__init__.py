"""tfless: Keras models, deployed without TensorFlow."""

from .errors import (
    InputError,
    MissingExtra,
    ModelFormatError,
    TflessError,
    UnsafeModelError,
    UnsupportedLayer,
)
from .graph import Graph, TensorSpec
from .model import Model, load

__version__ = "0.1.0"


def __getattr__(name: str):
    # The exporters are loaded on first use so that `import tfless` stays cheap.
    if name == "export_onnx":
        from .export import export_onnx

        return export_onnx
    raise AttributeError(f"module 'tfless' has no attribute {name!r}")

__all__ = [
    "Graph", "InputError", "MissingExtra", "Model", "ModelFormatError", "TensorSpec",
    "TflessError", "UnsafeModelError", "UnsupportedLayer", "__version__", "export_onnx", "load",
]
