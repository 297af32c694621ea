"""ONNX export of a tfless Model: `tfless.export_onnx(model, path)` and `tfless export -f onnx`.

`build_onnx` lowers the model's graph (`onnx_builder.py`), optionally stores the weights as
float16 (`onnx_float16.py`) or int8 (`onnx_quantize.py`), embeds a test vector computed by
the NumPy runtime and checks the result with onnx.checker and ONNX Runtime
(`onnx_check.py`); `export_onnx` writes it. This module also re-exports the names the other
exporters and users import from `tfless.export.onnx`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError, MissingExtra, TflessError
from .onnx_builder import (  # noqa: F401  (re-exported: the public face of the ONNX lowering)
    CONVERTERS,
    DEFAULT_OPSET,
    MIN_OPSET,
    ConverterSpec,
    OnnxBuilder,
    TensorFacts,
    converter,
    max_opset,
    model_batch,
    ort_run,
    ort_session,
    require_onnx,
    require_onnxruntime,
    tensor_facts,
    tfless_version,
)
from .onnx_check import (  # noqa: F401  (re-exported)
    ATOL,
    META_PREFIX,
    RTOL,
    TEST_VECTOR_KEY,
    TOLERANCE_KEY,
    Comparison,
    VerifyReport,
    compare,
    make_test_input,
    pack_vector,
    verify_onnx,
)
from .onnx_float16 import weights_to_float16
from .onnx_lower import graph_to_onnx, load_converters, unsupported_nodes  # noqa: F401


@dataclass
class ExportReport:
    path: str
    opset: int
    batch: int | None
    bytes: int
    float16: bool = False
    weights_converted: int = 0
    weight_bytes_float32: int = 0
    weight_bytes_float16: int = 0
    checked: str = ""
    comparisons: list[Comparison] = field(default_factory=list)
    quantized: Any = None  # an onnx_quantize.QuantizationReport for --quantize

    @property
    def max_abs_error(self) -> float:
        return max((c.max_abs for c in self.comparisons), default=0.0)

    @property
    def max_rel_error(self) -> float:
        return max((c.max_rel for c in self.comparisons), default=0.0)

    def __str__(self) -> str:
        batch = "dynamic" if self.batch is None else str(self.batch)
        lines = [f"wrote {self.path}: ONNX opset {self.opset}, batch {batch}, "
                 f"{_size(self.bytes)}"]
        if self.float16:
            saved = 1 - self.weight_bytes_float16 / max(self.weight_bytes_float32, 1)
            lines.append(f"float16 weights ({self.weights_converted} tensors): "
                         f"{_size(self.weight_bytes_float32)} -> "
                         f"{_size(self.weight_bytes_float16)} ({saved:.0%} smaller)")
        if self.quantized is not None:
            lines.append(str(self.quantized))
        if self.comparisons:
            what = "accuracy cost" if self.float16 or self.quantized else \
                "matches the NumPy runtime"
            lines.append(f"{what} on the test vector ({self.checked}): max abs error "
                         f"{self.max_abs_error:.3g}, max rel error {self.max_rel_error:.3g}")
        elif self.checked:
            lines.append(self.checked)
        return "\n".join(lines)


def _size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"


def _as_model(model: Any) -> Any:
    from ..model import Model, load

    if isinstance(model, (str, Path)):
        return load(model)
    if not isinstance(model, Model):
        raise InputError(f"export_onnx needs a tfless.Model or a model path, got {type(model).__name__}")
    return model


def build_onnx(model: Any, opset: int = DEFAULT_OPSET, batch: int | None = None,
               float16: bool = False, test_input: Any = None,
               check_runtime: bool = True, quantize: str | None = None,
               samples: Any = None) -> tuple[Any, ExportReport]:
    """The checked ONNX ModelProto of a tfless Model plus a report (path left empty).
    quantize="int8": int8 weights (export/onnx_quantize.py); `samples` (default: the test
    vector) measure the accuracy change."""
    onnx = require_onnx()
    model = _as_model(model)
    graph = model.graph
    # the test vector's expected outputs always come from the NumPy runtime, also when the
    # model runs in ONNX Runtime (backend="onnxruntime")
    plan = getattr(model, "numpy_plan", model.plan)
    batch = batch or model_batch(graph)
    proto, weight_names = graph_to_onnx(graph, opset, batch, plan=plan)
    meta = graph.meta
    if test_input is None:
        inputs = make_test_input(graph, batch or 1)
    else:
        inputs = model._arrange(test_input)
        if batch is not None and inputs[0].shape[0] != batch:
            raise InputError(f"test_input has batch {inputs[0].shape[0]}, the export uses {batch}")
    expected = [np.asarray(y) for y in plan.run(inputs)]
    vector = {f"in:{s.name}": a for s, a in zip(graph.inputs, inputs)}
    vector.update({f"out:{n}": y for n, y in zip(graph.output_names, expected)})
    report = ExportReport("", opset, batch, 0, float16)
    if float16:
        (report.weights_converted, report.weight_bytes_float32,
         report.weight_bytes_float16) = weights_to_float16(proto, weight_names)
    if quantize:
        from .onnx_quantize import quantize_weights

        if float16:
            raise InputError("--float16 and --quantize cannot be combined")
        report.quantized = quantize_weights(proto, weight_names, quantize)
    lossy = float16 or bool(quantize)
    atol, rtol = ATOL, RTOL
    if check_runtime or lossy:
        session = _session_or_note(proto, report, lossy)
        if session is not None:
            got = ort_run(session, inputs)
            report.checked = "onnxruntime"
            if quantize:
                from .onnx_quantize import measure

                sample = inputs if samples is None else model._arrange(samples)
                measure(report.quantized, ort_run(session, sample),
                        [np.asarray(y) for y in plan.run(sample)], graph.output_names)
            if lossy:
                report.comparisons = compare(got, expected, graph.output_names, np.inf, 0)
                # verify later accepts what float16 weights cost here, with headroom
                atol = max(ATOL, 2.0 * report.max_abs_error)
            report.comparisons = compare(got, expected, graph.output_names, atol, rtol)
            bad = [c for c in report.comparisons if not c.ok]
            if bad:
                raise TflessError(
                    f"the exported ONNX graph disagrees with the tfless NumPy runtime on output "
                    f"'{bad[0].name}' (max abs error {bad[0].max_abs:.3g}); nothing was written. "
                    "This is a tfless bug: please report it with the model")
    props = {
        "source": str(meta.get("source", "")),
        "source_format": str(meta.get("format", "")),
        "keras_version": str(meta.get("keras_version", "")),
        "tfless_version": tfless_version(),
        "float16_weights": "1" if float16 else "0",
        "quantized_weights": quantize or "",
    }
    onnx.helper.set_model_props(proto, {
        **{META_PREFIX + k: v for k, v in props.items()},
        TEST_VECTOR_KEY: pack_vector(vector),
        TOLERANCE_KEY: json.dumps({"atol": atol, "rtol": rtol}),
    })
    proto.doc_string = (f"Exported by tfless {tfless_version()} from "
                        f"{Path(props['source']).name or 'a Keras model'} "
                        f"(Keras {props['keras_version'] or 'unknown'})")
    try:
        onnx.checker.check_model(proto, full_check=True)
    except onnx.checker.ValidationError as exc:
        raise TflessError(f"the exported ONNX graph fails onnx.checker (a tfless bug): {exc}") from exc
    report.bytes = proto.ByteSize()
    return proto, report


def _session_or_note(proto: Any, report: ExportReport, needed: bool) -> Any:
    try:
        ort = require_onnxruntime("checking the exported model")
    except MissingExtra:
        if needed:
            raise
        report.checked = "not checked with ONNX Runtime (onnxruntime is not installed)"
        return None
    try:
        return ort_session(proto.SerializeToString())
    except TflessError as exc:
        if ("opset" in str(exc).lower() or "ir version" in str(exc).lower()) and not needed:
            report.checked = (f"not checked with ONNX Runtime: onnxruntime {ort.__version__} "
                              f"does not run opset {report.opset}")
            return None
        raise


def export_onnx(model: Any, path: str | Path, *, opset: int = DEFAULT_OPSET,
                batch: int | str | None = None, float16: bool = False,
                test_input: Any = None, quantize: str | None = None,
                calibration: Any = None) -> ExportReport:
    """Write `model` (a tfless.Model or a model path) to `path` as ONNX.

    batch: None or "dynamic" (default) for a free batch axis, or a fixed positive size.
    float16: store weights as float16 (with casts); the report gives the size reduction
    and the accuracy cost on the embedded test vector.
    quantize: "int8" stores MatMul/Gemm/Conv weights as per-channel int8 (weight-only QDQ);
    calibration: sample inputs on which the report measures the accuracy change."""
    onnx = require_onnx()
    proto, report = build_onnx(model, opset, parse_batch(batch), float16, test_input,
                               quantize=quantize, samples=calibration)
    path = Path(path)
    tmp = path.with_name(path.name + ".partial")
    try:
        onnx.save_model(proto, str(tmp))
        tmp.replace(path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise InputError(f"{path}: cannot write: {exc}") from exc
    report.path = str(path)
    report.bytes = path.stat().st_size
    return report


def parse_batch(batch: int | str | None) -> int | None:
    if batch is None or batch == "dynamic":
        return None
    try:
        value = int(batch)
    except (TypeError, ValueError):
        raise InputError(f"batch must be 'dynamic' or a positive integer, got {batch!r}") from None
    if value < 1:
        raise InputError(f"batch must be 'dynamic' or a positive integer, got {batch!r}")
    return value
