"""The unit of streamed scoring: rows read from one input file, with where they came from.

Every chunk reader (Parquet, CSV and arrays in `stream.py`, images in `images.py`) yields
`Chunk`s and the scoring loop consumes them; the type lives here so that the readers do not
import each other.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass
class Chunk:
    """Rows read from the input: `data` is a pyarrow Table/RecordBatch or a dict of arrays;
    `where` names the file (and row group/rows) for errors; `offset` is the first row's
    index within that file."""

    data: Any
    where: str
    offset: int
    rows: int
