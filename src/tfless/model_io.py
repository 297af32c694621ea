"""Models and arrays to and from the files that the front ends are given.

`load_from_args` loads the model a subcommand names (`MODEL`, `--weights`, `--backend`);
`read_inputs`/`write_outputs` read and write the input and output files of `predict`
(.npy, .npz keyed by input name, .json, '-' for JSON on stdin or stdout); `sample_inputs`
makes the fixed sample inputs that exports and bundles embed as test vectors. The CLI, the
exporters' subcommands, the packaged executable and bench all use these, so they live
below `cli.py`, which only parses arguments and dispatches.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .errors import InputError

if TYPE_CHECKING:  # the model (and its file readers, h5py) load on first use: `tfless --help`
    from .model import Model


def load_from_args(args: argparse.Namespace) -> Model:
    """The model named by a subcommand's `model`, `weights` and `backend` arguments."""
    from .model import load

    kwargs: dict[str, Any] = {}
    if getattr(args, "backend", None):
        kwargs["backend"] = args.backend
    return load(args.model, weights=getattr(args, "weights", None), **kwargs)


def read_inputs(path: str, model: Any) -> Any:
    """An input file (.npy, .npz keyed by input name, .json) or '-' for JSON on stdin."""
    names = [s.name for s in model.inputs]
    if path == "-":
        try:
            text = sys.stdin.read()
        except UnicodeDecodeError as exc:
            raise InputError(f"stdin: not UTF-8 text: {exc}") from exc
        return _json_inputs(text, names, "stdin")
    p = Path(path)
    if not p.exists():
        raise InputError(f"{path}: no such input file")
    suffix = p.suffix.lower()
    try:
        if suffix == ".npy":
            return np.load(p, allow_pickle=False)
        if suffix == ".npz":
            with np.load(p, allow_pickle=False) as z:
                data = {k: z[k] for k in z.files}
            if set(data) == set(names):
                return data
            if len(data) == len(names) and len(names) == 1:
                return next(iter(data.values()))
            raise InputError(
                f"{path}: .npz keys {sorted(data)} must be the model's input names {names}"
            )
        if suffix == ".json":
            return _json_inputs(p.read_text(encoding="utf8"), names, path)
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
        # EOFError: a zero-byte .npy; BadZipFile: a damaged .npz
        raise InputError(f"{path}: cannot read inputs: {type(exc).__name__}: {exc}") from exc
    raise InputError(f"{path}: unknown input format '{suffix}'; use .npy, .npz or .json")


def _json_inputs(text: str, names: list[str], where: str) -> Any:
    try:
        data = json.loads(text)
    except (json.JSONDecodeError, RecursionError) as exc:
        raise InputError(f"{where}: not valid JSON (or nested too deeply): "
                         f"{type(exc).__name__}: {exc}") from exc
    try:
        return _json_arrays(data, names)
    except (ValueError, TypeError, RecursionError) as exc:  # ragged lists, objects in lists
        raise InputError(f"{where}: the JSON values do not form arrays (lists of different "
                         f"lengths?): {type(exc).__name__}: {exc}") from exc


def _json_arrays(data: Any, names: list[str]) -> Any:
    if isinstance(data, dict):
        for key in ("inputs", "instances"):
            if key in data and len(data) <= 2:
                data = data[key]
                break
    if isinstance(data, dict):
        return {k: np.asarray(v) for k, v in data.items()}
    if len(names) > 1 and isinstance(data, list) and len(data) == len(names):
        return [np.asarray(v) for v in data]
    return np.asarray(data)


def write_outputs(outputs: Any, names: list[str], out: str | None) -> None:
    arrays = outputs if isinstance(outputs, list) else [outputs]
    if out is None or out == "-":
        payload: Any = {n: a.tolist() for n, a in zip(names, arrays)}
        sys.stdout.write(json.dumps({"outputs": payload}) + "\n")
        return
    p = Path(out)
    if not p.parent.is_dir():
        raise InputError(f"{out}: cannot write outputs: no directory {str(p.parent)!r}")
    suffix = p.suffix.lower()
    tmp = p.with_name(p.name + ".partial")
    if suffix == ".npy":
        if len(arrays) != 1:
            raise InputError(f"{out}: the model has {len(arrays)} outputs; write a .npz instead")
        buf = io.BytesIO()
        np.save(buf, arrays[0])
        tmp.write_bytes(buf.getvalue())
    elif suffix == ".npz":
        buf = io.BytesIO()
        np.savez(buf, **dict(zip(names, arrays)))
        tmp.write_bytes(buf.getvalue())
    elif suffix == ".json":
        tmp.write_text(json.dumps({"outputs": {n: a.tolist() for n, a in zip(names, arrays)}}))
    else:
        raise InputError(f"{out}: unknown output format '{suffix}'; use .npy, .npz or .json")
    tmp.replace(p)


def sample_inputs(model: Model, n: int, seed: int = 0,
                  steps: int | None = None) -> list[np.ndarray]:
    """Fixed sample inputs of batch `n`: token ids for inputs that feed an Embedding (below
    its smallest vocabulary), else uniform(-1, 1) float32. A free non-batch axis takes
    `steps` (when given)."""
    graph = model.graph
    rng = np.random.default_rng(seed)
    consumers = graph.consumers()
    arrays = []
    for spec in graph.inputs:
        shape = (n, *(steps if d is None and steps else d for d in spec.shape[1:]))
        rows = [c.weights["embeddings"].shape[0] for c in consumers.get(spec.name, [])
                if c.op == "Embedding"]
        if rows:
            arrays.append(rng.integers(0, min(rows), shape).astype(np.float32))
        else:
            arrays.append(rng.uniform(-1, 1, shape).astype(np.float32))
    return arrays
