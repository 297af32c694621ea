"""Raw TensorFlow op kernels, registered as `tf.<OpName>`: what TF graph models (SavedModel
signatures, frozen GraphDefs) run. Importing this package registers every family below.
"""

from . import array, control, image, lists, math, nn  # noqa: F401
from .common import TfNode, tf_kernel

__all__ = ["TfNode", "tf_kernel", "tf_op_names"]


def tf_op_names() -> list[str]:
    """The TF op types tfless has kernels for (registry entries `tf.<Op>`), sorted."""
    from ..registry import REGISTRY

    return sorted(name[3:] for name in REGISTRY if name.startswith("tf."))
