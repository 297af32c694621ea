"""float16 weights for ONNX export (`tfless export -f onnx --float16`).

Layer weights are stored as float16 initializers, each followed by a Cast back to float32,
so every operator still computes in float32 and only the file shrinks.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .onnx_builder import require_onnx


def weights_to_float16(model: Any, weight_names: Sequence[str]) -> tuple[int, int, int]:
    """Store float32 layer weights as float16, each followed by a Cast back to float32
    (so every op still computes in float32). Returns how many weights were converted and
    their size in bytes before and after."""
    onnx = require_onnx()
    wanted = set(weight_names)
    graph = model.graph
    casts = []
    count = before = after = 0
    for init in graph.initializer:
        if init.name not in wanted or init.data_type != onnx.TensorProto.FLOAT:
            continue
        name = init.name
        arr = onnx.numpy_helper.to_array(init)
        before += arr.nbytes
        after += arr.nbytes // 2
        init.CopyFrom(onnx.numpy_helper.from_array(arr.astype(np.float16), name + "/float16"))
        casts.append(onnx.helper.make_node("Cast", [name + "/float16"], [name],
                                           name=name + "/Cast", to=onnx.TensorProto.FLOAT))
        count += 1
    nodes = casts + list(graph.node)
    del graph.node[:]
    graph.node.extend(nodes)
    return count, before, after
