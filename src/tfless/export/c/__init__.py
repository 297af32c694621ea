"""Export a model as dependency-free C99 source: model.h/model.c, a CLI main.c and a Makefile.

The C backend compiles the same lowered graph the ONNX exporter writes (lower.py): every
Keras layer the ONNX exporter converts is exportable to C, and each primitive op has one C
emitter (emit.py's registry, filled by the ops_*.py families). Weights become
`static const` arrays, tensors live in static arenas planned by lifetime, and
`model_predict` handles one sample per call (not reentrant). A free sequence axis stays
free up to `--max-steps` (`model_predict_steps`), or is fixed with `--steps`.

The export carries test vectors computed by the tfless NumPy runtime; `make test` checks
the compiled code against them.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ...errors import InputError, TflessError
from ...model_io import load_from_args, sample_inputs
from .dims import at
from .emit import CTYPES, EMITTERS, Context, c_literal
from .files import MAIN_C, MAKEFILE, arena_ref, array_literal, model_c, model_h, test_c
from .lower import lower
from .ops import load_emitters

DEFAULT_MAX_STEPS = 256


@dataclass
class CSource:
    """The generated files, by name, and the per-sample input/output sizes (at the maximum
    length for a free axis)."""

    files: dict[str, str]
    input_sizes: list[int]
    output_sizes: list[int]
    max_steps: int | None = None


def _as_input_dtypes(model: Any, arrays: list[np.ndarray]) -> list[np.ndarray]:
    return [a.astype(np.dtype(s.dtype)) if s.dtype in CTYPES else a
            for s, a in zip(model.graph.inputs, arrays)]


def _lower(model: Any, max_steps: int | None, steps: int | None) -> Any:
    free = [s.name for s in model.graph.inputs if any(d is None for d in s.shape[1:])]
    fixed = steps if free else None
    if steps is not None and steps < 1:
        raise InputError(f"--steps must be at least 1, got {steps}")

    def inputs_at(n_steps: int) -> list[np.ndarray]:
        length = fixed or n_steps or None
        return _as_input_dtypes(model, sample_inputs(model, 1, seed=7, steps=length))

    return lower(model, inputs_at, None if fixed or not free else
                 (max_steps or DEFAULT_MAX_STEPS), steps=fixed)


def generate(model: Any, n_test: int = 2, max_steps: int | None = None,
             steps: int | None = None) -> CSource:
    """Generate all C files for a loaded tfless Model (nothing is written)."""
    load_emitters()
    lowered = _lower(model, max_steps, steps)
    proto = lowered.proto
    top = lowered.free.max_steps if lowered.free else None
    ctx = Context(lowered)
    body: list[str] = []
    offset: Any = 0
    in_sizes = []
    for name in lowered.input_names:
        t = ctx.tensor(name)
        ctx.define(name, at_pos=0)
        in_sizes.append(t.size)
        cast = "" if t.ctype == "float" else f"({t.ctype})"
        body.append(f"for (int i = 0; i < {t.size}; ++i) {t.ref}[i] = {cast}in[{offset} + i];")
        offset = offset + t.size
    body += ctx.compile_graph(proto.graph)
    ctx.pos += 1
    offset = 0
    out_sizes, copies = [], []
    for name in lowered.output_names:
        t = ctx.tensor(name)
        src = ctx.data(t)
        out_sizes.append(t.size)
        copies.append(f"for (int i = 0; i < {t.size}; ++i) out[{offset} + i] = (float){src}[i];")
        offset = offset + t.size
    body += copies
    arenas = ctx.plan()
    macros = [f"#define t_{ctx.ident(root)} {arena_ref(s.ctype, s.offset)}  /* {s.size} */"
              for root, s in ctx.slots.items()]
    consts = [f"static const {t.ctype} {t.ref}[{max(t.const.size, 1)}] = "
              f"{array_literal(t.const, lambda v, d=t.dtype: c_literal(v, d))};  "
              f"/* {tuple(t.const.shape)} */" for t in ctx.consts_used.values()]
    source = str(model.graph.meta.get("source", "model"))
    files = {
        "model.h": model_h(list(zip(lowered.input_names, in_sizes)),
                           list(zip(lowered.output_names, out_sizes)), top),
        "model.c": model_c(source, arenas, macros, consts, list(ctx.helpers.values()),
                           ctx.functions, body, ctx.needs_error, top, in_sizes, out_sizes),
        "main.c": MAIN_C,
        "model_test.c": test_c(_test_cases(model, n_test, lowered, steps), top),
        "Makefile": MAKEFILE,
    }
    return CSource(files, [at(s, top or 0) for s in in_sizes], [at(s, top or 0) for s in out_sizes],
                   top)


def _test_cases(model: Any, n: int, lowered: Any, steps: int | None) -> list:
    free = lowered.free
    lengths = [free.max_steps, max(1, free.max_steps // 2 - 1)] if free else [steps]
    cases = []
    for k, length in enumerate(lengths):
        x = sample_inputs(model, n, seed=k, steps=length)
        want = model.predict(_as_input_dtypes(model, x), structured=False)
        want = want if isinstance(want, list) else [want]
        flat_x = np.concatenate([a.reshape(n, -1) for a in x], axis=1)
        flat_y = np.concatenate([np.asarray(w, np.float32).reshape(n, -1) for w in want], axis=1)
        cases.append((length or 0, flat_x, flat_y))
    return cases


def export_c(model: Any, out_dir: str | Path, n_test: int = 2, max_steps: int | None = None,
             steps: int | None = None) -> list[Path]:
    """Write model.h, model.c, main.c, model_test.c and a Makefile into `out_dir`.

    `model` is a tfless Model or a path to a model file. What the C backend cannot compile
    raises UnsupportedLayer before anything is written."""
    if not hasattr(model, "graph"):
        from ...model import load

        model = load(model)
    if n_test < 1:
        raise TflessError(f"the embedded test vector needs at least 1 sample (--test-samples), "
                          f"got {n_test}")
    source = generate(model, n_test, max_steps, steps)
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise TflessError(f"{out} is a file; the C export writes a directory: give a new path")
    written = []
    try:
        out.mkdir(parents=True, exist_ok=True)
        for name, text in source.files.items():
            path = out / name
            path.write_text(text, encoding="utf8")
            written.append(path)
    except OSError as exc:
        raise TflessError(f"{out}: cannot write the C source there: {exc}") from exc
    return written


def add_cli_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("c")
    g.add_argument("--test-samples", type=int, default=2,
                   help="samples in the C export's embedded test vector (default 2)")
    g.add_argument("--max-steps", type=int, default=None,
                   help="models with a free sequence axis: the longest length the C code "
                        f"accepts (model_predict_steps; default {DEFAULT_MAX_STEPS})")
    g.add_argument("--steps", type=int, default=None,
                   help="models with a free sequence axis: compile for exactly this length")


def run_cli(args: argparse.Namespace) -> int:
    out = args.output or str(Path(args.model).with_suffix("")) + "_c"
    written = export_c(load_from_args(args), out, n_test=args.test_samples,
                       max_steps=getattr(args, "max_steps", None), steps=getattr(args, "steps", None))
    print(f"wrote {', '.join(p.name for p in written)} to {out}; build and check with: "
          f"make -C {out} all test")
    return 0


__all__ = ["EMITTERS", "CSource", "export_c", "generate"]
