"""C emitters for ops that move data: Transpose, Concat, Split, Slice, Gather, Expand, Tile,
ConstantOfShape, Range.

Index arguments (axes, starts, pads, repeats) are static tensors read when the code is
generated; only Gather's indices may be run-time values, and those are bounds-checked
(an out-of-range id sets `model_error` and reads row 0).
"""

from __future__ import annotations

import numpy as np

from ..dims import Dim, prod
from ..emit import Context, OpNode, Tensor, c_literal, emits, index, loops
from .elementwise import elementwise


def _axis(node: OpNode, rank: int, default: int = 0) -> int:
    axis = int(node.attr("axis", default))
    return axis + rank if axis < 0 else axis


@emits("Transpose")
def emit_transpose(node: OpNode, ctx: Context) -> str:
    x, y = node.inputs[0], node.outputs[0]
    perm = list(node.attr("perm", list(range(x.rank - 1, -1, -1))))
    xs = x.strides
    idx = [f"i{k}" for k in range(y.rank)]
    src = index(idx, [xs[p] for p in perm])
    return loops(y.shape, f"{y.ref}[{index(idx, y.strides)}] = {ctx.data(x)}[{src}];")


def _along_axis(whole: Tensor, parts: list[Tensor | None], axis: int, gather: bool,
                ctx: Context) -> str:
    """Copy each part to (gather=True) or from its place along `axis` of `whole`."""
    code, offset = [], 0
    for part in parts:
        if part is None:
            continue
        idx = [f"i{k}" for k in range(part.rank)]
        at = index(idx, whole.strides) + ("" if offset == 0 else f" + {offset * whole.strides[axis]}")
        here = index(idx, part.strides)
        code.append(loops(part.shape, f"{whole.ref}[{at}] = {ctx.data(part)}[{here}];" if gather
                          else f"{part.ref}[{here}] = {ctx.data(whole)}[{at}];"))
        offset = offset + part.shape[axis]
    return "\n".join(code)


@emits("Concat")
def emit_concat(node: OpNode, ctx: Context) -> str:
    y = node.outputs[0]
    return _along_axis(y, node.inputs, _axis(node, y.rank), True, ctx)


@emits("Split")
def emit_split(node: OpNode, ctx: Context) -> str:
    x = node.inputs[0]
    return _along_axis(x, node.outputs, _axis(node, x.rank), False, ctx)


@emits("Slice")
def emit_slice(node: OpNode, ctx: Context) -> str:
    x, y = node.inputs[0], node.outputs[0]
    starts = node.inputs[1].ints()
    axes = node.input(3).ints() if node.input(3) is not None else list(range(len(starts)))
    steps = node.input(4).ints() if node.input(4) is not None else [1] * len(starts)
    begin: list[Dim] = [0] * x.rank
    step: list[int] = [1] * x.rank
    for s, a, st in zip(starts, axes, steps):
        a = int(a) + x.rank if int(a) < 0 else int(a)
        if not isinstance(st, int):
            raise node.fail("a slice step that follows the sequence length")
        begin[a] = _clamped_start(node, s, x.shape[a], st)
        step[a] = st
    idx = [f"i{k}" for k in range(y.rank)]
    terms = []
    for k, (b, st, xs) in enumerate(zip(begin, step, x.strides)):
        if isinstance(xs, int) and xs == 0:
            continue
        i = idx[k] if st == 1 else f"({idx[k]} * {st})"
        terms.append(f"({b} + {i}) * {xs}" if not (isinstance(b, int) and b == 0) else f"{i} * {xs}")
    src = " + ".join(terms) or "0"
    return loops(y.shape, f"{y.ref}[{index(idx, y.strides)}] = {ctx.data(x)}[{src}];")


def _clamped_start(node: OpNode, start: Dim, size: Dim, step: int) -> Dim:
    """ONNX Slice's start after negative wrapping and clamping (to the axis, or one before
    its end for negative steps)."""
    if isinstance(start, int) and isinstance(size, int):
        s = start + size if start < 0 else start
        return max(0, min(s, size - 1)) if step < 0 else max(0, min(s, size))
    if isinstance(start, int):
        if start < 0:
            return size + start
        if start > 2**30:
            return size - 1 if step < 0 else size
        return start
    return start


@emits("Gather")
def emit_gather(node: OpNode, ctx: Context) -> str:
    data, ids = node.inputs[:2]
    y = node.outputs[0]
    axis = _axis(node, data.rank)
    outer = prod(data.shape[:axis])
    rows = data.shape[axis]
    inner = prod(data.shape[axis + 1:])
    n_ids = prod(ids.shape)
    src = ctx.data(data)
    if ids.const is not None:
        wrapped = [int(v) + (rows if int(v) < 0 else 0) for v in ids.const.ravel()] \
            if isinstance(rows, int) else None
        if wrapped is not None and all(0 <= v < rows for v in wrapped):
            table = Tensor(ids.name + "/wrapped", np.dtype("int64"), ids.shape, ids.ref + "_w",
                           const=np.asarray(wrapped, np.int64).reshape(ids.const.shape))
            ctx.consts_used[table.name] = table
            read = f"const int64_t r = {table.ref}[j];"
            return _gather_loops(outer, n_ids, inner, rows, read, src, y.ref)
    ctx.needs_error = True
    read = (f"int64_t r = (int64_t){ctx.data(ids)}[j];\n"
            f"if (r < 0) r += {rows};\n"
            f"if (r < 0 || r >= {rows}) {{ model_error = 1; r = 0; }}")
    return _gather_loops(outer, n_ids, inner, rows, read, src, y.ref)


def _gather_loops(outer: Dim, n_ids: Dim, inner: Dim, rows: Dim, read: str, src: str,
                  dst: str) -> str:
    inner_read = "\n".join("        " + line for line in read.split("\n"))
    return (f"    for (int o = 0; o < {outer}; ++o) {{\n"
            f"    for (int j = 0; j < {n_ids}; ++j) {{\n{inner_read}\n"
            f"        const size_t from = ((size_t)o * {rows} + (size_t)r) * {inner};\n"
            f"        const size_t to = ((size_t)o * {n_ids} + (size_t)j) * {inner};\n"
            f"        for (int k = 0; k < {inner}; ++k) {dst}[to + k] = {src}[from + k];\n"
            f"    }}\n    }}")


@emits("Expand")
def emit_expand(node: OpNode, ctx: Context) -> str:
    return elementwise(ctx, node.outputs[0], [node.inputs[0]], "x", ["x"])


@emits("Tile")
def emit_tile(node: OpNode, ctx: Context) -> str:
    x, y = node.inputs[0], node.outputs[0]
    idx = [f"i{k}" for k in range(y.rank)]
    src = " + ".join(f"({i} % {d}) * {s}" for i, d, s in zip(idx, x.shape, x.strides)) or "0"
    return loops(y.shape, f"{y.ref}[{index(idx, y.strides)}] = {ctx.data(x)}[{src}];")


@emits("ConstantOfShape")
def emit_constant_of_shape(node: OpNode, ctx: Context) -> str:
    y = node.outputs[0]
    value = node.attr("value")
    v = 0.0
    if value is not None:
        from onnx import numpy_helper

        v = numpy_helper.to_array(value).ravel()[0].item()
    return f"    for (int i = 0; i < {y.size}; ++i) {y.ref}[i] = {c_literal(v, y.dtype)};"


@emits("Range")
def emit_range(node: OpNode, ctx: Context) -> str:
    start, _, delta = (t.ints()[0] if t.dtype.kind in "iu" else t.scalar() for t in node.inputs[:3])
    y = node.outputs[0]
    if y.dtype.kind == "f":
        return (f"    for (int i = 0; i < {y.size}; ++i) "
                f"{y.ref}[i] = {c_literal(start, y.dtype)} + (float)i * {c_literal(delta, y.dtype)};")
    return f"    for (int i = 0; i < {y.size}; ++i) {y.ref}[i] = ({start}) + (int64_t)i * ({delta});"

