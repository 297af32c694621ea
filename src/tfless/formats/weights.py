"""Where a layer's weight arrays live in each file layout.

A weight source answers `layer_weights(ref)`: the arrays of one layer in Keras's
`layer.weights` order (trainable, then non-trainable), each with the name or path it was
stored under. Readers pick the source; the graph builder asks it once per layer.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
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


# What h5py raises when the HDF5 structures it walks are damaged: OSError/RuntimeError from
# the C library, KeyError from a lookup of a corrupt object, ValueError for an unreadable
# selection or attribute. Only h5py calls are wrapped with it, so bugs in tfless still show.
H5_ERRORS = (OSError, RuntimeError, KeyError, ValueError)
# How deep and how many objects a weights tree may hold: hard links can form cycles and
# exponentially branching DAGs, which a plain recursive walk would never finish.
MAX_H5_DEPTH = 64
MAX_H5_OBJECTS = 200_000


@contextmanager
def h5_reading(where: str, what: str) -> Iterator[None]:
    """Turns h5py's errors about damaged structures into ModelFormatError naming `what`."""
    try:
        yield
    except H5_ERRORS as exc:
        raise ModelFormatError(f"{where}: cannot read {what}: the HDF5 data is damaged "
                               f"({type(exc).__name__}: {exc})") from exc


def decode_attr(value: Any, where: str = "") -> Any:
    if isinstance(value, bytes):
        try:
            return value.decode("utf8")
        except UnicodeDecodeError as exc:
            prefix = f"{where}: " if where else ""
            raise ModelFormatError(f"{prefix}attribute text is not UTF-8: {exc}") from exc
    return value


def get_attr(obj: Any, name: str, where: str) -> Any:
    """An attribute of an HDF5 object (None when absent), damaged storage reported."""
    with h5_reading(where, f"attribute '{name}' of '{obj.name}'"):
        return obj.attrs.get(name)


def text_attr(obj: Any, name: str, where: str) -> str | None:
    """A string attribute (keras_version, backend, model_config): None when absent."""
    value = decode_attr(get_attr(obj, name, where), where)
    if value is None or isinstance(value, str):
        return value
    raise ModelFormatError(f"{where}: attribute '{name}' of '{obj.name}' should be text, got "
                           f"{type(value).__name__}")


def has_attr(obj: Any, name: str, where: str) -> bool:
    with h5_reading(where, f"attributes of '{obj.name}'"):
        return name in obj.attrs


def read_chunked_attr(group: h5py.Group, name: str, where: str = "") -> list[str]:
    """A list attribute Keras may have split into name0, name1, ... (64 KiB header limit)."""
    def strings(key: str) -> list[str]:
        value = get_attr(group, key, where)
        # h5py gives an empty list back as an empty float64 array
        if not isinstance(value, np.ndarray) or value.ndim != 1 or \
                (value.size and value.dtype.kind not in "OSU"):
            raise ModelFormatError(
                f"{where}: attribute '{key}' of '{group.name}' should be a list of names, got "
                f"{type(value).__name__} {getattr(value, 'dtype', '')}".rstrip())
        out = [decode_attr(v, where) for v in value]
        if not all(isinstance(v, str) for v in out):
            raise ModelFormatError(f"{where}: attribute '{key}' of '{group.name}' holds "
                                   "non-text entries")
        return out

    if has_attr(group, name, where):
        return strings(name)
    out: list[str] = []
    i = 0
    while has_attr(group, f"{name}{i}", where):
        out.extend(strings(f"{name}{i}"))
        i += 1
    return out


def check_self_contained(group: h5py.Group, where: str) -> None:
    """Refuse a weights tree that reaches outside itself or its file: soft links (which
    may name any object), external links (another file), virtual datasets (data mapped
    from other files) and datasets whose raw data lives in external files. Also checks,
    once and up front, that every group and dataset header in the tree can be read."""
    seen = 0

    def walk(g: h5py.Group, depth: int) -> None:
        nonlocal seen
        if depth > MAX_H5_DEPTH:
            raise ModelFormatError(f"{where}: group '{g.name}' is nested more than "
                                   f"{MAX_H5_DEPTH} levels deep (a cycle of hard links?)")
        with h5_reading(where, f"group '{g.name}'"):
            names = list(g)
        for name in names:
            seen += 1
            if seen > MAX_H5_OBJECTS:
                raise ModelFormatError(f"{where}: more than {MAX_H5_OBJECTS} HDF5 objects in "
                                       "the weights (a cycle of hard links?)")
            path = f"{g.name.rstrip('/')}/{name}"
            with h5_reading(where, f"link '{path}'"):
                link = g.get(name, getlink=True)
            if isinstance(link, h5py.SoftLink):
                raise UnsafeModelError(
                    f"{where}: '{path}' is an HDF5 soft link to '{link.path}'; tfless reads "
                    "weights only from objects stored in place, refusing the file")
            if isinstance(link, h5py.ExternalLink):
                raise UnsafeModelError(
                    f"{where}: '{path}' is an HDF5 external link to '{link.path}' in file "
                    f"'{link.filename}'; a model file must never read another file, refusing it")
            if not isinstance(link, h5py.HardLink):
                raise UnsafeModelError(f"{where}: '{path}' is an HDF5 link of an unknown kind "
                                       f"({type(link).__name__}), refusing the file")
            with h5_reading(where, f"object '{path}'"):
                obj = g[name]
                virtual = isinstance(obj, h5py.Dataset) and obj.is_virtual
                external = isinstance(obj, h5py.Dataset) and obj.external
            if virtual:
                raise UnsafeModelError(
                    f"{where}: '{path}' is an HDF5 virtual dataset (its data is mapped from "
                    "other datasets or files); a model file must never read another file, "
                    "refusing it")
            if external:
                raise UnsafeModelError(
                    f"{where}: dataset '{path}' keeps its data in external file(s) "
                    f"{[str(e[0]) for e in external]}; a model file must never read another "
                    "file, refusing it")
            if isinstance(obj, h5py.Group):
                walk(obj, depth + 1)

    walk(group, 0)


class ArrayReader:
    """Reads datasets after checking that what they declare is plausible."""

    def __init__(self, where: str, limits: Limits = DEFAULT_LIMITS) -> None:
        self.where = where
        self.limits = limits
        self.total = 0

    def read(self, ds: Any, label: str) -> np.ndarray:
        if not isinstance(ds, h5py.Dataset):
            raise ModelFormatError(f"{self.where}: weight '{label}' is not a dataset")
        with h5_reading(self.where, f"weight '{label}'"):
            shape, dtype, compression = ds.shape, ds.dtype, ds.compression
            stored = ds.id.get_storage_size()
        if shape is None or dtype.kind not in "biuf" or dtype.subdtype is not None:
            raise ModelFormatError(
                f"{self.where}: weight '{label}' holds {dtype} data of shape {shape}; weights "
                "are arrays of numbers")
        nbytes = int(np.prod(shape, dtype=np.float64)) * dtype.itemsize
        self.total += nbytes
        self.limits.check_weight_bytes(self.total, self.where)
        if nbytes and shape:
            if compression is None and stored < nbytes:
                raise ModelFormatError(
                    f"{self.where}: weight '{label}' declares shape {shape} "
                    f"({nbytes} bytes) but only {stored} bytes are stored: the file is truncated "
                    "or corrupt"
                )
            if compression is not None and nbytes > max(stored, 1) * 1000:
                raise UnsafeModelError(
                    f"{self.where}: weight '{label}' expands {stored} stored bytes to {nbytes}"
                )
        with h5_reading(self.where, f"the data of weight '{label}'"):
            arr = np.asarray(ds[()])
        if arr.dtype.kind == "f" and arr.dtype != np.float32:
            arr = arr.astype(np.float32)
        return arr


class LegacyH5Weights:
    """Keras 1/2 and Keras 3 `.h5` layout: one group per top-level layer, `weight_names`."""

    def __init__(self, group: h5py.Group, where: str, limits: Limits = DEFAULT_LIMITS) -> None:
        check_self_contained(group, where)
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
        with h5_reading(self.where, f"the weights group of layer '{layer}'"):
            if layer not in self.group:
                return []
            g = self.group[layer]
        if not isinstance(g, h5py.Group):
            raise ModelFormatError(f"{self.where}: '{g.name}' should be the weights group of "
                                   f"layer '{layer}' but is a {type(g).__name__}")
        names = read_chunked_attr(g, "weight_names", self.where)
        with h5_reading(self.where, f"the weights of layer '{layer}'"):
            missing = [n for n in names if n not in g]
        if missing:
            raise ModelFormatError(
                f"{self.where}: layer '{layer}' lists weight '{missing[0]}' in its weight_names "
                "attribute, but the file holds no such dataset: the file is corrupt"
            )
        out: NamedArrays = []
        for n in names:
            with h5_reading(self.where, f"weight '{layer}/{n}'"):
                ds = g[n]
            out.append((n, self.reader.read(ds, f"{layer}/{n}")))
        return out

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

    # Variables a layer's save_own_variables() stores by name rather than by number; they
    # are layer state handed to the config (see layer_state), not positional weights.
    NAMED_STATE = ("idf_weights",)

    def __init__(self, root: h5py.Group, where: str, limits: Limits = DEFAULT_LIMITS,
                 assets: dict[tuple[str, ...], dict[str, bytes]] | None = None) -> None:
        check_self_contained(root, where)
        self.root = root
        self.where = where
        self.reader = ArrayReader(where, limits)
        self.assets = assets or {}

    def _find(self, saved: tuple[str, ...]) -> h5py.Group | None:
        with h5_reading(self.where, f"the weights of '{'/'.join(saved)}'"):
            return self._find_group(saved)

    def _find_group(self, saved: tuple[str, ...]) -> h5py.Group | None:
        group: Any = self.root
        for part in saved:
            nxt = None
            for container in self.CONTAINERS:
                if container in group and part in group[container]:
                    nxt = group[container][part]
                    break
            if nxt is None and part in group and part != "vars":
                nxt = group[part]  # a wrapper's own attribute, e.g. TimeDistributed's `layer`
            if not isinstance(nxt, h5py.Group):
                return None
            group = nxt
        return group

    def _flatten(self, group: h5py.Group, path: str, order: tuple[str, ...] | None,
                 out: NamedArrays) -> None:
        with h5_reading(self.where, f"group '{group.name}'"):
            vars_group = group["vars"] if "vars" in group else None
            keys = list(vars_group) if isinstance(vars_group, h5py.Group) else []
            children = [k for k in group if k != "vars" and isinstance(group[k], h5py.Group)]
        if vars_group is not None and not isinstance(vars_group, h5py.Group):
            raise ModelFormatError(f"{self.where}: '{group.name}/vars' should be a group of "
                                   "weights but is a dataset")
        keys = [k for k in keys if k not in self.NAMED_STATE]
        bad = [k for k in keys if not (k.isascii() and k.isdigit())]
        if bad:
            raise ModelFormatError(
                f"{self.where}: '{group.name}/vars' holds '{bad[0]}'; Keras numbers a layer's "
                "weights 0, 1, 2, ...")
        for key in sorted(keys, key=int):
            with h5_reading(self.where, f"weight '{path}vars/{key}'"):
                ds = vars_group[key]
            out.append((f"{path}vars/{key}", self.reader.read(ds, f"{path}vars/{key}")))
        # `order` lists sub-object paths ("forward_layer", or "layer/forward_layer" for a
        # wrapper inside a wrapper) in `layer.weights` order; the rest go by name.
        heads = list(dict.fromkeys(entry.split("/", 1)[0] for entry in order or ()))
        ranked = [c for c in heads if c in children]
        ranked += sorted((c for c in children if c not in ranked), key=_name_key)
        for child in ranked:
            deeper = tuple(e.split("/", 1)[1] for e in order or () if e.startswith(f"{child}/"))
            with h5_reading(self.where, f"group '{group.name}/{child}'"):
                sub = group[child]
            self._flatten(sub, f"{path}{child}/", deeper or None, out)

    def layer_weights(self, ref: LayerRef) -> NamedArrays:
        group = self._find(ref.saved)
        if group is None:
            return []
        out: NamedArrays = []
        self._flatten(group, "", ref.children, out)
        return out

    def layer_state(self, saved: tuple[str, ...]) -> dict[str, Any]:
        """Config entries a layer keeps outside its config: a vocabulary learned with
        adapt() (Keras writes it as the asset `vocabulary.txt`, special tokens first) and
        named variables such as a tf_idf layer's full `idf_weights`."""
        state: dict[str, Any] = {}
        text = self.assets.get(saved, {}).get("vocabulary.txt")
        if text is not None:
            try:
                lines = text.decode("utf8").splitlines()
            except UnicodeDecodeError as exc:
                raise ModelFormatError(f"{self.where}: the vocabulary asset of "
                                       f"'{'/'.join(saved)}' is not UTF-8: {exc}") from exc
            while lines and lines[-1] == "":  # Keras drops trailing empty lines on load
                lines.pop()
            state["vocabulary"] = lines
        group = self._find(saved)
        with h5_reading(self.where, f"the weights of '{'/'.join(saved)}'"):
            vars_group = group["vars"] if group is not None and "vars" in group else None
            named = [k for k in self.NAMED_STATE
                     if isinstance(vars_group, h5py.Group) and k in vars_group]
        for key in named:
            label = f"{'/'.join(saved)}/vars/{key}"
            with h5_reading(self.where, f"weight '{label}'"):
                ds = vars_group[key]  # type: ignore[index]
            state[f"saved_{key}"] = self.reader.read(ds, label).tolist()
        return state


def open_weight_source(group: h5py.Group, where: str) -> WeightSource:
    """Pick the layout of a weights group by what it contains."""
    if has_attr(group, "layer_names", where) or has_attr(group, "layer_names0", where):
        return LegacyH5Weights(group, where)
    with h5_reading(where, f"group '{group.name}'"):
        object_paths = any(c in group for c in ObjectPathWeights.CONTAINERS) or "vars" in group
    if object_paths:
        return ObjectPathWeights(group, where)
    raise ModelFormatError(f"{where}: HDF5 file holds no Keras weights (no layer_names, no layers/)")
