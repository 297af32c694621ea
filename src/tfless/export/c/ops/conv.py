"""C emitters for ONNX convolutions: Conv (groups, depthwise, dilations, strides, pads,
SAME_UPPER/VALID) and ConvTranspose (pads, output_padding, groups), 1-D to 3-D, NCHW.

The direct convolution is weight-stationary: for each (output channel, input channel,
kernel tap) one weight is broadcast over a row of the output, and the innermost loop walks
the last spatial axis over the range where the tap lands inside the input (computed once
per tap, so the inner loop has no branch and vectorizes at -O2 for stride 1). A 1x1
convolution without stride or padding is a matrix product over the flattened image; a
depthwise convolution (one input channel per group) drops the channel loop.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..dims import Dim, prod
from ..emit import Context, OpNode, emits

# the output positions o (0 <= o < n_out) where o*s + off lies in [0, n_in): [lo, hi)
RANGE_HELPERS = """\
static int conv_lo(int off, int s) {
    return off >= 0 ? 0 : (-off + s - 1) / s;
}
static int conv_hi(int off, int s, int n_in, int n_out) {
    if (n_in - 1 - off < 0) return 0;
    const int hi = (n_in - 1 - off) / s + 1;
    return hi < n_out ? hi : n_out;
}
"""


def window_pads(node: OpNode, in_sizes: Sequence[Dim], out_sizes: Sequence[Dim],
                kernel: Sequence[int], strides: Sequence[int],
                dilations: Sequence[int]) -> list[Dim]:
    """Pads before each spatial axis, from `pads` or auto_pad (the ends follow from the
    output sizes the lowering probed)."""
    r = len(in_sizes)
    auto = node.attr("auto_pad", "NOTSET")
    if auto in ("NOTSET", "VALID"):
        pads = list(node.attr("pads", [0] * (2 * r))) if auto == "NOTSET" else [0] * (2 * r)
        return [int(p) for p in pads[:r]]
    if auto not in ("SAME_UPPER", "SAME_LOWER"):
        raise node.fail(f"auto_pad {auto!r}; the C emitter handles NOTSET, VALID, SAME_UPPER "
                        "and SAME_LOWER")
    before: list[Dim] = []
    for n, o, k, s, d in zip(in_sizes, out_sizes, kernel, strides, dilations):
        total = (o - 1) * s + (k - 1) * d + 1 - n
        if not isinstance(total, int):
            raise node.fail("'same' padding whose size follows the sequence length; export with "
                            "a fixed length (--steps N)")
        total = max(total, 0)
        before.append(total // 2 if auto == "SAME_UPPER" else total - total // 2)
    return before


def _geometry(node: OpNode, r: int) -> tuple[list[int], list[int], list[int]]:
    w = node.inputs[1]
    kernel = [int(k) for k in node.attr("kernel_shape", w.shape[2:])]
    strides = [int(s) for s in node.attr("strides", [1] * r)]
    dilations = [int(d) for d in node.attr("dilations", [1] * r)]
    return kernel, strides, dilations


def _check(node: OpNode) -> None:
    for t in node.inputs[:3]:
        if t is not None and t.ctype != "float":
            raise node.fail(f"tensor '{t.name}' is {t.dtype.name}; the C emitter convolves float32")
    if node.inputs[1].const is None:
        raise node.fail("the kernel is computed at run time; the C emitter needs constant weights")
    if node.inputs[0].rank not in (3, 4, 5):
        raise node.fail(f"input of rank {node.inputs[0].rank}; 1-D, 2-D and 3-D convolutions are "
                        "supported")


def _ind(text: str, levels: int) -> str:
    pad = "    " * levels
    return "\n".join(pad + line if line else line for line in text.split("\n"))


def _taps(kernel: Sequence[int], body: str) -> str:
    """Loops k0.. over the kernel taps around `body`."""
    out = body
    for a in range(len(kernel) - 1, -1, -1):
        out = f"for (int k{a} = 0; k{a} < {kernel[a]}; ++k{a}) {{\n{_ind(out, 1)}\n}}"
    return out


def _flat(idx: Sequence[str], sizes: Sequence[Dim]) -> str:
    """Row-major flat offset of idx within sizes, as a C expression."""
    if not idx:
        return "0"
    expr = idx[0]
    for i, n in zip(idx[1:], sizes[1:]):
        expr = f"({expr}) * {n} + {i}"
    return expr


@emits("Conv")
def emit_conv(node: OpNode, ctx: Context) -> str:
    _check(node)
    x, w, b = node.inputs[0], node.inputs[1], node.input(2)
    y = node.outputs[0]
    r = x.rank - 2
    n, c_in = x.shape[:2]
    m_out = y.shape[1]
    group = int(node.attr("group", 1))
    kernel, strides, dilations = _geometry(node, r)
    xs, ys = list(x.shape[2:]), list(y.shape[2:])
    pads = window_pads(node, xs, ys, kernel, strides, dilations)
    cg, mg = w.shape[1], m_out // group
    ksz, isz, osz = prod(kernel), prod(xs), prod(ys)
    X, W, Y = ctx.data(x), ctx.data(w), y.ref
    bias = f"{ctx.data(b)}[m]" if b is not None else "0.0f"
    pointwise = all(k == 1 for k in kernel) and all(s == 1 for s in strides) and \
        all(isinstance(p, int) and p == 0 for p in pads)
    head = (f"for (int n = 0; n < {n}; ++n) {{\nfor (int m = 0; m < {m_out}; ++m) {{\n"
            f"    float* y = {Y} + ((size_t)n * {m_out} + m) * {osz};\n"
            f"    for (int j = 0; j < {osz}; ++j) y[j] = {bias};\n"
            f"    const int c0 = (m / {mg}) * {cg};  /* first input channel of m's group */\n")
    if pointwise:
        # a matrix product: y[m, :] += w[m, c] * x[c, :] over the flattened image
        inner = (f"const float* x = {X} + ((size_t)n * {c_in} + c0 + c) * {isz};\n"
                 f"const float wv = {W}[(size_t)m * {cg} + c];\n"
                 f"for (int j = 0; j < {osz}; ++j) y[j] += wv * x[j];")
    else:
        ctx.helper("conv_lo", RANGE_HELPERS)
        last = r - 1
        lines = [f"const float wv = w[{_flat([f'k{a}' for a in range(r)], kernel)}];",
                 f"const int off = k{last} * {dilations[last]} - {pads[last]};",
                 f"const int lo = conv_lo(off, {strides[last]});",
                 f"const int hi = conv_hi(off, {strides[last]}, {xs[last]}, {ys[last]});"]
        row = (f"const float* xr = x + (size_t)({_flat([f'p{a}' for a in range(last)], xs)}) * {xs[last]};\n"
               f"float* yr = y + (size_t)({_flat([f'o{a}' for a in range(last)], ys)}) * {ys[last]};\n"
               + ("for (int o = lo; o < hi; ++o) yr[o] += wv * xr[o + off];" if strides[last] == 1
                  else f"for (int o = lo; o < hi; ++o) yr[o] += wv * xr[o * {strides[last]} + off];"))
        # the outer spatial axes: one output row at a time, skipping rows in the padding
        for a in range(last - 1, -1, -1):
            row = (f"for (int o{a} = 0; o{a} < {ys[a]}; ++o{a}) {{\n"
                   f"    const int p{a} = o{a} * {strides[a]} + k{a} * {dilations[a]} - {pads[a]};\n"
                   f"    if (p{a} < 0 || p{a} >= {xs[a]}) continue;\n{_ind(row, 1)}\n}}")
        taps = _taps(kernel, "\n".join(lines) + "\n" + row)
        inner = (f"const float* x = {X} + ((size_t)n * {c_in} + c0 + c) * {isz};\n"
                 f"const float* w = {W} + ((size_t)m * {cg} + c) * {ksz};\n" + taps)
    if cg == 1:  # depthwise: the group's one input channel
        body = "{\n    const int c = 0;\n" + _ind(inner, 1) + "\n}"
    else:
        body = f"for (int c = 0; c < {cg}; ++c) {{\n{_ind(inner, 1)}\n}}"
    return _ind(head + _ind(body, 1) + "\n}\n}", 1)


@emits("ConvTranspose")
def emit_conv_transpose(node: OpNode, ctx: Context) -> str:
    _check(node)
    x, w, b = node.inputs[0], node.inputs[1], node.input(2)
    y = node.outputs[0]
    r = x.rank - 2
    if node.attr("auto_pad", "NOTSET") != "NOTSET" or node.attr("output_shape") is not None:
        raise node.fail("auto_pad/output_shape; the C emitter handles explicit pads and "
                        "output_padding")
    n, c_in = x.shape[:2]
    m_out = y.shape[1]
    group = int(node.attr("group", 1))
    kernel, strides, dilations = _geometry(node, r)
    pads = [int(p) for p in node.attr("pads", [0] * (2 * r))[:r]]
    xs, ys = list(x.shape[2:]), list(y.shape[2:])
    cg, mg = c_in // group, w.shape[1]
    ksz, isz, osz = prod(kernel), prod(xs), prod(ys)
    X, W, Y = ctx.data(x), ctx.data(w), y.ref
    ctx.helper("conv_lo", RANGE_HELPERS)
    bias = f"{ctx.data(b)}[m]" if b is not None else "0.0f"
    last = r - 1
    # each input cell scatters one tap into the output: o = i*s + k*d - pad
    lines = [f"const float wv = w[{_flat([f'k{a}' for a in range(r)], kernel)}];",
             f"const int off = k{last} * {dilations[last]} - {pads[last]};",
             f"const int lo = conv_lo(off, {strides[last]});",
             f"const int hi = conv_hi(off, {strides[last]}, {ys[last]}, {xs[last]});"]
    row = (f"const float* xr = x + (size_t)({_flat([f'i{a}' for a in range(last)], xs)}) * {xs[last]};\n"
           f"float* yr = y + (size_t)({_flat([f'q{a}' for a in range(last)], ys)}) * {ys[last]};\n"
           f"for (int i = lo; i < hi; ++i) yr[i * {strides[last]} + off] += wv * xr[i];")
    for a in range(last - 1, -1, -1):
        row = (f"for (int i{a} = 0; i{a} < {xs[a]}; ++i{a}) {{\n"
               f"    const int q{a} = i{a} * {strides[a]} + k{a} * {dilations[a]} - {pads[a]};\n"
               f"    if (q{a} < 0 || q{a} >= {ys[a]}) continue;\n{_ind(row, 1)}\n}}")
    taps = _taps(kernel, "\n".join(lines) + "\n" + row)
    return _ind(
        f"for (int n = 0; n < {n}; ++n) {{\n"
        f"for (int m = 0; m < {m_out}; ++m) {{\n"
        f"    float* y = {Y} + ((size_t)n * {m_out} + m) * {osz};\n"
        f"    for (int j = 0; j < {osz}; ++j) y[j] = {bias};\n"
        f"    const int g = m / {mg}, mm = m % {mg};\n"
        f"    for (int c = g * {cg}; c < (g + 1) * {cg}; ++c) {{\n"
        f"        const float* x = {X} + ((size_t)n * {c_in} + c) * {isz};\n"
        f"        const float* w = {W} + ((size_t)c * {mg} + mm) * {ksz};\n"
        f"{_ind(taps, 2)}\n    }}\n}}\n}}", 1)
