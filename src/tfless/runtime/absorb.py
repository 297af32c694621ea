"""ZeroPadding layers folded into the convolution they feed, in the NumPy plan only.

MobileNet-style models pad explicitly before a strided convolution (ZeroPadding2D, then a
'valid' DepthwiseConv2D/Conv2D). Run as written, the padding copies the whole activation
once more (1.1 ms of MobileNetV2's 15 ms batch-1 call). Folded, the convolution reads the
unpadded input: the compiled depthwise loop skips the padded taps, the im2col gather reads
an appended zero, and the per-tap im2col pads the same way it does for 'same' padding.

Only the plan changes: the graph the exporters, `inspect` and the traces see still has the
ZeroPadding layer, and `Plan.trace` still computes its output (the plan keeps it as a
trace-only step). Folded only when the padding's output goes to that one convolution and
nowhere else (not a model output) and both use the same data_format. Masks do not change
it: neither layer supports masking (Keras drops a mask at both), so the convolution's output
has none either way.
"""

from __future__ import annotations

from ..errors import TflessError
from ..graph import Graph, Node
from ..ops.convolutional import ABSORBED_PADDING
from ..ops.reshaping import pairs

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
