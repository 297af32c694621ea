"""The raw TensorFlow op kernels (tfless.ops.tf) against `tf.raw_ops` run eagerly.

Each case traces the op once with TF (placeholders for every input) to read the NodeDef
attrs TF really writes, decodes them as the graph reader does, runs the tfless kernel built
from them through the runtime, and compares with TF's eager result: float32 within
1e-5 abs + 1e-4 rel, integers and bools exactly, same dtype and shape. Error cases check
that where TF rejects the input, tfless raises a TflessError naming the node.

The file runs past 600 lines because it is mostly case tables (one per op family, ~430
cases); the harness itself is the first hundred lines, shared by every table.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from tests.ops.tf_graph import node_config, run_tfless
from tfless.errors import TflessError, UnsupportedLayer

tf = pytest.importorskip("tensorflow")

ATOL, RTOL = 1e-5, 1e-4
TYPE_ATTRS = {"DstT", "out_type", "output_type", "Tout", "index_type", "dtype", "T"}
RNG = np.random.default_rng(13)


def f32(*shape: int, lo: float | None = None) -> np.ndarray:
    x = RNG.standard_normal(shape).astype(np.float32)
    return np.abs(x) + np.float32(lo) if lo is not None else x


def i32(*shape: int, lo: int = -9, hi: int = 10, dtype: str = "int32") -> np.ndarray:
    return RNG.integers(lo, hi, shape).astype(dtype)


def a(values: Any, dtype: str = "int32") -> np.ndarray:
    return np.asarray(values, dtype)


def case(op: str, inputs: dict[str, Any], label: str = "", **attrs: Any) -> Any:
    name = op + (f"-{label}" if label else "")
    return pytest.param(op, inputs, attrs, id=name)


def _tf_attrs(attrs: dict[str, Any]) -> dict[str, Any]:
    return {k: tf.as_dtype(v) if k in TYPE_ATTRS and isinstance(v, str) else v
            for k, v in attrs.items()}


def _flat(inputs: dict[str, Any]) -> list[np.ndarray]:
    out: list[np.ndarray] = []
    for v in inputs.values():
        out.extend(v if isinstance(v, list) else [v])
    return out


def _trace_config(op: str, inputs: dict[str, Any], attrs: dict[str, Any]) -> dict[str, Any]:
    """The op's NodeDef attrs, traced with a placeholder per input: known rank, unknown sizes
    (so invalid inputs pass tracing), or the full static shape where TF's shape function
    needs it (SpaceToBatchND's block_shape)."""
    flat = _flat(inputs)

    def fn(*args: Any) -> Any:
        it = iter(args)
        kwargs = {k: [next(it) for _ in v] if isinstance(v, list) else next(it)
                  for k, v in inputs.items()}
        return getattr(tf.raw_ops, op)(**kwargs, **_tf_attrs(attrs))

    try:
        sig = [tf.TensorSpec([None] * x.ndim, tf.as_dtype(x.dtype)) for x in flat]
        graph = tf.function(fn, input_signature=sig).get_concrete_function().graph
    except ValueError:
        sig = [tf.TensorSpec(x.shape, tf.as_dtype(x.dtype)) for x in flat]
        graph = tf.function(fn, input_signature=sig).get_concrete_function().graph
    # the first node of that type (tf.function appends Identity nodes for the outputs)
    nodes = [n for n in graph.as_graph_def().node if n.op == op]
    assert nodes, f"{op}: traced graph holds no {op} node"
    return node_config(tf, nodes[0])


def _tf_eager(op: str, inputs: dict[str, Any], attrs: dict[str, Any]) -> list[np.ndarray]:
    kwargs = {k: [tf.constant(x) for x in v] if isinstance(v, list) else tf.constant(v)
              for k, v in inputs.items()}
    out = getattr(tf.raw_ops, op)(**kwargs, **_tf_attrs(attrs))
    if isinstance(out, (list, tuple)):
        return [np.asarray(o) for o in out]
    if isinstance(out, tf.Operation):
        return []
    return [np.asarray(out)]


def compare(got: list[np.ndarray], want: list[np.ndarray], label: str) -> None:
    assert len(got) == len(want), f"{label}: {len(got)} outputs, TF gives {len(want)}"
    for k, (g, w) in enumerate(zip(got, want)):
        g = np.asarray(g)
        assert g.dtype == w.dtype, f"{label} output {k}: dtype {g.dtype}, TF gives {w.dtype}"
        assert g.shape == w.shape, f"{label} output {k}: shape {g.shape}, TF gives {w.shape}"
        if w.dtype.kind == "f":
            np.testing.assert_allclose(g, w, atol=ATOL, rtol=RTOL, err_msg=f"{label}[{k}]")
        else:
            np.testing.assert_array_equal(g, w, err_msg=f"{label}[{k}]")


X = f32(2, 3, 4)
Y = f32(2, 3, 4)
POS = f32(2, 3, 4, lo=0.1)
UNIT = np.clip(f32(2, 3, 4), -0.9, 0.9).astype(np.float32)
IA, IB = i32(3, 4), i32(3, 4, lo=1, hi=7) * a([1, -1, 1, -1])
BOOL_A, BOOL_B = RNG.random((3, 4)) > 0.5, RNG.random((3, 4)) > 0.5

BINARY_CASES = [
    case(op, {"x": X, "y": Y[0, :1]}, "f32-bcast") for op in (
        "AddV2", "Add", "Sub", "Mul", "RealDiv", "Div", "FloorDiv", "FloorMod", "Maximum",
        "Minimum", "SquaredDifference", "DivNoNan", "MulNoNan", "Xdivy", "TruncateDiv")
] + [
    case(op, {"x": IA, "y": IB}, "i32") for op in (
        "AddV2", "Sub", "Mul", "Div", "FloorDiv", "FloorMod", "TruncateDiv", "TruncateMod",
        "Maximum", "Minimum", "SquaredDifference", "BitwiseAnd", "BitwiseOr", "BitwiseXor")
] + [
    case("AddV2", {"x": IA.astype("int64"), "y": IB.astype("int64")}, "i64"),
    case("Pow", {"x": POS, "y": Y}, "f32"),
    case("Pow", {"x": IA, "y": np.abs(IB) % 4}, "i32"),
    case("Atan2", {"y": X, "x": Y}),
    case("LeftShift", {"x": IA, "y": np.abs(IB) % 5}),
    case("RightShift", {"x": IA, "y": np.abs(IB) % 5}),
    case("AddN", {"inputs": [X, Y, POS]}),
    case("ClipByValue", {"t": X, "clip_value_min": a(-0.5, "float32"),
                         "clip_value_max": a(0.7, "float32")}),
]
COMPARE_CASES = [
    case(op, {"x": X, "y": Y}, "f32") for op in (
        "Less", "LessEqual", "Greater", "GreaterEqual", "Equal", "NotEqual")
] + [
    case(op, {"x": IA, "y": IB}, "i32") for op in ("Less", "Equal", "GreaterEqual")
] + [
    case("LogicalAnd", {"x": BOOL_A, "y": BOOL_B}), case("LogicalOr", {"x": BOOL_A, "y": BOOL_B}),
    case("LogicalNot", {"x": BOOL_A}),
    case("IsNan", {"x": a([1.0, np.nan, np.inf], "float32")}),
    case("IsInf", {"x": a([1.0, np.nan, -np.inf], "float32")}),
    case("IsFinite", {"x": a([1.0, np.nan, -np.inf], "float32")}),
]
UNARY_CASES = [
    case(op, {"x": X}) for op in (
        "Neg", "Abs", "Square", "Sign", "Exp", "Expm1", "Floor", "Ceil", "Round", "Rint",
        "Sin", "Cos", "Tan", "Atan", "Sinh", "Cosh", "Asinh", "Erf", "Erfc", "Sigmoid",
        "Tanh")
] + [
    case(op, {"features": X}) for op in ("Softplus", "Softsign")
] + [
    case(op, {"x": POS}) for op in ("Log", "Log1p", "Sqrt", "Rsqrt", "Reciprocal", "Inv")
] + [
    case(op, {"x": UNIT}) for op in ("Asin", "Acos", "Atanh")
] + [
    case("Acosh", {"x": POS + np.float32(1)}),
    case("Round", {"x": a([-2.5, -1.5, -0.5, 0.5, 1.5, 2.5, 0.49], "float32")}, "half-even"),
    case("Neg", {"x": IA}, "i32"), case("Abs", {"x": IA}, "i32"),
    case("Square", {"x": IA}, "i32"), case("Sign", {"x": IA}, "i32"),
    case("Invert", {"x": IA}), case("Softplus", {"features": f32(5) * 30}, "large"),
]
NN_ACT_CASES = [
    case(op, {"features": X}) for op in ("Relu", "Relu6", "Elu", "Selu")
] + [
    case("Relu6", {"features": X * 8}, "wide"),
    case("Relu", {"features": IA}, "i32"), case("Relu6", {"features": IA}, "i32"),
    case("LeakyRelu", {"features": X}, alpha=0.2),
    case("LeakyRelu", {"features": X}, "alpha0.01", alpha=0.01),
    case("Softmax", {"logits": X * 5}), case("LogSoftmax", {"logits": X * 5}),
    case("Softmax", {"logits": f32(7)}, "vector"),
]
CAST_CASES = [
    case("Cast", {"x": X * 5}, "f32-i32", DstT="int32"),
    case("Cast", {"x": X * 5}, "f32-i64", DstT="int64"),
    case("Cast", {"x": X}, "f32-bool", DstT="bool"),
    case("Cast", {"x": IA}, "i32-f32", DstT="float32"),
    case("Cast", {"x": IA}, "i32-bool", DstT="bool"),
    case("Cast", {"x": BOOL_A}, "bool-f32", DstT="float32"),
    case("Cast", {"x": BOOL_A}, "bool-i32", DstT="int32"),
    case("Cast", {"x": IA.astype("int64")}, "i64-i32", DstT="int32"),
    case("Cast", {"x": X}, "f32-f16", DstT="float16"),
]
MATMUL_CASES = [
    case("MatMul", {"a": f32(3, 4), "b": f32(4, 5)}),
    case("MatMul", {"a": f32(4, 3), "b": f32(4, 5)}, "ta", transpose_a=True),
    case("MatMul", {"a": f32(3, 4), "b": f32(5, 4)}, "tb", transpose_b=True),
    case("MatMul", {"a": f32(4, 3), "b": f32(5, 4)}, "tab", transpose_a=True, transpose_b=True),
    case("MatMul", {"a": i32(3, 4), "b": i32(4, 2)}, "i32"),
    case("BatchMatMulV2", {"x": f32(2, 3, 4), "y": f32(4, 5)}, "bcast"),
    case("BatchMatMulV2", {"x": f32(2, 1, 4, 3), "y": f32(3, 5, 4)}, "adj", adj_x=True,
         adj_y=True),
    case("BatchMatMulV3", {"x": f32(2, 3, 4), "y": f32(2, 4, 5)}, Tout="float32"),
    case("BatchMatMul", {"x": f32(2, 3, 4), "y": f32(2, 4, 5)}),
    case("Einsum", {"inputs": [f32(2, 3, 4), f32(4, 5, 6)]}, "dense", equation="abc,cde->abde"),
    case("Einsum", {"inputs": [f32(2, 5, 3, 4), f32(2, 6, 3, 4)]}, "attention",
         equation="aecd,abcd->acbe"),
    case("Einsum", {"inputs": [f32(2, 3, 4, 5), f32(5, 6)]}, "ellipsis", equation="...d,df->...f"),
    case("Einsum", {"inputs": [f32(3, 3)]}, "trace", equation="ii->"),
]
REDUCE_CASES = [
    case(op, {"input": X, "axis": a(ax)}, f"{ax}-{kd}", keep_dims=kd)
    for op in ("Sum", "Mean", "Max", "Min", "Prod", "EuclideanNorm")
    for ax, kd in (([1], False), ([0, -1], True), ([], False))
] + [
    case(op, {"input": IA, "axis": a(1)}, "i32") for op in ("Sum", "Mean", "Max", "Prod")
] + [
    case("Mean", {"input": i32(3, 7), "axis": a([1], "int64")}, "i32-trunc", keep_dims=True),
    case("All", {"input": BOOL_A, "axis": a([1])}), case("Any", {"input": BOOL_A, "axis": a(0)}),
    case("Max", {"input": f32(3, 0), "axis": a([1])}, "empty"),
    case("ArgMax", {"input": X, "dimension": a(1)}),
    case("ArgMax", {"input": X, "dimension": a(-1)}, "i32", output_type="int32"),
    case("ArgMin", {"input": IA, "dimension": a(0, "int64")}),
    case("ArgMax", {"input": a([[1, 3, 3], [2, 2, 0]])}, "ties", dimension=None),
] + [
    case(op, {"x": X, "axis": a(ax)}, f"{ax}-{ex}-{rv}", exclusive=ex, reverse=rv)
    for op in ("Cumsum", "Cumprod") for ax in (1, -1)
    for ex, rv in ((False, False), (True, False), (False, True), (True, True))
] + [case("Cumsum", {"x": IA, "axis": a(0)}, "i32")]


def _fix_ties(params: list) -> list:
    # ArgMax "ties" case: pass the axis as an input like the others
    out = []
    for p in params:
        op, inputs, attrs = p.values
        if attrs.get("dimension", 0) is None:
            attrs = {}
            inputs = dict(inputs, dimension=a(1))
        out.append(pytest.param(op, inputs, attrs, id=p.id))
    return out


REDUCE_CASES = _fix_ties(REDUCE_CASES)

IMG = f32(2, 7, 6, 3)
IMG_FIRST = np.ascontiguousarray(IMG.transpose(0, 3, 1, 2))
CONV_CASES = [
    case("Conv2D", {"input": IMG, "filter": f32(3, 3, 3, 4)}, f"{pad}-s{s}-d{d}",
         strides=[1, s, s, 1], padding=pad, dilations=[1, d, d, 1])
    for pad in ("SAME", "VALID") for s, d in ((1, 1), (2, 1), (1, 2))
] + [
    case("Conv2D", {"input": IMG, "filter": f32(1, 1, 3, 5)}, "1x1", strides=[1, 1, 1, 1],
         padding="VALID"),
    case("Conv2D", {"input": IMG, "filter": f32(2, 3, 3, 4)}, "rect-s21", strides=[1, 2, 1, 1],
         padding="SAME"),
    case("Conv2D", {"input": f32(2, 5, 5, 4), "filter": f32(3, 3, 2, 6)}, "groups",
         strides=[1, 1, 1, 1], padding="SAME"),
    case("Conv2D", {"input": IMG, "filter": f32(3, 3, 3, 4)}, "explicit", strides=[1, 1, 1, 1],
         padding="EXPLICIT", explicit_paddings=[0, 0, 1, 2, 0, 1, 0, 0]),
    case("Conv3D", {"input": f32(1, 4, 5, 6, 2), "filter": f32(2, 3, 3, 2, 3)}, "same",
         strides=[1, 1, 2, 1, 1], padding="SAME"),
    case("Conv3D", {"input": f32(1, 4, 5, 6, 2), "filter": f32(2, 2, 2, 2, 3)}, "valid-d",
         strides=[1, 1, 1, 1, 1], padding="VALID", dilations=[1, 2, 1, 2, 1]),
    case("DepthwiseConv2dNative", {"input": IMG, "filter": f32(3, 3, 3, 2)}, "same-m2",
         strides=[1, 1, 1, 1], padding="SAME"),
    case("DepthwiseConv2dNative", {"input": IMG, "filter": f32(3, 3, 3, 1)}, "valid-s2",
         strides=[1, 2, 2, 1], padding="VALID"),
    case("DepthwiseConv2dNative", {"input": IMG, "filter": f32(3, 3, 3, 1)}, "dilated",
         strides=[1, 1, 1, 1], padding="SAME", dilations=[1, 2, 2, 1]),
    case("Conv2DBackpropInput", {"input_sizes": a([2, 8, 6, 4]), "filter": f32(3, 3, 4, 3),
                                 "out_backprop": f32(2, 4, 3, 3)}, "same-s2",
         strides=[1, 2, 2, 1], padding="SAME"),
    case("Conv2DBackpropInput", {"input_sizes": a([2, 9, 7, 4]), "filter": f32(3, 3, 4, 3),
                                 "out_backprop": f32(2, 4, 3, 3)}, "valid-s2",
         strides=[1, 2, 2, 1], padding="VALID"),
    case("Conv2DBackpropInput", {"input_sizes": a([2, 7, 6, 2]), "filter": f32(2, 3, 2, 3),
                                 "out_backprop": f32(2, 7, 6, 3)}, "same-s1",
         strides=[1, 1, 1, 1], padding="SAME"),
    case("Conv3DBackpropInputV2", {"input_sizes": a([1, 4, 6, 4, 2]),
                                   "filter": f32(2, 3, 3, 2, 3),
                                   "out_backprop": f32(1, 2, 3, 2, 3)}, "same-s2",
         strides=[1, 2, 2, 2, 1], padding="SAME"),
    case("BiasAdd", {"value": IMG, "bias": f32(3)}),
    case("BiasAdd", {"value": f32(4, 3), "bias": f32(3)}, "matrix"),
    case("BiasAdd", {"value": IMG_FIRST, "bias": f32(3)}, "nchw", data_format="NCHW"),
    case("BiasAddV1", {"value": IMG, "bias": f32(3)}),
]
POOL_CASES = [
    case(op, {key: IMG}, f"{pad}-k{k}-s{s}", ksize=[1, k, k, 1], strides=[1, s, s, 1],
         padding=pad)
    for op, key in (("MaxPool", "input"), ("AvgPool", "value"))
    for pad in ("SAME", "VALID") for k, s in ((2, 2), (3, 1), (3, 2))
] + [
    case("MaxPool", {"input": IMG}, "explicit", ksize=[1, 3, 3, 1], strides=[1, 2, 2, 1],
         padding="EXPLICIT", explicit_paddings=[0, 0, 1, 1, 1, 0, 0, 0]),
    case("MaxPool", {"input": IMG}, "rect", ksize=[1, 1, 3, 1], strides=[1, 1, 2, 1],
         padding="SAME"),
    case("MaxPoolV2", {"input": IMG, "ksize": a([1, 2, 2, 1]), "strides": a([1, 2, 2, 1])},
         padding="SAME"),
    case("MaxPool3D", {"input": f32(1, 4, 5, 6, 2)}, ksize=[1, 2, 2, 2, 1],
         strides=[1, 2, 2, 2, 1], padding="SAME"),
    case("AvgPool3D", {"input": f32(1, 4, 5, 6, 2)}, ksize=[1, 2, 3, 2, 1],
         strides=[1, 1, 2, 2, 1], padding="SAME"),
]
C = 3
BN = {"x": IMG, "scale": f32(C), "offset": f32(C), "mean": f32(C), "variance": f32(C, lo=0.1)}
BN_CASES = [
    case("FusedBatchNormV3", BN, "inference", epsilon=0.001, is_training=False),
    case("FusedBatchNorm", BN, "v1", epsilon=0.001, is_training=False),
    case("FusedBatchNormV2", BN, "v2", epsilon=1e-5, is_training=False),
    case("FusedBatchNormV3", dict(BN, x=IMG_FIRST), "nchw", epsilon=0.001, is_training=False,
         data_format="NCHW"),
]

S = f32(2, 3, 4, 5)
SHAPE_CASES = [
    case("Identity", {"input": X}), case("StopGradient", {"input": IA}),
    case("Snapshot", {"input": X}), case("PreventGradient", {"input": X}),
    case("IdentityN", {"input": [X, IA]}),
    case("PlaceholderWithDefault", {"input": X}, shape=[None, 3, 4]),
    case("EnsureShape", {"input": X}, shape=[None, 3, 4]),
    case("CheckNumerics", {"tensor": X}, message="ok"),
    case("Shape", {"input": S}), case("Shape", {"input": S}, "i64", out_type="int64"),
    case("Shape", {"input": a(3.0, "float32")}, "scalar"),
    case("ShapeN", {"input": [S, X]}), case("Size", {"input": S}), case("Rank", {"input": S}),
    case("Reshape", {"tensor": S, "shape": a([2, -1, 5])}),
    case("Reshape", {"tensor": S, "shape": a([120], "int64")}, "flat"),
    case("Reshape", {"tensor": a([7.0], "float32"), "shape": a([], "int32")}, "scalar"),
    case("Squeeze", {"input": f32(1, 3, 1, 2)}), case("Squeeze", {"input": f32(1, 3, 1, 2)},
                                                      "axis", axis=[-2]),
    case("ExpandDims", {"input": X, "axis": a(0)}),
    case("ExpandDims", {"input": X, "axis": a(-1)}, "last"),
    case("Transpose", {"x": S, "perm": a([0, 2, 3, 1])}),
    case("BroadcastTo", {"input": f32(3, 1), "shape": a([2, 3, 4])}),
    case("BroadcastArgs", {"s0": a([2, 1, 4]), "s1": a([3, 1])}),
    case("Slice", {"input": S, "begin": a([0, 1, 0, 2]), "size": a([2, -1, 3, 2])}),
    case("ConcatV2", {"values": [X, Y, X], "axis": a(-1)}),
    case("ConcatV2", {"values": [IA, IB], "axis": a(0, "int64")}, "i32"),
    case("Concat", {"concat_dim": a(1), "values": [X, Y]}),
    case("Pack", {"values": [X, Y]}, axis=1), case("Pack", {"values": [a(1), a(2)]}, "scalars"),
    case("Unpack", {"value": S}, num=3, axis=1),
    case("Split", {"axis": a(-1), "value": S}, num_split=5),
    case("SplitV", {"value": S, "size_splits": a([1, -1, 2]), "axis": a(3)}, num_split=3),
    case("Tile", {"input": X, "multiples": a([1, 2, 3])}),
    case("ReverseV2", {"tensor": S, "axis": a([1, -1])}),
    case("Fill", {"dims": a([2, 3]), "value": a(1.5, "float32")}),
    case("Fill", {"dims": a([2, 0], "int64"), "value": a(4)}, "i32-empty"),
    case("ZerosLike", {"x": X}), case("OnesLike", {"x": IA}),
    case("Range", {"start": a(0), "limit": a(10), "delta": a(3)}),
    case("Range", {"start": a(5), "limit": a(-4), "delta": a(-2)}, "neg"),
    case("Range", {"start": a(0.5, "float32"), "limit": a(3.3, "float32"),
                   "delta": a(0.7, "float32")}, "f32"),
    case("Range", {"start": a(0, "int64"), "limit": a(6, "int64"), "delta": a(1, "int64")},
         "i64"),
    case("OneHot", {"indices": a([0, 2, -1, 3]), "depth": a(3), "on_value": a(5.0, "float32"),
                    "off_value": a(-1.0, "float32")}),
    case("OneHot", {"indices": a([[0, 2], [1, 1]], "int64"), "depth": a(3), "on_value": a(1),
                    "off_value": a(0)}, "axis0", axis=0),
    case("GatherV2", {"params": S, "indices": a([[2, 0], [1, 1]]), "axis": a(1)}),
    case("GatherV2", {"params": S, "indices": a([3, 0], "int64"), "axis": a(-1)}, "last"),
    case("GatherV2", {"params": S, "indices": i32(2, 3, lo=0, hi=4), "axis": a(2)}, "batch1",
         batch_dims=1),
    case("GatherV2", {"params": S, "indices": i32(2, 3, 2, lo=0, hi=4), "axis": a(2)},
         "batch2", batch_dims=2),
    case("Gather", {"params": f32(6, 3), "indices": a([[5, 0, 2]])}),
    case("GatherNd", {"params": S, "indices": a([[0, 1], [1, 2]])}),
    case("GatherNd", {"params": f32(3, 4), "indices": a([[[0, 1]], [[2, 3]]])}, "full"),
    case("Pad", {"input": X, "paddings": a([[0, 0], [1, 2], [2, 0]])}),
    case("PadV2", {"input": IA, "paddings": a([[1, 1], [0, 2]], "int64"),
                   "constant_values": a(7)}),
    case("MirrorPad", {"input": X, "paddings": a([[0, 0], [2, 1], [1, 3]])}, "reflect",
         mode="REFLECT"),
    case("MirrorPad", {"input": X, "paddings": a([[1, 0], [3, 1], [1, 4]])}, "symmetric",
         mode="SYMMETRIC"),
    case("SelectV2", {"condition": BOOL_A[:, :1], "t": f32(3, 4), "e": f32(4)}),
    case("Select", {"condition": BOOL_A, "x": f32(3, 4), "y": f32(3, 4)}),
    case("Select", {"condition": BOOL_A[:, 0], "x": f32(3, 4), "y": f32(3, 4)}, "rows"),
    case("Where", {"condition": BOOL_A}), case("Where", {"condition": IA}, "int"),
    case("TopKV2", {"input": a([[1, 5, 5, 2, 5], [0, 0, 1, 0, 3]], "float32"), "k": a(3)}),
    case("TopKV2", {"input": IA, "k": a(2)}, "i32"),
]

SLICE_T = np.arange(2 * 5 * 6 * 3, dtype=np.float32).reshape(2, 5, 6, 3)


def sl(label: str, begin: list, end: list, strides: list, **masks: int) -> Any:
    return case("StridedSlice", {"input": SLICE_T, "begin": a(begin), "end": a(end),
                                 "strides": a(strides)}, label, **masks)


STRIDED_CASES = [
    sl("basic", [0, 1], [2, 4], [1, 1]),
    sl("begin-end-masks", [0, 1, 0], [0, 4, 5], [1, 2, 1], begin_mask=0b101, end_mask=0b001),
    sl("negative", [-1, -4], [-3, -1], [-1, 1]),
    sl("neg-stride-masked", [0, 0, 0], [0, 0, 0], [1, -1, -2], begin_mask=0b110,
       end_mask=0b110),
    sl("clamped", [-10, 2], [10, 100], [1, 1]),
    sl("neg-stride-clamped", [10, 100], [-10, -100], [-1, -2]),
    sl("shrink", [1, -1], [2, 0], [1, 1], shrink_axis_mask=0b11),
    sl("shrink-begin-mask", [1, 2], [2, 0], [1, 1], shrink_axis_mask=0b01, begin_mask=0b01),
    sl("ellipsis", [0, 1], [0, 3], [1, 1], ellipsis_mask=0b01),
    sl("ellipsis-middle", [1, 0, 1], [2, 0, 3], [1, 1, 1], ellipsis_mask=0b010),
    sl("new-axis", [0, 0, 1], [0, 0, 3], [1, 1, 1], new_axis_mask=0b010, begin_mask=0b001,
       end_mask=0b001),
    sl("all-masks", [0, 0, 0, 2, 0], [0, 0, 0, 3, 0], [1, 1, 1, 1, 1], begin_mask=0b00001,
       end_mask=0b00001, ellipsis_mask=0b00100, new_axis_mask=0b00010,
       shrink_axis_mask=0b01000),
    sl("empty", [3, 0], [1, 2], [1, 1]),
    sl("ellipsis-new-last", [0, 0], [0, 0], [1, 1], ellipsis_mask=0b01, new_axis_mask=0b10),
    sl("shrink-all", [1, 2, 3, 0], [2, 3, 4, 1], [1, 1, 1, 1], shrink_axis_mask=0b1111),
]
IMAGE_CASES = [
    case(op, {"images": IMG, "size": a(size)}, f"{size[0]}x{size[1]}", half_pixel_centers=True)
    for op in ("ResizeBilinear", "ResizeNearestNeighbor", "ResizeBicubic")
    for size in ([14, 9], [3, 4], [7, 6])
] + [
    case("ResizeBilinear", {"images": i32(1, 4, 5, 2), "size": a([7, 3])}, "int",
         half_pixel_centers=True),
    case("ResizeNearestNeighbor", {"images": i32(1, 4, 5, 2), "size": a([9, 3])}, "int",
         half_pixel_centers=True),
    case("DepthToSpace", {"input": f32(2, 3, 4, 8)}, block_size=2),
    case("SpaceToDepth", {"input": f32(2, 6, 4, 3)}, block_size=2),
    case("SpaceToBatchND", {"input": f32(2, 7, 6, 3), "block_shape": a([2, 3]),
                            "paddings": a([[1, 2], [0, 3]])}),
    case("SpaceToBatchND", {"input": f32(2, 6, 3), "block_shape": a([3]),
                            "paddings": a([[0, 0]])}, "1d"),
    case("BatchToSpaceND", {"input": f32(12, 4, 3, 3), "block_shape": a([2, 3]),
                            "crops": a([[1, 2], [0, 3]])}),
    case("BatchToSpaceND", {"input": f32(6, 2, 3), "block_shape": a([3]),
                            "crops": a([[0, 1]], "int64")}, "1d"),
    case("MatrixBandPart", {"input": f32(2, 5, 4), "num_lower": a(-1), "num_upper": a(0)},
         "lower"),
    case("MatrixBandPart", {"input": f32(5, 6), "num_lower": a(1, "int64"),
                            "num_upper": a(2, "int64")}, "band"),
]
Q = np.linspace(-7, 7, 61, dtype=np.float32).reshape(61, 1) * f32(1, 3, lo=0.5)
QUANT_CASES = [
    case("FakeQuantWithMinMaxArgs", {"inputs": Q}, "default"),
    case("FakeQuantWithMinMaxArgs", {"inputs": Q}, "narrow4", min=-2.5, max=4.1, num_bits=4,
         narrow_range=True),
    case("FakeQuantWithMinMaxArgs", {"inputs": Q}, "positive", min=0.3, max=5.0),
    case("FakeQuantWithMinMaxVars", {"inputs": Q, "min": a(-3.3, "float32"),
                                     "max": a(2.7, "float32")}),
    case("FakeQuantWithMinMaxVarsPerChannel", {"inputs": Q, "min": a([-1, -3, 0.5], "float32"),
                                               "max": a([1, 2, 6], "float32")}, num_bits=6),
    case("QuantizeAndDequantizeV2", {"input": Q, "input_min": a(0, "float32"),
                                     "input_max": a(0, "float32")}, "from-data"),
    case("QuantizeAndDequantizeV2", {"input": Q, "input_min": a(-2, "float32"),
                                     "input_max": a(3, "float32")}, "given-half-up",
         range_given=True, round_mode="HALF_UP", num_bits=4),
    case("QuantizeAndDequantizeV2", {"input": np.abs(Q), "input_min": a(0, "float32"),
                                     "input_max": a(0, "float32")}, "unsigned",
         signed_input=False),
    case("QuantizeAndDequantizeV4", {"input": Q, "input_min": a(-1, "float32"),
                                     "input_max": a(5, "float32")}, "narrow",
         range_given=True, narrow_range=True),
    case("QuantizeAndDequantizeV3", {"input": Q, "input_min": a(0, "float32"),
                                     "input_max": a(0, "float32"), "num_bits": a(5)}),
    case("LRN", {"input": f32(2, 3, 3, 7)}),
    case("LRN", {"input": f32(2, 3, 3, 7)}, "options", depth_radius=2, bias=2.0, alpha=0.3,
         beta=0.75),
    case("Bucketize", {"input": X}, boundaries=[-1.0, 0.0, 0.5, 2.0]),
    case("Bucketize", {"input": IA}, "int", boundaries=[-3.0, 0.0, 4.0]),
    case("ScatterNd", {"indices": a([[1], [3], [1]]), "updates": f32(3, 4),
                       "shape": a([5, 4])}),
    case("ScatterNd", {"indices": a([[0, 1], [2, 2]]), "updates": a([4, 5]),
                       "shape": a([3, 3])}, "i32"),
    case("TensorScatterUpdate", {"tensor": f32(5, 4), "indices": a([[1], [3]]),
                                 "updates": f32(2, 4)}),
    case("TensorScatterAdd", {"tensor": f32(5, 4), "indices": a([[1], [1]]),
                              "updates": f32(2, 4)}),
    case("TensorScatterSub", {"tensor": f32(3, 3), "indices": a([[0, 1], [2, 0]]),
                              "updates": f32(2)}),
    case("TensorScatterMax", {"tensor": f32(5, 4), "indices": a([[4]]), "updates": f32(1, 4)}),
    case("TensorScatterMin", {"tensor": IA, "indices": a([[0], [2]]), "updates": IB[:2]}),
]
SPD = (lambda m: (m @ m.T + 3 * np.eye(4)).astype(np.float32))(f32(4, 4))
SEG = a([0, 0, 1, 3, 3, 3])
LINALG_CASES = [
    case("MatrixInverse", {"input": np.stack([SPD, SPD * 2])}),
    case("MatrixInverse", {"input": SPD + np.triu(np.ones((4, 4), np.float32))}, "adjoint",
         adjoint=True),
    case("MatrixDeterminant", {"input": np.stack([SPD, -SPD])}),
    case("Cholesky", {"input": SPD + np.triu(f32(4, 4), 1)}, "reads-lower"),
    case("MatrixSolve", {"matrix": SPD, "rhs": f32(4, 2)}),
    case("MatrixSolve", {"matrix": np.stack([SPD, SPD.T + 1]), "rhs": f32(2, 4, 3)}, "adjoint",
         adjoint=True),
    case("MatrixTriangularSolve", {"matrix": SPD, "rhs": f32(4, 2)}),
    case("MatrixTriangularSolve", {"matrix": np.stack([SPD, SPD]), "rhs": f32(4, 3)},
         "upper-adjoint-bcast", lower=False, adjoint=True),
    case("MatrixDiagV3", {"diagonal": f32(2, 3), "k": a(0), "num_rows": a(-1),
                          "num_cols": a(-1), "padding_value": a(0, "float32")}),
    case("MatrixDiagPartV3", {"input": f32(2, 3, 4), "k": a(0),
                              "padding_value": a(0, "float32")}),
    case("MatrixSetDiagV3", {"input": f32(2, 4, 3), "diagonal": f32(2, 3), "k": a(0)}),
    case("SegmentSum", {"data": f32(6, 2), "segment_ids": SEG}),
    case("SegmentMean", {"data": f32(6, 2), "segment_ids": SEG}),
    case("SegmentMax", {"data": f32(6, 2), "segment_ids": SEG}, "empty-segment"),
    case("SegmentMin", {"data": IA.reshape(6, 2), "segment_ids": SEG}, "i32"),
    case("SegmentProd", {"data": f32(6), "segment_ids": SEG}),
    case("UnsortedSegmentSum", {"data": f32(6, 2), "segment_ids": a([2, 0, 2, -1, 1, 2]),
                                "num_segments": a(4)}),
    case("UnsortedSegmentMax", {"data": f32(2, 3), "segment_ids": a([[0, 2, 0], [2, 2, 1]]),
                                "num_segments": a(4)}, "2d-ids"),
    case("UnsortedSegmentMin", {"data": IA[:, 0], "segment_ids": a([1, 1, 0]),
                                "num_segments": a(3, "int64")}),
    case("UnsortedSegmentProd", {"data": f32(4), "segment_ids": a([1, 1, 0, 1]),
                                 "num_segments": a(2)}),
    case("Unique", {"x": a([4, 1, 4, 7, 1, 0])}),
    case("Unique", {"x": a([2.5, -1.0, 2.5], "float32")}, "f32-i64", out_idx="int64"),
    case("InvertPermutation", {"x": a([2, 0, 3, 1])}),
]
SORTED = np.sort(f32(3, 6), axis=-1)
MISC_CASES = [
    case("Mod", {"x": IA, "y": IB}, "i32"), case("Mod", {"x": X, "y": POS}, "f32"),
    case("CumulativeLogsumexp", {"x": X, "axis": a(1)}),
    case("CumulativeLogsumexp", {"x": X, "axis": a(-1)}, "exclusive-reverse", exclusive=True,
         reverse=True),
    case("LowerBound", {"sorted_inputs": SORTED, "values": np.concatenate(
        [f32(3, 4), SORTED[:, 1:3]], axis=1)}),
    case("UpperBound", {"sorted_inputs": SORTED, "values": np.concatenate(
        [f32(3, 4), SORTED[:, 1:3]], axis=1)}, out_type="int64"),
    case("HistogramFixedWidth", {"values": X, "value_range": a([-1.0, 1.0], "float32"),
                                 "nbins": a(5)}),
    case("HistogramFixedWidth", {"values": IA, "value_range": a([-4, 6]), "nbins": a(3)},
         "int", dtype="int64"),
    case("DenseBincount", {"input": i32(7, lo=0, hi=6), "size": a(5),
                           "weights": np.zeros(0, np.float32)}),
    case("DenseBincount", {"input": i32(3, 7, lo=0, hi=6), "size": a(6), "weights": f32(3, 7)},
         "weighted-2d"),
    case("DenseBincount", {"input": i32(3, 7, lo=0, hi=6), "size": a(4),
                           "weights": np.zeros(0, np.int32)}, "binary", binary_output=True),
    case("Bincount", {"arr": i32(9, lo=0, hi=5), "size": a(6), "weights": f32(9)}),
    case("Roll", {"input": S, "shift": a([2, -1]), "axis": a([1, -1])}),
    case("Roll", {"input": S, "shift": a([1, 2]), "axis": a([3, 3])}, "same-axis"),
    case("ReverseSequence", {"input": S, "seq_lengths": a([3, 1], "int64")}, seq_dim=2,
         batch_dim=0),
    case("ReverseSequence", {"input": S, "seq_lengths": a([5, 0, 2])}, "batch1", seq_dim=3,
         batch_dim=1),
]
ALL_CASES = (MISC_CASES + LINALG_CASES + QUANT_CASES + IMAGE_CASES + BINARY_CASES
             + COMPARE_CASES + UNARY_CASES + NN_ACT_CASES + CAST_CASES + MATMUL_CASES
             + REDUCE_CASES + CONV_CASES + POOL_CASES + BN_CASES + SHAPE_CASES + STRIDED_CASES)


@pytest.mark.parametrize("op, inputs, attrs", ALL_CASES)
def test_raw_op_matches_tf(op: str, inputs: dict[str, Any], attrs: dict[str, Any]) -> None:
    config = _trace_config(op, inputs, attrs)
    want = _tf_eager(op, inputs, attrs)
    got = run_tfless(op, config, _flat(inputs))
    compare(got, want, op)


def test_const_node_from_traced_graph() -> None:
    value = f32(3, 2)

    @tf.function(input_signature=[])
    def fn() -> Any:
        return tf.constant(value) * 1.0

    nodes = [n for n in fn.get_concrete_function().graph.as_graph_def().node if n.op == "Const"]
    config = node_config(tf, nodes[0])
    got = run_tfless("Const", config, [], {"value": config.pop("value")})
    compare(got, [value], "Const")


def test_filter_arranged_once_per_array() -> None:
    # a Const filter is the same array each run; a new array must not reuse the old layout
    config = _trace_config("Conv2D", {"input": IMG, "filter": f32(3, 3, 3, 4)},
                           {"strides": [1, 1, 1, 1], "padding": "SAME"})
    from tfless.ops import get_op

    run = get_op("tf.Conv2D").build(config, {})
    for _ in range(2):
        filt = f32(3, 3, 3, 4)
        want = tf.raw_ops.Conv2D(input=IMG, filter=filt, strides=[1, 1, 1, 1], padding="SAME")
        np.testing.assert_allclose(run(IMG, filt), want.numpy(), atol=ATOL, rtol=RTOL)


def test_nchw_conv_and_pool_match_nhwc() -> None:
    # TF's CPU kernels may not run NCHW; tfless does, and must agree with the NHWC result
    filt = f32(3, 3, 3, 4)
    for op, inputs, attrs in (
            ("Conv2D", {"input": IMG, "filter": filt}, {"strides": [1, 1, 2, 1],
                                                         "padding": "SAME"}),
            ("DepthwiseConv2dNative", {"input": IMG, "filter": f32(3, 3, 3, 2)},
             {"strides": [1, 2, 1, 1], "padding": "VALID"}),
            ("MaxPool", {"input": IMG}, {"ksize": [1, 3, 2, 1], "strides": [1, 2, 2, 1],
                                         "padding": "SAME"}),
            ("AvgPool", {"value": IMG}, {"ksize": [1, 3, 2, 1], "strides": [1, 2, 1, 1],
                                         "padding": "SAME"})):
        want = _tf_eager(op, inputs, attrs)[0]
        config = _trace_config(op, inputs, attrs)
        perm = lambda v: [v[0], v[3], v[1], v[2]]  # noqa: E731
        config.update(data_format="NCHW", strides=perm(config["strides"]))
        if "ksize" in config:
            config["ksize"] = perm(config["ksize"])
        flat = _flat(inputs)
        flat[0] = IMG_FIRST
        got = run_tfless(op, config, flat)[0]
        np.testing.assert_allclose(got, want.transpose(0, 3, 1, 2), atol=ATOL, rtol=RTOL,
                                   err_msg=op)


@pytest.mark.parametrize("op, inputs, attrs", [
    case("Conv2D", {"input": f32(1, 2, 2, 3), "filter": f32(3, 3, 3, 4)}, strides=[1] * 4,
         padding="VALID"),
    case("DepthwiseConv2dNative", {"input": f32(1, 2, 5, 3), "filter": f32(3, 3, 3, 2)},
         strides=[1] * 4, padding="VALID"),
    case("MaxPool", {"input": f32(1, 2, 2, 3)}, ksize=[1, 3, 3, 1], strides=[1] * 4,
         padding="VALID"),
])
def test_window_larger_than_input_is_refused_like_tf(op: str, inputs: dict[str, Any],
                                                     attrs: dict[str, Any]) -> None:
    # TF's shape function rejects a VALID window larger than the input ("Negative dimension
    # size"); its oneDNN CPU kernels run eagerly return garbage or crash, so that is the
    # reference
    flat = _flat(inputs)
    fn = tf.function(lambda *xs: getattr(tf.raw_ops, op)(**dict(zip(inputs, xs)), **attrs))
    with pytest.raises(ValueError, match="Negative dimension"):
        fn.get_concrete_function(*[tf.TensorSpec(x.shape, x.dtype) for x in flat])
    config = _trace_config(op, inputs, attrs)
    with pytest.raises(TflessError, match=config["_node"]):
        run_tfless(op, config, flat)


def test_training_batch_norm_matches_tf() -> None:
    attrs = {"epsilon": 0.001, "is_training": True, "exponential_avg_factor": 1.0}
    inputs = dict(BN, mean=np.zeros(0, np.float32), variance=np.zeros(0, np.float32))
    want = _tf_eager("FusedBatchNormV3", inputs, attrs)
    got = run_tfless("FusedBatchNormV3", _trace_config("FusedBatchNormV3", inputs, attrs),
                     _flat(inputs))
    compare(got[:3], want[:3], "FusedBatchNormV3 training")


# ----- errors: TF rejects these inputs; tfless must raise a TflessError naming the node ----
ERROR_CASES = [
    case("Reshape", {"tensor": S, "shape": a([7, -1])}, "size"),
    case("Reshape", {"tensor": S, "shape": a([-1, -1])}, "two-free"),
    case("FloorDiv", {"x": IA, "y": IB * 0}, "int-div-zero"),
    case("TruncateMod", {"x": IA, "y": IB * 0}, "int-mod-zero"),
    case("GatherV2", {"params": S, "indices": a([4]), "axis": a(1)}, "index"),
    case("GatherV2", {"params": S, "indices": a([-1]), "axis": a(0)}, "negative-index"),
    case("StridedSlice", {"input": SLICE_T, "begin": a([5]), "end": a([6]),
                          "strides": a([1])}, "shrink-out-of-range", shrink_axis_mask=1),
    case("StridedSlice", {"input": SLICE_T, "begin": a([0]), "end": a([1]),
                          "strides": a([0])}, "zero-stride"),
    case("Squeeze", {"input": f32(1, 3)}, "not-one", axis=[1]),
    case("Split", {"axis": a(1), "value": S}, "uneven", num_split=2),
    case("SplitV", {"value": S, "size_splits": a([1, 1]), "axis": a(1)}, "sizes", num_split=2),
    case("ConcatV2", {"values": [X, f32(2, 4, 4)], "axis": a(2)}, "shapes"),
    case("Pack", {"values": [X, f32(2, 3, 5)]}, "shapes"),
    case("Slice", {"input": S, "begin": a([0, 2, 0, 0]), "size": a([1, 2, 1, 1])}, "bounds"),
    case("MirrorPad", {"input": X, "paddings": a([[0, 0], [3, 0], [0, 0]])}, "too-large",
         mode="REFLECT"),
    case("Transpose", {"x": S, "perm": a([0, 1, 1, 2])}, "perm"),
    case("MatMul", {"a": f32(3, 4), "b": f32(3, 4)}, "shapes"),
    case("Conv2D", {"input": IMG, "filter": f32(3, 3, 4, 4)}, "channels", strides=[1, 1, 1, 1],
         padding="SAME"),
    case("Range", {"start": a(0), "limit": a(5), "delta": a(0)}, "zero-delta"),
    case("Range", {"start": a(5), "limit": a(0), "delta": a(1)}, "wrong-direction"),
    case("TopKV2", {"input": f32(2, 3), "k": a(4)}, "k"),
    case("CheckNumerics", {"tensor": a([1.0, np.nan], "float32")}, "nan", message="bad"),
    case("EnsureShape", {"input": X}, "shape", shape=[None, 4, 4]),
    case("BroadcastTo", {"input": f32(3, 2), "shape": a([2, 3, 4])}, "shape"),
    case("Pow", {"x": IA, "y": -np.abs(IB)}, "int-negative-power"),
    case("ScatterNd", {"indices": a([[5]]), "updates": f32(1, 4), "shape": a([5, 4])},
         "index"),
    case("GatherNd", {"params": S, "indices": a([[0, 3]])}, "index"),
    case("MatrixInverse", {"input": np.ones((3, 3), np.float32)}, "singular"),
    case("InvertPermutation", {"x": a([0, 0, 2])}, "not-permutation"),
]


@pytest.mark.parametrize("op, inputs, attrs", ERROR_CASES)
def test_invalid_input_is_refused_like_tf(op: str, inputs: dict[str, Any],
                                          attrs: dict[str, Any]) -> None:
    with pytest.raises((tf.errors.OpError, ValueError)):
        _tf_eager(op, inputs, attrs)
    config = _trace_config(op, inputs, attrs)
    with pytest.raises(TflessError) as info:
        run_tfless(op, config, _flat(inputs))
    assert config["_node"] in str(info.value)


def test_cholesky_of_a_non_positive_definite_matrix_is_an_error() -> None:
    # TF's CPU kernel answers NaNs (and leftover memory above the diagonal); tfless says why
    assert np.isnan(tf.raw_ops.Cholesky(input=-SPD).numpy()).any()
    config = _trace_config("Cholesky", {"input": -SPD}, {})
    with pytest.raises(TflessError, match="not positive definite"):
        run_tfless("Cholesky", config, [-SPD])


REFUSALS = [
    ("Conv2D", {"strides": [1, 1, 1, 1], "padding": "SAME", "data_format": "NCHW_VECT_C"},
     "data_format"),
    ("Conv2D", {"strides": [2, 1, 1, 1], "padding": "SAME"}, "strides"),
    ("Conv3D", {"strides": [1] * 5, "padding": "EXPLICIT"}, "padding"),
    ("AvgPool", {"ksize": [1, 2, 2, 1], "strides": [1] * 4, "padding": "EXPLICIT"}, "padding"),
    ("MaxPool", {"ksize": [1, 2, 2, 1], "strides": [1] * 4, "padding": "SAME",
                 "data_format": "NCHW_VECT_C"}, "data_format"),
    ("Conv2DBackpropInput", {"strides": [1] * 4, "padding": "EXPLICIT",
                             "explicit_paddings": [0] * 8}, "padding"),
    ("MirrorPad", {"mode": "EDGE"}, "mode"),
    ("Cast", {"DstT": "string"}, "DstT"),
    ("Equal", {"incompatible_shape_error": False}, "incompatible_shape_error"),
    ("ResizeBilinear", {"align_corners": True, "half_pixel_centers": False}, "align_corners"),
    ("ResizeNearestNeighbor", {"half_pixel_centers": False}, "half_pixel_centers"),
    ("DepthToSpace", {"block_size": 2, "data_format": "NCHW"}, "data_format"),
    ("QuantizeAndDequantizeV2", {"axis": 1}, "axis"),
]


@pytest.mark.parametrize("op, attrs, field", REFUSALS, ids=[f"{r[0]}-{r[2]}" for r in REFUSALS])
def test_unsupported_attrs_are_refused_with_the_node_and_attr(op: str, attrs: dict[str, Any],
                                                              field: str) -> None:
    from tfless.ops import get_op

    config = dict(attrs, _node=f"model/{op.lower()}_1")
    with pytest.raises(UnsupportedLayer) as info:
        get_op(f"tf.{op}").build(config, {})
    assert config["_node"] in str(info.value) and field in str(info.value)


def test_docs_list_the_registered_ops() -> None:
    from pathlib import Path

    from tfless.ops.tf import op_list_markdown

    text = (Path(__file__).resolve().parents[2] / "docs" / "formats.md").read_text()
    block = text.split("<!-- tf-ops:start -->\n", 1)[1].split("\n<!-- tf-ops:end -->", 1)[0]
    assert block == op_list_markdown(), "regenerate with: python -m tfless.ops.tf"
