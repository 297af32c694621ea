"""int8 quantization of an exported ONNX graph, without TensorFlow
(`tfless export MODEL -f onnx --quantize int8 [--calibration X.npy]`).

The scheme is weight-only QDQ: every float32 weight that feeds a MatMul, Gemm or Conv as
its weight operand is stored as int8 with one symmetric scale per output channel
(scale = max|w| / 127, zero point 0, values round-half-even(w / scale)), followed by a
DequantizeLinear (per-axis, opset >= 13) that restores a float32 tensor, so every operator
still computes in float32 and any ONNX runtime runs the file. Weights shrink about 4x;
activations stay float, so there is nothing to calibrate: sample inputs (`--calibration`,
else the embedded test vector) measure the accuracy change (largest absolute difference and
top-1 agreement with the float model).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import InputError

MODES = ("int8",)
# Operators whose second input is a weight with a known output-channel axis.
WEIGHT_AXES = {"MatMul": -1, "Conv": 0}


@dataclass
class QuantizationReport:
    mode: str
    tensors: int = 0
    bytes_float32: int = 0
    bytes_int8: int = 0
    samples: int = 0
    max_abs_diff: float = 0.0
    top1_agreement: float | None = None
    outputs: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        saved = 1 - self.bytes_int8 / max(self.bytes_float32, 1)
        lines = [f"{self.mode} weights ({self.tensors} tensors, per-channel symmetric, "
                 f"weight-only QDQ): {_mb(self.bytes_float32)} -> {_mb(self.bytes_int8)} "
                 f"({saved:.0%} smaller)"]
        if self.samples:
            top1 = "" if self.top1_agreement is None else \
                f", top-1 agreement {self.top1_agreement:.1%}"
            lines.append(f"accuracy change on {self.samples} sample inputs vs the float "
                         f"model: max abs diff {self.max_abs_diff:.3g}{top1}")
        return "\n".join(lines)


def _mb(n: int) -> str:
    return f"{n / 1e6:.2f} MB" if n >= 1e5 else f"{n / 1e3:.1f} KB"


def _channel_axis(node: Any, rank: int) -> int | None:
    if node.op_type == "Gemm":
        trans_b = next((a.i for a in node.attribute if a.name == "transB"), 0)
        return 0 if trans_b else 1
    axis = WEIGHT_AXES.get(node.op_type)
    if axis is None or (node.op_type == "MatMul" and rank != 2):
        return None
    return axis % rank


def quantize_weights(proto: Any, weight_names: Sequence[str], mode: str) -> QuantizationReport:
    """Rewrite `proto` in place: eligible float32 weights -> int8 + DequantizeLinear."""
    if mode not in MODES:
        raise InputError(f"--quantize {mode!r} is not supported; supported: {', '.join(MODES)}")
    import onnx
    from onnx import numpy_helper

    graph = proto.graph
    inits = {i.name: i for i in graph.initializer}
    wanted = set(weight_names)
    axes: dict[str, int] = {}
    for node in graph.node:
        if node.op_type not in ("MatMul", "Gemm", "Conv") or len(node.input) < 2:
            continue
        name = node.input[1]
        init = inits.get(name)
        if init is None or name not in wanted or init.data_type != onnx.TensorProto.FLOAT:
            continue
        axis = _channel_axis(node, len(init.dims))
        if axis is None or axes.get(name, axis) != axis:
            axes[name] = -1                      # shared with another layout: leave float
        else:
            axes[name] = axis
    report = QuantizationReport(mode)
    dequantize = []
    for name, axis in axes.items():
        if axis < 0:
            continue
        init = inits[name]
        w = numpy_helper.to_array(init).astype(np.float32)
        others = tuple(a for a in range(w.ndim) if a != axis)
        scale = (np.max(np.abs(w), axis=others) / np.float32(127)).astype(np.float32)
        scale = np.where(scale > 0, scale, np.float32(1)).astype(np.float32)
        shape = [1] * w.ndim
        shape[axis] = -1
        q = np.clip(np.round(w / scale.reshape(shape)), -127, 127).astype(np.int8)
        report.tensors += 1
        report.bytes_float32 += w.nbytes
        report.bytes_int8 += q.nbytes + scale.nbytes + scale.size
        init.CopyFrom(numpy_helper.from_array(q, name + "/int8"))
        graph.initializer.extend([
            numpy_helper.from_array(scale, name + "/scale"),
            numpy_helper.from_array(np.zeros(scale.shape, np.int8), name + "/zero_point"),
        ])
        dequantize.append(onnx.helper.make_node(
            "DequantizeLinear", [name + "/int8", name + "/scale", name + "/zero_point"],
            [name], name=name + "/DequantizeLinear", axis=axis))
    nodes = dequantize + list(graph.node)
    del graph.node[:]
    graph.node.extend(nodes)
    return report


def measure(report: QuantizationReport, got: list[np.ndarray], want: list[np.ndarray],
            names: Sequence[str]) -> None:
    """Fill the accuracy fields from the quantized and float outputs on the samples."""
    report.samples = int(want[0].shape[0]) if want and want[0].ndim else 1
    report.outputs = list(names)
    report.max_abs_diff = max(float(np.max(np.abs(np.asarray(g, np.float64) - w)))
                              if np.size(w) else 0.0 for g, w in zip(got, want))
    first, reference = np.asarray(got[0]), np.asarray(want[0])
    if reference.ndim >= 2 and reference.shape[-1] > 1:
        report.top1_agreement = float(np.mean(np.argmax(first, -1) == np.argmax(reference, -1)))
