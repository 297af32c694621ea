"""The tfless exception hierarchy: every user-facing failure is a TflessError subclass."""

from __future__ import annotations


class TflessError(Exception):
    """Base class of every error tfless raises on purpose."""


class ModelFormatError(TflessError):
    """The file is missing, corrupt, not a model, or uses a layout tfless cannot read."""


class UnsupportedLayer(TflessError):
    """The model uses a layer (or a layer option) the runtime does not implement."""


class UnsafeModelError(TflessError):
    """The file asks for something tfless refuses to do (run code, allocate absurd memory)."""


class InputError(TflessError):
    """Inputs given to predict do not match the model (count, name, shape or dtype)."""


class MissingExtra(TflessError):
    """An optional dependency is not installed."""

    def __init__(self, package: str, extra: str, purpose: str) -> None:
        super().__init__(
            f"{purpose} needs the '{package}' package, which is not installed: "
            f"pip install 'tfless[{extra}]'"
        )
