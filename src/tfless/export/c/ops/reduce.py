"""C emitters for reductions over axes: ReduceSum/Mean/Max/Min/Prod/L1/L2/SumSquare/LogSumExp,
ArgMax/ArgMin, Softmax and LogSoftmax.

Each reduction sees its input as (outer, reduced, inner) blocks after moving nothing:
reduced axes that are not adjacent are walked by nested loops over an index list.
"""

from __future__ import annotations

from ..dims import prod, strides
from ..emit import Context, OpNode, Tensor, emits, index, loops

# (initial value, accumulate `acc` with `v`, finish `acc` given count n)
REDUCERS = {
    "ReduceSum": ("0.0f", "acc += v;", "acc"),
    "ReduceMean": ("0.0f", "acc += v;", "acc / (float)({n})"),
    "ReduceMax": ("-INFINITY", "acc = (v > acc || isnan(v)) ? v : acc;", "acc"),
    "ReduceMin": ("INFINITY", "acc = (v < acc || isnan(v)) ? v : acc;", "acc"),
    "ReduceProd": ("1.0f", "acc *= v;", "acc"),
    "ReduceL1": ("0.0f", "acc += fabsf(v);", "acc"),
    "ReduceL2": ("0.0f", "acc += v * v;", "sqrtf(acc)"),
    "ReduceSumSquare": ("0.0f", "acc += v * v;", "acc"),
    "ReduceLogSumExp": ("0.0f", "acc += expf(v);", "logf(acc)"),
}
INT_REDUCERS = {"ReduceSum": ("0", "acc += v;", "acc"), "ReduceProd": ("1", "acc *= v;", "acc"),
                "ReduceMax": ("INT64_MIN", "acc = v > acc ? v : acc;", "acc"),
                "ReduceMin": ("INT64_MAX", "acc = v < acc ? v : acc;", "acc")}
BOOL_REDUCERS = {"ReduceMax": ("0", "acc = acc || v;", "acc"),
                 "ReduceMin": ("1", "acc = acc && v;", "acc")}


def _axes(node: OpNode, rank: int) -> list[int]:
    axes = node.attr("axes")
    if axes is None and node.input(1) is not None:
        axes = node.inputs[1].ints()
    if not axes:
        return [] if int(node.attr("noop_with_empty_axes", 0)) else list(range(rank))
    return sorted(int(a) + rank if int(a) < 0 else int(a) for a in axes)


def reduce_loops(ctx: Context, x: Tensor, y: Tensor, axes: list[int], init: str, step: str,
                 finish: str, acc_type: str) -> str:
    kept = [k for k in range(x.rank) if k not in axes]
    xs = x.strides
    o_idx = [f"i{k}" for k in range(len(kept))]
    r_idx = [f"r{k}" for k in range(len(axes))]
    n = prod(x.shape[k] for k in axes)
    src = " + ".join(p for p in (index(o_idx, [xs[k] for k in kept]),
                                 index(r_idx, [xs[k] for k in axes])) if p != "0") or "0"
    inner = loops(tuple(x.shape[k] for k in axes),
                  f"const {acc_type} v = {ctx.data(x)}[{src}];\n{step}", var="r", indent=0)
    dst = index(o_idx, strides([x.shape[k] for k in kept]))
    body = (f"{acc_type} acc = {init};\n{inner}\n"
            f"{y.ref}[{dst}] = ({y.ctype})({finish.format(n=n)});")
    return loops(tuple(x.shape[k] for k in kept), body)


@emits(*REDUCERS)
def emit_reduce(node: OpNode, ctx: Context) -> str:
    x, y = node.inputs[0], node.outputs[0]
    axes = _axes(node, x.rank)
    if x.dtype.kind == "b":
        table, acc = BOOL_REDUCERS, "unsigned char"
    elif x.dtype.kind in "iu":
        table, acc = INT_REDUCERS, "int64_t"
    else:
        table, acc = REDUCERS, "float"
    if node.op not in table:
        raise node.fail(f"{node.op} over {x.dtype.name}")
    init, step, finish = table[node.op]
    return reduce_loops(ctx, x, y, axes, init, step, finish, acc)


@emits("ArgMax", "ArgMin")
def emit_argmax(node: OpNode, ctx: Context) -> str:
    x, y = node.inputs[0], node.outputs[0]
    axis = int(node.attr("axis", 0))
    axis = axis + x.rank if axis < 0 else axis
    last = int(node.attr("select_last_index", 0))
    cmp = (">" if node.op == "ArgMax" else "<") + ("=" if last else "")
    pre, n, post = prod(x.shape[:axis]), x.shape[axis], prod(x.shape[axis + 1:])
    return (f"    for (int o = 0; o < {pre}; ++o) for (int i = 0; i < {post}; ++i) {{\n"
            f"        const {x.ctype}* p = {ctx.data(x)} + (size_t)o * {n} * {post} + i;\n"
            f"        int best = 0;\n"
            f"        for (int k = 1; k < {n}; ++k)\n"
            f"            if (p[(size_t)k * {post}] {cmp} p[(size_t)best * {post}]) best = k;\n"
            f"        {y.ref}[(size_t)o * {post} + i] = best;\n    }}")


SOFTMAX_C = """\
/* softmax (or log-softmax) over the middle axis of (outer, n, inner) blocks */
static void softmax_axis(const float* x, float* y, int outer, int n, int inner, int take_log) {
    for (int o = 0; o < outer; ++o) {
        for (int i = 0; i < inner; ++i) {
            const float* p = x + (size_t)o * n * inner + i;
            float* q = y + (size_t)o * n * inner + i;
            float m = -INFINITY;
            for (int k = 0; k < n; ++k) m = p[(size_t)k * inner] > m ? p[(size_t)k * inner] : m;
            float s = 0.0f;
            for (int k = 0; k < n; ++k) s += expf(p[(size_t)k * inner] - m);
            for (int k = 0; k < n; ++k) {
                const float z = p[(size_t)k * inner] - m;
                q[(size_t)k * inner] = take_log ? z - logf(s) : expf(z) / s;
            }
        }
    }
}
"""


@emits("Softmax", "LogSoftmax")
def emit_softmax(node: OpNode, ctx: Context) -> str:
    x, y = node.inputs[0], node.outputs[0]
    axis = int(node.attr("axis", -1))
    axis = axis + x.rank if axis < 0 else axis
    fn = ctx.helper("softmax_axis", SOFTMAX_C)
    pre, n, post = prod(x.shape[:axis]), x.shape[axis], prod(x.shape[axis + 1:])
    return f"    {fn}({ctx.data(x)}, {y.ref}, {pre}, {n}, {post}, {int(node.op == 'LogSoftmax')});"
