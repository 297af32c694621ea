"""C emitters for ONNX ops that reshape images in space: Pad (constant, reflect, edge; the
pads input, optional constant value and axes) and Resize (nearest with every nearest_mode,
linear; coordinate modes half_pixel, pytorch_half_pixel, asymmetric, align_corners).

The converters write Pad for ZeroPadding/TFLite PAD/MIRROR_PAD and Resize for UpSampling
(nearest asymmetric floor, bilinear half_pixel); both are one loop nest over the output.
"""

from __future__ import annotations

from ..dims import Dim
from ..emit import Context, OpNode, c_literal, emits, index, loops
from .conv import _ind

PAD_REFLECT = """\
static int pad_reflect(int i, int n) {
    if (n == 1) return 0;
    const int period = 2 * (n - 1);
    i %= period;
    if (i < 0) i += period;
    return i < n ? i : period - i;
}
"""
PAD_EDGE = """\
static int pad_edge(int i, int n) {
    return i < 0 ? 0 : (i >= n ? n - 1 : i);
}
"""


@emits("Pad")
def emit_pad(node: OpNode, ctx: Context) -> str:
    x, y = node.inputs[0], node.outputs[0]
    mode = node.attr("mode", "constant")
    if mode not in ("constant", "reflect", "edge"):
        raise node.fail(f"mode {mode!r}; the C emitter pads with constant, reflect and edge")
    r = x.rank
    if node.input(1) is None:
        raise node.fail("no pads input (the opset-2 pads attribute is not written by tfless)")
    values = node.inputs[1].ints()
    axes = list(range(r)) if node.input(3) is None else \
        [int(a) + r if int(a) < 0 else int(a) for a in node.inputs[3].ints()]
    before: list[Dim] = [0] * r
    for k, a in enumerate(axes):
        before[a] = values[k]
    idx = [f"i{k}" for k in range(r)]
    dst = index(idx, y.strides)
    X = ctx.data(x)
    if mode == "constant":
        fill = node.input(2)
        if fill is None:
            value = c_literal(0, y.dtype)
        elif fill.scalar() is not None:
            value = c_literal(fill.scalar(), y.dtype)
        else:
            value = f"{ctx.data(fill)}[0]"
        if all(isinstance(b, int) and b >= 0 for b in before) and all(
                isinstance(v, int) and v >= 0 for v in values):
            # fill the border, then copy the input into the middle
            copy_dst = " + ".join(f"({i} + {b}) * {s}" if not (isinstance(b, int) and b == 0)
                                  else f"{i} * {s}" for i, b, s in zip(idx, before, y.strides))
            return (f"    for (int i = 0; i < {y.size}; ++i) {y.ref}[i] = {value};\n"
                    + loops(x.shape, f"{y.ref}[{copy_dst}] = {X}[{index(idx, x.strides)}];"))
        # negative pads crop: each output cell asks whether its source is inside
        checks = " || ".join(f"{i} - {b} < 0 || {i} - {b} >= {n}"
                             for i, b, n in zip(idx, before, x.shape))
        src = " + ".join(f"({i} - {b}) * {s}" for i, b, s in zip(idx, before, x.strides))
        return loops(y.shape, f"{y.ref}[{dst}] = ({checks}) ? {value} : {X}[{src}];")
    fn = ctx.helper("pad_reflect", PAD_REFLECT) if mode == "reflect" else \
        ctx.helper("pad_edge", PAD_EDGE)
    src = " + ".join(f"{fn}({i} - {b}, {n}) * {s}" if not (isinstance(b, int) and b == 0) else
                     f"{i} * {s}" for i, b, n, s in zip(idx, before, x.shape, x.strides))
    return loops(y.shape, f"{y.ref}[{dst}] = {X}[{src}];")


# source coordinate of output index `o` on an axis: (scale, in size, out size) are filled in
COORDS = {
    "half_pixel": "((float)o + 0.5f) / {scale} - 0.5f",
    "pytorch_half_pixel": "({n_out} > 1 ? ((float)o + 0.5f) / {scale} - 0.5f : 0.0f)",
    "asymmetric": "(float)o / {scale}",
    "align_corners": "({n_out} == 1 ? 0.0f : (float)o * (float)({n_in} - 1) / (float)({n_out} - 1))",
}
NEAREST = {"round_prefer_floor": "(int)ceilf({x} - 0.5f)", "round_prefer_ceil": "(int)floorf({x} + 0.5f)",
           "floor": "(int)floorf({x})", "ceil": "(int)ceilf({x})"}


@emits("Resize")
def emit_resize(node: OpNode, ctx: Context) -> str:
    x, y = node.inputs[0], node.outputs[0]
    if x.ctype != "float":
        raise node.fail(f"input dtype {x.dtype.name}; the C emitter resizes float32")
    mode = node.attr("mode", "nearest")
    coord = node.attr("coordinate_transformation_mode", "half_pixel")
    nearest = node.attr("nearest_mode", "round_prefer_floor")
    if mode not in ("nearest", "linear"):
        raise node.fail(f"mode {mode!r}; the C emitter resizes with nearest and linear")
    if coord not in COORDS:
        raise node.fail(f"coordinate_transformation_mode {coord!r}; the C emitter handles "
                        f"{', '.join(COORDS)}")
    if mode == "nearest" and nearest not in NEAREST:
        raise node.fail(f"nearest_mode {nearest!r}; the C emitter handles {', '.join(NEAREST)}")
    if int(node.attr("antialias", 0)) or node.attr("axes") is not None or \
            node.attr("keep_aspect_ratio_policy", "stretch") != "stretch":
        raise node.fail("antialias/axes/keep_aspect_ratio_policy; the C emitter resizes every "
                        "axis by its scale")
    scales_t = node.input(2)
    scales = None
    if scales_t is not None and scales_t.const is not None and scales_t.const.size:
        scales = [float(s) for s in scales_t.const.ravel()]
    r = x.rank
    X, Y = ctx.data(x), y.ref
    # per axis, at its loop level: the source taps (index, weight) of output index o{a}
    taps = 1 if mode == "nearest" else 2
    setup: list[str] = []
    axis_taps: list[int] = []
    for a in range(r):
        n_in, n_out = x.shape[a], y.shape[a]
        same = isinstance(n_in, int) and isinstance(n_out, int) and n_in == n_out and \
            (scales is None or scales[a] == 1.0)
        if same:
            setup.append(f"const int j{a}_0 = o{a};")
            axis_taps.append(1)
            continue
        scale = (c_literal(scales[a], x.dtype) if scales is not None
                 else f"((float)({n_out}) / (float)({n_in}))")
        pos = COORDS[coord].format(scale=scale, n_in=n_in, n_out=n_out).replace("(float)o", f"(float)o{a}")
        if mode == "nearest":
            at = NEAREST[nearest].format(x=f"({pos})")
            setup.append(f"int j{a}_0 = {at};\n"
                         f"if (j{a}_0 < 0) j{a}_0 = 0;\nif (j{a}_0 > {n_in} - 1) j{a}_0 = {n_in} - 1;")
            axis_taps.append(1)
        else:
            # linear: the two neighbours, clamped to the edge (the same as clamping the
            # coordinate, as the ONNX reference does)
            setup.append(f"const float x{a} = {pos};\n"
                         f"const float f{a} = floorf(x{a});\n"
                         f"const float w{a}_1 = x{a} - f{a}, w{a}_0 = 1.0f - w{a}_1;\n"
                         f"const int j{a}_0 = pad_edge((int)f{a}, {n_in}), "
                         f"j{a}_1 = pad_edge((int)f{a} + 1, {n_in});")
            ctx.helper("pad_edge", PAD_EDGE)
            axis_taps.append(taps)
    terms = []
    for combo in _combos(axis_taps):
        w = " * ".join(f"w{a}_{t}" for a, t in enumerate(combo) if axis_taps[a] > 1) or "1.0f"
        src = index([f"j{a}_{t}" for a, t in enumerate(combo)], x.strides)
        terms.append(f"{X}[{src}]" if w == "1.0f" else f"{w} * {X}[{src}]")
    code = f"{Y}[{index([f'o{a}' for a in range(r)], y.strides)}] = " + " + ".join(terms) + ";"
    for a in range(r - 1, -1, -1):
        code = (f"for (int o{a} = 0; o{a} < {y.shape[a]}; ++o{a}) {{\n{_ind(setup[a], 1)}\n"
                f"{_ind(code, 1)}\n}}")
    return _ind(code, 1)


def _combos(counts: list[int]) -> list[tuple[int, ...]]:
    out: list[tuple[int, ...]] = [()]
    for n in counts:
        out = [c + (t,) for c in out for t in range(n)]
    return out

