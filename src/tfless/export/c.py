"""Export a model as dependency-free C99 source: model.h/model.c, a CLI main.c and a Makefile.

The exporter walks the tfless Graph node by node. Each Keras class name maps to one emitter
(the C twin of the NumPy op in `tfless.ops`); an emitter computes the layer's output shapes
and writes one C function named after the layer whose loops have the shapes baked in as
literals. Weights become `static const float` arrays. Tensors live in static buffers sized
for one sample, so `model_predict` handles one sample per call (the CLI loops over a
batch) and is not reentrant.

BatchNormalization that directly follows a Conv/Dense with a linear activation is folded
into that layer's kernel and bias. Everything the emitter table does not know fails with
`UnsupportedLayer` naming the layer before any file is written. The export carries test
vectors computed by the tfless NumPy runtime; `make test` checks the C code against them.
"""

from __future__ import annotations

import argparse
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import TflessError, UnsupportedLayer
from ..graph import Graph, Node
from ..ops.activations import activation_name

Shape = tuple[int, ...]
F32 = np.float32
TEST_ATOL, TEST_RTOL = 1e-5, 1e-4


# ----- activations --------------------------------------------------------------------
# Each elementwise activation is a C expression of `x` (float). They mirror
# tfless/ops/activations.py, including Keras 2's hard_sigmoid (0.2x + 0.5).
ELEMENTWISE: dict[str, str] = {
    "linear": "x",
    "relu": "(x > 0.0f ? x : 0.0f)",
    "relu6": "fminf(fmaxf(x, 0.0f), 6.0f)",
    "leaky_relu": "(x >= 0.0f ? x : 0.2f * x)",
    "elu": "(x > 0.0f ? x : expm1f(x))",
    "selu": "1.05070098f * (x > 0.0f ? x : 1.67326324f * expm1f(x))",
    "celu": "(fmaxf(x, 0.0f) + fminf(0.0f, expm1f(x)))",
    "gelu": "0.5f * x * (1.0f + erff(x * 0.70710678f))",
    "gelu_approximate": "0.5f * x * (1.0f + tanhf(0.79788456f * (x + 0.044715f * x * x * x)))",
    "silu": "x * act_sigmoid(x)",
    "swish": "x * act_sigmoid(x)",
    "hard_sigmoid": "fminf(fmaxf(x + 3.0f, 0.0f), 6.0f) / 6.0f",
    "hard_sigmoid_keras2": "fminf(fmaxf(0.2f * x + 0.5f, 0.0f), 1.0f)",
    "hard_silu": "x * (fminf(fmaxf(x + 3.0f, 0.0f), 6.0f) / 6.0f)",
    "hard_swish": "x * (fminf(fmaxf(x + 3.0f, 0.0f), 6.0f) / 6.0f)",
    "sigmoid": "(x >= 0.0f ? 1.0f / (1.0f + expf(-x)) : expf(x) / (1.0f + expf(x)))",
    "log_sigmoid": "-act_softplus(-x)",
    "tanh": "tanhf(x)",
    "hard_tanh": "fminf(fmaxf(x, -1.0f), 1.0f)",
    "tanh_shrink": "x - tanhf(x)",
    "softplus": "(fmaxf(x, 0.0f) + log1pf(expf(-fabsf(x))))",
    "softsign": "x / (1.0f + fabsf(x))",
    "squareplus": "(x + sqrtf(x * x + 4.0f)) / 2.0f",
    "sparse_plus": "(x <= -1.0f ? 0.0f : (x >= 1.0f ? x : (x + 1.0f) * (x + 1.0f) / 4.0f))",
    "soft_shrink": "(fabsf(x) > 0.5f ? x - copysignf(0.5f, x) : 0.0f)",
    "hard_shrink": "(fabsf(x) > 0.5f ? x : 0.0f)",
    "exponential": "expf(x)",
    "mish": "x * tanhf(act_softplus(x))",
}
# activations whose expression calls another activation function
ACT_DEPENDS = {"silu": ["sigmoid"], "swish": ["sigmoid"], "log_sigmoid": ["softplus"],
               "mish": ["softplus"]}
AXIS_ACTIVATIONS = ("softmax", "log_softmax")

SOFTMAX_C = """\
/* softmax (or log_softmax) over the middle axis of an (outer, n, inner) block */
static void softmax_axis(float* x, int outer, int n, int inner, int take_log) {
    for (int o = 0; o < outer; ++o) {
        for (int i = 0; i < inner; ++i) {
            float* p = x + (size_t)o * n * inner + i;
            float m = p[0];
            for (int k = 1; k < n; ++k) m = fmaxf(m, p[k * inner]);
            float s = 0.0f;
            for (int k = 0; k < n; ++k) s += expf(p[k * inner] - m);
            for (int k = 0; k < n; ++k) {
                float z = p[k * inner] - m;
                p[k * inner] = take_log ? z - logf(s) : expf(z) / s;
            }
        }
    }
}
"""


def c_float(v: float) -> str:
    """A C float literal that reads back as exactly the same float32."""
    v = float(F32(v))
    if math.isnan(v):
        return "NAN"
    if math.isinf(v):
        return "INFINITY" if v > 0 else "-INFINITY"
    text = f"{v:.9g}"
    if "e" not in text and "." not in text:
        text += ".0"
    return text + "f"


def c_ident(name: str) -> str:
    ident = re.sub(r"[^0-9A-Za-z_]", "_", name)
    return ident if ident and not ident[0].isdigit() else "_" + ident


def size_of(shape: Shape) -> int:
    return int(np.prod(shape, dtype=np.int64)) if shape else 1


def _tuple(value: Any, n: int, field_name: str, node: Node) -> tuple[int, ...]:
    if isinstance(value, (int, np.integer)):
        return (int(value),) * n
    if isinstance(value, (list, tuple)) and len(value) == n:
        return tuple(int(v) for v in value)
    raise UnsupportedLayer(
        f"layer '{node.name}' ({node.op}): {field_name}={value!r} is not an int or "
        f"{n}-tuple; the C export supports those"
    )


def _axis(axis: Any, rank: int, node: Node, field_name: str = "axis") -> int:
    """A Keras axis (counting the batch axis) as an index into the per-sample shape."""
    if isinstance(axis, (list, tuple)) and len(axis) == 1:
        axis = axis[0]
    if not isinstance(axis, (int, np.integer)):
        raise UnsupportedLayer(
            f"layer '{node.name}' ({node.op}): {field_name}={axis!r}; the C export supports "
            "a single integer axis"
        )
    full = int(axis) + rank + 1 if axis < 0 else int(axis)
    if not 1 <= full <= rank:
        raise UnsupportedLayer(
            f"layer '{node.name}' ({node.op}): {field_name}={axis} is the batch axis or out "
            f"of range for a sample of rank {rank}"
        )
    return full - 1


def _unsupported(node: Node, what: str) -> UnsupportedLayer:
    return UnsupportedLayer(f"layer '{node.name}' ({node.op}): {what} is not supported by the "
                            "C export")


def _channels_last(node: Node) -> None:
    fmt = node.config.get("data_format") or "channels_last"
    if fmt != "channels_last":
        raise _unsupported(node, f"data_format='{fmt}' (only channels_last)")


# ----- emission context ---------------------------------------------------------------
@dataclass
class Emitted:
    """One layer's C function: its body (using x0.., y0..) and output shapes."""

    out_shapes: list[Shape]
    body: str
    doc: str = ""
    # a Keras mask on output 0: "new" = the layer writes one (my0, one flag per timestep),
    # "pass" = output 0 carries the input's mask unchanged, "unsupported" = output 0 carries
    # a mask the C export cannot represent (refused where a layer would use it)
    out_mask: str = ""


@dataclass
class Context:
    """Collects weight arrays and helper code while layers are emitted."""

    weights: list[tuple[str, np.ndarray]] = field(default_factory=list)
    weight_names: dict[tuple[int, str], str] = field(default_factory=dict)
    activations: set[str] = field(default_factory=set)
    needs_softmax: bool = False
    needs_error: bool = False
    fn: str = ""
    # the C name of input 0's mask (one unsigned char per timestep) when it has one
    in_mask: str | None = None

    def weight(self, label: str, array: np.ndarray) -> str:
        """Declare `array` as a static const float array; returns its C name."""
        key = (id(array), label)
        if key in self.weight_names:
            return self.weight_names[key]
        name = f"{self.fn}_{label}"
        self.weights.append((name, np.ascontiguousarray(array, dtype=F32)))
        self.weight_names[key] = name
        return name

    def activation(self, spec: Any, node: Node, y: str, shape: Shape) -> str:
        """C statements applying a Keras `activation` in place on buffer `y` of `shape`."""
        name = activation_name(spec)
        if name == "linear":
            return ""
        if name in AXIS_ACTIVATIONS:
            self.needs_softmax = True
            n = shape[-1] if shape else 1
            return (f"    softmax_axis({y}, {size_of(shape) // n}, {n}, 1, "
                    f"{int(name == 'log_softmax')});\n")
        if name not in ELEMENTWISE:
            raise UnsupportedLayer(
                f"layer '{node.name}' ({node.op}): activation '{name}' is not supported by the "
                f"C export. Supported: {', '.join(sorted([*ELEMENTWISE, *AXIS_ACTIVATIONS]))}"
            )
        self.use_activation(name)
        return f"    for (int i = 0; i < {size_of(shape)}; ++i) {y}[i] = act_{name}({y}[i]);\n"

    def use_activation(self, name: str) -> None:
        for dep in ACT_DEPENDS.get(name, []):
            self.use_activation(dep)
        self.activations.add(name)

    def helpers(self) -> str:
        parts = []
        order = [n for n in ("sigmoid", "softplus") if n in self.activations]
        order += sorted(self.activations - set(order))
        for name in order:
            parts.append(f"static float act_{name}(float x) {{ return {ELEMENTWISE[name]}; }}\n")
        if self.needs_softmax:
            parts.append(SOFTMAX_C)
        return "\n".join(parts)


Emitter = Callable[[Node, list[Shape], Context], Emitted]
EMITTERS: dict[str, Emitter] = {}


def emits(*names: str) -> Callable[[Emitter], Emitter]:
    def decorate(fn: Emitter) -> Emitter:
        for name in names:
            EMITTERS[name] = fn
        return fn

    return decorate


def supported_layers() -> list[str]:
    """Keras class names the C export can translate."""
    return sorted(EMITTERS)


# ----- core ---------------------------------------------------------------------------
def _dense_body(kernel: str, bias: str | None, rows: int, n_in: int, units: int) -> str:
    init = f"{bias}[j]" if bias else "0.0f"
    return (
        f"    for (int r = 0; r < {rows}; ++r) {{\n"
        f"        const float* xr = x0 + r * {n_in};\n"
        f"        float* yr = y0 + r * {units};\n"
        f"        for (int j = 0; j < {units}; ++j) yr[j] = {init};\n"
        f"        for (int i = 0; i < {n_in}; ++i) {{\n"
        f"            const float xi = xr[i];\n"
        f"            const float* w = {kernel} + i * {units};\n"
        f"            for (int j = 0; j < {units}; ++j) yr[j] += xi * w[j];\n"
        f"        }}\n"
        f"    }}\n"
    )


@emits("Dense")
def emit_dense(node: Node, ins: list[Shape], ctx: Context) -> Emitted:
    (shape,) = ins
    kernel = node.weights["kernel"]
    n_in, units = kernel.shape
    out = (*shape[:-1], units)
    k = ctx.weight("kernel", kernel)
    b = ctx.weight("bias", node.weights["bias"]) if "bias" in node.weights else None
    body = _dense_body(k, b, size_of(shape[:-1]), n_in, units)
    body += ctx.activation(node.config.get("activation"), node, "y0", out)
    return Emitted([out], body, f"Dense {n_in} -> {units}")


@emits("Embedding")
def emit_embedding(node: Node, ins: list[Shape], ctx: Context) -> Emitted:
    (shape,) = ins
    # The mask travels with the output (Keras 1/2 files, Keras 3 Sequential models); Keras 3
    # functional models also save it as its own tensor (keras.ops.NotEqual) passed to the
    # layers that use it, which then read that one instead. Only one flag per timestep is
    # kept in C: a mask over more axes is "unsupported", refused where a layer would use it.
    mask_zero = bool(node.config.get("mask_zero"))
    per_step = mask_zero and len(shape) == 1
    table = node.weights["embeddings"]
    rows, dim = table.shape
    t = ctx.weight("embeddings", table)
    ctx.needs_error = True
    body = (
        f"    for (int i = 0; i < {size_of(shape)}; ++i) {{\n"
        f"        /* Keras casts ids to int, truncating toward zero */\n"
        f"        const long id = (long)x0[i];\n"
        f"        if (id < 0 || id >= {rows}) {{ model_error = 1; id_out_of_range = x0[i]; return; }}\n"
        f"        memcpy(y0 + (size_t)i * {dim}, {t} + id * {dim}, {dim} * sizeof(float));\n"
        + ("        my0[i] = x0[i] != 0.0f;  /* mask_zero: id 0 is padding */\n"
           if per_step else "")
        + "    }\n"
    )
    out_mask = "new" if per_step else "unsupported" if mask_zero else ""
    return Emitted([(*shape, dim)], body, f"Embedding {rows} x {dim}", out_mask)


@emits("Masking")
def emit_masking(node: Node, ins: list[Shape], ctx: Context) -> Emitted:
    (shape,) = ins
    if len(shape) != 2:
        raise _unsupported(node, f"input shape {shape} (only (timesteps, features))")
    steps, n = shape
    value = c_float(node.config.get("mask_value", 0.0))
    # the mask travels with the output (my0), as for Embedding; Keras 3 functional models
    # also compute it as separate NotEqual + Any tensors
    body = (
        f"    for (int t = 0; t < {steps}; ++t) {{\n"
        f"        const float* xt = x0 + (size_t)t * {n};\n"
        f"        unsigned char keep = 0;\n"
        f"        for (int i = 0; i < {n}; ++i) keep |= xt[i] != {value};\n"
        f"        my0[t] = keep;\n"
        f"        for (int i = 0; i < {n}; ++i) y0[(size_t)t * {n} + i] = xt[i] * (float)keep;\n"
        f"    }}\n"
    )
    return Emitted([shape], body, f"Masking (mask_value {value})", "new")


# ----- activation layers --------------------------------------------------------------
@emits("Activation")
def emit_activation(node: Node, ins: list[Shape], ctx: Context) -> Emitted:
    (shape,) = ins
    body = f"    memcpy(y0, x0, {size_of(shape)} * sizeof(float));\n"
    spec = node.config.get("activation")
    if activation_name(spec) in AXIS_ACTIVATIONS:
        return emit_softmax_axis(node, shape, -1, activation_name(spec) == "log_softmax", ctx)
    body += ctx.activation(spec, node, "y0", shape)
    return Emitted([shape], body, f"Activation {activation_name(spec)}")


def emit_softmax_axis(node: Node, shape: Shape, axis: Any, take_log: bool, ctx: Context) -> Emitted:
    a = _axis(axis, len(shape), node)
    ctx.needs_softmax = True
    outer, n, inner = size_of(shape[:a]), shape[a], size_of(shape[a + 1:])
    body = (f"    memcpy(y0, x0, {size_of(shape)} * sizeof(float));\n"
            f"    softmax_axis(y0, {outer}, {n}, {inner}, {int(take_log)});\n")
    return Emitted([shape], body, f"softmax over axis {a + 1}")


@emits("Softmax")
def emit_softmax(node: Node, ins: list[Shape], ctx: Context) -> Emitted:
    return emit_softmax_axis(node, ins[0], node.config.get("axis", -1), False, ctx)


def _relu_expr(slope: float, max_value: float | None, threshold: float) -> str:
    """Keras's generalized relu, with the branch order of tfless.ops.activations.relu."""
    if slope == 0.0 and max_value is None and threshold == 0.0:
        return "(x > 0.0f ? x : 0.0f)"
    if slope != 0.0 and max_value is None and threshold == 0.0:
        return f"(x >= 0.0f ? x : x * {c_float(slope)})"
    t = c_float(threshold)
    y = f"(x > {t} ? x : 0.0f)" if threshold != 0.0 else "fmaxf(x, 0.0f)"
    if max_value is not None:
        y = f"fminf(fmaxf({y}, 0.0f), {c_float(max_value)})"
    if slope != 0.0:
        y = f"{y} - {c_float(slope)} * fmaxf({t} - x, 0.0f)"
    return y


def _elementwise(shape: Shape, expr: str, doc: str) -> Emitted:
    body = (f"    for (int i = 0; i < {size_of(shape)}; ++i) {{\n"
            f"        const float x = x0[i];\n"
            f"        y0[i] = {expr};\n"
            f"    }}\n")
    return Emitted([shape], body, doc)


@emits("ReLU")
def emit_relu(node: Node, ins: list[Shape], ctx: Context) -> Emitted:
    cfg = node.config
    mv = cfg.get("max_value")
    expr = _relu_expr(float(cfg.get("negative_slope") or 0.0), None if mv is None else float(mv),
                      float(cfg.get("threshold") or 0.0))
    return _elementwise(ins[0], expr, "ReLU")


@emits("LeakyReLU")
def emit_leaky_relu(node: Node, ins: list[Shape], ctx: Context) -> Emitted:
    slope = float(node.config.get("negative_slope", node.config.get("alpha", 0.3)))
    return _elementwise(ins[0], _relu_expr(slope, None, 0.0), "LeakyReLU")


@emits("ELU")
def emit_elu(node: Node, ins: list[Shape], ctx: Context) -> Emitted:
    alpha = c_float(node.config.get("alpha", 1.0))
    return _elementwise(ins[0], f"(x > 0.0f ? x : {alpha} * expm1f(fminf(x, 0.0f)))", "ELU")


@emits("ThresholdedReLU")
def emit_thresholded_relu(node: Node, ins: list[Shape], ctx: Context) -> Emitted:
    theta = c_float(node.config.get("theta", 1.0))
    return _elementwise(ins[0], f"(x > {theta} ? x : 0.0f)", "ThresholdedReLU")


@emits("PReLU")
def emit_prelu(node: Node, ins: list[Shape], ctx: Context) -> Emitted:
    (shape,) = ins
    alpha = np.broadcast_to(node.weights["alpha"], shape)
    a = ctx.weight("alpha", np.array(alpha))
    return _elementwise(shape, f"(x >= 0.0f ? x : x * {a}[i])", "PReLU")


# ----- convolution --------------------------------------------------------------------
@dataclass
class Window:
    """Output size and leading padding of one spatial axis (TF's 'same'/'valid' rules)."""

    size: int
    pad: int


def window(n: int, k: int, s: int, d: int, padding: str, node: Node) -> Window:
    span = (k - 1) * d + 1
    if padding == "valid":
        return Window(max((n - span) // s + 1, 0), 0)
    if padding == "same":
        out = -(-n // s)
        total = max((out - 1) * s + span - n, 0)
        return Window(out, total // 2)
    if padding == "causal":
        return Window(-(-n // s), span - 1)
    raise _unsupported(node, f"padding='{padding}'")


def _spatial(node: Node, shape: Shape, rank: int, kernel_hw: tuple[int, ...]) -> tuple:
    """(H, W, C, windows, strides, dilations) with 1-D layers seen as H = 1."""
    _channels_last(node)
    if len(shape) != rank + 1:
        raise _unsupported(node, f"input shape {shape}")
    cfg = node.config
    strides = _tuple(cfg.get("strides", 1) or 1, rank, "strides", node)
    dil = _tuple(cfg.get("dilation_rate", 1) or 1, rank, "dilation_rate", node)
    if max(strides) > 1 and max(dil) > 1:
        raise _unsupported(node, "strides > 1 together with dilation_rate > 1")
    padding = str(cfg.get("padding", "valid")).lower()
    dims = shape[:-1]
    wins = [window(n, k, s, d, padding, node)
            for n, k, s, d in zip(dims, kernel_hw, strides, dil)]
    if rank == 1:
        return ((1, dims[0], shape[-1]), [Window(1, 0), wins[0]], (1, strides[0]),
                (1, dil[0]))
    return (tuple(shape), wins, strides, dil)


def _conv_loops(hw: tuple, wins: list[Window], strides: tuple, dil: tuple, kh: int, kw: int,
                inner: str) -> str:
    """Loops over output pixels and kernel taps; `inner` sees xp (input pixel), yp, tap."""
    (h, w, c), (wh, ww) = hw, wins
    return (
        f"    for (int oh = 0; oh < {wh.size}; ++oh) {{\n"
        f"        for (int ow = 0; ow < {ww.size}; ++ow) {{\n"
        f"            float* yp = y0 + (size_t)(oh * {ww.size} + ow) * COUT;\n"
        f"            for (int co = 0; co < COUT; ++co) yp[co] = BIAS(co);\n"
        f"            for (int ky = 0; ky < {kh}; ++ky) {{\n"
        f"                const int ih = oh * {strides[0]} - {wh.pad} + ky * {dil[0]};\n"
        f"                if (ih < 0 || ih >= {h}) continue;\n"
        f"                for (int kx = 0; kx < {kw}; ++kx) {{\n"
        f"                    const int iw = ow * {strides[1]} - {ww.pad} + kx * {dil[1]};\n"
        f"                    if (iw < 0 || iw >= {w}) continue;\n"
        f"                    const float* xp = x0 + (size_t)(ih * {w} + iw) * {c};\n"
        f"                    const int tap = ky * {kw} + kx;\n"
        f"{inner}"
        f"                }}\n"
        f"            }}\n"
        f"        }}\n"
        f"    }}\n"
    )


def _with_macros(body: str, cout: int, bias: str | None) -> str:
    init = f"{bias}[co]" if bias else "0.0f"
    return (f"#define COUT {cout}\n#define BIAS(co) {init}\n{body}"
            f"#undef COUT\n#undef BIAS\n")


def conv_body(hw: tuple, wins: list[Window], strides: tuple, dil: tuple, kernel: str,
              kshape: tuple[int, ...], bias: str | None, groups: int, y: str = "y0",
              x: str = "x0") -> str:
    kh, kw, cin_g, cout = kshape
    cout_g = cout // groups
    inner = (
        f"                    const float* kp = {kernel} + (size_t)tap * {cin_g * cout};\n"
        f"                    for (int g = 0; g < {groups}; ++g) {{\n"
        f"                        for (int ci = 0; ci < {cin_g}; ++ci) {{\n"
        f"                            const float xv = xp[g * {cin_g} + ci];\n"
        f"                            const float* kr = kp + ci * {cout} + g * {cout_g};\n"
        f"                            float* yg = yp + g * {cout_g};\n"
        f"                            for (int co = 0; co < {cout_g}; ++co) yg[co] += xv * kr[co];\n"
        f"                        }}\n"
        f"                    }}\n"
    ) if groups > 1 else (
        f"                    const float* kp = {kernel} + (size_t)tap * {cin_g * cout};\n"
        f"                    for (int ci = 0; ci < {cin_g}; ++ci) {{\n"
        f"                        const float xv = xp[ci];\n"
        f"                        const float* kr = kp + ci * {cout};\n"
        f"                        for (int co = 0; co < {cout}; ++co) yp[co] += xv * kr[co];\n"
        f"                    }}\n"
    )
    body = _conv_loops(hw, wins, strides, dil, kh, kw, inner)
    body = body.replace("y0 +", f"{y} +").replace("x0 +", f"{x} +")
    return _with_macros(body, cout, bias)


def depthwise_body(hw: tuple, wins: list[Window], strides: tuple, dil: tuple, kernel: str,
                   kshape: tuple[int, ...], bias: str | None, y: str = "y0") -> str:
    kh, kw, c, mult = kshape
    inner = (
        f"                    const float* kp = {kernel} + (size_t)tap * {c * mult};\n"
        f"                    for (int c = 0; c < {c}; ++c) {{\n"
        f"                        const float xv = xp[c];\n"
        f"                        for (int m = 0; m < {mult}; ++m)\n"
        f"                            yp[c * {mult} + m] += xv * kp[c * {mult} + m];\n"
        f"                    }}\n"
    )
    body = _conv_loops(hw, wins, strides, dil, kh, kw, inner).replace("y0 +", f"{y} +")
    return _with_macros(body, c * mult, bias)


def _kernel_2d(kernel: np.ndarray, rank: int) -> np.ndarray:
    return kernel[None] if rank == 1 else kernel


def _conv_rank(op: str) -> int:
    return 1 if "1D" in op else 2


@emits("Conv1D", "Conv2D")
def emit_conv(node: Node, ins: list[Shape], ctx: Context) -> Emitted:
    rank = _conv_rank(node.op)
    kernel = _kernel_2d(node.weights["kernel"], rank)
    groups = int(node.config.get("groups", 1) or 1)
    hw, wins, strides, dil = _spatial(node, ins[0], rank, kernel.shape[-2 - rank:-2]
                                      if rank == 2 else kernel.shape[1:2])
    k = ctx.weight("kernel", kernel)
    b = ctx.weight("bias", node.weights["bias"]) if "bias" in node.weights else None
    cout = kernel.shape[-1]
    out = tuple(w.size for w in wins[2 - rank:]) + (cout,)
    body = conv_body(hw, wins, strides, dil, k, kernel.shape, b, groups)
    body += ctx.activation(node.config.get("activation"), node, "y0", out)
    return Emitted([out], body, f"{node.op} {kernel.shape[:-2]} {hw[-1]} -> {cout}")


@emits("DepthwiseConv1D", "DepthwiseConv2D")
def emit_depthwise(node: Node, ins: list[Shape], ctx: Context) -> Emitted:
    rank = _conv_rank(node.op)
    kernel = _kernel_2d(node.weights["depthwise_kernel"], rank)
    hw, wins, strides, dil = _spatial(node, ins[0], rank, kernel.shape[2 - rank:2])
    k = ctx.weight("depthwise_kernel", kernel)
    b = ctx.weight("bias", node.weights["bias"]) if "bias" in node.weights else None
    out = tuple(w.size for w in wins[2 - rank:]) + (kernel.shape[2] * kernel.shape[3],)
    body = depthwise_body(hw, wins, strides, dil, k, kernel.shape, b)
    body += ctx.activation(node.config.get("activation"), node, "y0", out)
    return Emitted([out], body, f"{node.op} {kernel.shape[:2]} x{kernel.shape[3]}")


@emits("SeparableConv1D", "SeparableConv2D")
def emit_separable(node: Node, ins: list[Shape], ctx: Context) -> Emitted:
    rank = _conv_rank(node.op)
    dk = _kernel_2d(node.weights["depthwise_kernel"], rank)
    pk = _kernel_2d(node.weights["pointwise_kernel"], rank)
    hw, wins, strides, dil = _spatial(node, ins[0], rank, dk.shape[2 - rank:2])
    mid = dk.shape[2] * dk.shape[3]
    cout = pk.shape[-1]
    out_hw = (wins[0].size, wins[1].size)
    d = ctx.weight("depthwise_kernel", dk)
    p = ctx.weight("pointwise_kernel", pk.reshape(mid, cout))
    b = ctx.weight("bias", node.weights["bias"]) if "bias" in node.weights else None
    out = tuple(w.size for w in wins[2 - rank:]) + (cout,)
    body = f"    static float mid[{out_hw[0] * out_hw[1] * mid}];\n"
    body += depthwise_body(hw, wins, strides, dil, d, dk.shape, None, y="mid")
    body += _dense_body(p, b, out_hw[0] * out_hw[1], mid, cout).replace("x0 +", "mid +")
    body += ctx.activation(node.config.get("activation"), node, "y0", out)
    return Emitted([out], body, f"{node.op} {dk.shape[:2]} {hw[-1]} -> {cout}")


@emits("Conv1DTranspose", "Conv2DTranspose")
def emit_conv_transpose(node: Node, ins: list[Shape], ctx: Context) -> Emitted:
    from ..ops.convolutional import transpose_out_size  # Keras's output length rule

    _channels_last(node)
    rank = _conv_rank(node.op)
    (shape,) = ins
    if len(shape) != rank + 1:
        raise _unsupported(node, f"input shape {shape}")
    kernel = _kernel_2d(node.weights["kernel"], rank)  # (kh, kw, filters, in)
    cfg = node.config
    strides = _tuple(cfg.get("strides", 1) or 1, rank, "strides", node)
    dil = _tuple(cfg.get("dilation_rate", 1) or 1, rank, "dilation_rate", node)
    padding = str(cfg.get("padding", "valid")).lower()
    if padding not in ("valid", "same"):
        raise _unsupported(node, f"padding='{padding}'")
    out_pad = cfg.get("output_padding")
    out_pad = None if out_pad is None else _tuple(out_pad, rank, "output_padding", node)
    hw_in = (1, *shape[:-1]) if rank == 1 else shape[:-1]
    ks, st, dl = kernel.shape[:2], (1, *strides) if rank == 1 else strides, \
        (1, *dil) if rank == 1 else dil
    op_ = (0, *out_pad) if rank == 1 and out_pad else out_pad
    out_hw = tuple(transpose_out_size(n, k, s, d, padding, None if op_ is None else p)
                   for n, k, s, d, p in zip(hw_in, ks, st, dl, op_ or (0, 0)))
    # each input pixel and tap adds into output pixel i*stride + k*dilation - pad, where pad
    # is the 'same' padding of the forward convolution that maps the output back to the input
    pads = [window(o, k, s, d, "same", node).pad if padding == "same" else 0
            for o, k, s, d in zip(out_hw, ks, st, dl)]
    filters, cin = kernel.shape[2], kernel.shape[3]
    k = ctx.weight("kernel", np.ascontiguousarray(np.swapaxes(kernel, 2, 3)))  # (kh, kw, in, F)
    b = ctx.weight("bias", node.weights["bias"]) if "bias" in node.weights else None
    (h, w), (oh_n, ow_n) = hw_in, out_hw
    init = f"{b}[i % {filters}]" if b else "0.0f"
    body = (
        f"    for (int i = 0; i < {oh_n * ow_n * filters}; ++i) y0[i] = {init};\n"
        f"    for (int ih = 0; ih < {h}; ++ih) {{\n"
        f"        for (int iw = 0; iw < {w}; ++iw) {{\n"
        f"            const float* xp = x0 + (size_t)(ih * {w} + iw) * {cin};\n"
        f"            for (int ky = 0; ky < {ks[0]}; ++ky) {{\n"
        f"                const int oh = ih * {st[0]} + ky * {dl[0]} - {pads[0]};\n"
        f"                if (oh < 0 || oh >= {oh_n}) continue;\n"
        f"                for (int kx = 0; kx < {ks[1]}; ++kx) {{\n"
        f"                    const int ow = iw * {st[1]} + kx * {dl[1]} - {pads[1]};\n"
        f"                    if (ow < 0 || ow >= {ow_n}) continue;\n"
        f"                    float* yp = y0 + (size_t)(oh * {ow_n} + ow) * {filters};\n"
        f"                    const float* kp = {k} + (size_t)(ky * {ks[1]} + kx) * {cin * filters};\n"
        f"                    for (int ci = 0; ci < {cin}; ++ci) {{\n"
        f"                        const float xv = xp[ci];\n"
        f"                        const float* kr = kp + ci * {filters};\n"
        f"                        for (int f = 0; f < {filters}; ++f) yp[f] += xv * kr[f];\n"
        f"                    }}\n"
        f"                }}\n"
        f"            }}\n"
        f"        }}\n"
        f"    }}\n"
    )
    out = (*out_hw[2 - rank:], filters)
    body += ctx.activation(cfg.get("activation"), node, "y0", out)
    return Emitted([out], body, f"{node.op} {kernel.shape[:2]} {cin} -> {filters}")


# ----- pooling ------------------------------------------------------------------------
@emits("MaxPooling1D", "MaxPooling2D", "AveragePooling1D", "AveragePooling2D")
def emit_pool(node: Node, ins: list[Shape], ctx: Context) -> Emitted:
    rank = _conv_rank(node.op)
    cfg = node.config
    pool = _tuple(cfg.get("pool_size", 2), rank, "pool_size", node)
    strides = cfg.get("strides") or pool
    cfg = {**cfg, "strides": strides, "dilation_rate": 1}
    hw, wins, st, _ = _spatial(Node(node.name, node.op, cfg, {}, [], []), ins[0], rank, pool)
    kh, kw = (1, pool[0]) if rank == 1 else pool
    (h, w, c), (wh, ww) = hw, wins
    is_max = node.op.startswith("Max")
    init = "-INFINITY" if is_max else "0.0f"
    acc = "if (v > acc) acc = v;" if is_max else "acc += v; ++count;"
    # TF's average pooling with 'same' padding divides by the number of real pixels only
    finish = "acc" if is_max else "acc / (float)count"
    body = (
        f"    for (int oh = 0; oh < {wh.size}; ++oh) {{\n"
        f"        for (int ow = 0; ow < {ww.size}; ++ow) {{\n"
        f"            for (int c = 0; c < {c}; ++c) {{\n"
        f"                float acc = {init};\n"
        f"{'' if is_max else '                int count = 0;' + chr(10)}"
        f"                for (int ky = 0; ky < {kh}; ++ky) {{\n"
        f"                    const int ih = oh * {st[0]} - {wh.pad} + ky;\n"
        f"                    if (ih < 0 || ih >= {h}) continue;\n"
        f"                    for (int kx = 0; kx < {kw}; ++kx) {{\n"
        f"                        const int iw = ow * {st[1]} - {ww.pad} + kx;\n"
        f"                        if (iw < 0 || iw >= {w}) continue;\n"
        f"                        const float v = x0[(size_t)(ih * {w} + iw) * {c} + c];\n"
        f"                        {acc}\n"
        f"                    }}\n"
        f"                }}\n"
        f"                y0[(size_t)(oh * {ww.size} + ow) * {c} + c] = {finish};\n"
        f"            }}\n"
        f"        }}\n"
        f"    }}\n"
    )
    out = tuple(wn.size for wn in wins[2 - rank:]) + (c,)
    return Emitted([out], body, f"{node.op} {pool}")


@emits("GlobalMaxPooling1D", "GlobalMaxPooling2D", "GlobalAveragePooling1D",
       "GlobalAveragePooling2D")
def emit_global_pool(node: Node, ins: list[Shape], ctx: Context) -> Emitted:
    _channels_last(node)
    (shape,) = ins
    rank = _conv_rank(node.op)
    if len(shape) != rank + 1:
        raise _unsupported(node, f"input shape {shape}")
    n, c = size_of(shape[:-1]), shape[-1]
    is_max = "Max" in node.op
    out = (1,) * rank + (c,) if node.config.get("keepdims") else (c,)
    step = "if (v > acc) acc = v;" if is_max else "acc += v;"
    finish = "acc" if is_max else f"acc / {c_float(n)}"
    body = (
        f"    for (int c = 0; c < {c}; ++c) {{\n"
        f"        float acc = {'-INFINITY' if is_max else '0.0f'};\n"
        f"        for (int p = 0; p < {n}; ++p) {{\n"
        f"            const float v = x0[(size_t)p * {c} + c];\n"
        f"            {step}\n"
        f"        }}\n"
        f"        y0[c] = {finish};\n"
        f"    }}\n"
    )
    return Emitted([out], body, node.op)


# ----- normalization ------------------------------------------------------------------
def batchnorm_affine(node: Node) -> tuple[np.ndarray, np.ndarray]:
    """BatchNormalization as per-channel (scale, shift) in float32."""
    if node.config.get("mode", 0):
        raise _unsupported(node, f"Keras 1 mode={node.config['mode']}")
    # tf_keras virtual-batch parameters carry an extra axis that inference ignores
    w = {k: v.reshape(-1) for k, v in node.weights.items()}
    eps = F32(node.config.get("epsilon", 1e-3))
    var = w["moving_variance"]
    gamma = w.get("gamma", np.ones_like(var))
    beta = w.get("beta", np.zeros_like(var))
    scale = (gamma / np.sqrt(var + eps)).astype(F32)
    shift = (beta - w["moving_mean"] * scale).astype(F32)
    return scale, shift


@emits("BatchNormalization")
def emit_batchnorm(node: Node, ins: list[Shape], ctx: Context) -> Emitted:
    (shape,) = ins
    a = _axis(node.config.get("axis", -1), len(shape), node)
    scale, shift = batchnorm_affine(node)
    s, t = ctx.weight("scale", scale), ctx.weight("shift", shift)
    n, inner = shape[a], size_of(shape[a + 1:])
    body = (
        f"    for (int i = 0; i < {size_of(shape)}; ++i) {{\n"
        f"        const int c = (i / {inner}) % {n};\n"
        f"        y0[i] = x0[i] * {s}[c] + {t}[c];\n"
        f"    }}\n"
    )
    return Emitted([shape], body, "BatchNormalization (inference)")


@emits("LayerNormalization")
def emit_layer_normalization(node: Node, ins: list[Shape], ctx: Context) -> Emitted:
    (shape,) = ins
    cfg = node.config
    axes = cfg.get("axis", -1)
    axes = sorted({_axis(a, len(shape), node) for a in (axes if isinstance(axes, list) else [axes])})
    if axes != list(range(axes[0], len(shape))):
        raise _unsupported(node, f"axis={cfg.get('axis')!r} (only trailing axes, e.g. -1)")
    outer, n = size_of(shape[:axes[0]]), size_of(shape[axes[0]:])
    eps = c_float(cfg.get("epsilon", 1e-3))
    rms = bool(cfg.get("rms_scaling"))
    # tf_keras's fused kernel ((x - mean) * inv * gamma + beta) rounds differently from the
    # unfused x * (inv * gamma) + (beta - mean * inv * gamma); mirror the runtime's choice
    fused = "keras_major" in cfg and float(F32(cfg.get("epsilon", 1e-3))) >= 1.001e-5
    g = ctx.weight("gamma", node.weights["gamma"].reshape(-1)) if "gamma" in node.weights else None
    b = ctx.weight("beta", node.weights["beta"].reshape(-1)) if "beta" in node.weights else None
    gi = f" * {g}[i]" if g else ""
    if rms:
        expr = f"xr[i] * inv{gi}"
    elif fused:
        expr = f"(xr[i] - mean) * inv{gi}" + (f" + {b}[i]" if b else "")
    else:
        expr = (f"xr[i] * (inv{gi}) + (-mean * (inv{gi})" + (f" + {b}[i])" if b else ")"))
    body = (
        f"    for (int o = 0; o < {outer}; ++o) {{\n"
        f"        const float* xr = x0 + (size_t)o * {n};\n"
        f"        float* yr = y0 + (size_t)o * {n};\n"
        f"        double sum = 0.0, sq = 0.0;\n"
        f"        for (int i = 0; i < {n}; ++i) sum += xr[i];\n"
        f"        const float mean = (float)(sum / {n});\n"
        f"        for (int i = 0; i < {n}; ++i) {{ const float d = xr[i] - mean; sq += (double)d * d; }}\n"
        f"        const float inv = 1.0f / sqrtf((float)(sq / {n}) + {eps});\n"
        f"        for (int i = 0; i < {n}; ++i) yr[i] = {expr};\n"
        f"    }}\n"
    )
    return Emitted([shape], body, f"LayerNormalization over {n} values{' (rms)' if rms else ''}")


FOLDABLE = {"Dense": "kernel", "Conv1D": "kernel", "Conv2D": "kernel",
            "DepthwiseConv1D": "depthwise_kernel", "DepthwiseConv2D": "depthwise_kernel",
            "SeparableConv1D": "pointwise_kernel", "SeparableConv2D": "pointwise_kernel"}


def fold_batchnorm(graph: Graph, shapes: dict[str, Shape]) -> Graph:
    """Merge each BatchNormalization on the channel axis into the Conv/Dense before it."""
    producers = graph.producers()
    consumers = graph.consumers()
    replaced: dict[str, Node] = {}
    dropped: set[str] = set()
    alias: dict[str, str] = {}
    for bn in graph.nodes:
        if bn.op != "BatchNormalization" or len(bn.inputs) != 1:
            continue
        src = bn.inputs[0]
        prev = producers.get(src)
        shape = shapes[src]
        axis = bn.config.get("axis", -1)
        axis = axis[0] if isinstance(axis, list) and len(axis) == 1 else axis
        if (prev is None or prev.op not in FOLDABLE or prev.name in replaced
                or len(consumers.get(src, [])) != 1 or src in graph.output_ids
                or activation_name(prev.config.get("activation")) != "linear"
                or axis not in (-1, len(shape))):
            continue
        scale, shift = batchnorm_affine(bn)
        key = FOLDABLE[prev.op]
        kernel = prev.weights[key]
        weights = dict(prev.weights)
        weights[key] = (kernel * scale.reshape(kernel.shape[-2:]) if "Depthwise" in prev.op
                        else kernel * scale).astype(F32)
        bias = prev.weights.get("bias", np.zeros(scale.shape, F32)).reshape(scale.shape)
        weights["bias"] = (bias * scale + shift).astype(F32)
        replaced[prev.name] = Node(prev.name, prev.op, {**prev.config, "use_bias": True},
                                   weights, prev.inputs, prev.outputs, prev.layer)
        dropped.add(bn.name)
        alias[bn.outputs[0]] = src
    nodes = []
    for node in graph.nodes:
        if node.name in dropped:
            continue
        node = replaced.get(node.name, node)
        nodes.append(Node(node.name, node.op, node.config, node.weights,
                          [alias.get(t, t) for t in node.inputs], node.outputs, node.layer))
    outputs = [alias.get(t, t) for t in graph.output_ids]
    return Graph(graph.inputs, nodes, outputs, graph.output_names, graph.meta)


# ----- merging ------------------------------------------------------------------------
MERGE_EXPR = {"Add": "a + b", "Subtract": "a - b", "Multiply": "a * b",
              "Maximum": "fmaxf(a, b)", "Minimum": "fminf(a, b)", "Average": "a + b"}


@emits(*MERGE_EXPR)
def emit_merge(node: Node, ins: list[Shape], ctx: Context) -> Emitted:
    shape = ins[0]
    if any(s != shape for s in ins):
        raise _unsupported(node, f"broadcasting between input shapes {ins}")
    if node.op == "Subtract" and len(ins) != 2:
        raise _unsupported(node, f"{len(ins)} inputs (Subtract takes 2)")
    expr = MERGE_EXPR[node.op]
    lines = [f"    for (int i = 0; i < {size_of(shape)}; ++i) {{", "        float a = x0[i];"]
    for k in range(1, len(ins)):
        lines.append(f"        {{ const float b = x{k}[i]; a = {expr}; }}")
    finish = f"a / {c_float(len(ins))}" if node.op == "Average" else "a"
    lines += [f"        y0[i] = {finish};", "    }"]
    return Emitted([shape], "\n".join(lines) + "\n", f"{node.op} of {len(ins)}")


@emits("Concatenate")
def emit_concatenate(node: Node, ins: list[Shape], ctx: Context) -> Emitted:
    a = _axis(node.config.get("axis", -1), len(ins[0]), node)
    outer = size_of(ins[0][:a])
    chunks = [size_of(s[a:]) for s in ins]
    total = sum(chunks)
    out = (*ins[0][:a], sum(s[a] for s in ins), *ins[0][a + 1:])
    lines = [f"    for (int o = 0; o < {outer}; ++o) {{", "        float* yo = y0 + (size_t)o * "
             f"{total};"]
    offset = 0
    for k, n in enumerate(chunks):
        lines.append(f"        memcpy(yo + {offset}, x{k} + (size_t)o * {n}, {n} * sizeof(float));")
        offset += n
    lines.append("    }")
    return Emitted([out], "\n".join(lines) + "\n", f"Concatenate on axis {a + 1}")


# ----- reshaping ----------------------------------------------------------------------
def _copy(shape_in: Shape, out: Shape, doc: str) -> Emitted:
    return Emitted([out], f"    memcpy(y0, x0, {size_of(shape_in)} * sizeof(float));\n", doc)


@emits("Reshape")
def emit_reshape(node: Node, ins: list[Shape], ctx: Context) -> Emitted:
    target = [int(d) for d in node.config["target_shape"]]
    n = size_of(ins[0])
    if -1 in target:
        known = size_of(tuple(d for d in target if d != -1))
        target[target.index(-1)] = n // known
    if size_of(tuple(target)) != n:
        raise _unsupported(node, f"target_shape {target} for input {ins[0]}")
    return _copy(ins[0], tuple(target), f"Reshape to {tuple(target)}")


@emits("Flatten")
def emit_flatten(node: Node, ins: list[Shape], ctx: Context) -> Emitted:
    _channels_last(node)
    return _copy(ins[0], (size_of(ins[0]),), "Flatten")


@emits("Permute")
def emit_permute(node: Node, ins: list[Shape], ctx: Context) -> Emitted:
    (shape,) = ins
    dims = [int(d) - 1 for d in node.config["dims"]]
    out = tuple(shape[d] for d in dims)
    strides = [size_of(shape[d + 1:]) for d in range(len(shape))]
    loops, index, indent = [], [], "    "
    for k, d in enumerate(dims):
        loops.append(f"{indent}for (int i{k} = 0; i{k} < {out[k]}; ++i{k})\n")
        index.append(f"i{k} * {strides[d]}")
        indent += "    "
    body = "    float* yp = y0;\n" + "".join(loops) + f"{indent}*yp++ = x0[{' + '.join(index)}];\n"
    return Emitted([out], body, f"Permute {tuple(d + 1 for d in dims)}")


@emits("RepeatVector")
def emit_repeat_vector(node: Node, ins: list[Shape], ctx: Context) -> Emitted:
    (shape,) = ins
    n = int(node.config["n"])
    body = (f"    for (int t = 0; t < {n}; ++t) memcpy(y0 + (size_t)t * {shape[0]}, x0, "
            f"{shape[0]} * sizeof(float));\n")
    return Emitted([(n, shape[0])], body, f"RepeatVector {n}")


def _pairs(value: Any, rank: int, node: Node, field_name: str) -> list[tuple[int, int]]:
    """Keras padding/cropping specs (int, per-axis int, or per-axis pairs) as pairs."""
    if isinstance(value, (int, np.integer)):
        return [(int(value), int(value))] * rank
    value = list(value)
    if rank == 1 and len(value) == 2 and all(isinstance(v, (int, np.integer)) for v in value):
        return [(int(value[0]), int(value[1]))]
    if len(value) == rank:
        return [(int(v), int(v)) if isinstance(v, (int, np.integer)) else (int(v[0]), int(v[1]))
                for v in value]
    raise _unsupported(node, f"{field_name}={value!r}")


def _window_copy(shape: Shape, out: Shape, offsets: list[int], src_is_big: bool) -> str:
    """Copy the overlapping box between x (shape) and y (out) at per-axis offsets.

    src_is_big: cropping (read x at offset) versus padding (write y at offset)."""
    rank = len(shape) - 1
    small = out if src_is_big else shape
    big = shape if src_is_big else out
    c = shape[-1]
    loops, indent = [], "    "
    for k in range(rank):
        loops.append(f"{indent}for (int i{k} = 0; i{k} < {small[k]}; ++i{k})\n")
        indent += "    "
    small_idx = " + ".join(f"i{k} * {size_of(small[k + 1:])}" for k in range(rank))
    big_idx = " + ".join(f"(i{k} + {offsets[k]}) * {size_of(big[k + 1:])}" for k in range(rank))
    dst, src = ("y0", "x0")
    dst_idx, src_idx = (small_idx, big_idx) if src_is_big else (big_idx, small_idx)
    return ("".join(loops)
            + f"{indent}memcpy({dst} + {dst_idx}, {src} + {src_idx}, {c} * sizeof(float));\n")


@emits("ZeroPadding1D", "ZeroPadding2D")
def emit_zero_padding(node: Node, ins: list[Shape], ctx: Context) -> Emitted:
    _channels_last(node)
    (shape,) = ins
    rank = len(shape) - 1
    pads = _pairs(node.config.get("padding", 1), rank, node, "padding")
    out = tuple(n + a + b for n, (a, b) in zip(shape[:-1], pads)) + (shape[-1],)
    body = f"    memset(y0, 0, {size_of(out)} * sizeof(float));\n"
    body += _window_copy(shape, out, [a for a, _ in pads], src_is_big=False)
    return Emitted([out], body, f"{node.op} {pads}")


@emits("Cropping1D", "Cropping2D")
def emit_cropping(node: Node, ins: list[Shape], ctx: Context) -> Emitted:
    _channels_last(node)
    (shape,) = ins
    rank = len(shape) - 1
    crops = _pairs(node.config.get("cropping", 1), rank, node, "cropping")
    out = tuple(n - a - b for n, (a, b) in zip(shape[:-1], crops)) + (shape[-1],)
    body = _window_copy(shape, out, [a for a, _ in crops], src_is_big=True)
    return Emitted([out], body, f"{node.op} {crops}")


@emits("UpSampling1D", "UpSampling2D")
def emit_upsampling(node: Node, ins: list[Shape], ctx: Context) -> Emitted:
    _channels_last(node)
    (shape,) = ins
    rank = len(shape) - 1
    interp = node.config.get("interpolation", "nearest")
    if interp != "nearest":
        raise _unsupported(node, f"interpolation='{interp}' (only 'nearest')")
    size = _tuple(node.config.get("size", 2), rank, "size", node)
    out = tuple(n * s for n, s in zip(shape[:-1], size)) + (shape[-1],)
    c = shape[-1]
    loops, indent = [], "    "
    for k in range(rank):
        loops.append(f"{indent}for (int i{k} = 0; i{k} < {out[k]}; ++i{k})\n")
        indent += "    "
    dst = " + ".join(f"i{k} * {size_of(out[k + 1:])}" for k in range(rank))
    src = " + ".join(f"(i{k} / {size[k]}) * {size_of(shape[k + 1:])}" for k in range(rank))
    body = "".join(loops) + f"{indent}memcpy(y0 + {dst}, x0 + {src}, {c} * sizeof(float));\n"
    return Emitted([out], body, f"{node.op} x{size}")


# ----- recurrent ----------------------------------------------------------------------
RNN_GATES = {"SimpleRNN": 1, "GRU": 3, "LSTM": 4}
# layers that apply an incoming Keras mask (the only ones a masked tensor may reach)
MASK_USERS = ("SimpleRNN", "GRU", "LSTM", "Bidirectional")


UNSUPPORTED_MASK = "unsupported"  # a mask over more than the time axis


def _incoming_masks(node: Node, in_masks: list[str | None]) -> tuple[list[str | None], bool]:
    """The masks `node` reads from its inputs, and whether it passes input 0's on, as the
    runtime does. A Keras 3 functional call that names its own `mask=` tensor reads that
    one; a layer that neither reads nor passes masks drops them (Keras 3 destroys them
    there); a layer that keeps masks passes input 0's on; the recurrent layers apply them."""
    from ..ops import get_op

    explicit = isinstance((node.config.get("call_kwargs") or {}).get("mask"), dict)
    if explicit and node.op not in MASK_USERS:
        raise _unsupported(node, "a Keras mask passed with mask= (the C export applies masks "
                           f"in {', '.join(MASK_USERS)} only)")
    if explicit or not any(in_masks):
        return [None] * len(in_masks), False
    spec = get_op(node.op, node.name)
    if node.op in MASK_USERS and not any(in_masks[1:]) and in_masks[0] != UNSUPPORTED_MASK:
        return in_masks, False
    if not spec.uses_mask and spec.mask == "drop":
        return [None] * len(in_masks), False
    if not spec.uses_mask and spec.mask == "keep" and in_masks[0] != UNSUPPORTED_MASK:
        return [None] * len(in_masks), True
    if UNSUPPORTED_MASK in in_masks:
        raise _unsupported(node, "a Keras mask over more than the time axis (from "
                           "Embedding(mask_zero=True) on an input of rank > 1) reaching this "
                           "layer; the C export keeps one mask flag per timestep")
    raise _unsupported(node, "a Keras mask (from Embedding(mask_zero=True) or Masking) reaching "
                       "this layer; the C export applies masks (one flag per timestep) in "
                       f"{', '.join(MASK_USERS)} and passes them through layers that keep "
                       "them (Dense, Activation, ...)")


def _rnn_call(node: Node, ins: list[Shape], ctx: Context) -> tuple[Shape, str | None]:
    """The sequence's shape and the C expression base of its mask, if any: Keras 2 files
    carry masks implicitly (mx0); Keras 3 files pass them as an input tensor (0/1 floats)."""
    from ..ops.recurrent import parse_rnn_call  # the runtime's reading of the call

    seq, states, mask_pos = parse_rnn_call(node.config)
    if states or seq != 0:
        raise _unsupported(node, "initial states passed as inputs")
    if mask_pos is None:
        if len(ins) != 1:
            raise _unsupported(node, f"{len(ins)} inputs")
        return ins[0], ctx.in_mask
    if ins[mask_pos] != ins[0][:1]:
        raise _unsupported(node, f"a mask of shape {ins[mask_pos]} (only one flag per timestep)")
    return ins[0], f"x{mask_pos}"


@emits("SimpleRNN", "GRU", "LSTM")
def emit_rnn(node: Node, ins: list[Shape], ctx: Context) -> Emitted:
    shape, mask = _rnn_call(node, ins, ctx)
    emitted = rnn_body(node, shape, ctx, mask=mask,
                       zero_output=bool(node.config.get("zero_output_for_mask")))
    if ctx.in_mask and node.config.get("return_sequences"):
        emitted.out_mask = "pass"
    return emitted


@emits("keras.ops.NotEqual")
def emit_not_equal(node: Node, ins: list[Shape], ctx: Context) -> Emitted:
    """x != constant, as Keras 3 files spell an Embedding's mask_zero mask."""
    args = node.config.get("call_args") or []
    consts = [a for a in args if not isinstance(a, dict)]
    if len(ins) != 1 or len(args) != 2 or len(consts) != 1 \
            or not isinstance(consts[0], (int, float)):
        raise _unsupported(node, "NotEqual other than between a tensor and a number")
    return _elementwise(ins[0], f"(x != {c_float(consts[0])} ? 1.0f : 0.0f)",
                        f"NotEqual {consts[0]}")


@emits("keras.ops.Any")
def emit_any(node: Node, ins: list[Shape], ctx: Context) -> Emitted:
    """any(x != 0) over the last axis, as Keras 3 files spell a Masking layer's mask."""
    (shape,) = ins
    axis = node.config.get("axis")
    if len(shape) < 1 or axis not in (-1, len(shape)) or node.config.get("keepdims"):
        raise _unsupported(node, f"Any over axis {axis!r} (only the last axis, keepdims=False)")
    rows, n = size_of(shape[:-1]), shape[-1]
    body = (f"    for (int i = 0; i < {rows}; ++i) {{\n"
            f"        float hit = 0.0f;\n"
            f"        for (int j = 0; j < {n}; ++j) if (x0[i * {n} + j] != 0.0f) hit = 1.0f;\n"
            f"        y0[i] = hit;\n"
            f"    }}\n")
    return Emitted([tuple(shape[:-1])], body, "Any over the last axis")


def rnn_body(node: Node, shape: Shape, ctx: Context, x: str = "x0",
             ys: tuple[str, ...] = ("y0", "y1", "y2"), mask: str | None = None,
             zero_output: bool = False) -> Emitted:
    """One recurrent layer reading `x` and writing output, states to `ys`.

    With `mask` (one flag per timestep), a masked step keeps the states and outputs the
    previous output, or zeros with `zero_output`, as Keras's backend.rnn does."""
    cfg = node.config
    if cfg.get("time_major"):
        raise _unsupported(node, "time_major=True")
    if len(shape) != 2:
        raise _unsupported(node, f"input shape {shape} (expected (timesteps, features))")
    steps, n_in = shape
    units = int(cfg["units"])
    gates = RNN_GATES[node.op]
    act = activation_name(cfg.get("activation", "tanh"))
    ract = activation_name(cfg.get("recurrent_activation", "sigmoid"))
    for name in (act, ract) if gates > 1 else (act,):
        if name not in ELEMENTWISE:
            raise _unsupported(node, f"activation '{name}' inside a recurrent cell")
        ctx.use_activation(name)
    kernel = ctx.weight("kernel", node.weights["kernel"])
    rec = ctx.weight("recurrent_kernel", node.weights["recurrent_kernel"])
    bias = node.weights.get("bias")
    reset_after = node.op == "GRU" and bool(cfg.get("reset_after", True))
    if bias is None:
        bias = np.zeros((2, gates * units) if reset_after else (gates * units,), F32)
    if reset_after:
        bias = bias.reshape(2, gates * units)
        bx, bh = ctx.weight("input_bias", bias[0]), ctx.weight("recurrent_bias", bias[1])
    else:
        bx, bh = ctx.weight("bias", bias), None
    seq, back = bool(cfg.get("return_sequences")), bool(cfg.get("go_backwards"))
    n_states = {"SimpleRNN": 1, "GRU": 1, "LSTM": 2}[node.op] if cfg.get("return_state") else 0
    g = gates * units
    lines = [
        f"    /* x @ kernel + bias for every gate ({g} values), then h @ recurrent_kernel */",
        f"    static float h[{units}], zx[{g}], zh[{g}];",
    ]
    if node.op == "LSTM":
        lines.append(f"    static float cs[{units}];")
        lines.append("    memset(cs, 0, sizeof cs);")
    lines += [
        "    memset(h, 0, sizeof h);",
        f"    for (int s = 0; s < {steps}; ++s) {{",
        f"        const int t = {f'{steps - 1} - s' if back else 's'};",
    ]
    if mask:
        # a masked step: states stay, the output is the previous one (h) or zeros
        if seq:
            keep_out = (f"memset({ys[0]} + (size_t)s * {units}, 0, sizeof h); " if zero_output
                        else f"memcpy({ys[0]} + (size_t)s * {units}, h, sizeof h); ")
        else:
            keep_out = "last_masked = 1; " if zero_output else ""
        lines.append(f"        if (!{mask}[t]) {{ {keep_out}continue; }}")
        if zero_output and not seq:
            lines.insert(2, "    int last_masked = 0;")
            lines.append("        last_masked = 0;")
    lines += [
        f"        const float* xt = {x} + (size_t)t * {n_in};",
        f"        for (int j = 0; j < {g}; ++j) {{ zx[j] = {bx}[j]; "
        f"zh[j] = {f'{bh}[j]' if bh else '0.0f'}; }}",
        f"        for (int i = 0; i < {n_in}; ++i) {{",
        f"            const float* w = {kernel} + (size_t)i * {g};",
        f"            for (int j = 0; j < {g}; ++j) zx[j] += xt[i] * w[j];",
        "        }",
    ]
    if node.op == "GRU" and not reset_after:
        # reset applies to h before the candidate's recurrent product: do z and r first
        lines += [
            f"        for (int k = 0; k < {units}; ++k) {{",
            f"            const float* w = {rec} + (size_t)k * {g};",
            f"            for (int j = 0; j < {2 * units}; ++j) zh[j] += h[k] * w[j];",
            "        }",
            f"        static float rh[{units}];",
            f"        for (int j = 0; j < {units}; ++j) rh[j] = act_{ract}(zx[{units} + j] + "
            f"zh[{units} + j]) * h[j];",
            f"        for (int k = 0; k < {units}; ++k) {{",
            f"            const float* w = {rec} + (size_t)k * {g} + {2 * units};",
            f"            for (int j = 0; j < {units}; ++j) zh[{2 * units} + j] += rh[k] * w[j];",
            "        }",
        ]
    else:
        lines += [
            f"        for (int k = 0; k < {units}; ++k) {{",
            f"            const float* w = {rec} + (size_t)k * {g};",
            f"            for (int j = 0; j < {g}; ++j) zh[j] += h[k] * w[j];",
            "        }",
        ]
    u = units
    lines.append(f"        for (int j = 0; j < {u}; ++j) {{")
    if node.op == "SimpleRNN":
        lines.append(f"            h[j] = act_{act}(zx[j] + zh[j]);")
    elif node.op == "LSTM":
        lines += [
            f"            const float i_ = act_{ract}(zx[j] + zh[j]);",
            f"            const float f_ = act_{ract}(zx[{u} + j] + zh[{u} + j]);",
            f"            const float c_ = act_{act}(zx[{2 * u} + j] + zh[{2 * u} + j]);",
            f"            const float o_ = act_{ract}(zx[{3 * u} + j] + zh[{3 * u} + j]);",
            "            cs[j] = f_ * cs[j] + i_ * c_;",
            f"            h[j] = o_ * act_{act}(cs[j]);",
        ]
    else:
        # reset_after: r scales (h @ R + b_h); otherwise it was applied to h above
        cand = (f"zx[{2 * u} + j] + act_{ract}(zx[{u} + j] + zh[{u} + j]) * zh[{2 * u} + j]"
                if reset_after else f"zx[{2 * u} + j] + zh[{2 * u} + j]")
        lines += [
            f"            const float z_ = act_{ract}(zx[j] + zh[j]);",
            f"            const float hh = act_{act}({cand});",
            "            h[j] = z_ * h[j] + (1.0f - z_) * hh;",
        ]
    lines.append("        }")
    if seq:
        lines.append(f"        memcpy({ys[0]} + (size_t)s * {u}, h, sizeof h);")
    lines.append("    }")
    if not seq and mask and zero_output:
        lines.append(f"    if (last_masked) memset({ys[0]}, 0, sizeof h); "
                     f"else memcpy({ys[0]}, h, sizeof h);")
    elif not seq:
        lines.append(f"    memcpy({ys[0]}, h, sizeof h);")
    outs: list[Shape] = [(steps, u) if seq else (u,)]
    if n_states:
        lines.append(f"    memcpy({ys[1]}, h, sizeof h);")
        outs.append((u,))
        if node.op == "LSTM":
            lines.append(f"    memcpy({ys[2]}, cs, sizeof cs);")
            outs.append((u,))
    doc = (f"{node.op} {n_in} -> {u}, {steps} steps{' backwards' if back else ''}"
           f"{', masked' if mask else ''}")
    return Emitted(outs, "\n".join(lines) + "\n", doc)


def _sub_node(node: Node, entry: dict[str, Any], prefix: str) -> Node:
    """The layer a wrapper holds, with its own config and its weights under `prefix`."""
    weights = {k[len(prefix):]: v for k, v in node.weights.items() if k.startswith(prefix)}
    return Node(node.name, entry["class_name"], entry["config"], weights, [], [])


def _block(body: str) -> str:
    """`body` in its own C block, so two inlined layers keep separate static buffers."""
    return "    {\n" + "".join(f"    {line}\n" for line in body.splitlines()) + "    }\n"


BIDIRECTIONAL_MERGE = {"sum": "a + b", "mul": "a * b", "ave": "(a + b) / 2.0f"}


@emits("Bidirectional")
def emit_bidirectional(node: Node, ins: list[Shape], ctx: Context) -> Emitted:
    from ..ops.recurrent import _bidirectional_layers  # the runtime's reading of the config

    shape, mask = _rnn_call(node, ins, ctx)
    forward_entry, backward_entry = _bidirectional_layers(node.config)
    merge = node.config.get("merge_mode", "concat")
    if merge is not None and merge != "concat" and merge not in BIDIRECTIONAL_MERGE:
        raise _unsupported(node, f"merge_mode={merge!r}")
    seq = bool(forward_entry["config"].get("return_sequences"))
    fn, sides = ctx.fn, []
    body = ""
    for side, entry in (("fwd", forward_entry), ("bwd", backward_entry)):
        sub = _sub_node(node, entry, "forward/" if side == "fwd" else "backward/")
        ctx.fn = f"{fn}_{side}"
        # Keras zeroes masked steps' outputs inside Bidirectional when it returns sequences
        emitted = rnn_body(sub, shape, ctx, ys=(f"{side}0", f"{side}1", f"{side}2"),
                           mask=mask, zero_output=seq)
        sides.append(emitted.out_shapes)
        decls = ", ".join(f"{side}{k}[{size_of(shape)}]" for k, shape in enumerate(emitted.out_shapes))
        body += f"    static float {decls};  /* {emitted.doc} */\n" + _block(emitted.body)
    ctx.fn = fn
    (f_out, *f_states), (b_out, *b_states) = sides
    uf, ub = f_out[-1], b_out[-1]
    rows = f_out[0] if seq else 1
    # the backward layer's sequence comes out in reverse time order: flip it back
    b_row = f"(size_t)({rows - 1} - r) * {ub}" if seq else "0"
    lines = [f"    for (int r = 0; r < {rows}; ++r) {{",
             f"        const float* a_row = fwd0 + (size_t)r * {uf};",
             f"        const float* b_row = bwd0 + {b_row};"]
    if merge == "concat":
        out_shapes = [(*f_out[:-1], uf + ub)]
        lines += [f"        memcpy(y0 + (size_t)r * {uf + ub}, a_row, {uf} * sizeof(float));",
                  f"        memcpy(y0 + (size_t)r * {uf + ub} + {uf}, b_row, {ub} * sizeof(float));"]
    elif merge is None:
        out_shapes = [f_out, b_out]
        lines += [f"        memcpy(y0 + (size_t)r * {uf}, a_row, {uf} * sizeof(float));",
                  f"        memcpy(y1 + (size_t)r * {ub}, b_row, {ub} * sizeof(float));"]
    else:
        out_shapes = [f_out]
        lines += [f"        for (int j = 0; j < {uf}; ++j) {{",
                  "            const float a = a_row[j], b = b_row[j];",
                  f"            y0[(size_t)r * {uf} + j] = {BIDIRECTIONAL_MERGE[merge]};",
                  "        }"]
    lines.append("    }")
    body += "\n".join(lines) + "\n"
    k = len(out_shapes)
    for side, states in (("fwd", f_states), ("bwd", b_states)):
        for i, shape in enumerate(states, start=1):
            body += f"    memcpy(y{k}, {side}{i}, {size_of(shape)} * sizeof(float));\n"
            out_shapes.append(shape)
            k += 1
    doc = f"Bidirectional {forward_entry['class_name']} (merge_mode {merge})"
    return Emitted(out_shapes, body, doc, "pass" if ctx.in_mask and seq and merge else "")


@emits("TimeDistributed")
def emit_time_distributed(node: Node, ins: list[Shape], ctx: Context) -> Emitted:
    from ..ops.recurrent import _inner_layer  # the runtime's reading of the config

    inner, _ = _inner_layer(node.config)
    op = inner["class_name"]
    if op not in EMITTERS or op in MASK_USERS or op == "TimeDistributed":
        raise _unsupported(node, f"TimeDistributed around '{op}'")
    (shape,) = ins
    if len(shape) < 2:
        raise _unsupported(node, f"input shape {shape} (expected (timesteps, ...))")
    emitted = EMITTERS[op](_sub_node(node, inner, "layer/"), [shape[1:]], ctx)
    if len(emitted.out_shapes) != 1 or emitted.out_mask:
        raise _unsupported(node, f"TimeDistributed around '{op}' with several outputs or a mask")
    step_out = emitted.out_shapes[0]
    body = (
        "    const float* const x_all = x0;\n"
        "    float* const y_all = y0;\n"
        f"    for (int step = 0; step < {shape[0]}; ++step) {{\n"
        f"        const float* x0 = x_all + (size_t)step * {size_of(shape[1:])};\n"
        f"        float* y0 = y_all + (size_t)step * {size_of(step_out)};\n"
        + "".join(f"    {line}\n" for line in emitted.body.splitlines())
        + "    }\n"
    )
    return Emitted([(shape[0], *step_out)], body, f"TimeDistributed({emitted.doc})")


# ----- the exporter -------------------------------------------------------------------
@dataclass
class CSource:
    """The generated files, by name."""

    files: dict[str, str]
    input_sizes: list[int]
    output_sizes: list[int]


def check_exportable(graph: Graph) -> None:
    """Fail before writing anything if a layer has no C emitter."""
    from ..ops.quantized import runs_keras_quantized

    # Keras quantized layers (model.quantize) keep int weights the emitters cannot read.
    missing = [(n.name, n.op + ", quantized" if runs_keras_quantized(n.op, n.config) else n.op)
               for n in graph.nodes
               if n.op not in EMITTERS or runs_keras_quantized(n.op, n.config)]
    if missing:
        listed = ", ".join(f"'{name}' ({op})" for name, op in missing)
        raise UnsupportedLayer(
            f"the C export does not support layer {listed}. Supported layer types: "
            f"{', '.join(supported_layers())}"
        )


def test_inputs(model: Any, n: int, seed: int = 0) -> list[np.ndarray]:
    """Fixed sample inputs: token ids for inputs that feed an Embedding, else uniform(-1, 1)."""
    graph = model.graph
    rng = np.random.default_rng(seed)
    consumers = graph.consumers()
    arrays = []
    for spec in graph.inputs:
        shape = (n, *spec.shape[1:])
        rows = [c.weights["embeddings"].shape[0] for c in consumers.get(spec.name, [])
                if c.op == "Embedding"]
        if rows:
            arrays.append(rng.integers(0, min(rows), shape).astype(F32))
        else:
            arrays.append(rng.uniform(-1, 1, shape).astype(F32))
    return arrays


def _fixed_shapes(graph: Graph) -> list[Shape]:
    shapes = []
    for spec in graph.inputs:
        dims = spec.shape[1:]
        if any(d is None for d in dims):
            raise UnsupportedLayer(
                f"input '{spec.name}' has shape {spec.shape} with a free non-batch axis; the C "
                "export needs fixed shapes (rebuild the model with a fixed input shape)"
            )
        shapes.append(tuple(int(d) for d in dims))
    return shapes


def generate(model: Any, n_test: int = 2) -> CSource:
    """Generate all C files for a loaded tfless Model (nothing is written)."""
    graph: Graph = model.graph
    check_exportable(graph)
    in_shapes = _fixed_shapes(graph)
    test_x = test_inputs(model, n_test)
    trace = model.plan.trace([x[:1] for x in test_x])
    traced = {tid: tuple(v.shape[1:]) for tid, v in trace.items() if hasattr(v, "shape")}
    graph = fold_batchnorm(graph, traced)

    ctx = Context()
    shapes: dict[str, Shape] = dict(zip((s.name for s in graph.inputs), in_shapes))
    masks: dict[str, str] = {}  # tensor id -> C buffer of its Keras mask (one flag per step)
    mask_buffers: dict[str, int] = {}
    functions, calls, used_names = [], [], set()
    for node in graph.nodes:
        fn = "layer_" + c_ident(node.name).lower()
        while fn in used_names:
            fn += "_"
        used_names.add(fn)
        ctx.fn = fn
        ins = [shapes[t] for t in node.inputs]
        arriving = [masks.get(t) for t in node.inputs]
        in_masks, passes_mask = _incoming_masks(node, arriving)
        ctx.in_mask = "mx0" if in_masks and in_masks[0] else None
        try:
            emitted = EMITTERS[node.op](node, ins, ctx)
        except (KeyError, ValueError, TypeError, IndexError) as exc:
            raise TflessError(f"layer '{node.name}' ({node.op}): cannot translate to C: "
                              f"{type(exc).__name__}: {exc}") from exc
        for tid, shape in zip(node.outputs, emitted.out_shapes):
            if tid in traced and traced[tid] != shape:
                raise TflessError(
                    f"layer '{node.name}' ({node.op}): the C export computed output shape "
                    f"{shape} but the runtime gives {traced[tid]}"
                )
            shapes[tid] = shape
        params = [f"const float* x{i}" for i in range(len(node.inputs))]
        params += [f"float* y{i}" for i in range(len(emitted.out_shapes))]
        args = [f"t_{c_ident(t)}" for t in node.inputs + node.outputs[:len(emitted.out_shapes)]]
        if ctx.in_mask:
            params.append("const unsigned char* mx0")
            args.append(in_masks[0])
        if emitted.out_mask == "new":
            masks[node.outputs[0]] = f"m_{c_ident(node.outputs[0])}"
            mask_buffers[masks[node.outputs[0]]] = emitted.out_shapes[0][0]
            params.append("unsigned char* my0")
            args.append(masks[node.outputs[0]])
        elif emitted.out_mask == "pass" or passes_mask:
            if emitted.out_shapes[0][:1] != ins[0][:1]:
                raise _unsupported(node, "a Keras mask reaching a layer that changes the "
                                   "number of timesteps")
            masks[node.outputs[0]] = arriving[0]
        elif emitted.out_mask == "unsupported":
            masks[node.outputs[0]] = UNSUPPORTED_MASK
        functions.append(
            f"/* {node.name}: {emitted.doc}; "
            f"{' + '.join(str(s) for s in ins)} -> {', '.join(str(s) for s in emitted.out_shapes)} */\n"
            f"static void {fn}({', '.join(params)}) {{\n{emitted.body}}}\n"
        )
        calls.append(f"    {fn}({', '.join(args)});\n")
        if ctx.needs_error and node.op == "Embedding":
            calls.append("    if (model_error) return model_error;\n")

    out_shapes = [shapes[t] for t in graph.output_ids]
    buffers = {t: s for t, s in shapes.items()}
    model_c = _model_c(graph, ctx, functions, calls, buffers, mask_buffers, in_shapes, out_shapes)
    want = model.predict(test_x, structured=False)
    want = want if isinstance(want, list) else [want]
    files = {
        "model.h": _model_h(graph, in_shapes, out_shapes),
        "model.c": model_c,
        "main.c": MAIN_C,
        "model_test.c": _test_c(test_x, want),
        "Makefile": MAKEFILE,
    }
    return CSource(files, [size_of(s) for s in in_shapes], [size_of(s) for s in out_shapes])


def _array_literal(values: np.ndarray, per_line: int = 8) -> str:
    flat = [c_float(v) for v in np.asarray(values, F32).ravel()]
    lines = [", ".join(flat[i:i + per_line]) for i in range(0, len(flat), per_line)]
    return "{\n    " + ",\n    ".join(lines) + "\n}" if flat else "{0}"


def _model_h(graph: Graph, in_shapes: list[Shape], out_shapes: list[Shape]) -> str:
    lines = [
        "/* Generated by tfless: a Keras model as plain C99 (needs only libm). */",
        "#ifndef TFLESS_MODEL_H", "#define TFLESS_MODEL_H", "",
        "#ifdef __cplusplus", 'extern "C" {', "#endif", "",
        f"#define MODEL_NUM_INPUTS {len(in_shapes)}",
        f"#define MODEL_NUM_OUTPUTS {len(out_shapes)}",
        f"#define MODEL_INPUT_SIZE {sum(size_of(s) for s in in_shapes)}",
        f"#define MODEL_OUTPUT_SIZE {sum(size_of(s) for s in out_shapes)}",
    ]
    for i, (spec, s) in enumerate(zip(graph.inputs, in_shapes)):
        lines.append(f"#define MODEL_INPUT{i}_SIZE {size_of(s)}  /* '{spec.name}' {s} */")
    for i, (name, s) in enumerate(zip(graph.output_names, out_shapes)):
        lines.append(f"#define MODEL_OUTPUT{i}_SIZE {size_of(s)}  /* '{name}' {s} */")
    lines += [
        "",
        "/* One sample: `in` holds the inputs one after another (row-major, no batch axis),",
        "   `out` receives the outputs the same way. Returns 0, or 1 if an Embedding input id",
        "   is out of range. Uses static buffers: not reentrant. */",
        "int model_predict(const float* in, float* out);",
        "", "#ifdef __cplusplus", "}", "#endif", "#endif", "",
    ]
    return "\n".join(lines)


def _model_c(graph: Graph, ctx: Context, functions: list[str], calls: list[str],
             buffers: dict[str, Shape], mask_buffers: dict[str, int], in_shapes: list[Shape],
             out_shapes: list[Shape]) -> str:
    parts = [
        f"/* Generated by tfless from {Path(str(graph.meta.get('source', 'model'))).name}. */",
        "#include <math.h>", "#include <stddef.h>", "#include <string.h>",
        '#include "model.h"', "",
    ]
    if ctx.needs_error:
        parts += ["static int model_error;",
                  "static float id_out_of_range;  /* the offending id, for debuggers */", ""]
    parts.append("/* ---- weights ---- */")
    for name, array in ctx.weights:
        parts.append(f"/* shape {tuple(array.shape)} */\n"
                     f"static const float {name}[{max(array.size, 1)}] = {_array_literal(array)};")
    parts += ["", "/* ---- tensors (one sample each) ---- */"]
    for tid, shape in buffers.items():
        parts.append(f"static float t_{c_ident(tid)}[{size_of(shape)}];  /* {shape} */")
    for name, steps in mask_buffers.items():
        parts.append(f"static unsigned char {name}[{steps}];  /* Keras mask, 1 = keep */")
    parts += ["", "/* ---- activations ---- */", ctx.helpers(), "/* ---- layers ---- */"]
    parts += functions
    body = []
    if ctx.needs_error:
        body.append("    model_error = 0;\n")
    offset = 0
    for spec, s in zip(graph.inputs, in_shapes):
        body.append(f"    memcpy(t_{c_ident(spec.name)}, in + {offset}, {size_of(s)} * sizeof(float));\n")
        offset += size_of(s)
    body += calls
    offset = 0
    for tid, s in zip(graph.output_ids, out_shapes):
        body.append(f"    memcpy(out + {offset}, t_{c_ident(tid)}, {size_of(s)} * sizeof(float));\n")
        offset += size_of(s)
    body.append("    return 0;\n")
    parts.append("int model_predict(const float* in, float* out) {\n" + "".join(body) + "}\n")
    return "\n".join(parts)


def _test_c(test_x: list[np.ndarray], want: list[np.ndarray]) -> str:
    n = test_x[0].shape[0]
    x = np.concatenate([a.reshape(n, -1) for a in test_x], axis=1)
    y = np.concatenate([np.asarray(a, F32).reshape(n, -1) for a in want], axis=1)
    return f"""\
/* Generated by tfless: checks model_predict against outputs of the tfless NumPy runtime. */
#include <math.h>
#include <stdio.h>
#include "model.h"

#define N_SAMPLES {n}
static const float test_input[{x.size}] = {_array_literal(x)};
static const float test_expected[{y.size}] = {_array_literal(y)};

int main(void) {{
    static float out[MODEL_OUTPUT_SIZE];
    double worst = 0.0;
    int failures = 0;
    for (int s = 0; s < N_SAMPLES; ++s) {{
        if (model_predict(test_input + (size_t)s * MODEL_INPUT_SIZE, out) != 0) {{
            fprintf(stderr, "sample %d: model_predict failed\\n", s);
            return 1;
        }}
        for (int i = 0; i < MODEL_OUTPUT_SIZE; ++i) {{
            const float want = test_expected[(size_t)s * MODEL_OUTPUT_SIZE + i];
            const double err = fabs((double)out[i] - (double)want);
            if (err > worst) worst = err;
            if (!(err <= {TEST_ATOL} + {TEST_RTOL} * fabs((double)want))) {{
                if (failures++ < 5)
                    fprintf(stderr, "sample %d output %d: got %.9g, expected %.9g\\n",
                            s, i, out[i], want);
            }}
        }}
    }}
    printf("%d samples, max abs error %.3g: %s\\n", N_SAMPLES, worst, failures ? "FAIL" : "ok");
    return failures ? 1 : 0;
}}
"""


MAIN_C = """\
/* Generated by tfless: run the model on samples read from stdin.

   usage: model [--csv]
     default: raw little-endian float32 in, raw float32 out (MODEL_INPUT_SIZE floats per sample)
     --csv:   numbers separated by commas/whitespace in, one line of outputs per sample out */
#include <ctype.h>
#include <stdio.h>
#include <string.h>
#include "model.h"

static int read_number(float* v) {
    int c;
    do { c = getchar(); } while (c == ',' || isspace(c));
    if (c == EOF) return 0;
    ungetc(c, stdin);
    return scanf("%f", v) == 1 ? 1 : -1;
}

static int read_sample_csv(float* x) {
    for (int i = 0; i < MODEL_INPUT_SIZE; ++i) {
        const int r = read_number(&x[i]);
        if (r == 1) continue;
        if (r == 0 && i == 0) return 0;
        fprintf(stderr, "model: expected %d numbers per sample, input ended or was not a number "
                "at value %d\\n", MODEL_INPUT_SIZE, i + 1);
        return -1;
    }
    return 1;
}

static int read_sample_raw(float* x) {
    const size_t got = fread(x, sizeof(float), MODEL_INPUT_SIZE, stdin);
    if (got == 0 && feof(stdin)) return 0;
    if (got != MODEL_INPUT_SIZE) {
        fprintf(stderr, "model: input ended inside a sample (%zu of %d floats)\\n",
                got, MODEL_INPUT_SIZE);
        return -1;
    }
    return 1;
}

int main(int argc, char** argv) {
    int csv = 0;
    for (int i = 1; i < argc; ++i) {
        if (strcmp(argv[i], "--csv") == 0) csv = 1;
        else {
            fprintf(stderr, "usage: %s [--csv] < input > output\\n"
                    "  %d input floats and %d output floats per sample\\n",
                    argv[0], MODEL_INPUT_SIZE, MODEL_OUTPUT_SIZE);
            return 2;
        }
    }
    static float x[MODEL_INPUT_SIZE], y[MODEL_OUTPUT_SIZE];
    long n = 0;
    for (;;) {
        const int r = csv ? read_sample_csv(x) : read_sample_raw(x);
        if (r == 0) break;
        if (r < 0) return 1;
        if (model_predict(x, y) != 0) {
            fprintf(stderr, "model: sample %ld: an Embedding id is out of range\\n", n);
            return 1;
        }
        if (csv) {
            for (int i = 0; i < MODEL_OUTPUT_SIZE; ++i)
                printf(i ? ",%.9g" : "%.9g", y[i]);
            putchar('\\n');
        } else if (fwrite(y, sizeof(float), MODEL_OUTPUT_SIZE, stdout) != MODEL_OUTPUT_SIZE) {
            return 1;
        }
        ++n;
    }
    return fflush(stdout) == 0 ? 0 : 1;
}
"""

MAKEFILE = """\
# Generated by tfless. Needs only a C99 compiler and libm.
CC ?= cc
CFLAGS ?= -O2 -Wall -Werror -std=c99
AR ?= ar

all: model libmodel.a

model.o: model.c model.h
\t$(CC) $(CFLAGS) -c model.c -o model.o

libmodel.a: model.o
\t$(AR) rcs $@ model.o

model: main.c model.h libmodel.a
\t$(CC) $(CFLAGS) -o $@ main.c libmodel.a -lm

model_test: model_test.c model.h libmodel.a
\t$(CC) $(CFLAGS) -o $@ model_test.c libmodel.a -lm

test: model_test
\t./model_test

clean:
\trm -f model model_test model.o libmodel.a

.PHONY: all test clean
"""


def export_c(model: Any, out_dir: str | Path, n_test: int = 2) -> list[Path]:
    """Write model.h, model.c, main.c, model_test.c and a Makefile into `out_dir`.

    `model` is a tfless Model or a path to a model file. Unsupported layers raise
    UnsupportedLayer before anything is written."""
    if not hasattr(model, "graph"):
        from ..model import load

        model = load(model)
    if n_test < 1:
        raise TflessError(f"the embedded test vector needs at least 1 sample (--test-samples), "
                          f"got {n_test}")
    source = generate(model, n_test)
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise TflessError(f"{out} is a file; the C export writes a directory: give a new path")
    written = []
    try:
        out.mkdir(parents=True, exist_ok=True)
        for name, text in source.files.items():
            path = out / name
            path.write_text(text, encoding="utf8")
            written.append(path)
    except OSError as exc:
        raise TflessError(f"{out}: cannot write the C source there: {exc}") from exc
    return written


def add_cli_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("c")
    g.add_argument("--test-samples", type=int, default=2,
                   help="samples in the C export's embedded test vector (default 2)")


def run_cli(args: argparse.Namespace) -> int:
    from ..model_io import load_from_args as _load

    out = args.output or str(Path(args.model).with_suffix("")) + "_c"
    written = export_c(_load(args), out, n_test=args.test_samples)
    print(f"wrote {', '.join(p.name for p in written)} to {out}; build and check with: "
          f"make -C {out} all test")
    return 0
