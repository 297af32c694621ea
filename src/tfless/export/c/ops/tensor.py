"""C emitters for tensor ops the converters write beyond elementwise/movement/reductions:
Einsum, CumSum (inclusive, forward), TopK and GatherElements.

Einsum becomes one loop nest generated from the equation with every label's size known:
output labels outside, summed labels inside, each operand read at the flat offset its labels
give (a label an operand sees with size 1 while others see more is broadcast: stride 0).
TopK keeps a sorted insertion list per slice, so equal values keep the lower index first
(the ONNX rule). GatherElements reads its indices at run time and bounds-checks them like
Gather (an out-of-range index sets `model_error` and reads element 0 of the axis).
"""

from __future__ import annotations

from ..dims import Dim, prod
from ..emit import Context, OpNode, Tensor, emits, index, loops


def _axis(node: OpNode, rank: int, value: int) -> int:
    if not -rank <= value < max(rank, 1):
        raise node.fail(f"axis {value} out of range for rank {rank}")
    return value + rank if value < 0 else value


# ----- Einsum -------------------------------------------------------------------------------
def _split_term(node: OpNode, term: str, rank: int, ell: str) -> list[str]:
    """Labels of one operand term, '...' expanded to `ell`'s last labels (one per axis the
    ellipsis covers)."""
    term = term.strip()
    if "..." in term:
        head, tail = term.split("...")
        n = rank - len(head) - len(tail)
        if n < 0 or n > len(ell):
            raise node.fail(f"term '{term}' does not fit an operand of rank {rank}")
        labels = list(head) + list(ell[len(ell) - n:]) + list(tail)
    else:
        labels = list(term)
    if len(labels) != rank or not all(c.isalpha() or c in ell for c in labels):
        raise node.fail(f"term '{term}' does not match an operand of rank {rank}")
    return labels


def parse_einsum(node: OpNode, equation: str, ranks: list[int]) -> tuple[list[list[str]], list[str]]:
    """(labels per operand, output labels) of an ONNX Einsum equation; the ellipsis becomes
    digit labels (digits never appear in an equation), implicit output as ONNX defines it:
    the ellipsis axes, then the labels used once, in alphabetical order."""
    eq = equation.replace(" ", "")
    lhs, arrow, rhs = eq.partition("->")
    terms = lhs.split(",")
    if len(terms) != len(ranks):
        raise node.fail(f"equation '{equation}' has {len(terms)} operands, the node {len(ranks)}")
    ell_rank = max([r - len(t.replace("...", "")) for t, r in zip(terms, ranks) if "..." in t],
                   default=0)
    ell = "".join(str(d) for d in range(ell_rank))
    ins = [_split_term(node, t, r, ell) for t, r in zip(terms, ranks)]
    if arrow:
        out = _split_term(node, rhs, len(rhs.replace("...", "")) + (ell_rank if "..." in rhs else 0),
                          ell)
    else:
        counts: dict[str, int] = {}
        for labels in ins:
            for c in labels:
                counts[c] = counts.get(c, 0) + 1
        out = [c for c in ell if c in counts] + sorted(c for c, n in counts.items()
                                                       if n == 1 and c.isalpha())
    return ins, out


def _label_sizes(node: OpNode, ins: list[list[str]], xs: list[Tensor]) -> dict[str, Dim]:
    sizes: dict[str, Dim] = {}
    for labels, x in zip(ins, xs):
        for c, d in zip(labels, x.shape):
            old = sizes.get(c)
            if old is None or (isinstance(old, int) and old == 1):
                sizes[c] = d
            elif not (isinstance(d, int) and d == 1) and str(d) != str(old):
                raise node.fail(f"label '{c}' has sizes {old} and {d}")
    return sizes


@emits("Einsum")
def emit_einsum(node: OpNode, ctx: Context) -> str:
    xs = [t for t in node.inputs if t is not None]
    y = node.outputs[0]
    ins, out = parse_einsum(node, str(node.attr("equation", "")), [x.rank for x in xs])
    sizes = _label_sizes(node, ins, xs)
    one = {c for c, d in sizes.items() if isinstance(d, int) and d == 1}  # no loop: index 0
    summed = [c for c in dict.fromkeys(c for labels in ins for c in labels)
              if c not in out and c not in one]
    looped = [c for c in out if c not in one]
    var = {c: f"i{k}" for k, c in enumerate(looped)}
    var.update({c: f"r{k}" for k, c in enumerate(summed)})
    acc = "double" if y.ctype == "double" else ("float" if y.dtype.kind == "f" else "int64_t")
    reads = []
    for x, labels in zip(xs, ins):
        # a label repeated in one term (a diagonal) adds its strides
        strides: dict[str, Dim] = {}
        for c, d, s in zip(labels, x.shape, x.strides):
            if isinstance(d, int) and d == 1:
                continue  # broadcast (or a size-1 axis): always index 0
            strides[c] = strides.get(c, 0) + s
        offset = index([var[c] for c in strides], list(strides.values()))
        cast = "" if x.ctype == acc else f"({acc})"
        reads.append(f"{cast}{ctx.data(x)}[{offset}]")
    term = " * ".join(reads)
    inner = loops(tuple(sizes[c] for c in summed), f"acc += {term};", var="r", indent=0) \
        if summed else f"acc += {term};"
    dst = index([var[c] for c in looped], [s for c, s in zip(out, y.strides) if c not in one])
    body = f"{acc} acc = 0;\n{inner}\n{y.ref}[{dst}] = ({y.ctype})acc;"
    return loops(tuple(sizes[c] for c in looped), body)


# ----- CumSum -------------------------------------------------------------------------------
@emits("CumSum")
def emit_cumsum(node: OpNode, ctx: Context) -> str:
    x, y = node.inputs[0], node.outputs[0]
    axis = _axis(node, x.rank, int(node.inputs[1].ints()[0]))
    if int(node.attr("exclusive", 0)) or int(node.attr("reverse", 0)):
        # the converters write only the inclusive forward sum (keras.ops.cumsum, sparsemax)
        raise node.fail("exclusive or reverse CumSum; the C emitter computes the inclusive "
                        "forward sum")
    pre, n, post = prod(x.shape[:axis]), x.shape[axis], prod(x.shape[axis + 1:])
    acc = "double" if x.ctype == "double" else ("float" if x.dtype.kind == "f" else "int64_t")
    return (f"    const {x.ctype}* src = {ctx.data(x)};\n"
            f"    for (int o = 0; o < {pre}; ++o) for (int i = 0; i < {post}; ++i) {{\n"
            f"        {acc} acc = 0;\n"
            f"        for (int j = 0; j < {n}; ++j) {{\n"
            f"            const size_t at = ((size_t)o * {n} + (size_t)j) * {post} + i;\n"
            f"            acc += src[at]; {y.ref}[at] = ({y.ctype})acc;\n"
            f"        }}\n    }}")


# ----- TopK ---------------------------------------------------------------------------------
TOPK_C = """\
/* the k largest (or smallest) of each slice along the middle axis of (outer, n, inner),
   in order; an insertion list keeps equal values in index order (ONNX TopK) */
static void topk_axis(const float* x, float* v, int64_t* ix, int outer, int n, int inner,
                      int k, int largest) {
    for (int o = 0; o < outer; ++o) {
        for (int i = 0; i < inner; ++i) {
            const float* p = x + (size_t)o * n * inner + i;
            float* q = v + (size_t)o * k * inner + i;
            int64_t* r = ix + (size_t)o * k * inner + i;
            int m = 0;
            for (int e = 0; e < n; ++e) {
                const float val = p[(size_t)e * inner];
                if (m == k && !(largest ? val > q[(size_t)(k - 1) * inner]
                                        : val < q[(size_t)(k - 1) * inner])) continue;
                int j = m < k ? m++ : k - 1;
                while (j > 0 && (largest ? val > q[(size_t)(j - 1) * inner]
                                         : val < q[(size_t)(j - 1) * inner])) {
                    q[(size_t)j * inner] = q[(size_t)(j - 1) * inner];
                    r[(size_t)j * inner] = r[(size_t)(j - 1) * inner];
                    --j;
                }
                q[(size_t)j * inner] = val;
                r[(size_t)j * inner] = e;
            }
        }
    }
}
"""


@emits("TopK")
def emit_topk(node: OpNode, ctx: Context) -> str:
    x = node.inputs[0]
    values, ids = (node.outputs + [None, None])[:2]
    if x.ctype != "float" or values is None or ids is None:
        raise node.fail("TopK is compiled for float32 input with both outputs used")
    axis = _axis(node, x.rank, int(node.attr("axis", -1)))
    k = node.inputs[1].ints()[0]
    pre, n, post = prod(x.shape[:axis]), x.shape[axis], prod(x.shape[axis + 1:])
    fn = ctx.helper("topk_axis", TOPK_C)
    largest = int(node.attr("largest", 1))
    return (f"    {fn}({ctx.data(x)}, {values.ref}, {ids.ref}, {pre}, {n}, {post}, {k}, "
            f"{largest});")


# ----- GatherElements -----------------------------------------------------------------------
@emits("GatherElements")
def emit_gather_elements(node: OpNode, ctx: Context) -> str:
    data, ids = node.inputs[:2]
    y = node.outputs[0]
    axis = _axis(node, data.rank, int(node.attr("axis", 0)))
    idx = [f"i{k}" for k in range(y.rank)]
    rows = data.shape[axis]
    ctx.needs_error = True
    others = [i if k != axis else "0" for k, i in enumerate(idx)]
    src = index([i for i in others if i != "0"],
                [s for i, s in zip(others, data.strides) if i != "0"])
    body = (f"int64_t r = (int64_t){ctx.data(ids)}[{index(idx, ids.strides)}];\n"
            f"if (r < 0) r += {rows};\n"
            f"if (r < 0 || r >= {rows}) {{ model_error = 1; r = 0; }}\n"
            f"{y.ref}[{index(idx, y.strides)}] = "
            f"{ctx.data(data)}[{src} + (size_t)r * {data.strides[axis]}];")
    return loops(y.shape, body)
