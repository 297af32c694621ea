"""Layers folded into their neighbour, in the NumPy plan only: a ZeroPadding into the
convolution it feeds, a relu into the merge (Add, ...) whose result it alone reads.

MobileNet-style models pad explicitly before a strided convolution (ZeroPadding2D, then a
'valid' DepthwiseConv2D/Conv2D). Run as written, the padding copies the whole activation
once more (1.1 ms of MobileNetV2's 15 ms batch-1 call). Folded, the convolution reads the
unpadded input: the compiled depthwise loop skips the padded taps, the im2col gather reads
an appended zero, and the per-tap im2col pads the same way it does for 'same' padding.

ResNet's residual blocks end in Add then Activation('relu'): as two layers, the relu reads
the sum back from memory and writes a second full-size array; folded, it runs in place on
the sum the merge has just written.

Only the plan changes: the graph the exporters, `inspect` and the traces see still has
both layers, and `Plan.trace` runs them unfolded (every tensor is traced). Folded only when
the first layer's output goes to the second alone (not a model output). A padding folds
only into a convolution of the same data_format; masks do not change it, as neither layer
supports masking (Keras drops a mask at both). A relu folds only into a plan that carries
no masks (the plain loop, which is where it runs folded).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from ..errors import TflessError
from ..graph import Graph, Node
from ..ops.activations import activation_name, relu_plain
from ..ops.convolutional import ABSORBED_PADDING
from ..ops.reshaping import pairs
from ..optimize import activation_of

# padding layer -> (its rank, the layers that take its zeros as their own padding)
ABSORBING = {
    "ZeroPadding1D": (1, ("Conv1D", "DepthwiseConv1D")),
    "ZeroPadding2D": (2, ("Conv2D", "DepthwiseConv2D")),
}


def _format(node: Node) -> str:
    return node.config.get("data_format") or "channels_last"


def absorptions(graph: Graph) -> dict[str, tuple[Node, list[tuple[int, int]]]]:
    """convolution name -> (the ZeroPadding node folded into it, that node's (before, after)
    zeros per spatial axis)."""
    consumers = graph.consumers()
    found: dict[str, tuple[Node, list[tuple[int, int]]]] = {}
    for node in graph.nodes:
        if node.op not in ABSORBING or len(node.inputs) != 1 or len(node.outputs) != 1 \
                or node.outputs[0] in graph.output_ids:
            continue
        rank, targets = ABSORBING[node.op]
        readers = consumers.get(node.outputs[0], [])
        if len(readers) != 1 or readers[0].op not in targets \
                or readers[0].inputs != node.outputs:
            continue
        conv = readers[0]
        if rank > 1 and _format(node) != _format(conv):
            continue
        try:
            pads = pairs(node.config.get("padding", 1), rank, "padding", node.name)
        except TflessError:
            continue  # the padding layer's own build reports it
        found[conv.name] = (node, pads)
    return found


def absorbing_config(conv: Node, pads: list[tuple[int, int]]) -> dict:
    """The convolution's config for the plan: its own, plus the zeros it now adds itself."""
    return {**conv.config, ABSORBED_PADDING: [list(p) for p in pads]}


# merges that compute a new array from two or more inputs (so a relu may overwrite it)
MERGES = frozenset({"Add", "Subtract", "Multiply", "Average", "Maximum", "Minimum"})


def _is_relu(node: Node) -> bool:
    act = activation_of(node)  # Activation/ReLU layers, as fuse_activations reads them
    return act is not None and activation_name(act) == "relu"


def relu_after_merge(graph: Graph) -> dict[str, Node]:
    """merge node name -> the relu layer (Activation('relu') or a plain ReLU) that alone
    reads its output."""
    consumers = graph.consumers()
    found: dict[str, Node] = {}
    for node in graph.nodes:
        if node.op not in MERGES or len(node.inputs) < 2 or len(node.outputs) != 1 \
                or node.outputs[0] in graph.output_ids:
            continue
        readers = consumers.get(node.outputs[0], [])
        if len(readers) == 1 and readers[0].inputs == node.outputs and _is_relu(readers[0]):
            found[node.name] = readers[0]
    return found


def with_relu(run: Callable[..., Any]) -> Callable[..., Any]:
    """A merge's run followed by relu in place on the array it returned (a new one: the
    merges of MERGES combine two or more inputs into a fresh result)."""
    def fused(*args: np.ndarray) -> np.ndarray:
        y = run(*args)
        return relu_plain(y, out=y) if isinstance(y, np.ndarray) and y.flags.writeable \
            else relu_plain(np.asarray(y))

    return fused
