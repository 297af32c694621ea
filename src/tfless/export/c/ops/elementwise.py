"""C emitters for elementwise ONNX ops: unary functions, broadcasting binary ops, Where, Cast, Clip.

One loop nest per node over the output; each operand is read through its broadcast strides,
and axes that every operand walks contiguously are merged into one loop. Constant scalars
are written into the expression as literals.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..dims import Dim
from ..emit import Context, OpNode, Tensor, broadcast_strides, c_literal, emits, index, loops

# unary float functions as C expressions of `x`; attribute values are filled in by name
UNARY_FLOAT = {
    "Relu": "(x > 0.0f ? x : 0.0f)",
    "Sigmoid": "(x >= 0.0f ? 1.0f / (1.0f + expf(-x)) : expf(x) / (1.0f + expf(x)))",
    "Tanh": "tanhf(x)", "Exp": "expf(x)", "Log": "logf(x)", "Sqrt": "sqrtf(x)",
    "Erf": "erff(x)", "Floor": "floorf(x)", "Ceil": "ceilf(x)", "Round": "rintf(x)",
    "Sin": "sinf(x)", "Cos": "cosf(x)", "Tan": "tanf(x)", "Asin": "asinf(x)", "Acos": "acosf(x)",
    "Atan": "atanf(x)", "Sinh": "sinhf(x)", "Cosh": "coshf(x)", "Asinh": "asinhf(x)",
    "Acosh": "acoshf(x)", "Atanh": "atanhf(x)",
    "Softsign": "(x / (1.0f + fabsf(x)))",
    "Softplus": "(fmaxf(x, 0.0f) + log1pf(expf(-fabsf(x))))",
    "Reciprocal": "(1.0f / x)",
    "Elu": "(x > 0.0f ? x : {alpha} * expm1f(x))",
    "Celu": "(fmaxf(x, 0.0f) + fminf(0.0f, {alpha} * expm1f(x / {alpha})))",
    "Selu": "({gamma} * (x > 0.0f ? x : {alpha} * expm1f(x)))",
    "LeakyRelu": "(x >= 0.0f ? x : {alpha} * x)",
    "ThresholdedRelu": "(x > {alpha} ? x : 0.0f)",
    "HardSigmoid": "fminf(fmaxf({alpha} * x + {beta}, 0.0f), 1.0f)",
    "HardSwish": "(x * fminf(fmaxf(x / 6.0f + 0.5f, 0.0f), 1.0f))",
    "Mish": "(x * tanhf(fmaxf(x, 0.0f) + log1pf(expf(-fabsf(x)))))",
    "Shrink": "(x < -{lambd} ? x + {bias} : (x > {lambd} ? x - {bias} : 0.0f))",
}
UNARY_DEFAULTS = {"Elu": {"alpha": 1.0}, "Celu": {"alpha": 1.0},
                  "Selu": {"alpha": 1.67326319217681884765625, "gamma": 1.05070102214813232421875},
                  "LeakyRelu": {"alpha": 0.01}, "ThresholdedRelu": {"alpha": 1.0},
                  "HardSigmoid": {"alpha": 0.2, "beta": 0.5}, "Shrink": {"bias": 0.0, "lambd": 0.5}}
# unary ops on any numeric type
UNARY_ANY = {"Neg": "(-x)", "Abs": "(x < 0 ? -x : x)", "Sign": "((x > 0) - (x < 0))",
             "Not": "(!x)", "IsNaN": "isnan(x)", "Identity": "x"}
BINARY = {"Add": "(a + b)", "Sub": "(a - b)", "Mul": "(a * b)", "Div": "(a / b)",
          "Equal": "(a == b)", "Less": "(a < b)", "LessOrEqual": "(a <= b)", "Greater": "(a > b)",
          "GreaterOrEqual": "(a >= b)", "And": "(a && b)", "Or": "(a || b)", "Xor": "(!a != !b)",
          "BitShift": None}
FLOAT_BINARY = {"Pow": "powf(a, b)", "Max": "fmaxf(a, b)", "Min": "fminf(a, b)",
                "Mod": "fmodf(a, b)"}
_F32 = np.dtype("float32")
INT_BINARY = {"Max": "(a > b ? a : b)", "Min": "(a < b ? a : b)",
              "Mod": "(((a % b) + b) % b)", "Pow": None}


def coalesce(shape: Sequence[Dim], strides: Sequence[Sequence[Dim]]) -> tuple[list[Dim], list[list[Dim]]]:
    """Merge adjacent axes that every operand walks as one (drops size-1 axes)."""
    keep = [k for k, d in enumerate(shape) if not (isinstance(d, int) and d == 1)]
    dims = [shape[k] for k in keep]
    sts = [[s[k] for k in keep] for s in strides]
    k = len(dims) - 2
    while k >= 0:
        if all(_merges(st[k], st[k + 1], dims[k + 1]) for st in sts):
            dims[k:k + 2] = [dims[k] * dims[k + 1]]
            for st in sts:
                st[k:k + 2] = [st[k + 1]]
        k -= 1
    return dims, sts


def _merges(outer: Dim, inner: Dim, inner_size: Dim) -> bool:
    if isinstance(outer, int) and isinstance(inner, int) and outer == 0 and inner == 0:
        return True
    return str(outer) == str(inner * inner_size)


def elementwise(ctx: Context, out: Tensor, operands: Sequence[Tensor], expr: str,
                names: Sequence[str]) -> str:
    """`out[...] = expr` with each operand's value bound to its name (broadcast)."""
    reads = []  # (name, C literal or None, tensor)
    strided = []
    for t, name in zip(operands, names):
        value = t.scalar()
        if value is not None:
            reads.append((name, c_literal(value, t.dtype), t))
        else:
            reads.append((name, None, t))
            strided.append(broadcast_strides(t.shape, out.shape))
    dims, sts = coalesce(out.shape, [out.strides] + strided)
    idx = [f"i{k}" for k in range(len(dims))]
    lines = []
    it = iter(sts[1:])
    for name, literal, t in reads:
        if literal is not None:
            lines.append(f"const {t.ctype} {name} = {literal};")
        else:
            lines.append(f"const {t.ctype} {name} = {ctx.data(t)}[{index(idx, next(it))}];")
    lines.append(f"{out.ref}[{index(idx, sts[0])}] = ({out.ctype}){expr};")
    return loops(tuple(dims), "\n".join(lines))


def _fill(template: str, node: OpNode) -> str:
    values = {k: node.attr(k, v) for k, v in UNARY_DEFAULTS.get(node.op, {}).items()}
    return template.format(**{k: c_literal(v, _F32) for k, v in values.items()})


@emits(*UNARY_FLOAT)
def emit_unary_float(node: OpNode, ctx: Context) -> str:
    x, y = node.inputs[0], node.outputs[0]
    if x.ctype != "float":
        raise node.fail(f"input dtype {x.dtype.name}; the C emitter computes it on float32")
    return elementwise(ctx, y, [x], _fill(UNARY_FLOAT[node.op], node), ["x"])


@emits(*UNARY_ANY)
def emit_unary_any(node: OpNode, ctx: Context) -> str:
    x, y = node.inputs[0], node.outputs[0]
    return elementwise(ctx, y, [x], UNARY_ANY[node.op], ["x"])


@emits("IsInf")
def emit_isinf(node: OpNode, ctx: Context) -> str:
    pos, neg = int(node.attr("detect_positive", 1)), int(node.attr("detect_negative", 1))
    expr = f"(isinf(x) && ((x > 0 && {pos}) || (x < 0 && {neg})))"
    return elementwise(ctx, node.outputs[0], [node.inputs[0]], expr, ["x"])


@emits(*[op for op in {**BINARY, **FLOAT_BINARY} if op != "BitShift"], "Sum", "Mean")
def emit_binary(node: OpNode, ctx: Context) -> str:
    ins = [t for t in node.inputs if t is not None]
    y = node.outputs[0]
    is_float = ins[0].ctype in ("float", "double")
    if node.op in ("Max", "Min", "Sum", "Mean", "Add", "Mul") and len(ins) > 2 or node.op in ("Sum", "Mean"):
        return _variadic(node, ctx, ins, y, is_float)
    table = FLOAT_BINARY if is_float else INT_BINARY
    expr = table.get(node.op) if node.op in table else BINARY.get(node.op)
    if node.op == "Mod" and is_float and not int(node.attr("fmod", 0)):
        expr = "(a - floorf(a / b) * b)"
    if node.op == "Pow" and ins[1].scalar() == 2.0:
        expr = "(a * a)"
    if expr is None:
        raise node.fail(f"{node.op} on {ins[0].dtype.name}")
    if ins[0].ctype == "double":
        expr = expr.replace("powf", "pow").replace("fmaxf", "fmax").replace("fminf", "fmin") \
            .replace("fmodf", "fmod").replace("floorf", "floor")
    return elementwise(ctx, y, ins[:2], expr, ["a", "b"])


def _variadic(node: OpNode, ctx: Context, ins: list[Tensor], y: Tensor, is_float: bool) -> str:
    names = [f"v{k}" for k in range(len(ins))]
    if node.op in ("Sum", "Mean", "Add"):
        expr = "(" + " + ".join(names) + ")"
        if node.op == "Mean":
            expr = f"({expr} / {len(ins)}.0f)"
    elif node.op == "Mul":
        expr = "(" + " * ".join(names) + ")"
    else:
        fn = ("fmaxf" if node.op == "Max" else "fminf") if is_float else None
        expr = names[0]
        for n in names[1:]:
            expr = (f"{fn}({expr}, {n})" if fn else
                    f"(({expr}) {'>' if node.op == 'Max' else '<'} {n} ? ({expr}) : {n})")
    return elementwise(ctx, y, ins, expr, names)


@emits("Where")
def emit_where(node: OpNode, ctx: Context) -> str:
    return elementwise(ctx, node.outputs[0], node.inputs[:3], "(c ? a : b)", ["c", "a", "b"])


@emits("PRelu")
def emit_prelu(node: OpNode, ctx: Context) -> str:
    return elementwise(ctx, node.outputs[0], node.inputs[:2], "(x < 0.0f ? s * x : x)", ["x", "s"])


@emits("Cast")
def emit_cast(node: OpNode, ctx: Context) -> str:
    x, y = node.inputs[0], node.outputs[0]
    expr = "x"
    if y.dtype.kind == "b":
        expr = "(x != 0)"
    elif y.dtype.kind in "iu" and x.dtype.kind == "f":
        expr = "truncf(x)" if x.ctype == "float" else "trunc(x)"
    return elementwise(ctx, y, [x], expr, ["x"])


@emits("Clip")
def emit_clip(node: OpNode, ctx: Context) -> str:
    x, y = node.inputs[0], node.outputs[0]
    expr = "x"
    low, high = node.input(1), node.input(2)
    if low is not None:
        lo = c_literal(_value(node, low), x.dtype)
        expr = f"(x < {lo} ? {lo} : {expr})"
    if high is not None:
        hi = c_literal(_value(node, high), x.dtype)
        expr = f"({expr} > {hi} ? {hi} : {expr})"
    return elementwise(ctx, y, [x], expr, ["x"])


def _value(node: OpNode, t: Tensor) -> float:
    v = t.scalar()
    if v is None:
        raise node.fail(f"bound '{t.name}' must be a constant")
    return v

