"""The C backend's core: tensors, the emitter registry, and compiling a lowered graph.

Every ONNX op type the lowering writes has one emitter (`@emits("Relu", ...)` in an
`ops_<family>.py` module) that returns the C statements computing the node's outputs from
its inputs, with shapes baked in as literals (or `steps` expressions for a free axis).
Each node becomes one `static void` function named after it; `model_predict` calls them in
order. Tensors live in one static arena per C type, at offsets planned from their
lifetimes; reshapes are views (no code). Static tensors (lower.py) are constants: emitters
read their values at generation time (`Tensor.ints()`), and they are written into the C
file only where generated code reads them as data.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ...errors import TflessError, UnsupportedLayer
from .dims import Dim, Shape, at, prod
from .dims import strides as dim_strides
from .lower import Facts, Lowered
from .onnx_graph import node_attr

CTYPES = {"float32": "float", "float64": "double", "int64": "int64_t", "int32": "int32_t",
          "int16": "int16_t", "int8": "int8_t", "uint8": "uint8_t", "bool": "unsigned char"}
# ops whose output is their first input re-read with another shape: no code, no copy
VIEWS = {"Reshape", "Flatten", "Squeeze", "Unsqueeze", "Identity"}
ALIGN = 16  # arena offsets in elements (64 bytes for float)


def c_ident(name: str) -> str:
    ident = re.sub(r"\W", "_", name).strip("_").lower()
    return ident if ident and not ident[0].isdigit() else f"t_{ident}"


def c_float(v: float) -> str:
    v = float(np.float32(v))
    if np.isnan(v):
        return "NAN"
    if np.isinf(v):
        return "INFINITY" if v > 0 else "(-INFINITY)"
    text = repr(v)
    if "e" not in text and "." not in text:
        text += ".0"
    return text + "f"


def c_literal(v: Any, dtype: np.dtype) -> str:
    """One value of `dtype` as a C literal."""
    if dtype.kind == "f":
        return c_float(v) if dtype == np.float32 else repr(float(v))
    if dtype.kind == "b":
        return "1" if v else "0"
    v = int(v)
    if dtype.itemsize == 8:
        return "INT64_MIN" if v == -2**63 else f"{v}LL"
    return str(v)


@dataclass
class Tensor:
    """One tensor as emitters see it. `ref` is the C expression of its first element's
    address (a macro of the arena slot, or a constant array)."""

    name: str
    dtype: np.dtype
    shape: Shape
    ref: str
    const: np.ndarray | None = None
    sym: list[Dim] | None = None

    @property
    def ctype(self) -> str:
        return CTYPES[self.dtype.name]

    @property
    def rank(self) -> int:
        return len(self.shape)

    @property
    def size(self) -> Dim:
        return prod(self.shape)

    @property
    def strides(self) -> list[Dim]:
        return dim_strides(self.shape)

    @property
    def is_static(self) -> bool:
        return self.const is not None or self.sym is not None

    def ints(self) -> list[Dim]:
        """The values of a static integer tensor (flat), as Dims."""
        if self.sym is not None:
            return list(self.sym)
        if self.const is None:
            raise UnsupportedLayer(f"tensor '{self.name}' is computed at run time, but the C export "
                                   "needs its value when the code is generated")
        return [int(v) for v in np.asarray(self.const).ravel()]

    def scalar(self) -> float | None:
        """The value of a constant with one element (for inlining), else None."""
        if self.const is not None and self.const.size == 1 and self.dtype.kind in "fiub":
            return self.const.reshape(()).item()
        return None


class OpNode:
    """An ONNX node with its tensors."""

    def __init__(self, proto: Any, inputs: list[Tensor | None], outputs: list[Tensor | None]) -> None:
        self.proto = proto
        self.op: str = proto.op_type
        self.name: str = proto.name or proto.op_type
        self.inputs = inputs
        self.outputs = outputs

    @property
    def layer(self) -> str:
        return self.name.split("/")[0]

    def attr(self, key: str, default: Any = None) -> Any:
        return node_attr(self.proto, key, default)

    def input(self, i: int) -> Tensor | None:
        return self.inputs[i] if i < len(self.inputs) else None

    def fail(self, what: str) -> UnsupportedLayer:
        return UnsupportedLayer(f"layer '{self.layer}': the C export cannot compile its ONNX "
                                f"{self.op} ({self.name}): {what}")


Emitter = Callable[[OpNode, "Context"], str]
EMITTERS: dict[str, Emitter] = {}


def emits(*ops: str) -> Callable[[Emitter], Emitter]:
    """Register an emitter for ONNX op types."""

    def decorate(fn: Emitter) -> Emitter:
        for op in ops:
            if op in EMITTERS:
                raise RuntimeError(f"C emitter for {op!r} registered twice")
            EMITTERS[op] = fn
        return fn

    return decorate


@dataclass
class Slot:
    """Arena storage of one root tensor: [first, last] positions in the call order."""

    ctype: str
    size: int
    first: int
    last: int
    offset: int = 0


@dataclass
class Context:
    """Compiles the nodes of a lowered graph to C functions."""

    lowered: Lowered
    functions: list[str] = field(default_factory=list)
    helpers: dict[str, str] = field(default_factory=dict)
    needs_error: bool = False
    consts_used: dict[str, Tensor] = field(default_factory=dict)
    roots: dict[str, str] = field(default_factory=dict)  # tensor -> tensor owning its storage
    slots: dict[str, Slot] = field(default_factory=dict)
    pos: int = 0
    _fn_names: set[str] = field(default_factory=set)
    _idents: dict[str, str] = field(default_factory=dict)

    def ident(self, name: str) -> str:
        """A C identifier for a tensor name, unique among those handed out."""
        if name not in self._idents:
            base = c_ident(name)[:60]
            ident, i = base, 1
            taken = set(self._idents.values())
            while ident in taken:
                ident, i = f"{base}_{i}", i + 1
            self._idents[name] = ident
        return self._idents[name]

    @property
    def facts(self) -> Facts:
        return self.lowered.facts

    @property
    def max_steps(self) -> int:
        return self.lowered.free.max_steps if self.lowered.free else 0

    # tensors
    def tensor(self, name: str) -> Tensor:
        facts = self.facts
        if name not in facts.dtypes:
            raise TflessError(f"the lowered graph has no facts for tensor '{name}' (a tfless bug)")
        dtype = np.dtype(facts.dtypes[name])
        if dtype.name not in CTYPES:
            raise UnsupportedLayer(f"tensor '{name}' has dtype {dtype.name}; the C export handles "
                                   f"{', '.join(CTYPES)}")
        const = facts.consts.get(name)
        if const is not None:
            return Tensor(name, dtype, facts.shapes[name], f"k_{self.ident(name)}", const=const)
        return Tensor(name, dtype, facts.shapes[name], f"t_{self.ident(self.roots.get(name, name))}",
                      sym=facts.syms.get(name))

    def data(self, t: Tensor) -> str:
        """`t.ref`, recording that generated code reads the tensor (constants get written)."""
        if t.const is not None:
            self.consts_used[t.name] = t
        elif t.sym is not None:
            raise UnsupportedLayer(f"tensor '{t.name}' holds sizes that follow the sequence length "
                                   "and is read as data; export with a fixed length (--steps N)")
        else:
            self.use(t.name)
        return t.ref

    def helper(self, name: str, code: str) -> str:
        """A shared C helper function (written once, before the layers)."""
        self.helpers.setdefault(name, code)
        return name

    # storage
    def define(self, name: str, at_pos: int | None = None) -> None:
        t = self.tensor(name)
        size = at(t.size, self.max_steps)
        self.slots[name] = Slot(t.ctype, max(size, 1), self.pos if at_pos is None else at_pos,
                                self.pos if at_pos is None else at_pos)

    def use(self, name: str, at_pos: int | None = None) -> None:
        root = self.roots.get(name, name)
        if root in self.slots:
            slot = self.slots[root]
            slot.last = max(slot.last, self.pos if at_pos is None else at_pos)

    def alias(self, view: str, of: str) -> None:
        self.roots[view] = self.roots.get(of, of)

    def plan(self) -> dict[str, int]:
        """Arena offsets for every slot (first fit among slots whose lifetimes overlap);
        returns each C type's arena size."""
        placed: list[Slot] = []
        totals: dict[str, int] = {}
        for slot in sorted(self.slots.values(), key=lambda s: (s.first, -s.size)):
            busy = sorted((s.offset, s.offset + s.size) for s in placed
                          if s.ctype == slot.ctype and s.first <= slot.last and slot.first <= s.last)
            offset = 0
            for lo, hi in busy:
                if offset + slot.size <= lo:
                    break
                offset = max(offset, -(-hi // ALIGN) * ALIGN)
            slot.offset = offset
            placed.append(slot)
            totals[slot.ctype] = max(totals.get(slot.ctype, 0), offset + slot.size)
        return totals

    # code
    def function(self, node_name: str, doc: str, body: str) -> str:
        base = "op_" + c_ident(node_name)[:60]
        fn, i = base, 1
        while fn in self._fn_names:
            fn, i = f"{base}_{i}", i + 1
        self._fn_names.add(fn)
        self.functions.append(f"/* {doc} */\nstatic void {fn}(void) {{\n{body.rstrip()}\n}}\n")
        return fn

    def compile_graph(self, graph: Any) -> list[str]:
        """C calls (statements) computing `graph`'s nodes, in order."""
        calls: list[str] = []
        for proto in graph.node:
            outs = [o for o in proto.output if o]
            if outs and all(o in self.facts.consts or o in self.facts.syms for o in outs):
                continue  # computed here, at generation time
            self.pos += 1
            node = OpNode(proto, [self.tensor(i) if i else None for i in proto.input],
                          [self.tensor(o) if o else None for o in proto.output])
            src = node.inputs[0] if node.inputs else None
            if proto.op_type in VIEWS and src is not None and not src.is_static:
                self.use(src.name)
                self.alias(outs[0], src.name)
                continue
            for o in outs:
                self.define(o)
            emitter = EMITTERS.get(proto.op_type)
            if emitter is None:
                raise node.fail(f"no C emitter for ONNX op {proto.op_type} yet. C emitters: "
                                f"{', '.join(sorted(EMITTERS))}")
            try:
                body = emitter(node, self)
            except TflessError:
                raise
            except (KeyError, ValueError, TypeError, IndexError) as exc:
                raise node.fail(f"{type(exc).__name__}: {exc}") from exc
            shapes = ", ".join(_fmt_shape(t.shape) for t in node.inputs if t is not None)
            doc = (f"{node.name}: {proto.op_type} {shapes} -> "
                   f"{', '.join(_fmt_shape(t.shape) for t in node.outputs if t is not None)}")
            calls.append(f"{self.function(node.name, doc, body)}();")
        return calls


def _fmt_shape(shape: Shape) -> str:
    return "(" + ", ".join(str(d) for d in shape) + ")"


# ----- small helpers emitters share -------------------------------------------------------
def loops(shape: Shape, body: str, var: str = "i", indent: int = 1) -> str:
    """Nested for-loops over `shape` with indices {var}0..{var}{n-1} around `body`."""
    pad = "    " * indent
    head, tail = [], []
    for k, d in enumerate(shape):
        head.append(f"{pad}{'    ' * k}for (int {var}{k} = 0; {var}{k} < {d}; ++{var}{k}) {{")
        tail.insert(0, f"{pad}{'    ' * k}}}")
    inner = "    " * len(shape)
    text = "\n".join(f"{pad}{inner}{line}" for line in body.strip("\n").split("\n"))
    return "\n".join(head + [text] + tail)


def index(idx: Sequence[str], strides: Sequence[Dim]) -> str:
    """A flat offset: sum of idx[k]*strides[k] (skipping zero strides)."""
    terms = []
    for i, s in zip(idx, strides):
        if isinstance(s, int) and s == 0:
            continue
        terms.append(i if isinstance(s, int) and s == 1 else f"{i}*{s}")
    return " + ".join(terms) or "0"


def broadcast_strides(shape: Shape, out: Shape) -> list[Dim]:
    """Strides to read `shape` broadcast (numpy rules) to `out`: 0 on broadcast axes."""
    pad = (1,) * (len(out) - len(shape)) + tuple(shape)
    st = dim_strides(pad)
    return [0 if (isinstance(d, int) and d == 1 and not (isinstance(o, int) and o == 1)) else s
            for d, o, s in zip(pad, out, st)]


def flat_loop(n: Dim, body: str, var: str = "i") -> str:
    return f"    for (int {var} = 0; {var} < {n}; ++{var}) {{\n        {body}\n    }}"
