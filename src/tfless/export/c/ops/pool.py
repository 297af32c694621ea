"""C emitters for ONNX pooling: MaxPool, AveragePool (count_include_pad, ceil_mode,
dilations, pads/auto_pad), GlobalAveragePool and GlobalMaxPool, 1-D to 3-D, NCHW.

Each output cell walks its window; taps outside the input are skipped, so padding never
enters a maximum and an average divides by the real cells unless count_include_pad=1
(then by the cells inside the padded extent). ceil_mode needs no code of its own: the
output sizes come from the lowering, and a window running past the padded end is clipped.
"""

from __future__ import annotations

from ..dims import prod
from ..emit import Context, OpNode, emits
from .conv import _flat, _ind, window_pads


@emits("MaxPool", "AveragePool")
def emit_pool(node: OpNode, ctx: Context) -> str:
    x, y = node.inputs[0], node.outputs[0]
    if x.ctype != "float":
        raise node.fail(f"input dtype {x.dtype.name}; the C emitter pools float32")
    if len(node.outputs) > 1 and node.outputs[1] is not None:
        raise node.fail("MaxPool's Indices output; the C emitter computes the values only")
    if x.rank not in (3, 4, 5):
        raise node.fail(f"input of rank {x.rank}; 1-D, 2-D and 3-D pooling are supported")
    r = x.rank - 2
    kernel = [int(k) for k in node.attr("kernel_shape")]
    strides = [int(s) for s in node.attr("strides", [1] * r)]
    dilations = [int(d) for d in node.attr("dilations", [1] * r)]
    if int(node.attr("storage_order", 0)):
        raise node.fail("storage_order=1; the C emitter pools row-major data")
    xs, ys = list(x.shape[2:]), list(y.shape[2:])
    pads = window_pads(node, xs, ys, kernel, strides, dilations)
    is_max = node.op == "MaxPool"
    include_pad = int(node.attr("count_include_pad", 0)) and not is_max
    ends = list(node.attr("pads", [0] * (2 * r)))[r:] if node.attr("auto_pad", "NOTSET") == "NOTSET" \
        else [(o - 1) * s + (k - 1) * d + 1 - n - p
              for o, s, k, d, n, p in zip(ys, strides, kernel, dilations, xs, pads)]
    isz, osz = prod(xs), prod(ys)
    X, Y = ctx.data(x), y.ref
    acc = "acc = x[{at}] > acc || isnan(x[{at}]) ? x[{at}] : acc;" if is_max else "acc += x[{at}];"
    inner = acc.format(at=_flat([f"p{a}" for a in range(r)], xs)) + ("" if is_max or include_pad
                                                                       else "\n++cnt;")
    for a in range(r - 1, -1, -1):
        inner = (f"for (int k{a} = 0; k{a} < {kernel[a]}; ++k{a}) {{\n"
                 f"    const int p{a} = s{a} + k{a} * {dilations[a]};\n"
                 f"    if (p{a} < 0 || p{a} >= {xs[a]}) continue;\n{_ind(inner, 1)}\n}}")
    finish = "acc"
    if not is_max:
        if include_pad:
            # cells inside [-pad_begin, size + pad_end): a product of per-axis counts
            counts = []
            for a in range(r):
                counts.append(f"int n{a} = 0;\nfor (int k{a} = 0; k{a} < {kernel[a]}; ++k{a}) "
                              f"{{ const int p = s{a} + k{a} * {dilations[a]}; "
                              f"n{a} += p >= -{pads[a]} && p < {xs[a]} + {ends[a]}; }}")
            inner += "\n" + "\n".join(counts) + "\nconst int cnt = " + \
                " * ".join(f"n{a}" for a in range(r)) + ";"
        finish = "cnt > 0 ? acc / (float)cnt : 0.0f"
    start = "float acc = -INFINITY;" if is_max else \
        ("float acc = 0.0f;" if include_pad else "float acc = 0.0f;\nint cnt = 0;")
    cell = f"{start}\n{inner}\ny[{_flat([f'o{a}' for a in range(r)], ys)}] = {finish};"
    for a in range(r - 1, -1, -1):
        cell = (f"for (int o{a} = 0; o{a} < {ys[a]}; ++o{a}) {{\n"
                f"    const int s{a} = o{a} * {strides[a]} - {pads[a]};\n{_ind(cell, 1)}\n}}")
    nc = prod(x.shape[:2])
    return _ind(f"for (int nc = 0; nc < {nc}; ++nc) {{\n"
                f"    const float* x = {X} + (size_t)nc * {isz};\n"
                f"    float* y = {Y} + (size_t)nc * {osz};\n{_ind(cell, 1)}\n}}", 1)


@emits("GlobalAveragePool", "GlobalMaxPool")
def emit_global_pool(node: OpNode, ctx: Context) -> str:
    x, y = node.inputs[0], node.outputs[0]
    if x.ctype != "float":
        raise node.fail(f"input dtype {x.dtype.name}; the C emitter pools float32")
    isz = prod(x.shape[2:])
    nc = prod(x.shape[:2])
    if node.op == "GlobalMaxPool":
        start, step, finish = "-INFINITY", "acc = x[j] > acc || isnan(x[j]) ? x[j] : acc;", "acc"
    else:
        start, step, finish = "0.0f", "acc += x[j];", f"acc / (float)({isz})"
    return _ind(f"for (int nc = 0; nc < {nc}; ++nc) {{\n"
                f"    const float* x = {ctx.data(x)} + (size_t)nc * {isz};\n"
                f"    float acc = {start};\n"
                f"    for (int j = 0; j < {isz}; ++j) {step}\n"
                f"    {y.ref}[nc] = {finish};\n}}", 1)
