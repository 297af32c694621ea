"""Drive PyInstaller: freeze `app.py` with a model bundle into dist/NAME (onefile or onedir).

Only what the model needs goes in: numpy and the tfless runtime (graph, ops, passes, plan,
model, cli helpers), plus the server stack (Starlette, Uvicorn, orjson, prometheus_client)
with `--with-serve`. File readers, h5py, exporters, TensorFlow, test tools and the parts of
numpy and the standard library the runtime never imports are excluded explicitly, because
PyInstaller follows every import it can see, including imports inside functions that the
executable never calls.

PyInstaller runs a spec file written here rather than command-line flags, so that the
interpreter's own shared libraries (libpython, lib-dynload) can go in without their debug
sections: a Python built from source (pyenv) keeps them, which doubles the executable's
size and the bytes a onefile executable unpacks on every start. Libraries from wheels are
left alone: numpy's OpenBLAS was rewritten by auditwheel/patchelf and `strip` breaks it
("ELF load command address/offset not page-aligned"), which is why PyInstaller's own
`--strip` is not used. UPX is not used either: decompressing it costs start-up time.
"""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import MissingExtra, TflessError
from .bundle import save_bundle

# Never needed inside an executable that runs one embedded model. The server never reads a
# model_config_list file there, so protobuf stays out even with the server. tfless.bench
# is reachable from tfless.cli (the `bench` subcommand) and pulls in LiteRT when installed;
# numpy.f2py/testing bring unittest, doctest, pdb and charset_normalizer; numpy.random and
# numpy.fft are compiled modules no op uses.
EXCLUDES = (
    "h5py", "tfless.formats", "tfless.export", "tfless.inspect", "tfless.verify",
    "tfless.backends", "tfless.bench", "tfless.bench_report", "tfless.package.build", "onnx",
    "onnxruntime",
    "google.protobuf", "tensorflow", "keras", "tf_keras", "jax", "torch", "ai_edge_litert",
    "tflite_runtime", "pytest", "_pytest", "scipy", "pandas", "matplotlib", "PIL", "IPython",
    "tkinter", "setuptools", "pkg_resources", "pip", "packaging", "yaml", "rich", "pygments",
    "requests", "httpx", "charset_normalizer", "numpy.f2py", "numpy.testing",
    "numpy.distutils", "numpy.random", "numpy.fft", "unittest", "doctest", "pdb", "pydoc",
    "xmlrpc", "curses", "readline", "sqlite3", "lib2to3", "numpy._core._multiarray_tests",
    "_codecs_cn", "_codecs_hk", "_codecs_iso2022", "_codecs_jp", "_codecs_kr", "_codecs_tw",
    # batch scoring (reachable from tfless.cli's predict) and the engines it drives lazily:
    # Ray's and Spark's optional integrations would pull in TensorFlow and h5py
    "tfless.scale", "pyarrow", "tqdm", "dask", "distributed", "pyspark", "ray",
    # the `fast` extra's compiler (over 100 MB): executables keep the NumPy kernels
    "numba", "llvmlite",
)
# Only inside with `--with-serve`: the server stack, and the standard library modules only
# it imports (Uvicorn: asyncio, ssl, multiprocessing; Starlette: email, http; h11/idna:
# unicodedata). Without _hashlib, hashlib uses its built-in digests and libcrypto stays out.
SERVER_STACK = (
    "tfless.serve", "starlette", "uvicorn", "orjson", "anyio", "h11", "click",
    "prometheus_client", "asyncio", "ssl", "_ssl", "_hashlib", "email", "http",
    "socketserver", "multiprocessing", "urllib.request", "decimal", "fractions", "statistics",
    "unicodedata",
)
# Imported by name after app.py set up the bare package, so PyInstaller cannot see them.
HIDDEN_IMPORTS = ("tfless.model", "tfless.model_io", "tfless.package.bundle")


def _interpreter_library(path: Path) -> bool:
    """Whether `path` is a shared library of the Python installation itself (not a wheel's)."""
    parts = set(path.parts)
    if "site-packages" in parts or "dist-packages" in parts:
        return False
    roots = {Path(sys.base_prefix).resolve(), Path(sysconfig.get_config_var("LIBDIR") or
                                                    sys.base_prefix).resolve()}
    resolved = path.resolve()
    return any(resolved.is_relative_to(root) for root in roots)


def strip_debug_info(binaries: Iterable[tuple[str, str, str]], out_dir: str | Path,
                     strip: str | None = None) -> list[tuple[str, str, str]]:
    """PyInstaller's binary list with the interpreter's libraries replaced by copies
    without debug sections (`strip --strip-debug`), where that makes them smaller.

    Runs inside PyInstaller (the generated spec calls it). Without a `strip` program the
    list is returned as it is."""
    strip = strip or shutil.which("strip")
    result = []
    for dest, src, kind in binaries:
        if strip and kind in ("BINARY", "EXTENSION") and _interpreter_library(Path(src)):
            target = Path(out_dir) / dest
            target.parent.mkdir(parents=True, exist_ok=True)
            done = subprocess.run([strip, "--strip-debug", "-o", str(target), src],
                                  capture_output=True)
            if done.returncode == 0 and target.stat().st_size < Path(src).stat().st_size:
                src = str(target)
        result.append((dest, src, kind))
    return result


SPEC = """\
# Generated by tfless build; run by PyInstaller.
import sys
sys.path.insert(0, {src_root!r})
from PyInstaller.utils.hooks import collect_submodules
from tfless.package.build import strip_debug_info

hidden = {hidden!r}
for package in {collect!r}:
    hidden += collect_submodules(package)
a = Analysis([{app!r}], pathex=[{src_root!r}], datas=[({bundle!r}, "tfless_bundle")],
             hiddenimports=hidden, excludes={excludes!r})
a.binaries = strip_debug_info(a.binaries, {stripped!r})
pyz = PYZ(a.pure)
if {onedir!r}:
    exe = EXE(pyz, a.scripts, [], exclude_binaries=True, name={name!r}, console=True,
              strip=False, upx=False)
    COLLECT(exe, a.binaries, a.datas, name={name!r}, strip=False, upx=False)
else:
    EXE(pyz, a.scripts, a.binaries, a.datas, [], name={name!r}, console=True, strip=False,
        upx=False, runtime_tmpdir=None)
"""


def write_spec(work: Path, name: str, onedir: bool, with_serve: bool) -> Path:
    """The spec file PyInstaller runs for this build (see SPEC)."""
    collect = ["tfless.ops"] + (["uvicorn"] if with_serve else [])
    hidden = list(HIDDEN_IMPORTS) + (["tfless.serve.server"] if with_serve else [])
    spec = work / f"{name}.spec"
    spec.write_text(SPEC.format(
        src_root=str(Path(__file__).resolve().parents[2]), hidden=hidden, collect=collect,
        app=str(Path(__file__).with_name("app.py")), bundle=str(work / "tfless_bundle"),
        excludes=list(EXCLUDES + (() if with_serve else SERVER_STACK)),
        stripped=str(work / "stripped"), onedir=onedir, name=name), encoding="utf8")
    return spec


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


def _check_output(out: Path, name: str) -> None:
    """Refuse, before the slow build, to replace anything but an earlier build of NAME.

    A onefile build replaces a file at `out`; a directory there is only replaced when it
    is an earlier --onedir build (NAME/NAME plus PyInstaller's _internal folder), so that
    `-o dist` cannot wipe a directory the user meant as the parent."""
    if out.is_dir() and not out.is_symlink():
        if not ((out / name).is_file() and (out / "_internal" / "tfless_bundle").is_dir()):
            raise TflessError(f"{out} is an existing directory that is not an earlier tfless "
                              f"--onedir build; give the executable's own path (e.g. "
                              f"{out / name}) or remove the directory first")
    elif out.parent.exists() and not out.parent.is_dir():
        raise TflessError(f"{out.parent} is a file, not a directory")


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
    _check_output(out, name)
    with tempfile.TemporaryDirectory(prefix="tfless-build-") as tmp:
        work = Path(tmp)
        manifest = save_bundle(model, work / "tfless_bundle", source=model_path,
                               version=__version__, serve=with_serve)
        spec = write_spec(work, name, onedir, with_serve)
        cmd = [sys.executable, "-m", "PyInstaller", "--noconfirm", "--clean", "--log-level",
               "WARN", "--distpath", str(work / "dist"), "--workpath", str(work / "build"),
               str(spec)]
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0:
            raise TflessError(f"PyInstaller failed:\n{done.stderr[-3000:]}")
        built = work / "dist" / name
        try:
            out.parent.mkdir(parents=True, exist_ok=True)
            if out.is_dir() and not out.is_symlink():
                shutil.rmtree(out)
            elif out.exists() or out.is_symlink():
                out.unlink()
            shutil.move(str(built), str(out))
        except OSError as exc:
            raise TflessError(f"{out}: cannot write the executable there: {exc}") from exc
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
                   help="include the HTTP server, so that `NAME serve` works (about +5 MB)")
    p.set_defaults(handler=cmd_build)
