"""ONNX converters, one module per op family (mirroring `tfless/ops/`).

Importing this package fills `tfless.export.onnx.CONVERTERS`: the import list below is
the single list of converter families.
"""

from . import (  # noqa: F401
    activations,
    attention,
    convolutional,
    core,
    keras_numpy,
    merging,
    normalization,
    pooling,
    preprocessing,
    recurrent,
    reshaping,
    tflite,
    tflite_recurrent,
    tflite_shapes,
    tfop,
    tfop_keras,
)
