"""Drive PyInstaller: freeze `app.py` with a model bundle into dist/NAME (onefile or onedir).

Only what the model needs goes in: numpy and the tfless runtime (graph, ops, passes, plan,
model, cli helpers), plus the server stack (Starlette, Uvicorn, orjson, prometheus_client)
with `--with-serve`. File readers, h5py, exporters, TensorFlow and test tools are excluded
explicitly, because PyInstaller follows every import it can see, including imports inside
functions that the executable never calls.
"""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import MissingExtra, TflessError
from .bundle import save_bundle

# Never needed inside an executable that runs one embedded model. The server never reads a
# model_config_list file there, so protobuf stays out even with the server.
EXCLUDES = (
    "h5py", "tfless.formats", "tfless.export", "tfless.inspect", "tfless.verify",
    "tfless.backends", "tfless.package.build", "onnx", "onnxruntime", "google.protobuf",
    "tensorflow", "keras", "tf_keras", "jax", "torch", "pytest", "_pytest", "scipy", "pandas",
    "matplotlib", "PIL", "IPython", "tkinter", "setuptools", "pkg_resources", "pip", "yaml",
    "rich", "pygments", "requests", "httpx",
)
# Only inside with `--with-serve`.
SERVER_STACK = (
    "tfless.serve", "starlette", "uvicorn", "orjson", "anyio", "h11", "click",
    "prometheus_client",
)


@dataclass
class BuildResult:
    executable: Path
    size_bytes: int
    manifest: dict[str, Any]

    def __str__(self) -> str:
        return (f"built {self.executable} ({self.size_bytes / 1e6:.1f} MB); "
                f"try: {self.executable} info --check")


def _dir_size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def build_executable(model_path: str | Path, output: str | Path, onedir: bool = False,
                     weights: str | Path | None = None, with_serve: bool = False) -> BuildResult:
    """Freeze the model at `model_path` into the executable `output` (e.g. dist/mymodel).

    With onedir, `output` is a directory holding the executable of the same name. With
    with_serve, the executable also offers `NAME serve` (the tfless server)."""
    if importlib.util.find_spec("PyInstaller") is None:
        raise MissingExtra("pyinstaller", "build", "tfless build")
    from .. import __version__
    from ..model import load

    model = load(model_path, weights=weights)
    out = Path(output)
    name = out.name
    if not name or name in (".", ".."):
        raise TflessError(f"{output}: give the executable's path, e.g. dist/mymodel")
    src_root = Path(__file__).resolve().parents[2]
    with tempfile.TemporaryDirectory(prefix="tfless-build-") as tmp:
        work = Path(tmp)
        manifest = save_bundle(model, work / "tfless_bundle", source=model_path,
                               version=__version__, serve=with_serve)
        cmd = [
            sys.executable, "-m", "PyInstaller", "--noconfirm", "--clean", "--log-level", "WARN",
            "--onedir" if onedir else "--onefile", "--name", name,
            "--distpath", str(work / "dist"), "--workpath", str(work / "build"),
            "--specpath", str(work), "--paths", str(src_root),
            "--add-data", f"{work / 'tfless_bundle'}:tfless_bundle",
            # the runtime is imported by name after the bare package is set up
            "--hidden-import", "tfless.model", "--hidden-import", "tfless.cli",
            "--hidden-import", "tfless.package.bundle", "--collect-submodules", "tfless.ops",
        ]
        if with_serve:
            cmd += ["--hidden-import", "tfless.serve.server", "--collect-submodules", "uvicorn"]
        for module in EXCLUDES + (() if with_serve else SERVER_STACK):
            cmd += ["--exclude-module", module]
        cmd.append(str(Path(__file__).with_name("app.py")))
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0:
            raise TflessError(f"PyInstaller failed:\n{done.stderr[-3000:]}")
        built = work / "dist" / name
        out.parent.mkdir(parents=True, exist_ok=True)
        if out.exists():
            shutil.rmtree(out) if out.is_dir() else out.unlink()
        shutil.move(str(built), str(out))
    exe = out / name if onedir else out
    return BuildResult(exe, _dir_size(out), manifest)


def cmd_build(args: Any) -> int:
    print(build_executable(args.model, args.output, onedir=args.onedir, weights=args.weights,
                           with_serve=args.with_serve))
    return 0


def register_cli(sub: Any) -> None:
    p = sub.add_parser("build", help="a standalone executable embedding the model (PyInstaller)")
    p.add_argument("model")
    p.add_argument("-o", "--output", required=True, help="path of the executable, e.g. dist/NAME")
    p.add_argument("--onedir", action="store_true",
                   help="a directory with the executable and its libraries (faster start)")
    p.add_argument("--weights", help="weights .h5 for an architecture JSON file")
    p.add_argument("--with-serve", action="store_true",
                   help="include the HTTP server, so that `NAME serve` works (about +4 MB)")
    p.set_defaults(handler=cmd_build)
