"""Reader for TensorFlow Lite flatbuffers (`.tflite`): the first subgraph becomes a Graph.

Every TFLite operator becomes one node whose op type is `tflite.<BUILTIN_NAME>` (the ops
live in `ops/tflite.py`). Tensors that hold data (weights, shapes, axes) become the
node's weights, named by tensor; the node's config lists its operands in TFLite order
(`{"__tensor__": k}` = k-th run() input, `{"const": name}` = a weight, None = an
omitted optional input) and its parsed builtin options. A DEQUANTIZE of a constant
(float16 or int8 weights of `Optimize.DEFAULT` conversions) is folded here into a
float32 constant, which is exact.

Operators that touch quantized integer tensors (full-integer int8/uint8 models, and the
hybrid kernels of dynamic-range models, whose int8 weights feed float activations)
become `tflite.quantized.<BUILTIN_NAME>` nodes (`ops/tflite_quant.py`); their config also
carries each operand's and output's quantization parameters (`quant`, `output_quant`:
dtype, scales, zero points, quantized dimension, or None for a float tensor).

Field positions follow the TFLite schema (`schema.fbs`, version 3).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ModelFormatError, UnsupportedLayer
from ..graph import Graph, Node, TensorSpec
from .flatbuffer import Buffer, FlatBufferError, Table
from .limits import DEFAULT_LIMITS

SCHEMA_VERSION = 3
# BuiltinOperator enum values 0..158, in order (schema.fbs).
BUILTIN_NAMES = tuple("""
    ADD AVERAGE_POOL_2D CONCATENATION CONV_2D DEPTHWISE_CONV_2D DEPTH_TO_SPACE DEQUANTIZE
    EMBEDDING_LOOKUP FLOOR FULLY_CONNECTED HASHTABLE_LOOKUP L2_NORMALIZATION L2_POOL_2D
    LOCAL_RESPONSE_NORMALIZATION LOGISTIC LSH_PROJECTION LSTM MAX_POOL_2D MUL RELU RELU_N1_TO_1
    RELU6 RESHAPE RESIZE_BILINEAR RNN SOFTMAX SPACE_TO_DEPTH SVDF TANH CONCAT_EMBEDDINGS
    SKIP_GRAM CALL CUSTOM EMBEDDING_LOOKUP_SPARSE PAD UNIDIRECTIONAL_SEQUENCE_RNN GATHER
    BATCH_TO_SPACE_ND SPACE_TO_BATCH_ND TRANSPOSE MEAN SUB DIV SQUEEZE
    UNIDIRECTIONAL_SEQUENCE_LSTM STRIDED_SLICE BIDIRECTIONAL_SEQUENCE_RNN EXP TOPK_V2 SPLIT
    LOG_SOFTMAX DELEGATE BIDIRECTIONAL_SEQUENCE_LSTM CAST PRELU MAXIMUM ARG_MAX MINIMUM LESS
    NEG PADV2 GREATER GREATER_EQUAL LESS_EQUAL SELECT SLICE SIN TRANSPOSE_CONV SPARSE_TO_DENSE
    TILE EXPAND_DIMS EQUAL NOT_EQUAL LOG SUM SQRT RSQRT SHAPE POW ARG_MIN FAKE_QUANT
    REDUCE_PROD REDUCE_MAX PACK LOGICAL_OR ONE_HOT LOGICAL_AND LOGICAL_NOT UNPACK REDUCE_MIN
    FLOOR_DIV REDUCE_ANY SQUARE ZEROS_LIKE FILL FLOOR_MOD RANGE RESIZE_NEAREST_NEIGHBOR
    LEAKY_RELU SQUARED_DIFFERENCE MIRROR_PAD ABS SPLIT_V UNIQUE CEIL REVERSE_V2 ADD_N GATHER_ND
    COS WHERE RANK ELU REVERSE_SEQUENCE MATRIX_DIAG QUANTIZE MATRIX_SET_DIAG ROUND HARD_SWISH
    IF WHILE NON_MAX_SUPPRESSION_V4 NON_MAX_SUPPRESSION_V5 SCATTER_ND SELECT_V2 DENSIFY
    SEGMENT_SUM BATCH_MATMUL PLACEHOLDER_FOR_GREATER_OP_CODES CUMSUM CALL_ONCE BROADCAST_TO
    RFFT2D CONV_3D IMAG REAL COMPLEX_ABS HASHTABLE HASHTABLE_FIND HASHTABLE_IMPORT
    HASHTABLE_SIZE REDUCE_ALL CONV_3D_TRANSPOSE VAR_HANDLE READ_VARIABLE ASSIGN_VARIABLE
    BROADCAST_ARGS RANDOM_STANDARD_NORMAL BUCKETIZE RANDOM_UNIFORM MULTINOMIAL GELU
    DYNAMIC_UPDATE_SLICE RELU_0_TO_1 UNSORTED_SEGMENT_PROD UNSORTED_SEGMENT_MAX
    UNSORTED_SEGMENT_SUM ATAN2 UNSORTED_SEGMENT_MIN SIGN
""".split())
# TensorType enum -> NumPy dtype name (None: no NumPy equivalent tfless can use).
TENSOR_TYPES: dict[int, tuple[str, str | None]] = {
    0: ("FLOAT32", "float32"), 1: ("FLOAT16", "float16"), 2: ("INT32", "int32"),
    3: ("UINT8", "uint8"), 4: ("INT64", "int64"), 5: ("STRING", None), 6: ("BOOL", "bool"),
    7: ("INT16", "int16"), 8: ("COMPLEX64", None), 9: ("INT8", "int8"),
    10: ("FLOAT64", "float64"), 11: ("COMPLEX128", None), 12: ("UINT64", "uint64"),
    13: ("RESOURCE", None), 14: ("VARIANT", None), 15: ("UINT32", "uint32"),
    16: ("UINT16", "uint16"), 17: ("INT4", None), 18: ("BFLOAT16", None),
}
QUANTIZED_TYPES = ("int8", "uint8", "int16")

# BuiltinOptions union type -> the table's fields: (config key, slot, kind, default).
# "int32[]" is a vector of int32.
Field = tuple[str, int, str, Any]
_PADDING = ("padding", 0, "int8", 0)


def _fused(slot: int) -> Field:
    return ("fused_activation_function", slot, "int8", 0)



OPTION_TABLES: dict[int, tuple[Field, ...]] = {
    1: (_PADDING, ("stride_w", 1, "int32", 0), ("stride_h", 2, "int32", 0), _fused(3),
        ("dilation_w", 4, "int32", 1), ("dilation_h", 5, "int32", 1)),            # Conv2D
    2: (_PADDING, ("stride_w", 1, "int32", 0), ("stride_h", 2, "int32", 0),
        ("depth_multiplier", 3, "int32", 0), _fused(4),
        ("dilation_w", 5, "int32", 1), ("dilation_h", 6, "int32", 1)),            # DepthwiseConv2D
    5: (_PADDING, ("stride_w", 1, "int32", 0), ("stride_h", 2, "int32", 0),
        ("filter_w", 3, "int32", 0), ("filter_h", 4, "int32", 0),
        _fused(5)),                                            # Pool2D
    8: (_fused(0), ("weights_format", 1, "int8", 0),
        ("keep_num_dims", 2, "bool", False),
        ("asymmetric_quantize_inputs", 3, "bool", False)),                      # FullyConnected
    9: (("beta", 0, "float32", 0.0),),                                           # Softmax
    10: (("axis", 0, "int32", 0), _fused(1)),                  # Concatenation
    11: (_fused(0),),                                          # Add
    17: (("new_shape", 0, "int32[]", None),),                                    # Reshape
    21: (_fused(0),),                                          # Mul
    23: (("axis", 0, "int32", 0), ("batch_dims", 1, "int32", 0)),                # Gather
    27: (("keep_dims", 0, "bool", False),),                                      # Reducer
    28: (_fused(0),),                                          # Sub
    29: (_fused(0),),                                          # Div
    30: (("squeeze_dims", 0, "int32[]", None),),                                 # Squeeze
    32: (("begin_mask", 0, "int32", 0), ("end_mask", 1, "int32", 0),
         ("ellipsis_mask", 2, "int32", 0), ("new_axis_mask", 3, "int32", 0),
         ("shrink_axis_mask", 4, "int32", 0), ("offset", 5, "bool", False)),    # StridedSlice
    35: (("num_splits", 0, "int32", 0),),                                        # Split
    40: (("output_type", 0, "int8", 4),),                                        # ArgMax
    49: (_PADDING, ("stride_w", 1, "int32", 0), ("stride_h", 2, "int32", 0),
         _fused(3)),                                           # TransposeConv
    55: (("out_type", 0, "int8", 2),),                                           # Shape
    57: (("output_type", 0, "int8", 4),),                                        # ArgMin
    59: (("values_count", 0, "int32", 0), ("axis", 1, "int32", 0)),              # Pack
    64: (("num", 0, "int32", 0), ("axis", 1, "int32", 0)),                       # Unpack
    71: (_fused(0), ("cell_clip", 1, "float32", 0.0),
         ("proj_clip", 2, "float32", 0.0), ("time_major", 3, "bool", False),
         ("asymmetric_quantize_inputs", 4, "bool", False),
         ("diagonal_recurrent_tensors", 5, "bool", False)),                     # UnidirectionalSequenceLSTM
    75: (("alpha", 0, "float32", 0.0),),                                         # LeakyRelu
    77: (("mode", 0, "int8", 0),),                                               # MirrorPad
    79: (("num_splits", 0, "int32", 0),),                                        # SplitV
    101: (("adj_x", 0, "bool", False), ("adj_y", 1, "bool", False),
          ("asymmetric_quantize_inputs", 2, "bool", False)),                    # BatchMatMul
    116: (("approximate", 0, "bool", False),),                                   # Gelu
}
CONTROL_FLOW = {"WHILE", "IF", "CALL", "CALL_ONCE", "STABLEHLO_WHILE", "STABLEHLO_CASE"}


@dataclass
class TensorInfo:
    index: int
    name: str
    dtype: str | None
    type_name: str
    shape: tuple[int, ...]
    signature: tuple[int, ...] | None
    buffer: int
    scale: np.ndarray | None
    zero_point: np.ndarray | None
    quantized_dimension: int
    is_variable: bool
    sparse: bool

    @property
    def quantized(self) -> bool:
        return self.scale is not None and self.scale.size > 0


def read_tflite(path: Path, lenient: bool = False) -> Graph:
    """Read a `.tflite` file into a Graph (see the module docstring)."""
    data = path.read_bytes()
    try:
        return _Reader(data, path, lenient).graph()
    except FlatBufferError as exc:
        raise ModelFormatError(f"{path}: {exc}") from exc


class _Reader:
    def __init__(self, data: bytes, path: Path, lenient: bool) -> None:
        self.path = path
        self.lenient = lenient
        self.buf = Buffer(data)
        if self.buf.identifier() != b"TFL3":
            raise ModelFormatError(f"{path}: not a TFLite flatbuffer (no 'TFL3' identifier)")
        self.root = self.buf.root()
        self.consts: dict[int, np.ndarray] = {}

    def fail(self, message: str) -> ModelFormatError:
        return ModelFormatError(f"{self.path}: {message}")

    # ----- model structure -------------------------------------------------------------
    def graph(self) -> Graph:
        version = int(self.root.scalar(0, "uint32"))
        if version != SCHEMA_VERSION:
            raise self.fail(f"TFLite schema version {version}; tfless reads version 3")
        codes = [self._opcode(t) for t in self.root.tables(1, "operator_codes")]
        subgraphs = self.root.tables(2, "subgraphs")
        if not subgraphs:
            raise self.fail("the model has no subgraphs")
        self.buffers = self.root.tables(4, "buffers")
        sub = subgraphs[0]
        tables = sub.tables(0, "tensors")
        self.tensors = [self._tensor(i, t) for i, t in enumerate(tables)]
        self.ids = self._tensor_ids()
        inputs = self._indexes(sub.array(1, "int32", "subgraph inputs"), "subgraph input")
        outputs = self._indexes(sub.array(2, "int32", "subgraph outputs"), "subgraph output")
        self.input_set = set(inputs)
        specs = [self._input_spec(i) for i in inputs]
        nodes = []
        for index, table in enumerate(sub.tables(3, "operators")):
            node = self._operator(index, table, codes)
            if node is not None:
                nodes.append(node)
        for i in outputs:
            if i in self.consts and i not in self.input_set:
                raise self.fail(f"model output '{self.tensors[i].name}' is a constant tensor; "
                                "tfless runs models whose outputs are computed")
        total = sum(int(a.nbytes) for a in self.consts.values())
        DEFAULT_LIMITS.check_weight_bytes(total, str(self.path))
        description = self.root.string(3, "description") or ""
        meta = {"format": "tflite", "keras_version": "", "source": str(self.path),
                "tflite_description": description, "subgraphs": len(subgraphs),
                "output_dtypes": {self.ids[i]: self.tensors[i].dtype for i in outputs
                                  if self.tensors[i].dtype is not None}}
        return Graph(specs, nodes, [self.ids[i] for i in outputs],
                     [self.tensors[i].name for i in outputs], meta)

    def _opcode(self, table: Table) -> tuple[str, str]:
        # Codes below 127 live in the int8 deprecated field; newer files fill both.
        code = max(int(table.scalar(0, "int8", 0)), int(table.scalar(3, "int32", 0)))
        name = BUILTIN_NAMES[code] if 0 <= code < len(BUILTIN_NAMES) else f"BUILTIN_{code}"
        return name, table.string(1, "custom_code") or ""

    def _indexes(self, values: np.ndarray | None, what: str, optional: bool = False
                 ) -> list[int]:
        """Tensor indexes, checked; -1 (an omitted optional input) only where allowed."""
        out = [] if values is None else [int(v) for v in values]
        for v in out:
            if not (0 <= v < len(self.tensors) or (optional and v == -1)):
                raise self.fail(f"{what} refers to tensor {v}; the subgraph has "
                                f"{len(self.tensors)} tensors")
        return out

    def _tensor(self, index: int, table: Table) -> TensorInfo:
        where = f"tensor {index}"
        shape = table.array(0, "int32", f"{where} shape")
        type_code = int(table.scalar(1, "int8", 0))
        type_name, dtype = TENSOR_TYPES.get(type_code, (f"TYPE_{type_code}", None))
        signature = table.array(7, "int32", f"{where} shape_signature")
        quant = table.table(4, f"{where} quantization")
        scale = zero_point = None
        qdim = 0
        if quant is not None:
            scale = quant.array(2, "float32", f"{where} quantization scale")
            zero_point = quant.array(3, "int64", f"{where} quantization zero_point")
            qdim = int(quant.scalar(6, "int32", 0))
        info = TensorInfo(
            index, table.string(3, f"{where} name") or "", dtype, type_name,
            tuple(int(d) for d in shape) if shape is not None else (),
            tuple(int(d) for d in signature) if signature is not None else None,
            int(table.scalar(2, "uint32", 0)), scale, zero_point, qdim,
            bool(table.scalar(5, "bool", False)), table.has(6),
        )
        data = self._buffer_bytes(info)
        if data is not None:
            self.consts[index] = self._constant(info, data)
        elif info.is_variable:
            # Variable tensors (recurrent state) start at zero, as the interpreter sets them.
            if dtype is None or min(info.shape, default=1) < 0:
                raise self.fail(f"{where} ('{info.name}'): variable tensor of type "
                                f"{type_name} and shape {info.shape} cannot be initialized")
            DEFAULT_LIMITS.check_weight_bytes(math.prod(info.shape) * np.dtype(dtype).itemsize,
                                              str(self.path))
            self.consts[index] = np.zeros(info.shape, dtype)
        return info

    def _buffer_bytes(self, info: TensorInfo) -> memoryview | None:
        """The tensor's stored data (inline, or at offset/size for >2 GB files), if any."""
        if info.buffer == 0:
            return None
        if info.buffer >= len(self.buffers):
            raise self.fail(f"tensor {info.index} ('{info.name}') refers to buffer "
                            f"{info.buffer}; the model has {len(self.buffers)} buffers")
        table = self.buffers[info.buffer]
        inline = table.bytes(0, f"buffer {info.buffer} data")
        if inline is not None and len(inline):
            return inline
        offset = int(table.scalar(1, "uint64", 0))
        size = int(table.scalar(2, "uint64", 0))
        if offset > 1:
            self.buf.check(offset, size, f"buffer {info.buffer} (offset/size layout)")
            return self.buf.data[offset:offset + size]
        return None

    def _constant(self, info: TensorInfo, data: memoryview) -> np.ndarray:
        where = f"tensor {info.index} ('{info.name}')"
        if info.sparse:
            raise UnsupportedLayer(f"{self.path}: {where} stores sparse weights (DENSIFY); "
                                   "tfless reads dense constant tensors only")
        if info.dtype is None:
            raise UnsupportedLayer(f"{self.path}: {where} holds constant data of type "
                                   f"{info.type_name}, which tfless cannot read")
        if min(info.shape, default=1) < 0:
            raise self.fail(f"{where}: constant with negative dimension {info.shape}")
        dtype = np.dtype(info.dtype).newbyteorder("<")
        count = math.prod(info.shape)
        if count * dtype.itemsize != len(data):
            raise self.fail(f"{where}: buffer has {len(data)} bytes, shape {info.shape} of "
                            f"{info.type_name} needs {count * dtype.itemsize}")
        DEFAULT_LIMITS.check_weight_bytes(len(data), str(self.path))
        array = np.frombuffer(data, dtype, count).astype(dtype.newbyteorder("="))
        return array.reshape(info.shape)

    def _tensor_ids(self) -> list[str]:
        seen: set[str] = set()
        ids = []
        for t in self.tensors:
            tid = t.name or f"tensor_{t.index}"
            if tid in seen:
                tid = f"{tid}#{t.index}"
            seen.add(tid)
            ids.append(tid)
        return ids

    def _input_spec(self, index: int) -> TensorSpec:
        t = self.tensors[index]
        if index in self.consts:
            raise self.fail(f"model input '{t.name}' is a constant tensor")
        if t.dtype is None or t.dtype == "float16":
            raise UnsupportedLayer(f"{self.path}: model input '{t.name}' has type "
                                   f"{t.type_name}; tfless takes numeric inputs")
        dims = t.signature if t.signature is not None and len(t.signature) == len(t.shape) \
            else t.shape
        shape = tuple(None if d < 0 else int(d) for d in dims)
        return TensorSpec(self.ids[index], shape, t.dtype)

    def _quant(self, index: int) -> dict[str, Any] | None:
        """The quantization parameters of a tensor, None for a float or plain int tensor."""
        if index == -1:
            return None
        t = self.tensors[index]
        if not t.quantized:
            return None
        zero = t.zero_point if t.zero_point is not None and t.zero_point.size else \
            np.zeros(t.scale.size, np.int64)
        if zero.size not in (1, t.scale.size):
            raise self.fail(f"tensor {index} ('{t.name}'): {t.scale.size} scales but "
                            f"{zero.size} zero points")
        # Constant weights may carry a zero scale (an all-zero channel); computed tensors
        # are divided by theirs.
        floor_ok = np.all(t.scale > 0) or (index in self.consts and np.all(t.scale >= 0))
        if not np.all(np.isfinite(t.scale)) or not floor_ok:
            raise self.fail(f"tensor {index} ('{t.name}'): quantization scales must be "
                            f"positive and finite, got {t.scale[:4].tolist()}")
        if t.dtype in QUANTIZED_TYPES:
            lo, hi = np.iinfo(np.dtype(t.dtype)).min, np.iinfo(np.dtype(t.dtype)).max
            if np.any(zero < lo) or np.any(zero > hi):
                raise self.fail(f"tensor {index} ('{t.name}'): zero point outside the "
                                f"{t.type_name} range")
        return {"dtype": t.dtype, "type": t.type_name, "tensor": t.name,
                "scale": [float(v) for v in t.scale],
                "zero_point": [int(v) for v in np.broadcast_to(zero, t.scale.shape)],
                "axis": t.quantized_dimension}

    # ----- operators ----------------------------------------------------------------------
    def _operator(self, index: int, table: Table, codes: list[tuple[str, str]]) -> Node | None:
        opcode = int(table.scalar(0, "uint32", 0))
        if opcode >= len(codes):
            raise self.fail(f"operator {index} uses opcode index {opcode}; the model has "
                            f"{len(codes)} operator codes")
        code, custom = codes[opcode]
        where = f"operator {index} ({code}{' ' + repr(custom) if custom else ''})"
        ins = self._indexes(table.array(1, "int32", f"{where} inputs"), f"{where} input",
                            optional=True)
        outs = self._indexes(table.array(2, "int32", f"{where} outputs"), f"{where} output")
        if not outs:
            raise self.fail(f"{where} has no outputs")
        if code == "DEQUANTIZE" and ins and ins[0] in self.consts:
            self._check_supported(code, custom, where)
            self.consts[outs[0]] = self._dequantize(self.tensors[ins[0]], self.consts[ins[0]])
            return None
        quantized = self._uses_quantized(ins, outs)
        op_type = f"tflite.quantized.{code}" if quantized else f"tflite.{code}"
        self._check_supported(code, custom, where, op_type, quantized, ins, outs)
        options = self._options(table, where)
        operands: list[dict[str, Any] | None] = []
        dynamic: list[str] = []
        weights: dict[str, np.ndarray] = {}
        for i in ins:
            if i == -1:
                operands.append(None)
            elif i in self.consts and i not in self.input_set:
                weights[self.ids[i]] = self.consts[i]
                operands.append({"const": self.ids[i]})
            else:
                operands.append({"__tensor__": len(dynamic)})
                dynamic.append(self.ids[i])
        name = f"{code.lower()}_{index}"
        config = {"name": name, "where": where, "code": code, "options": options,
                  "operands": operands, "num_outputs": len(outs),
                  "output_dtypes": [self.tensors[o].dtype for o in outs]}
        if quantized:
            config["quant"] = [self._quant(i) for i in ins]
            config["output_quant"] = [self._quant(o) for o in outs]
            config["input_dtypes"] = [None if i == -1 else self.tensors[i].dtype for i in ins]
        return Node(name, op_type, config, weights, dynamic,
                    [self.ids[o] for o in outs], layer=self.tensors[outs[0]].name)

    def _uses_quantized(self, ins: list[int], outs: list[int]) -> bool:
        return any(i != -1 and self.tensors[i].quantized
                   and self.tensors[i].dtype in QUANTIZED_TYPES for i in [*ins, *outs])

    def _check_supported(self, code: str, custom: str, where: str, op_type: str = "",
                         quantized: bool = False, ins: list[int] | None = None,
                         outs: list[int] | None = None) -> None:
        from ..registry import REGISTRY

        if (op_type or f"tflite.{code}") in REGISTRY:
            return
        if quantized:
            tensor = next(self.tensors[i] for i in [*(ins or []), *(outs or [])]
                          if i != -1 and self.tensors[i].quantized
                          and self.tensors[i].dtype in QUANTIZED_TYPES)
            reason = (f"quantized {code} (tensor '{tensor.name}', {tensor.type_name}) is "
                      "not supported")
            family = "tflite.quantized."
        elif code in CONTROL_FLOW:
            reason = ("control flow (WHILE/IF/CALL) is not supported; Keras 3 recurrent "
                      "layers convert to WHILE unless built with unroll=True (a tf_keras LSTM "
                      "with a fixed batch size converts to the supported "
                      "UNIDIRECTIONAL_SEQUENCE_LSTM), or load the Keras model instead")
            family = "tflite."
        elif code == "CUSTOM":
            reason = (f"custom operator '{custom}' is not supported (Flex/Select-TF ops and "
                      "custom kernels need TensorFlow)")
            family = "tflite."
        else:
            reason = "this builtin operator is not supported"
            family = "tflite."
        if self.lenient:
            return
        supported = sorted(n[len(family):] for n in REGISTRY
                           if n.startswith(family) and "." not in n[len(family):])
        kind = "quantized TFLite" if quantized else "TFLite"
        raise UnsupportedLayer(f"{self.path}: {where}: {reason}. Supported {kind} operators: "
                               f"{', '.join(supported)}")

    def _dequantize(self, t: TensorInfo, q: np.ndarray) -> np.ndarray:
        if q.dtype.kind == "f":
            return q.astype(np.float32)
        if not t.quantized or q.dtype.kind not in "iu":
            raise UnsupportedLayer(f"{self.path}: DEQUANTIZE of constant '{t.name}' of type "
                                   f"{t.type_name} without quantization parameters")
        scale = np.asarray(t.scale, np.float32)
        zero = np.asarray(t.zero_point if t.zero_point is not None and t.zero_point.size
                          else np.zeros(1), np.int64)
        if scale.size > 1:
            shape = [1] * q.ndim
            shape[t.quantized_dimension] = scale.size
            scale, zero = scale.reshape(shape), zero.reshape(shape)
        return ((q.astype(np.int64) - zero).astype(np.float32) * scale).astype(np.float32)

    def _options(self, table: Table, where: str) -> dict[str, Any]:
        kind = int(table.scalar(3, "uint8", 0))
        fields = OPTION_TABLES.get(kind)
        if not fields:
            return {}
        options_table = table.table(4, f"{where} builtin_options")
        out: dict[str, Any] = {}
        for key, slot, typ, default in fields:
            if options_table is None:
                out[key] = default
            elif typ == "int32[]":
                values = options_table.array(slot, "int32", f"{where} {key}")
                out[key] = None if values is None else [int(v) for v in values]
            else:
                value = options_table.scalar(slot, typ, default)
                out[key] = float(value) if typ == "float32" else value
        return out
