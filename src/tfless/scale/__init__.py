"""Batch scoring over datasets: streaming files on one machine (`stream`), the column
mapping every engine shares (`columns`), and the Spark/Dask/Ray adapters (`engines`).

Nothing here imports pyarrow, Pillow or an engine until it is used, so `import tfless`
stays light; a missing extra gives a one-line `pip install 'tfless[...]'` error.
"""

from __future__ import annotations
