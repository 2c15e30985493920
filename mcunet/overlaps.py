"""Where a step's output may share bytes with an input it reads for the last time: the
planner's permissions, read off each step's kernel record (its overlap rule) and layer."""
from __future__ import annotations

from typing import Sequence

import numpy as np

from .graph import Graph
from .layers import ConcatLayer, ConvLayer, Windowed
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


# ---------------------------------------------------------------------------------------------
# Tensors stored whole but written and read a band at a time (mcunet/stream.py)

_NEVER = 1 << 40


def _pixels(graph: Graph, step: Step, arg) -> np.ndarray:
    """The pixels (raster indices into the tensor) that a step's tensor argument covers."""
    _, _, width, channels = graph.t(arg.tid).shape
    first = arg.offset // channels
    layer = step.layer
    if isinstance(layer, Windowed):
        w = layer.window
        if arg.output or arg.name == "residual":
            rows, cols, pitch = w.oh, w.ow, w.out_row
        else:
            rows, cols, pitch = w.ih, w.iw, w.in_row
        if pitch != width:
            raise AssertionError(f"op {step.op.index}: a whole tensor read at another pitch")
        y0, x0 = divmod(first, width)
        return ((y0 + np.arange(rows))[:, None] * width + x0 + np.arange(cols)[None, :]).ravel()
    count = layer.outer if isinstance(layer, ConcatLayer) else flat_elements(layer) // \
        graph.t(step.outputs[0].tid).shape[3]
    return first + np.arange(count)


def flat_elements(layer) -> int:
    """Elements an elementwise layer record covers."""
    shape = getattr(layer, "shape", None)
    return shape.size if shape is not None else layer.size


def _segments(write: np.ndarray, read: np.ndarray, channels: int):
    """Runs of pixels with the same (first write, last read) steps, as byte ranges; pixels
    never written are dropped."""
    keep = write < _NEVER
    n = write.size
    change = np.flatnonzero((write[1:] != write[:-1]) | (read[1:] != read[:-1])) + 1
    starts = np.concatenate(([0], change))
    ends = np.concatenate((change, [n]))
    starts, ends = starts[keep[starts]], ends[keep[starts]]
    return starts * channels, ends * channels, write[starts], read[starts]


def _intra_bound(step: Step, src, dst) -> int | None:
    """Within one step that reads `src` for the last time and writes `dst`: the largest byte
    offset of dst's bytes over src's that the kernel's order keeps safe (None: none is)."""
    rule = step.kernel.overlap
    layer = step.layer
    base = src.offset - dst.offset  # int8: elements are bytes
    if isinstance(rule, RasterOrder) and isinstance(layer, Windowed):
        if src.name == "residual":  # a fused ADD reads each value just before it writes it
            return base
        if src is step.inputs[0] and layer.window.dense:
            return window_delta(layer, rule.block(layer)) + base
        return None
    if isinstance(rule, Elementwise):
        return base
    return None


def stream_overlaps(graph: Graph, steps: Sequence[Step], start: int, end: int,
                    whole: Sequence[int], live_after: Sequence[int]) -> list[Overlap]:
    """How far each tensor of a streamed section (`whole`, upstream first: the section's input,
    then each step's output) may lie over each earlier one while steps[start:end] write and
    read them band by band: for every pair, the largest offset of the later tensor from the
    earlier at which no byte is written while the other tensor still needs it (every smaller
    offset is safe too, as the bands move through both in the same direction)."""
    index = {t: k for k, t in enumerate(whole)}
    write = {t: np.full(graph.t(t).size // graph.t(t).shape[3], _NEVER, dtype=np.int64)
             for t in whole}
    read = {t: np.full(w.size, -1, dtype=np.int64) for t, w in write.items()}
    bounds: dict[tuple[int, int, int], int] = {}  # (src, dst, step) -> intra-step bound
    for k in range(start, end):
        step = steps[k]
        args = [a for a in step.inputs + step.outputs if a.tid in index]
        for a in args:
            px = _pixels(graph, step, a)
            if a.output:
                write[a.tid][px] = np.minimum(write[a.tid][px], k)
            else:
                read[a.tid][px] = np.maximum(read[a.tid][px], k)
        for a in step.inputs:
            for b in step.outputs:
                if a.tid in index and b.tid in index and index[a.tid] < index[b.tid]:
                    bound = _intra_bound(step, a, b)
                    key = (a.tid, b.tid, k)
                    known = bounds.get(key, bound)
                    bounds[key] = None if bound is None or known is None else min(bound, known)
    later = set(live_after)
    segs = {}
    for t in whole:
        w, r = write[t], read[t]
        w[w == _NEVER] = start - 1 if not (w < _NEVER).any() else _NEVER
        r[:] = np.where(w < _NEVER, np.maximum(r, w), r)
        if t in later:
            r[w < _NEVER] = _NEVER
        segs[t] = _segments(w, r, graph.t(t).shape[3])
    result = []
    for i, a in enumerate(whole):
        sa, ea, wa, la = segs[a]
        for b in whole[i + 1:]:
            sb, eb, wb, lb = segs[b]
            live = (wa[:, None] <= lb[None, :]) & (wb[None, :] <= la[:, None])
            touch = la[:, None] == wb[None, :]
            steps_ok = np.array([bounds.get((a, b, int(k))) is not None for k in la], dtype=bool) \
                if la.size else np.zeros(0, dtype=bool)
            excused = touch & steps_ok[:, None]
            clash = live & ~excused
            limit = graph.t(a).nbytes
            if clash.any():
                limit = int(np.min((sa[:, None] - eb[None, :])[clash]))
            used = np.unique(la[np.any(live & excused, axis=1)]) if la.size else []
            for k in used:
                limit = min(limit, bounds[(a, b, int(k))])
            result.append(Overlap(a, b, limit, end - 1, start, "stream"))
    return result
