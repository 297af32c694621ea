"""C emitter for ONNX Scan: the recurrence of RNN/LSTM/GRU layers, one C loop over the steps.

The body graph is compiled like the main graph (its ops become functions of their own);
the Scan's function copies the initial states into the body's state inputs, then per step
copies one slice of each scan input in, calls the body, copies the new states back and
writes the step's outputs into place. The number of steps may be the run-time length.
"""

from __future__ import annotations

from ..dims import Dim, prod
from ..emit import Context, OpNode, Tensor, emits
from ..onnx_graph import body_of, outer_names


def _copy(dst: str, src: str, n: Dim) -> str:
    return f"memmove({dst}, {src}, (size_t)({n}) * sizeof(*({dst})));"


def _strided(t: Tensor, axis: int) -> tuple[Dim, Dim, Dim]:
    """(blocks before the axis, its length, elements after it)."""
    return prod(t.shape[:axis]), t.shape[axis], prod(t.shape[axis + 1:])


@emits("Scan")
def emit_scan(node: OpNode, ctx: Context) -> str:
    body = body_of(node.proto)
    n_scan = int(node.attr("num_scan_inputs"))
    n_state = len(node.inputs) - n_scan
    n_out = len(node.outputs) - n_state
    in_axes = list(node.attr("scan_input_axes", [0] * n_scan))
    in_dirs = list(node.attr("scan_input_directions", [0] * n_scan))
    out_axes = list(node.attr("scan_output_axes", [0] * n_out))
    out_dirs = list(node.attr("scan_output_directions", [0] * n_out))
    b_in = [i.name for i in body.input]
    b_out = [o.name for o in body.output]
    start = ctx.pos
    for name in b_in:
        ctx.define(name, at_pos=start)
    calls = ctx.compile_graph(body)
    ctx.pos += 1
    end = ctx.pos
    inner = {o for n in body.node for o in n.output} | set(b_in)
    for name in [*b_in, *b_out, *(t.name for t in node.inputs if t is not None),
                 *(t.name for t in node.outputs if t is not None),
                 *(n for n in outer_names(body) if n not in inner)]:
        if name in ctx.facts.dtypes and name not in ctx.facts.consts:
            ctx.use(name, at_pos=end)
    states_in = [ctx.tensor(n) for n in b_in[:n_state]]
    slices = [ctx.tensor(n) for n in b_in[n_state:]]
    news = [ctx.tensor(n) for n in b_out[:n_state]]
    step_outs = [ctx.tensor(n) for n in b_out[n_state:]]
    roots = {t.ref for t in states_in}
    if any(t.ref in roots and t.ref != s.ref for t, s in zip(news, states_in)):
        raise node.fail("a loop body that swaps its states")
    scans = node.inputs[n_state:]
    axes = [a + scans[j].rank if a < 0 else a for j, a in enumerate(in_axes)]
    length = scans[0].shape[axes[0]] if scans else 0
    lines = []
    for s, t in zip(states_in, node.inputs[:n_state]):
        lines.append(_copy(s.ref, ctx.data(t), s.size))
    lines.append(f"for (int t = 0; t < {length}; ++t) {{")
    for j, (x, sl) in enumerate(zip(scans, slices)):
        pre, n, post = _strided(x, axes[j])
        step = f"({n} - 1 - t)" if in_dirs[j] else "t"
        lines.append(f"    for (int a = 0; a < {pre}; ++a) "
                     + _copy(f"{sl.ref} + (size_t)a * {post}",
                             f"{ctx.data(x)} + ((size_t)a * {n} + {step}) * {post}", post))
    lines += [f"    {c}" for c in calls]
    for s, t in zip(states_in, news):
        if s.ref != t.ref:
            lines.append("    " + _copy(s.ref, ctx.data(t), s.size))
    for j, (y, v) in enumerate(zip(node.outputs[n_state:], step_outs)):
        axis = out_axes[j] + y.rank if out_axes[j] < 0 else out_axes[j]
        pre, n, post = _strided(y, axis)
        step = f"({n} - 1 - t)" if out_dirs[j] else "t"
        lines.append(f"    for (int a = 0; a < {pre}; ++a) "
                     + _copy(f"{y.ref} + ((size_t)a * {n} + {step}) * {post}",
                             f"{ctx.data(v)} + (size_t)a * {post}", post))
    lines.append("}")
    for s, y in zip(states_in, node.outputs[:n_state]):
        if y is not None:
            lines.append(_copy(y.ref, s.ref, s.size))
    return "\n".join("    " + line for line in lines)
