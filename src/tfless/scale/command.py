"""`tfless predict` options for batch scoring: streaming files on one machine, or an engine.

`add_predict_options(parser)` adds `--columns`, `--keep-columns`, `--chunk-rows`, the image
options and `--engine/--workers/--cluster` to the predict parser; `run_predict(args, load)`
scores when the input/output or the options ask for it and returns the exit code, or None
to leave the call to the in-memory `.npy/.npz/.json` path. Imports stay lazy so the CLI
starts without pyarrow or an engine.
"""

from __future__ import annotations

import argparse
import inspect
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..errors import InputError, TflessError

ENGINES = ("local", "spark", "dask", "ray")


def add_predict_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group(
        "batch scoring", "for .parquet/.csv inputs or outputs, folders and globs of .npy/.npz "
        "or image files (read and written in chunks; see docs/scale-out.md)")
    g.add_argument("--columns", default=None, metavar="SPEC",
                   help="input columns: 'feat' (one list column), 'a,b,c' (scalar columns "
                   "stacked), 'in1=a,b;in2=c' (per model input); default: columns named like "
                   "the inputs, else the one list column, else every numeric column")
    g.add_argument("--keep-columns", default=None, metavar="A,B",
                   help="input columns copied to the output rows (ids)")
    g.add_argument("--chunk-rows", type=int, default=None, metavar="N",
                   help="rows read, scored and written at a time (bounds memory; default 65536)")
    g.add_argument("--image-size", default=None, metavar="HxW",
                   help="resize images to this size (default: the model's input size)")
    g.add_argument("--scale", default=None, metavar="S",
                   help="multiply pixel values (0..255) by S, e.g. 1/255 (default 1)")
    g.add_argument("--color-mode", choices=["grayscale", "rgb", "rgba"], default=None,
                   help="default: from the model input's channels (1, 3 or 4)")
    g.add_argument("--interpolation", default="nearest",
                   choices=["nearest", "bilinear", "bicubic", "lanczos", "box", "hamming"],
                   help="resize filter (default nearest, as keras.utils.load_img)")
    g.add_argument("--engine", choices=ENGINES, default="local",
                   help="score on this machine (local) or on a Spark/Dask/Ray cluster")
    g.add_argument("--workers", type=int, default=None, metavar="N",
                   help="workers of the local cluster an engine starts")
    g.add_argument("--cluster", default=None, metavar="URL",
                   help="connect the engine to this cluster instead of starting one")


def wants_scale(args: argparse.Namespace, scale_opts: list[str]) -> bool:
    from .stream import ARRAY_SUFFIXES, is_streaming

    if args.engine != "local" or is_streaming(args.input, args.output):
        return True
    # a single .npy/.npz file streams too when a batch-scoring option asks for it
    return bool(scale_opts) and Path(args.input).suffix.lower() in ARRAY_SUFFIXES


def run_predict(args: argparse.Namespace, load: Callable[[argparse.Namespace], Any]) -> int | None:
    """Batch scoring for `tfless predict`, or None when the in-memory path applies."""
    scale_opts = [o for o, v in (("--columns", args.columns), ("--keep-columns", args.keep_columns),
                                 ("--chunk-rows", args.chunk_rows),
                                 ("--image-size", args.image_size), ("--scale", args.scale),
                                 ("--color-mode", args.color_mode)) if v is not None]
    if not wants_scale(args, scale_opts):
        if scale_opts:
            raise InputError(f"{', '.join(scale_opts)}: batch-scoring options apply to .parquet/"
                             ".csv/.npy/.npz files, folders and globs (this input is read whole)")
        if args.workers is not None or args.cluster is not None:
            raise InputError("--workers/--cluster apply to --engine spark, dask or ray")
        return None
    if args.output is None or args.output == "-":
        raise InputError(f"{args.input}: batch scoring needs -o OUTPUT (.parquet, .csv or .npy"
                         f"{', or a folder' if args.engine != 'local' else ''})")
    if args.top:
        raise InputError("--top prints classes of an in-memory .npy/.npz/.json input; for "
                         "batch scoring write the outputs with -o")
    keep = [c.strip() for c in args.keep_columns.split(",")] if args.keep_columns else []
    if any(not c for c in keep):
        raise InputError(f"--keep-columns {args.keep_columns!r}: empty column name")
    if args.engine == "local":
        return _local(args, load, keep)
    return _engine(args, keep, scale_opts)


def _local(args: argparse.Namespace, load: Callable[[argparse.Namespace], Any],
           keep: list[str]) -> int:
    from .images import parse_image_size, parse_scale
    from .stream import DEFAULT_CHUNK_ROWS, score_files

    if args.workers is not None or args.cluster is not None:
        raise InputError("--workers/--cluster apply to --engine spark, dask or ray "
                         "(--engine local scores in this process)")
    model = load(args)
    report = score_files(
        model, args.input, args.output, columns=args.columns, keep_columns=keep,
        batch_size=args.batch_size,
        chunk_rows=DEFAULT_CHUNK_ROWS if args.chunk_rows is None else args.chunk_rows,
        image_size=None if args.image_size is None else parse_image_size(args.image_size),
        scale=None if args.scale is None else parse_scale(args.scale),
        color_mode=args.color_mode, interpolation=args.interpolation)
    _print_report(args.output, report)
    return 0


def _engine(args: argparse.Namespace, keep: list[str], scale_opts: list[str]) -> int:
    try:
        from . import engines
    except ModuleNotFoundError as exc:
        if exc.name != f"{__package__}.engines":
            raise
        raise TflessError(f"--engine {args.engine}: this tfless has no engine adapters "
                          "(tfless.scale.engines is missing); use --engine local") from exc
    if args.workers is not None and args.workers < 1:
        raise InputError(f"--workers must be a positive integer, got {args.workers}")
    kwargs: dict[str, Any] = dict(weights=args.weights, columns=args.columns,
                                  batch_size=args.batch_size, workers=args.workers,
                                  cluster=args.cluster)
    optional = {"keep_columns": keep or None, "chunk_rows": args.chunk_rows}
    params = inspect.signature(engines.score_files).parameters
    for name, value in optional.items():
        if value is None:
            continue
        if name not in params:
            flag = "--" + name.replace("_", "-")
            raise InputError(f"--engine {args.engine} does not take {flag}; use --engine local")
        kwargs[name] = value
    image_opts = [o for o in scale_opts if o in ("--image-size", "--scale", "--color-mode")]
    if image_opts:
        raise InputError(f"--engine {args.engine} scores tables; {', '.join(image_opts)} apply "
                         "to a folder of images with --engine local")
    report = engines.score_files(args.engine, args.model, args.input, args.output, **kwargs)
    _print_report(args.output, report)
    return 0


def _print_report(output: str, report: dict[str, Any]) -> None:
    rows, seconds = report.get("rows"), report.get("seconds")
    rate = f" ({rows / seconds:,.0f} rows/s)" if rows and seconds else ""
    took = f" in {seconds:.2f} s" if seconds is not None else ""
    print(f"wrote {output}: {rows:,} rows{took}{rate}" if rows is not None else f"wrote {output}",
          file=sys.stderr)
