"""Raw TensorFlow op kernels, registered as `tf.<OpName>`: what TF graph models (SavedModel
signatures, frozen GraphDefs) run. Importing this package registers every family below.
"""

from . import (  # noqa: F401
    array,
    control,
    image,
    indexing,
    linalg,
    lists,
    math,
    nn,
    quantization,
)
from .common import TfNode, tf_kernel

__all__ = ["TfNode", "tf_kernel", "tf_op_names"]


FAMILY_ORDER = ("math", "nn", "array", "indexing", "linalg", "image", "quantization", "lists",
                "control")


def tf_op_names() -> list[str]:
    """The TF op types tfless has kernels for (registry entries `tf.<Op>`), sorted."""
    from ...registry import REGISTRY

    return sorted(name[3:] for name in REGISTRY if name.startswith("tf."))


def op_list_markdown() -> str:
    """The supported-op list of docs/formats.md (between its tf-ops markers), by family."""
    from ...registry import REGISTRY

    families: dict[str, list[str]] = {}
    for name in tf_op_names():
        families.setdefault(REGISTRY[f"tf.{name}"].family, []).append(name)
    order = [f for f in FAMILY_ORDER if f in families] + sorted(set(families) - set(FAMILY_ORDER))
    return "\n".join(f"- **{f}** ({len(families[f])}): " + ", ".join(f"`{n}`" for n in families[f])
                     for f in order)
