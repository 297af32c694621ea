"""Exporters: write a loaded model in another format (`tfless export MODEL -f FORMAT`).

`FORMATS` is the table behind `tfless export -f`: each entry adds its own options to the
`export` subcommand and runs the export. Exporter modules import their heavy
dependencies lazily, so importing this package stays cheap.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..model_io import load_from_args, read_inputs
from .onnx import ExportReport, VerifyReport, export_onnx, verify_onnx


@dataclass(frozen=True)
class ExportFormat:
    """One `-f` choice: `add_arguments(parser)` adds its options, `run(args)` exports."""

    name: str
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


FORMATS: dict[str, ExportFormat] = {}


def register_format(fmt: ExportFormat) -> None:
    FORMATS[fmt.name] = fmt


# ----- onnx ----------------------------------------------------------------------------
def _onnx_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("onnx")
    g.add_argument("--opset", type=int, default=None,
                   help="ONNX opset (13 to the newest the installed onnx supports; default 17)")
    g.add_argument("--batch", default="dynamic",
                   help="'dynamic' (default) or a fixed batch size")
    g.add_argument("--float16", action="store_true",
                   help="store weights as float16; reports size reduction and accuracy cost")
    g.add_argument("--quantize", choices=["int8"], default=None,
                   help="store MatMul/Gemm/Conv weights as per-channel int8 (weight-only QDQ); "
                        "reports size and accuracy change")
    g.add_argument("--calibration", default=None, metavar="X.npy",
                   help="sample inputs (.npy/.npz/.json, as for predict) for the --quantize "
                        "accuracy report (default: the embedded test vector)")


def _onnx_run(args: argparse.Namespace) -> int:
    from .onnx import DEFAULT_OPSET

    out = args.output or _default_output(args.model, ".onnx")
    model = load_from_args(args)
    samples = None
    if getattr(args, "calibration", None):
        samples = read_inputs(args.calibration, model)
    report = export_onnx(model, out, opset=args.opset or DEFAULT_OPSET,
                         batch=args.batch, float16=args.float16,
                         quantize=getattr(args, "quantize", None), calibration=samples)
    print(report)
    return 0


register_format(ExportFormat("onnx", "ONNX model file", _onnx_arguments, _onnx_run))

# ----- c, docker -----------------------------------------------------------------------
from . import c as _c  # noqa: E402
from . import docker as _docker  # noqa: E402

register_format(ExportFormat("c", "C99 source + Makefile (a directory)", _c.add_cli_arguments,
                             _c.run_cli))
register_format(ExportFormat("docker", "Dockerfile + models/<name>/1/ (a directory)",
                             _docker.add_cli_arguments, _docker.run_cli))


# ----- keras ---------------------------------------------------------------------------
def _keras_run(args: argparse.Namespace) -> int:
    from .keras import save_keras

    print(save_keras(load_from_args(args), args.output or _default_output(args.model, ".keras")))
    return 0


register_format(ExportFormat("keras", "Keras 3 .keras file (upgrades Keras 1/2 and tf_keras "
                             "files)", lambda p: None, _keras_run))


# ----- the CLI -------------------------------------------------------------------------
def _default_output(model: str, suffix: str) -> str:
    from pathlib import Path

    return str(Path(model).with_suffix(suffix))


def cmd_export(args: argparse.Namespace) -> int:
    return FORMATS[args.format].run(args)


def register_cli(sub: Any) -> None:
    """Add the `export` subcommand (`tfless verify` sends .onnx files to `verify_onnx`)."""
    p = sub.add_parser("export", help="write the model in another format (" +
                       ", ".join(FORMATS) + ")")
    p.add_argument("model")
    p.add_argument("-f", "--format", required=True, choices=sorted(FORMATS),
                   help="; ".join(f"{f.name}: {f.help}" for f in FORMATS.values()))
    p.add_argument("-o", "--output", help="output path (default: the model path with the "
                   "format's suffix)")
    p.add_argument("--weights", help="weights .h5 for an architecture JSON file")
    for fmt in FORMATS.values():
        fmt.add_arguments(p)
    p.set_defaults(handler=cmd_export)


__all__ = ["FORMATS", "ExportFormat", "ExportReport", "VerifyReport", "export_onnx",
           "register_cli", "register_format", "verify_onnx"]
