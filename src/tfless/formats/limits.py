"""Bounds that keep hostile or broken files from exhausting memory before we notice."""

from __future__ import annotations

import os
from dataclasses import dataclass

from ..errors import UnsafeModelError


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    return int(value) if value and value.isdigit() else default


@dataclass(frozen=True)
class Limits:
    """max_weight_bytes: total bytes of weights a model may declare.
    max_config_bytes: size of the JSON config.
    max_zip_ratio: largest uncompressed/compressed ratio accepted for a zip member."""

    max_weight_bytes: int = _env_int("TFLESS_MAX_WEIGHT_BYTES", 8 * 1024**3)
    max_config_bytes: int = _env_int("TFLESS_MAX_CONFIG_BYTES", 256 * 1024**2)
    max_zip_ratio: int = 200

    def check_weight_bytes(self, total: int, where: str) -> None:
        if total > self.max_weight_bytes:
            raise UnsafeModelError(
                f"{where}: weights declare {total / 1024**3:.1f} GiB, more than the limit of "
                f"{self.max_weight_bytes / 1024**3:.1f} GiB (set TFLESS_MAX_WEIGHT_BYTES to raise it)"
            )


DEFAULT_LIMITS = Limits()
