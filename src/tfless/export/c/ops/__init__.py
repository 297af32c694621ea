"""The C emitter families; importing this package registers every emitter."""

from . import elementwise, linalg, loops, movement, reduce, tensor  # noqa: F401
