"""Streaming: run a section of the network row by row, depth first (fused-layer execution).

For blocks that patches do not help (many channels, small images, residual CNNs), the section
(mcunet/tiling.py) runs in bands of its output's rows, top to bottom: for each band, every
layer computes just the rows of its output that the band newly needs and no earlier band
computed (nothing is recomputed: no extra MACs), reading rows of its inputs that earlier
layers (or earlier bands) computed. Every tensor of the section keeps its own full-size
coordinates, but only a few rows of each are alive at any moment, so the planner may lay them
over one another: a tensor's rows are written over rows of its inputs, and of earlier tensors,
that no later band reads. The block then needs about one input tensor plus a few rows instead
of two full tensors. mcunet.overlaps.stream_overlaps derives from the band schedule, pixel run by
pixel run, how far each tensor may lie over each other one; every step is the same kernel on
a band of rows (its Window's rows and pitch), so the rewrite is exact like the patch one.
"""
from __future__ import annotations

from dataclasses import dataclass

from .errors import McunetError
from .graph import Graph
from .layers import Region
from .step import Step
from .tiling import Cut, PatchStage, Section, Storage, full, locate


@dataclass(frozen=True)
class StreamSpec:
    """Stream the section from op `first_op` to op `last_op`, `rows` output rows a band."""
    first_op: int | None
    last_op: int
    rows: int = 1
    what = "streamed section"

    def __str__(self) -> str:
        return f"stream{self.rows if self.rows > 1 else ''}@{self.first_op}-{self.last_op}"


def apply_stream(graph: Graph, steps: list[Step], spec: StreamSpec,
                 cut_list: list[Cut] | None = None) -> tuple[Graph, list[Step], PatchStage]:
    return stream_section(graph, steps, locate(graph, steps, spec, cut_list), spec)


def stream_section(graph: Graph, steps: list[Step], sec: Section,
                   spec: StreamSpec) -> tuple[Graph, list[Step], PatchStage]:
    _, th, _, _ = graph.t(sec.t).shape
    if spec.rows < 1:
        raise McunetError(f"--patch {spec}: a band needs at least one row")
    done = {node.output: 0 for node in sec.nodes}
    whole = (sec.x,) + tuple(node.output for node in sec.nodes)
    store = {tid: Storage(tid, full(graph, tid)) for tid in whole}
    new_steps: list[Step] = []
    for b0 in range(0, th, spec.rows):
        b1 = min(b0 + spec.rows, th)
        # Backwards: the rows each tensor must reach for this band.
        reach = {sec.t: b1}
        compute: dict[int, Region] = {}
        for node in reversed(sec.nodes):
            o = node.output
            if reach.get(o, 0) <= done[o]:
                continue
            r = Region(done[o], reach[o], 0, full(graph, o).w)
            compute[node.position] = r
            for tid, rin in zip(node.inputs, node.needs(r)):
                reach[tid] = max(reach.get(tid, 0), rin.y1)
        for node in sec.nodes:
            r = compute.get(node.position)
            if r is None:
                continue
            done[node.output] = r.y1
            last = node.output == sec.t and r.y1 == th
            new_steps.append(node.emit(graph, r, store, (sec.t,) if last else ()))
    stage_macs = sum(s.macs for s in steps[sec.lo:sec.hi])
    info = PatchStage(spec=spec, stage_steps=len(sec.nodes), num_steps=len(new_steps),
                      stage_macs=stage_macs, patched_macs=sum(s.macs for s in new_steps),
                      model_macs=sum(s.macs for s in steps), kind="stream", start=sec.lo,
                      x=sec.x, t=sec.t, whole=whole,
                      ops=tuple(s.op.index for s in steps[sec.lo:sec.hi]))
    return graph, list(steps[:sec.lo]) + new_steps + list(steps[sec.hi:]), info
