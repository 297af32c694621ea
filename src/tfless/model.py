"""The public Model: load a file once, then predict like Keras does."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .errors import InputError, TflessError
from .formats import read_graph
from .graph import Graph, Shape, TensorSpec
from .optimize import optimize_graph
from .runtime.plan import Plan

PROBE_SIZES = (8, 9)


class Model:
    """A loaded model. Use `tfless.load` to make one."""

    def __init__(self, graph: Graph, optimize: bool | Sequence[str] = True,
                 reread: Callable[[], Graph] | None = None, backend: str = "numpy") -> None:
        # With `reread` (how to read the file again) the passes may fold weights into the
        # reader's arrays and the unoptimized graph is read again when asked for, so the
        # weights are never held twice (ResNet50: 159 MB instead of 256 MB).
        self.graph = optimize_graph(graph, optimize, in_place=reread is not None)
        self._reread = reread
        self._source_graph = None if reread is not None and self.graph is not graph else graph
        # the NumPy plan also serves the other backends: shape probes and export test vectors
        self.numpy_plan = Plan(self.graph)
        self.backend = backend
        self.plan = self.numpy_plan
        if backend != "numpy":
            from .backends import backend_plan  # ONNX Runtime loads only when asked for

            self.plan = backend_plan(backend, self.graph, self.numpy_plan)
        self._output_specs: list[TensorSpec] | None = None

    @property
    def source_graph(self) -> Graph:
        """The reader's graph before the passes (what summary, verify and bundles describe);
        read from the file again each time if the passes consumed it."""
        if self._source_graph is not None:
            return self._source_graph
        assert self._reread is not None
        return self._reread()

    # ----- description ---------------------------------------------------------------
    @property
    def inputs(self) -> list[TensorSpec]:
        return list(self.graph.inputs)

    @property
    def outputs(self) -> list[TensorSpec]:
        if self._output_specs is None:
            shapes = self._probe_shapes(self.graph.output_ids)
            self._output_specs = [
                TensorSpec(name, shapes.get(tid, (None,)), self._dtype_of(tid))
                for name, tid in zip(self.graph.output_names, self.graph.output_ids)
            ]
        return list(self._output_specs)

    @property
    def meta(self) -> dict[str, Any]:
        return dict(self.graph.meta)

    def _dtype_of(self, tid: str) -> str:
        # TF graph readers know each output's dtype (a signature may return ints)
        return (self.graph.meta.get("output_dtypes") or {}).get(tid, "float32")

    def _probe_inputs(self, size: int) -> list[np.ndarray]:
        arrays = []
        for spec in self.graph.inputs:
            shape = (1,) + tuple(size if d is None else d for d in spec.shape[1:])
            arrays.append(np.full(shape, "", dtype=object) if spec.dtype == "string"
                          else np.zeros(shape, dtype=spec.dtype))
        return arrays

    def _probe_shapes(self, tensor_ids: Sequence[str] | None = None,
                      source: Graph | None = None) -> dict[str, Shape]:
        """Shapes of tensors found by running batch-1 probes; axes that follow a free
        input dimension come out as None."""
        plan = Plan(source or self.source_graph) if tensor_ids is None else self.plan
        traces = []
        for size in PROBE_SIZES:
            traces.append(plan.trace(self._probe_inputs(size)))
            if not any(None in s.shape[1:] for s in self.graph.inputs):
                break
        wanted = tensor_ids if tensor_ids is not None else list(traces[0])
        shapes: dict[str, Shape] = {}
        for tid in wanted:
            first = traces[0].get(tid)
            if first is None or not hasattr(first, "shape"):
                continue
            dims: list[int | None] = [None]
            for axis, d in enumerate(first.shape[1:], start=1):
                same = all(getattr(t.get(tid), "shape", ())[axis:axis + 1] == (d,)
                           for t in traces[1:])
                dims.append(int(d) if same else None)
            shapes[tid] = tuple(dims)
        return shapes

    def summary(self) -> str:
        """A Keras-like table of layers, output shapes and parameter counts."""
        source = self.source_graph
        shapes = self._probe_shapes(None, source)
        rows = [("Layer (type)", "Output shape", "Param #")]
        for node in source.nodes:
            shape = ", ".join(str(shapes.get(t, "?")) for t in node.outputs)
            rows.append((f"{node.name} ({node.op})", shape, f"{node.param_count():,}"))
        widths = [max(len(r[i]) for r in rows) for i in range(3)]
        version = self.meta.get("keras_version")
        written = f", Keras {version}" if version else ""
        lines = [f"Model: {Path(str(self.meta.get('source', ''))).name} "
                 f"(format {self.meta.get('format')}{written})"]
        line = "-" * (sum(widths) + 4)
        for i, r in enumerate(rows):
            lines.append(f"{r[0]:<{widths[0]}}  {r[1]:<{widths[1]}}  {r[2]:>{widths[2]}}")
            if i == 0:
                lines.append(line)
        lines.append(line)
        lines.append(f"Total params: {source.param_count():,}")
        return "\n".join(lines)

    # ----- prediction ----------------------------------------------------------------
    def _arrange(self, x: Any) -> list[np.ndarray]:
        specs = self.graph.inputs
        x = _by_input_name(self.graph.meta.get("input_structure"), x, specs)
        if isinstance(x, Mapping):
            missing = [s.name for s in specs if s.name not in x]
            extra = [k for k in x if k not in {s.name for s in specs}]
            if missing or extra:
                raise InputError(
                    f"inputs by name: missing {missing or 'none'}, unknown {extra or 'none'}; "
                    f"the model's inputs are {[s.name for s in specs]}"
                )
            items = [x[s.name] for s in specs]
        elif isinstance(x, (list, tuple)) and len(specs) > 1:
            items = list(x)
        elif isinstance(x, (list, tuple)) and x and all(isinstance(v, np.ndarray) for v in x):
            items = list(x)
        else:
            items = [x]
        if len(items) != len(specs):
            raise InputError(
                f"the model takes {len(specs)} inputs ({', '.join(s.name for s in specs)}), "
                f"got {len(items)}"
            )
        arrays = [self._check_input(spec, item) for spec, item in zip(specs, items)]
        batches = {a.shape[0] for a in arrays}
        if len(batches) > 1:
            raise InputError(f"all inputs must have the same batch size, got {sorted(batches)}")
        return arrays

    @staticmethod
    def _check_input(spec: TensorSpec, item: Any) -> np.ndarray:
        try:
            arr = np.asarray(item)
        except (ValueError, TypeError) as exc:
            raise InputError(f"input '{spec.name}': cannot be read as an array: {exc}") from exc
        if spec.dtype == "string":
            arr = _string_array(spec, arr)
        elif arr.dtype.kind not in "biuf":
            raise InputError(
                f"input '{spec.name}': expected numbers ({spec.dtype}), got dtype {arr.dtype}"
            )
        if arr.ndim != len(spec.shape):
            raise InputError(
                f"input '{spec.name}': expected shape {_fmt(spec.shape)} "
                f"(rank {len(spec.shape)}), got {arr.shape}"
            )
        for axis, (want, got) in enumerate(zip(spec.shape, arr.shape)):
            if axis and want is not None and want != got:
                raise InputError(
                    f"input '{spec.name}': expected shape {_fmt(spec.shape)}, got {arr.shape} "
                    f"(axis {axis} must be {want})"
                )
        if spec.dtype == "string":
            return arr
        dtype = np.dtype(spec.dtype) if spec.dtype in np.sctypeDict else np.dtype(np.float32)
        # NaN/inf flow through as in Keras: no per-call scan of the input
        return np.ascontiguousarray(arr, dtype=dtype)

    def predict(self, x: Any, batch_size: int | None = None, structured: bool = True) -> Any:
        """Outputs for `x` (array, list of arrays, or dict by input name or by the model's
        input keys), in the structure Keras's predict returns: one array for a
        single-output model, a list for a list of outputs, and the dict or nested lists a
        model's outputs were given as. `structured=False` always gives one array or a flat
        list in Keras's flattening order (`outputs`), which is what tools iterating over
        outputs want."""
        arrays = self._arrange(x)
        if batch_size is not None and (not isinstance(batch_size, int) or batch_size < 1):
            raise InputError(f"batch_size must be a positive integer, got {batch_size!r}")
        n = arrays[0].shape[0]
        if n == 0:
            outs = self.plan.run([np.zeros((1, *a.shape[1:]), a.dtype) for a in arrays])
            outs = [o[:0] for o in outs]
        elif batch_size is None or batch_size >= n:
            outs = self.plan.run(arrays)
        else:
            parts = [self.plan.run([a[i:i + batch_size] for a in arrays])
                     for i in range(0, n, batch_size)]
            outs = [np.concatenate([p[k] for p in parts]) for k in range(len(parts[0]))]
        outs = [np.asarray(o) for o in outs]
        structure = self.graph.meta.get("output_structure")
        if structured and structure is not None:
            return _nest(structure, outs)
        return outs[0] if len(outs) == 1 else outs

    def save_keras(self, path: str | Path) -> Any:
        """Write this model (read from a Keras format) as a Keras 3 `.keras` file; returns
        the report of what was translated (see tfless.export.keras)."""
        from .export.keras import save_keras

        return save_keras(self, path)

    def __call__(self, x: Any) -> Any:
        return self.predict(x)

    def __repr__(self) -> str:
        ins = ", ".join(f"{s.name}{_fmt(s.shape)}" for s in self.inputs)
        backend = "" if self.backend == "numpy" else f" backend: {self.backend}"
        return f"<tfless.Model {self.meta.get('source', '')} inputs: {ins}{backend}>"


def _nest(template: Any, flat: list[np.ndarray]) -> Any:
    """Keras's output structure: `template` holds flat output indexes in dicts/lists."""
    if isinstance(template, dict):
        return {k: _nest(v, flat) for k, v in template.items()}
    if isinstance(template, list):
        return [_nest(v, flat) for v in template]
    return flat[template]


def _by_input_name(template: Any, x: Any, specs: Sequence[TensorSpec]) -> Any:
    """Inputs given in the structure the model was built with (a dict keyed like the
    model's input dict, or nested lists) as a dict by input name."""
    if template is None or isinstance(template, int):
        return x
    picked: dict[str, Any] = {}

    def walk(t: Any, v: Any) -> bool:
        if isinstance(t, int):
            picked[specs[t].name] = v
            return True
        if isinstance(t, dict):
            return isinstance(v, Mapping) and set(v) == set(t) and all(walk(t[k], v[k]) for k in t)
        return isinstance(v, (list, tuple)) and len(v) == len(t) and all(map(walk, t, v))

    return picked if walk(template, x) else x


def _fmt(shape: Shape) -> str:
    return "(" + ", ".join("None" if d is None else str(d) for d in shape) + ")"


def load(path: str | Path, weights: str | Path | None = None, *,
         optimize: bool | Sequence[str] = True, backend: str = "numpy",
         signature: str | None = None, inputs: Sequence[str] | None = None,
         outputs: Sequence[str] | None = None) -> Model:
    """Load a Keras model file (.keras, .h5, or architecture .json with `weights=`), a
    SavedModel directory or a frozen GraphDef .pb.
    `optimize`: run all graph passes (True), none (False) or the named ones.
    `signature`: the SavedModel signature to run (a TF graph; default serving_default).
    `inputs`/`outputs`: node names of a frozen GraphDef's inputs/outputs (default: its
    placeholders and the nodes nothing reads)."""
    graph_options: dict[str, Any] = {
        "signature": signature, "inputs": None if inputs is None else list(inputs),
        "outputs": None if outputs is None else list(outputs)}
    graph = read_graph(path, weights, **graph_options)
    try:
        if backend != "numpy":
            return Model(graph, optimize=optimize, backend=backend)
        return Model(graph, optimize=optimize,
                     reread=_reader(Path(path), None if weights is None else Path(weights),
                                    graph_options))
    except TflessError as exc:
        raise _naming_file(exc, path) from exc


def _naming_file(exc: TflessError, path: str | Path) -> TflessError:
    """The same error with the file's name in front, if the layer that raised it could not
    know the file (ops see only their config and weights)."""
    message = str(exc)
    if str(path) in message or Path(path).name in message:
        return exc
    try:
        return type(exc)(f"{path}: {message}")
    except TypeError:  # an error class with its own constructor (MissingExtra)
        return exc


def _reader(path: Path, weights: Path | None,
            graph_options: dict[str, Any] | None = None) -> Callable[[], Graph]:
    """Reads the file(s) again, refusing if they changed since the model was loaded."""
    def stamp() -> list[tuple[int, int]]:
        return [(p.stat().st_size, p.stat().st_mtime_ns) for p in (path, weights) if p]

    loaded = stamp()

    def reread() -> Graph:
        if stamp() != loaded:
            raise TflessError(f"{path}: the file changed since the model was loaded; load it "
                              "again to describe or bundle it")
        return read_graph(path, weights, **(graph_options or {}))

    return reread


def _string_array(spec: TensorSpec, arr: np.ndarray) -> np.ndarray:
    """String tensors are NumPy object arrays of Python `str` (bytes decoded as UTF-8, as
    TensorFlow's string ops read them)."""
    if arr.dtype.kind == "U":
        return arr.astype(object)
    if arr.dtype.kind == "S":
        return np.char.decode(arr, "utf-8").astype(object)
    if arr.dtype.kind == "O":
        out = np.empty(arr.shape, dtype=object)
        for i, v in enumerate(arr.flat):
            if isinstance(v, bytes):
                v = v.decode("utf-8")
            if not isinstance(v, str):
                raise InputError(f"input '{spec.name}': expected strings, got {type(v).__name__}")
            out.flat[i] = v
        return out
    raise InputError(f"input '{spec.name}': expected strings, got dtype {arr.dtype}")
