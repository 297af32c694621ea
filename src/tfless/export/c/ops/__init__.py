"""The C emitter families; importing this package registers every emitter."""

from ..emit import EMITTERS, Emitter
from . import conv, elementwise, linalg, loops, movement, pool, reduce, spatial, tensor  # noqa: F401


def load_emitters() -> dict[str, Emitter]:
    """Every C emitter (importing this package registered them)."""
    return EMITTERS
