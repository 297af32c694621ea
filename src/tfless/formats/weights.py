"""Where a layer's weight arrays live in each file layout.

A weight source answers `layer_weights(ref)`: the arrays of one layer in Keras's
`layer.weights` order (trainable, then non-trainable), each with the name or path it was
stored under. Readers pick the source; the graph builder asks it once per layer.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Protocol

import h5py
import numpy as np

from ..errors import ModelFormatError, UnsafeModelError
from .limits import DEFAULT_LIMITS, Limits

NamedArrays = list[tuple[str, np.ndarray]]


@dataclass(frozen=True)
class LayerRef:
    """A layer's place: `names` are layer names from the top model down, `saved` the
    Keras 3 object-path names (class name in snake case, numbered per container)."""

    names: tuple[str, ...]
    saved: tuple[str, ...]
    children: tuple[str, ...] | None = None

    @property
    def label(self) -> str:
        return "/".join(self.names)


class WeightSource(Protocol):
    def layer_weights(self, ref: LayerRef) -> NamedArrays: ...


def decode_attr(value: Any) -> Any:
    return value.decode("utf8") if isinstance(value, bytes) else value


def read_chunked_attr(group: h5py.Group, name: str) -> list[str]:
    """A list attribute Keras may have split into name0, name1, ... (64 KiB header limit)."""
    if name in group.attrs:
        return [str(decode_attr(v)) for v in group.attrs[name]]
    out: list[str] = []
    i = 0
    while f"{name}{i}" in group.attrs:
        out.extend(str(decode_attr(v)) for v in group.attrs[f"{name}{i}"])
        i += 1
    return out


class ArrayReader:
    """Reads datasets after checking that what they declare is plausible."""

    def __init__(self, where: str, limits: Limits = DEFAULT_LIMITS) -> None:
        self.where = where
        self.limits = limits
        self.total = 0

    def read(self, ds: Any, label: str) -> np.ndarray:
        if not isinstance(ds, h5py.Dataset):
            raise ModelFormatError(f"{self.where}: weight '{label}' is not a dataset")
        nbytes = int(np.prod(ds.shape, dtype=np.int64)) * ds.dtype.itemsize
        self.total += nbytes
        self.limits.check_weight_bytes(self.total, self.where)
        if nbytes and ds.shape:
            stored = ds.id.get_storage_size()
            if ds.compression is None and stored < nbytes:
                raise ModelFormatError(
                    f"{self.where}: weight '{label}' declares shape {ds.shape} "
                    f"({nbytes} bytes) but only {stored} bytes are stored: the file is truncated "
                    "or corrupt"
                )
            if ds.compression is not None and nbytes > max(stored, 1) * 1000:
                raise UnsafeModelError(
                    f"{self.where}: weight '{label}' expands {stored} stored bytes to {nbytes}"
                )
        try:
            arr = np.asarray(ds[()])
        except OSError as exc:
            raise ModelFormatError(f"{self.where}: cannot read weight '{label}': {exc}") from exc
        if arr.dtype.kind == "f" and arr.dtype != np.float32:
            arr = arr.astype(np.float32)
        return arr


class LegacyH5Weights:
    """Keras 1/2 and Keras 3 `.h5` layout: one group per top-level layer, `weight_names`."""

    def __init__(self, group: h5py.Group, where: str, limits: Limits = DEFAULT_LIMITS) -> None:
        self.group = group
        self.where = where
        self.reader = ArrayReader(where, limits)
        # A nested model's group is read once, not once per inner layer (a 157-layer
        # MobileNet base took 40,000 dataset reads and counted its bytes 157 times against
        # the size limit).
        self._read: dict[str, NamedArrays] = {}

    def _group_arrays(self, layer: str) -> NamedArrays:
        if layer not in self._read:
            self._read[layer] = self._read_group(layer)
        return self._read[layer]

    def _read_group(self, layer: str) -> NamedArrays:
        if layer not in self.group:
            return []
        g = self.group[layer]
        names = read_chunked_attr(g, "weight_names")
        missing = [n for n in names if n not in g]
        if missing:
            raise ModelFormatError(
                f"{self.where}: layer '{layer}' lists weight '{missing[0]}' in its weight_names "
                "attribute, but the file holds no such dataset: the file is corrupt"
            )
        return [(n, self.reader.read(g[n], f"{layer}/{n}")) for n in names]

    def layer_weights(self, ref: LayerRef) -> NamedArrays:
        arrays = self._group_arrays(ref.names[0])
        if len(ref.names) == 1:
            return arrays
        # A nested model's group holds all of its layers' weights, trainable ones first;
        # the variable names carry the inner layer's name as a path component.
        leaf = ref.names[-1]
        picked = [(n, a) for n, a in arrays if leaf in _components(n)]
        return picked


def _components(weight_name: str) -> list[str]:
    parts = weight_name.split("/")
    return parts[:-1] if len(parts) > 1 else [re.sub(r"_[^_]+$", "", parts[0])]


def _name_key(name: str) -> str:
    return f"~{name}" if name.startswith("_") else name


class ObjectPathWeights:
    """The Keras 3 (and Keras 2.13-2.15) `.keras` layout: `layers/<class_snake>/vars/<i>`."""

    CONTAINERS = ("layers", "_layer_checkpoint_dependencies")

    def __init__(self, root: h5py.Group, where: str, limits: Limits = DEFAULT_LIMITS) -> None:
        self.root = root
        self.where = where
        self.reader = ArrayReader(where, limits)

    def _find(self, saved: tuple[str, ...]) -> h5py.Group | None:
        group: Any = self.root
        for part in saved:
            nxt = None
            for container in self.CONTAINERS:
                if container in group and part in group[container]:
                    nxt = group[container][part]
                    break
            if nxt is None and part in group and part != "vars":
                nxt = group[part]  # a wrapper's own attribute, e.g. TimeDistributed's `layer`
            if nxt is None:
                return None
            group = nxt
        return group

    def _flatten(self, group: h5py.Group, path: str, order: tuple[str, ...] | None,
                 out: NamedArrays) -> None:
        if "vars" in group:
            vars_group = group["vars"]
            for key in sorted(vars_group, key=int):
                out.append((f"{path}vars/{key}", self.reader.read(vars_group[key],
                                                                  f"{path}vars/{key}")))
        children = [k for k in group if k != "vars" and isinstance(group[k], h5py.Group)]
        # `order` lists sub-object paths ("forward_layer", or "layer/forward_layer" for a
        # wrapper inside a wrapper) in `layer.weights` order; the rest go by name.
        heads = list(dict.fromkeys(entry.split("/", 1)[0] for entry in order or ()))
        ranked = [c for c in heads if c in children]
        ranked += sorted((c for c in children if c not in ranked), key=_name_key)
        for child in ranked:
            deeper = tuple(e.split("/", 1)[1] for e in order or () if e.startswith(f"{child}/"))
            self._flatten(group[child], f"{path}{child}/", deeper or None, out)

    def layer_weights(self, ref: LayerRef) -> NamedArrays:
        group = self._find(ref.saved)
        if group is None:
            return []
        out: NamedArrays = []
        self._flatten(group, "", ref.children, out)
        return out


def open_weight_source(group: h5py.Group, where: str) -> WeightSource:
    """Pick the layout of a weights group by what it contains."""
    if "layer_names" in group.attrs or "layer_names0" in group.attrs:
        return LegacyH5Weights(group, where)
    if any(c in group for c in ObjectPathWeights.CONTAINERS) or "vars" in group:
        return ObjectPathWeights(group, where)
    raise ModelFormatError(f"{where}: HDF5 file holds no Keras weights (no layer_names, no layers/)")
