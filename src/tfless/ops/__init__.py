"""Op families, one module each, named after Keras's layer folders.

Importing this package fills the registry: the import list below is the single list
of families.
"""

from ..registry import REGISTRY, OpSpec, get_op, register, supported_ops
from . import (  # noqa: F401
    activations,
    applications,
    attention,
    categorical,
    convolutional,
    core,
    extra_layers,
    keras_nn,
    keras_numpy,
    merging,
    normalization,
    pooling,
    preprocessing,
    recurrent,
    reshaping,
    tf,
    tflite,
    tflite_quant,
    tflite_quant_ops,
    tflite_recurrent,
    tflite_shapes,
    tfop,
    tfop_keras,
)

__all__ = ["REGISTRY", "OpSpec", "get_op", "register", "supported_ops"]
