"""The shape of the package, checked from its own source: import direction and file sizes.

Every module under src/tfless is parsed (ast, nothing is imported or run) and each import
it makes, at the top or inside a function, becomes an arrow between modules. The tests
then hold the rules of DESIGN.md and issue #17: no import cycle, the readers (formats) and
the kernels (ops) never import each other, nothing imports the CLI (only the console
script runs it), the execution backends never reach the Model, and no file grows past
600 lines without saying why at its top. A failure lists every offender with its lines.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = "tfless"
MAX_LINES = 600
REASON = re.compile(r"long because", re.IGNORECASE)
# The op registry (tfless/registry.py) sits below both formats and ops: readers look layers
# up in it, ops register into it; formats and ops never import each other.
FORMATS_TO_OPS_EXCEPTIONS: set[tuple[str, str]] = set()


@dataclass(frozen=True)
class Arrow:
    """Module `source` imports module `target` at `line`."""

    source: str
    target: str
    line: int

    def __str__(self) -> str:
        return f"{self.source} -> {self.target} ({_path(self.source)}:{self.line})"


@cache
def modules() -> dict[str, Path]:
    found = {}
    for path in sorted((SRC / PACKAGE).rglob("*.py")):
        parts = path.relative_to(SRC).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        name = ".".join(parts)
        if name in found and found[name].name == "__init__.py":
            continue  # a package beside a module of its name: Python imports the package
        found[name] = path
    return found


def _path(module: str) -> str:
    return str(modules()[module].relative_to(SRC.parent))


def _is_package(module: str) -> bool:
    return modules()[module].name == "__init__.py"


def _resolve(importer: str, node: ast.ImportFrom) -> list[str]:
    """The modules of this package that a `from X import a, b` names: a submodule where
    `X.a` is one, else X itself."""
    if node.level:
        base = importer.split(".")
        if not _is_package(importer):
            base = base[:-1]
        base = base[:len(base) - (node.level - 1)]
        if node.module:
            base += node.module.split(".")
        where = ".".join(base)
    else:
        where = node.module or ""
    if where not in modules():
        return []
    return sorted({f"{where}.{a.name}" if f"{where}.{a.name}" in modules() else where
                   for a in node.names})


def _nearest_module(name: str) -> str | None:
    while name and name not in modules():
        name = name.rpartition(".")[0]
    return name or None


@cache
def arrows() -> list[Arrow]:
    """Every import between modules of the package, inside functions and TYPE_CHECKING
    blocks included."""
    found = []
    for module, path in modules().items():
        tree = ast.parse(path.read_text(encoding="utf8"), str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                targets = _resolve(module, node)
            elif isinstance(node, ast.Import):
                targets = [t for t in (_nearest_module(a.name) for a in node.names
                                       if a.name.split(".")[0] == PACKAGE) if t]
            else:
                continue
            found += [Arrow(module, t, node.lineno) for t in targets if t != module]
    return found


def _ancestor(package: str, module: str) -> bool:
    return module.startswith(package + ".")


def _graph() -> dict[str, list[Arrow]]:
    """Arrows by source, without imports of one's own enclosing packages: Python has run a
    package's __init__ before any module inside it, so `from .. import __version__` reads a
    name that is there already and ties no loop of its own."""
    out: dict[str, list[Arrow]] = {m: [] for m in modules()}
    for a in arrows():
        if not _ancestor(a.target, a.source):
            out[a.source].append(a)
    return out


def _cycles(graph: dict[str, list[Arrow]]) -> list[list[str]]:
    """Strongly connected groups of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for a in graph[v]:
            w = a.target
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for v in graph:
        if v not in index:
            visit(v)
    return groups


def _in(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def test_the_parser_sees_the_known_arrows() -> None:
    """The checks below are only as good as the arrows: a few that must be seen."""
    seen = {(a.source, a.target) for a in arrows()}
    assert ("tfless.model", "tfless.runtime.plan") in seen  # plain top-level import
    assert ("tfless.model", "tfless.backends") in seen  # import inside a method
    assert ("tfless.export", "tfless.export.onnx") in seen  # from a package's __init__
    assert ("tfless.ops", "tfless.ops.recurrent") in seen  # `from . import (...)` submodules
    assert ("tfless.export.onnx_builder", "tfless.runtime.plan") in seen  # TYPE_CHECKING


def test_no_import_cycles() -> None:
    graph = _graph()
    problems = []
    for group in _cycles(graph):
        members = set(group)
        ties = [str(a) for m in group for a in graph[m] if a.target in members]
        problems.append(f"cycle of {len(group)} modules: {', '.join(group)}\n    "
                        + "\n    ".join(ties))
    assert not problems, "import cycles:\n" + "\n".join(problems)


def test_formats_and_ops_never_import_each_other() -> None:
    wrong = [str(a) for a in arrows()
             if (_in(a.source, "tfless.ops") and _in(a.target, "tfless.formats"))
             or (_in(a.source, "tfless.formats") and _in(a.target, "tfless.ops")
                 and (a.source, a.target) not in FORMATS_TO_OPS_EXCEPTIONS)]
    assert not wrong, "formats and ops import each other:\n  " + "\n  ".join(wrong)


def test_nothing_imports_the_cli() -> None:
    """Only the console script (`tfless = "tfless.cli:main"`) runs the CLI; what the
    subcommands share lives below it (tfless.model_io)."""
    pyproject = (SRC.parent / "pyproject.toml").read_text(encoding="utf8")
    assert 'tfless = "tfless.cli:main"' in pyproject
    wrong = [str(a) for a in arrows() if a.target == "tfless.cli"]
    assert not wrong, "modules importing tfless.cli:\n  " + "\n  ".join(wrong)


def test_backends_never_reach_the_model() -> None:
    """The Model builds backends; a backend knows Graphs and plans only (directly or
    through anything it imports)."""
    graph = _graph()
    came_from: dict[str, Arrow | None] = {"tfless.backends": None}
    todo = ["tfless.backends"]
    while todo:
        for a in graph[todo.pop()]:
            if a.target not in came_from:
                came_from[a.target] = a
                todo.append(a.target)
    if "tfless.model" in came_from:
        path, step = [], came_from["tfless.model"]
        while step is not None:
            path.append(str(step))
            step = came_from[step.source]
        raise AssertionError("tfless.backends reaches tfless.model:\n  "
                             + "\n  ".join(reversed(path)))


def _defines_code(tree: ast.Module) -> bool:
    return any(isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
               for n in tree.body)


def test_no_long_file_without_a_reason_at_its_top() -> None:
    """Over 600 lines, a module's docstring says in its first lines why (it contains
    "long because"). Data tables (no functions or classes, e.g. generated signatures) are
    not code to read and need no reason."""
    wrong = []
    for module, path in modules().items():
        text = path.read_text(encoding="utf8")
        lines = text.count("\n") + (not text.endswith("\n"))
        if lines <= MAX_LINES:
            continue
        tree = ast.parse(text)
        head = "\n".join((ast.get_docstring(tree) or "").splitlines()[:6])
        if _defines_code(tree) and not REASON.search(head):
            wrong.append(f"{_path(module)}: {lines} lines")
    assert not wrong, (f"files over {MAX_LINES} lines whose docstring does not say why "
                       "('long because ...') in its first lines; split them by concern:\n  "
                       + "\n  ".join(wrong))
