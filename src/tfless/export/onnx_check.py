"""The test vector an exported ONNX file carries, and `verify_onnx`, which re-checks it.

The exporter stores one input and the outputs the tfless NumPy runtime computes for it (as
compressed NumPy arrays in the model's metadata) with the tolerance to hold them to;
`verify_onnx` runs that input in ONNX Runtime and compares.
"""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import InputError, ModelFormatError
from ..graph import Graph
from .onnx_builder import _np_dtype, ort_run, ort_session, require_onnx

ATOL, RTOL = 1e-5, 1e-4
META_PREFIX = "tfless."
TEST_VECTOR_KEY = META_PREFIX + "test_vector"
TOLERANCE_KEY = META_PREFIX + "tolerance"


def make_test_input(graph: Graph, batch: int, seed: int = 0) -> list[np.ndarray]:
    """A deterministic input: floats in [-1, 1), integers (token ids) in {0, 1}; free
    axes get length 8."""
    rng = np.random.default_rng(seed)
    arrays = []
    for spec in graph.inputs:
        dtype = _np_dtype(spec.dtype, spec.name)
        shape = (batch,) + tuple(8 if d is None else d for d in spec.shape[1:])
        if dtype.kind == "f":
            arrays.append(rng.uniform(-1, 1, shape).astype(dtype))
        elif dtype.kind == "b":
            arrays.append(rng.integers(0, 2, shape).astype(bool))
        else:
            arrays.append(rng.integers(0, 2, shape).astype(dtype))
    return arrays


def pack_vector(arrays: dict[str, np.ndarray]) -> str:
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def unpack_vector(text: str) -> dict[str, np.ndarray]:
    with np.load(io.BytesIO(base64.b64decode(text)), allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


@dataclass
class Comparison:
    name: str
    max_abs: float
    max_rel: float
    ok: bool


def compare(got: Sequence[np.ndarray], want: Sequence[np.ndarray], names: Sequence[str],
            atol: float, rtol: float) -> list[Comparison]:
    out = []
    for name, g, w in zip(names, got, want):
        g64, w64 = np.asarray(g, np.float64), np.asarray(w, np.float64)
        if g64.shape != w64.shape:
            out.append(Comparison(name, float("inf"), float("inf"), False))
            continue
        err = np.abs(g64 - w64)
        rel = err / np.maximum(np.abs(w64), 1e-12)
        same_nan = np.isnan(g64) & np.isnan(w64)
        ok = bool(np.all((err <= atol + rtol * np.abs(w64)) | same_nan))
        out.append(Comparison(name, float(np.nanmax(err, initial=0.0)),
                              float(np.nanmax(np.where(np.abs(w64) > atol, rel, 0), initial=0.0)),
                              ok))
    return out


# ----- verify --------------------------------------------------------------------------
@dataclass
class VerifyReport:
    path: str
    ok: bool
    comparisons: list[Comparison]
    metadata: dict[str, str]
    atol: float
    rtol: float

    def __str__(self) -> str:
        head = "OK" if self.ok else "FAILED"
        lines = [f"{self.path}: {head}: ONNX Runtime reproduces the embedded test vector"
                 if self.ok else f"{self.path}: {head}: outputs differ from the embedded test vector"]
        src = self.metadata.get(META_PREFIX + "source")
        if src:
            lines.append(f"  exported by tfless {self.metadata.get(META_PREFIX + 'tfless_version')} "
                         f"from {src} (Keras {self.metadata.get(META_PREFIX + 'keras_version') or '?'})")
        for c in self.comparisons:
            lines.append(f"  {c.name}: max abs error {c.max_abs:.3g}, max rel error {c.max_rel:.3g}"
                         f" (tolerance {self.atol:.3g} abs + {self.rtol:.3g} rel) "
                         f"{'ok' if c.ok else 'MISMATCH'}")
        return "\n".join(lines)


def verify_onnx(path: str | Path) -> VerifyReport:
    """Check an exported .onnx file: onnx.checker, then its embedded test vector in ONNX Runtime."""
    onnx = require_onnx()
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such file")
    try:
        proto = onnx.load(str(path))
        onnx.checker.check_model(proto, full_check=True)
    except Exception as exc:  # onnx raises DecodeError/ValidationError/OSError variants
        raise ModelFormatError(f"{path}: not a valid ONNX model: {exc}") from exc
    props = {p.key: p.value for p in proto.metadata_props}
    if TEST_VECTOR_KEY not in props:
        raise ModelFormatError(
            f"{path}: has no tfless test vector (metadata '{TEST_VECTOR_KEY}'); only files "
            "written by `tfless export -f onnx` can be verified")
    vector = unpack_vector(props[TEST_VECTOR_KEY])
    tol = json.loads(props.get(TOLERANCE_KEY, "{}"))
    atol, rtol = float(tol.get("atol", ATOL)), float(tol.get("rtol", RTOL))
    session = ort_session(proto.SerializeToString())
    names_in = [i.name for i in session.get_inputs()]
    names_out = [o.name for o in session.get_outputs()]
    try:
        inputs = [vector[f"in:{n}"] for n in names_in]
        want = [vector[f"out:{n}"] for n in names_out]
    except KeyError as exc:
        raise ModelFormatError(f"{path}: the test vector has no entry {exc}") from None
    comparisons = compare(ort_run(session, inputs), want, names_out, atol, rtol)
    return VerifyReport(str(path), all(c.ok for c in comparisons), comparisons, props, atol, rtol)
