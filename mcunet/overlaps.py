"""Where a step's output may share bytes with an input it reads for the last time: the
planner's permissions, read off each step's kernel record (its overlap rule) and layer."""
from __future__ import annotations

from typing import Sequence

from .graph import Graph
from .layers import ConvLayer, Windowed
from .memory import Overlap, elementwise_max_delta, window_max_delta
from .step import Elementwise, InPlace, RasterOrder, Step


def step_overlaps(graph: Graph, step: Step, index: int) -> list[Overlap]:
    """The overlaps step `index` allows between its output and its inputs."""
    if step.kernel is None or len(step.outputs) != 1 or not step.whole_tensors:
        return []
    ins, out = step.inputs, step.outputs[0]
    rule = step.kernel.overlap
    if isinstance(rule, InPlace):
        return [Overlap(ins[0].tid, out.tid, 0, index, index, "in-place", exact=True)]
    if isinstance(rule, RasterOrder):
        layer = step.layer
        if isinstance(layer, ConvLayer) and layer.fused_add is not None:
            # The sum goes over the residual (the last input), element by element.
            return [Overlap(ins[-1].tid, out.tid, elementwise_max_delta(), index, index,
                            "in-place")]
        assert isinstance(layer, Windowed)
        if len(ins) != 1 or (graph.t(ins[0].tid).dtype, graph.t(out.tid).dtype) != ("int8", "int8"):
            return []
        return [Overlap(ins[0].tid, out.tid, window_delta(layer, rule.block(layer)), index,
                        index, "alias")]
    if isinstance(rule, Elementwise):
        size = graph.t(out.tid).nbytes
        return [Overlap(a.tid, out.tid, elementwise_max_delta(), index, index, "in-place")
                for a in ins if graph.t(a.tid).nbytes == size]
    return []


def window_delta(layer: Windowed, block: int = 1) -> int:
    """window_max_delta for a windowed layer's dense int8 input and output."""
    w = layer.window
    return window_max_delta(w.ih, w.iw, w.ic, w.oh, w.ow, w.oc, w.kh, w.kw, w.sh, w.sw,
                            w.pad_top, w.pad_left, block)


def overlap_candidates(graph: Graph, steps: Sequence[Step]) -> list[Overlap]:
    return [ov for i, step in enumerate(steps) for ov in step_overlaps(graph, step, i)]
