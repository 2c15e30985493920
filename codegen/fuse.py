"""Fusing a residual ADD into the convolution that produces one of its operands.

In an inverted-residual block the projection conv's output y is read once, by ADD(x, y).
The fused step computes each conv value and adds the matching x value at once, writing the
sum over x in place: y never exists, so the block's peak loses a whole tensor. The fused
kernel applies TFLite's ADD arithmetic to the clamped int8 conv value, exactly as the two
separate kernels would, so outputs stay bit-exact.
"""
from __future__ import annotations

from mcunet.graph import Graph

from .step import Step, TensorArg

CONV = "conv2d_s8.c.j2"
ADD = "add_s8.c.j2"


def _tensor_ins(step: Step) -> list[TensorArg]:
    return [a for a in step.args if isinstance(a, TensorArg) and a.const]


def fuse_residual_adds(graph: Graph, steps: list[Step]) -> list[Step]:
    """Steps with every eligible conv + ADD pair replaced by one fused conv step."""
    steps = list(steps)
    outputs = set(graph.outputs)
    i = 0
    while i < len(steps):
        add = steps[i]
        if add.kernel != ADD or add.params["broadcast"] or len(_tensor_ins(add)) != 2:
            i += 1
            continue
        fused = _fuse(graph, steps, i, outputs)
        if fused is None:
            i += 1
            continue
        conv_index, step = fused
        steps[conv_index] = step
        del steps[i]
    return steps


def _fuse(graph: Graph, steps: list[Step], add_index: int, outputs: set[int]):
    add = steps[add_index]
    operands = [a.tid for a in _tensor_ins(add)]
    z = add.writes[0]
    writer = {t: k for k, s in enumerate(steps[:add_index]) for t in s.writes}
    readers: dict[int, int] = {}
    for s in steps:
        for t in s.reads:
            readers[t] = readers.get(t, 0) + 1
    for which, y in enumerate(operands):
        x = operands[1 - which]
        k = writer.get(y)
        if k is None or steps[k].kernel != CONV or steps[k].params.get("fused_add"):
            continue
        conv = steps[k]
        if readers.get(y) != 1 or y in outputs or x == y:
            continue
        if graph.t(y).shape != graph.t(z).shape or graph.t(x).shape != graph.t(z).shape:
            continue
        if x in writer and writer[x] >= k:
            continue  # the residual must exist when the conv runs
        p = conv.params
        if p["out_row"] != p["ow"] or any(a.offset for a in conv.args if isinstance(a, TensorArg)):
            continue
        params = dict(p, io_restrict="",  # the sum is written over the residual
                      fused_add=dict(add.params["add"], op=add.op.index, residual_first=which == 1))
        args = list(conv.args[:-1]) + [TensorArg(x, const=True), TensorArg(z)]
        return k, Step(conv.op, conv.kernel, params, args, conv.scratch_bytes, macs=conv.macs,
                       trace=[z])
    return None
