"""Raw TensorFlow op kernels, registered as `tf.<OpName>`: what TF graph models (SavedModel
signatures, frozen GraphDefs) run. Importing this package registers every family below.
"""

from . import array, control, lists, math, nn  # noqa: F401
from .common import TfNode, tf_kernel

__all__ = ["TfNode", "tf_kernel"]
