"""The `tfless` command line: inspect, predict, verify, export, serve, build, bench.

Every subcommand prints one clear line and exits non-zero on a TflessError; tracebacks
are only for bugs.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from . import __version__
from .errors import InputError, TflessError
from .model_io import load_from_args, read_inputs, write_outputs

Handler = Callable[[argparse.Namespace], int]


class OneLineParser(argparse.ArgumentParser):
    """Bad arguments are one line on stderr and exit 2, like every other bad input (argparse
    prints the whole usage block first; `tfless CMD --help` still shows it)."""

    def error(self, message: str) -> Any:
        self.exit(2, f"{self.prog}: error: {message}\n")


def int_at_least(low: int) -> Callable[[str], int]:
    """An argparse type: an integer >= low."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"must be at least {low}, got {value}")
        return value
    parse.__name__ = f"integer >= {low}"
    return parse


def float_at_least(low: float, strict: bool = False) -> Callable[[str], float]:
    """An argparse type: a finite number >= low (> low when strict)."""
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if not np.isfinite(value) or value < low or (strict and value == low):
            raise argparse.ArgumentTypeError(
                f"must be {'greater than' if strict else 'at least'} {low:g}, got {text}")
        return value
    parse.__name__ = f"number >= {low:g}"
    return parse


# ----- output ---------------------------------------------------------------------
def format_top(scores: np.ndarray, k: int) -> str:
    """Per sample, the k highest-scoring classes of a (batch, classes) output."""
    if scores.ndim != 2:
        raise InputError(f"--top needs an output of shape (batch, classes), got {scores.shape}")
    lines = []
    for i, row in enumerate(scores):
        best = np.argsort(-row, kind="stable")[:k]
        lines.append(f"sample {i}: " + ", ".join(f"class {c} ({row[c]:.3f})" for c in best))
    return "\n".join(lines)


# ----- subcommands --------------------------------------------------------------------
def cmd_inspect(args: argparse.Namespace) -> int:
    from .inspect import describe

    print(describe(args.model, weights=args.weights, as_json=args.json))
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from .scale.command import run_predict

    scored = run_predict(args, load_from_args)  # tables, folders, globs, engines: streamed in chunks
    if scored is not None:
        return scored
    model = load_from_args(args)
    x = read_inputs(args.input, model)
    y = model.predict(x, batch_size=args.batch_size, structured=False)
    if args.top:
        print(format_top(y if not isinstance(y, list) else y[0], args.top))
        if not args.output:
            return 0
    write_outputs(y, [s.name for s in model.outputs], args.output)
    if args.output and args.output != "-":
        arrays = y if isinstance(y, list) else [y]
        shapes = ", ".join(f"{s.name}{tuple(a.shape)}" for s, a in zip(model.outputs, arrays))
        print(f"wrote {args.output}: {shapes}", file=sys.stderr)
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    if Path(args.model).suffix.lower() == ".onnx":
        from .export.onnx import verify_onnx

        report = verify_onnx(args.model)
        print(report)
        return 0 if report.ok else 1
    from .verify import format_reports, verify

    reports = verify(args.model, n=args.n)
    print(format_reports(args.model, reports))
    return 0 if all(r.ok(args.atol, args.rtol) for r in reports) else 1


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="tfless", description="Keras models, deployed without TensorFlow.")
    parser.add_argument("--version", action="version", version=f"tfless {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("inspect", help="describe a model file: format, inputs, outputs, layers")
    p.add_argument("model")
    p.add_argument("--weights", help="weights .h5 for an architecture JSON file")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(handler=cmd_inspect)

    p = sub.add_parser("predict", help="run a model on inputs from a file")
    p.add_argument("model")
    p.add_argument("-i", "--input", required=True,
                   help=".npy, .npz (keys = input names), .json, or - for JSON on stdin; "
                   ".parquet, .csv, a folder or glob of .npy/.npz/images (streamed)")
    p.add_argument("-o", "--output", help=".npy, .npz or .json (default: JSON on stdout); "
                   ".parquet, .csv or .npy when streaming")
    p.add_argument("--weights", help="weights .h5 for an architecture JSON file")
    p.add_argument("--batch-size", type=int_at_least(1), default=None)
    p.add_argument("--top", type=int_at_least(0), default=0, metavar="K",
                   help="print the K best classes per sample instead of raw outputs")
    p.add_argument("--backend", choices=["numpy", "onnxruntime"], default=None)
    from .scale.command import add_predict_options

    add_predict_options(p)
    p.set_defaults(handler=cmd_predict)

    p = sub.add_parser("verify", help="compare tfless with Keras on the same inputs "
                       "(needs TensorFlow/Keras installed), or check an exported .onnx file")
    p.add_argument("model")
    p.add_argument("-n", type=int_at_least(1), default=4,
                   help="batch of random inputs to compare")
    p.add_argument("--atol", type=float_at_least(0), default=1e-5)
    p.add_argument("--rtol", type=float_at_least(0), default=1e-4,
                   help="relative to the output scale")
    p.set_defaults(handler=cmd_verify)

    for register in _extensions():
        register(sub)
    return parser


def _extensions() -> list[Callable[[Any], None]]:
    """Subcommands contributed by other modules (each adds its own parser)."""
    from .bench_report import register_cli as bench_cli
    from .export import register_cli as export_cli
    from .package.build import register_cli as build_cli
    from .serve.command import add_serve_command

    return [export_cli, build_cli, add_serve_command, bench_cli]


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except TflessError as exc:
        message = " ".join(str(exc).split())  # one line, whatever the error text holds
        print(f"tfless {args.command}: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
