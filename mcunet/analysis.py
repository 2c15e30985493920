"""Per-op cost figures: multiply-accumulates and parameter counts."""
from __future__ import annotations

from .graph import Graph, Op


def op_macs(graph: Graph, op: Op) -> int:
    """Multiply-accumulates of one op (conv, depthwise and fully connected; 0 for the rest)."""
    if op.kind == "CONV_2D":
        oc, kh, kw, ic = graph.t(op.inputs[1]).shape
        _, oh, ow, _ = graph.t(op.outputs[0]).shape
        return oh * ow * oc * kh * kw * ic
    if op.kind == "DEPTHWISE_CONV_2D":
        _, kh, kw, _ = graph.t(op.inputs[1]).shape
        _, oh, ow, oc = graph.t(op.outputs[0]).shape
        return oh * ow * oc * kh * kw
    if op.kind == "FULLY_CONNECTED":
        units, depth = graph.t(op.inputs[1]).shape
        batches = graph.t(op.inputs[0]).size // depth
        return batches * units * depth
    return 0


def op_params(graph: Graph, op: Op) -> int:
    """Number of constant values an op reads (weights and biases)."""
    return sum(graph.t(i).size for i in op.inputs if i >= 0 and graph.t(i).is_const
               and op.kind in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED"))
