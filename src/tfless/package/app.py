"""The program inside a `tfless build` executable: `NAME predict | info | serve`.

PyInstaller runs this file as the main script. It loads the embedded bundle (see
`bundle.py`) with the NumPy runtime only: the `tfless` package is imported without running
its `__init__` (which pulls in the file readers, h5py and the exporters), and
`tfless.formats` is replaced by a module that explains why reading files is not available.
`serve` runs the tfless server on the embedded model when the executable was built with
`--with-serve` (the manifest says so); otherwise the server stack is not inside.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
import types
from pathlib import Path
from typing import Any


def bundle_dir() -> Path:
    """Where PyInstaller unpacked the data files (or TFLESS_BUNDLE when run from source)."""
    base = getattr(sys, "_MEIPASS", None)
    if base is None:
        return Path(os.environ["TFLESS_BUNDLE"])
    return Path(base) / "tfless_bundle"


def _runtime_only_tfless(version: str) -> None:
    if "tfless" in sys.modules:
        return
    spec = importlib.util.find_spec("tfless")
    if spec is None:
        raise ImportError("the tfless runtime is missing from this executable")
    package = importlib.util.module_from_spec(spec)
    package.__version__ = version  # type: ignore[attr-defined]
    sys.modules["tfless"] = package
    formats = types.ModuleType("tfless.formats")

    def read_graph(*args: Any, **kwargs: Any) -> Any:
        from tfless.errors import ModelFormatError

        raise ModelFormatError("this executable only runs its embedded model; it cannot read "
                               "model files")

    formats.read_graph = read_graph  # type: ignore[attr-defined]
    sys.modules["tfless.formats"] = formats


def _load() -> tuple[Any, dict[str, Any]]:
    manifest = json.loads((bundle_dir() / "manifest.json").read_text(encoding="utf8"))
    from tfless.model import Model
    from tfless.package.bundle import load_graph

    return Model(load_graph(bundle_dir())), manifest


def cmd_predict(args: argparse.Namespace) -> int:
    from tfless.model_io import read_inputs, write_outputs

    model, _ = _load()
    y = model.predict(read_inputs(args.input, model), batch_size=args.batch_size,
                      structured=False)
    write_outputs(y, [s.name for s in model.outputs], args.output)
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    model, manifest = _load()
    info = {k: manifest.get(k) for k in ("source", "source_sha256", "tfless_version", "format",
                                         "keras_version", "inputs", "outputs", "serve")}
    if args.check:
        from tfless.package.bundle import check_test_vector

        info["check"] = f"ok (max abs error {check_test_vector(model, bundle_dir()):.3g})"
    print(json.dumps(info, indent=2))
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    model, _ = _load()
    from tfless.serve.command import server_options_from_args
    from tfless.serve.server import serve

    options = server_options_from_args(args, model_name=args.model_name, poll_seconds=0.0)
    return serve(options, models={args.model_name: model})


def cmd_serve_missing(args: argparse.Namespace) -> int:
    name = Path(sys.argv[0]).name
    print(f"{name} serve: error: this executable was built without the server; rebuild it with "
          f"`tfless build MODEL -o {name} --with-serve`", file=sys.stderr)
    return 2


def _add_serve_command(sub: Any, name: str, with_serve: bool) -> None:
    help_text = "serve the model over HTTP (TF Serving REST v1 and KServe V2)"
    if not with_serve:
        # takes any arguments (see main): the answer is the same whatever they are
        p = sub.add_parser("serve", help=help_text + " [not in this build]", add_help=False)
        p.set_defaults(handler=cmd_serve_missing)
        return
    from tfless.serve.command import add_server_options

    p = sub.add_parser("serve", help=help_text)
    p.add_argument("--model-name", default=name,
                   help=f"the model's name in request URLs (default {name})")
    add_server_options(p)
    p.set_defaults(handler=cmd_serve)


def main(argv: list[str] | None = None) -> int:
    name = Path(sys.argv[0]).name
    manifest = json.loads((bundle_dir() / "manifest.json").read_text(encoding="utf8"))
    _runtime_only_tfless(manifest.get("tfless_version", ""))
    parser = argparse.ArgumentParser(prog=name, description="A Keras model packaged by tfless.")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("predict", help="run the model on inputs")
    p.add_argument("-i", "--input", required=True,
                   help=".npy, .npz (keys = input names), .json, or - for JSON on stdin")
    p.add_argument("-o", "--output", help=".npy, .npz or .json (default: JSON on stdout)")
    p.add_argument("--batch-size", type=int, default=None)
    p.set_defaults(handler=cmd_predict)
    p = sub.add_parser("info", help="inputs, outputs, source model hash, tfless version")
    p.add_argument("--check", action="store_true", help="verify the embedded test vector")
    p.set_defaults(handler=cmd_info)
    _add_serve_command(sub, name, bool(manifest.get("serve")))
    args, unknown = parser.parse_known_args(argv)
    if unknown and args.handler is not cmd_serve_missing:
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    from tfless.errors import TflessError

    try:
        return int(args.handler(args) or 0)
    except TflessError as exc:
        print(f"{name} {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
