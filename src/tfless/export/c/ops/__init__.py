"""The C emitter families; importing this package registers every emitter."""

from . import conv, elementwise, linalg, loops, movement, pool, reduce, spatial, tensor  # noqa: F401
