"""Sections of a network that run a region at a time: what patch-based inference
(mcunet/patch.py) and streaming (mcunet/stream.py) share.

A *cut* is a place in the step list that exactly one activation crosses: every step before it
is done with every tensor but that one. A *section* is the steps between two cuts: it reads
one tensor X (the first cut's) and hands on one tensor T (the second's); inside, it may
branch and join (residual blocks, concatenations) as it likes. Each of its steps is a `Node`
that maps a region of its output (rows and columns) to the regions of its inputs it reads
(`Node.needs`: a window's receptive field, the same region for elementwise ops and channel
concatenations), and that can be emitted again for any output region, each tensor held in a
buffer that stores some region of it (`Node.emit` with a `Storage` per tensor): windowed
kernels read and write rows of wider buffers through their Window's in_row/out_row, and
elementwise kernels read and write runs of whole rows. Every emitted step computes exactly the
values the whole layer computes at those positions, so any schedule of them that respects
the data flow is an exact rewrite.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

from .errors import McunetError
from .graph import Graph
from .memory import Overlap
from .layers import (AddLayer, ConcatLayer, ConvLayer, LutLayer, MulLayer,
                     Region, ReluLayer, RequantizeLayer, Windowed)
from .step import Step, TensorArg

WINDOW = "window"  # conv, depthwise, pooling (a conv may carry a fused residual ADD)
FLAT = "flat"  # elementwise: ADD, MUL (same shapes), activations, requantisation
CONCAT = "concat"  # concatenation along channels

FLAT_LAYERS = (AddLayer, MulLayer, ReluLayer, LutLayer, RequantizeLayer)


class NotTileable(McunetError):
    """This section (or this grid of it) cannot run a region at a time; the message says why."""


@dataclass(frozen=True)
class Cut:
    position: int  # steps[:position] run before it
    tensor: int  # the one activation that crosses it


def cuts(graph: Graph, steps: list[Step]) -> list[Cut]:
    """Every place in the step list that exactly one activation crosses, in order."""
    n = len(steps)
    last: dict[int, int] = {}
    for i, step in enumerate(steps):
        for t in step.reads:
            last[t] = i
    for t in graph.outputs:
        last[t] = n
    live = {t for t in graph.inputs if last.get(t, -1) >= 0}
    result = []
    for p in range(n + 1):
        if p > 0:
            step = steps[p - 1]
            live.update(t for t in step.writes if last.get(t, -1) >= p)
            live.difference_update([t for t in step.reads if last.get(t, -1) < p])
        if len(live) == 1:
            result.append(Cut(p, next(iter(live))))
    return result


def is_activation_4d(graph: Graph, tid: int) -> bool:
    t = graph.t(tid)
    return t.dtype == "int8" and len(t.shape) == 4 and t.shape[0] == 1 and not t.is_const


@dataclass(frozen=True)
class Storage:
    """A buffer `tid` that holds rows and columns `region` of a tensor, densely (its rows are
    region.w pixels): the tensor's own buffer holds all of it."""
    tid: int
    region: Region

    def offset(self, r: Region, channels: int) -> int:
        """Elements from the buffer's start to pixel (r.y0, r.x0)."""
        s = self.region
        if not (s.y0 <= r.y0 and r.y1 <= s.y1 and s.x0 <= r.x0 and r.x1 <= s.x1):
            raise AssertionError(f"region {r} is not inside the stored {s}")
        return ((r.y0 - s.y0) * s.w + (r.x0 - s.x0)) * channels

    def holds_rows(self, r: Region) -> bool:
        """r's pixels are one contiguous run of the buffer (whole stored rows)."""
        return self.region.x0 == r.x0 and self.region.x1 == r.x1


def full(graph: Graph, tid: int) -> Region:
    _, h, w, _ = graph.t(tid).shape
    return Region(0, h, 0, w)


def hull(a: Region | None, b: Region) -> Region:
    if a is None:
        return b
    return Region(min(a.y0, b.y0), max(a.y1, b.y1), min(a.x0, b.x0), max(a.x1, b.x1))


@dataclass(frozen=True)
class Node:
    """One step of a section seen as a map from output regions to input regions."""
    position: int  # index in the step list
    step: Step
    kind: str  # WINDOW, FLAT or CONCAT
    inputs: tuple[int, ...]  # the activations it reads, in argument order (a window's first)
    output: int

    @property
    def name(self) -> str:
        """The source op whose output this step computes (a fused ADD's, for a conv+ADD)."""
        layer = self.step.layer
        if isinstance(layer, ConvLayer) and layer.fused_add is not None:
            return f"{self.step.op.index} (+ADD {layer.fused_add.op})"
        return str(self.step.op.index)

    @property
    def out_op(self) -> int:
        layer = self.step.layer
        if isinstance(layer, ConvLayer) and layer.fused_add is not None:
            return layer.fused_add.op
        return self.step.op.index

    def needs(self, out: Region) -> list[Region]:
        """The region of each input (in `inputs` order) that computing `out` reads."""
        if self.kind == WINDOW:
            rin = self.step.layer.window.input_region(out)[0]
            return [rin] + [out] * (len(self.inputs) - 1)  # a fused residual: the same pixels
        return [out] * len(self.inputs)

    def check(self, out: Region, store: dict[int, Storage]) -> None:
        """NotTileable unless the kernel can compute `out` with its tensors stored so: a
        fused residual is read at the output's pitch, elementwise kernels and concatenations
        read and write runs of whole stored rows."""
        out_store = store[self.output]
        if self.kind == WINDOW:
            if len(self.inputs) > 1:
                res = store[self.inputs[1]]
                if res.region.w != out_store.region.w:
                    raise NotTileable(f"op {self.name}: its residual is stored {res.region.w} "
                                      f"pixels wide, its output {out_store.region.w}")
            return
        for tid in (*self.inputs, self.output):
            if not store[tid].holds_rows(out):
                raise NotTileable(f"op {self.name} ({self.step.op.kind}) reads and writes whole "
                                  f"rows, but a tile is {out.w} of {store[tid].region.w} stored "
                                  "pixels wide")

    def emit(self, graph: Graph, out: Region, store: dict[int, Storage],
             trace: tuple[int, ...] = ()) -> Step:
        """This step computing only `out`, reading and writing the buffers in `store`."""
        self.check(out, store)
        step = self.step
        out_store = store[self.output]
        channels_out = graph.t(self.output).shape[3]
        if self.kind == WINDOW:
            window = step.layer.window
            rin, pad_top, pad_left = window.input_region(out)
            in_store = store[self.inputs[0]]
            regions = [rin] + [out] * (len(self.inputs) - 1)
            layer = step.layer.on_window(window.on_patch(
                rin, out, pad_top, pad_left, in_store.region.w, out_store.region.w))
            macs = step.macs * out.h * out.w // max(window.oh * window.ow, 1)
        else:
            regions = [out] * len(self.inputs)
            layer = resized(step.layer, out, channels_out)
            macs = step.macs * out.h * out.w // max(full(graph, self.output).h *
                                                   full(graph, self.output).w, 1)
        args = []
        k = 0
        for a in step.args:
            if not isinstance(a, TensorArg):
                args.append(a)
            elif a.output:
                args.append(TensorArg(out_store.tid, a.name, output=True,
                                      offset=out_store.offset(out, channels_out)))
            else:
                tid, region = self.inputs[k], regions[k]
                k += 1
                args.append(TensorArg(store[tid].tid, a.name,
                                      offset=store[tid].offset(region, graph.t(tid).shape[3])))
        return replace(step, layer=layer, args=tuple(args), macs=macs, trace=trace)


def resized(layer, out: Region, channels: int):
    """An elementwise or concatenation layer record for `out`'s pixels only."""
    n = out.h * out.w * channels
    shape = (1, out.h, out.w, channels)
    if isinstance(layer, (AddLayer, MulLayer)):
        strides = (n, out.w * channels, channels, 1)
        return replace(layer, shape=replace(layer.shape, size=n, out_shape=shape,
                                            strides1=strides, strides2=strides))
    if isinstance(layer, ConcatLayer):
        return replace(layer, out_shape=shape, outer=out.h * out.w)
    return replace(layer, size=n)


def node_of(graph: Graph, step: Step, position: int) -> Node:
    """The step as a Node, or NotTileable naming why it cannot run a region at a time."""
    what = f"op {step.op.index} ({step.op.kind})"
    if step.kernel is None:
        raise NotTileable(f"{what} is a view of its input")
    ins, outs = step.inputs, step.outputs
    if len(outs) != 1 or not is_activation_4d(graph, outs[0].tid):
        raise NotTileable(f"{what} does not write one int8 NHWC tensor")
    if not ins or any(not is_activation_4d(graph, a.tid) for a in ins):
        raise NotTileable(f"{what} does not read int8 NHWC tensors only")
    if not step.whole_tensors:
        raise NotTileable(f"{what} already runs on part of a tensor")
    inputs = tuple(a.tid for a in ins)
    out = outs[0].tid
    layer = step.layer
    if isinstance(layer, Windowed):
        expected = 2 if isinstance(layer, ConvLayer) and layer.fused_add is not None else 1
        if len(inputs) != expected:
            raise NotTileable(f"{what} reads {len(inputs)} tensors")
        return Node(position, step, WINDOW, inputs, out)
    shape = graph.t(out).shape
    if isinstance(layer, FLAT_LAYERS):
        if isinstance(layer, (AddLayer, MulLayer)) and (layer.shape.broadcast or len(inputs) != 2):
            raise NotTileable(f"{what} broadcasts or has a constant operand")
        if any(graph.t(t).shape != shape for t in inputs):
            raise NotTileable(f"{what} changes the shape")
        return Node(position, step, FLAT, inputs, out)
    if isinstance(layer, ConcatLayer):
        if layer.axis != 3 or any(graph.t(t).shape[:3] != shape[:3] for t in inputs):
            raise NotTileable(f"{what} does not concatenate along channels")
        return Node(position, step, CONCAT, inputs, out)
    raise NotTileable(f"{what} needs its whole input")


@dataclass(frozen=True)
class Section:
    """steps[lo:hi], between two cuts: it reads x and hands on t."""
    lo: int
    hi: int
    x: int
    t: int
    nodes: tuple[Node, ...]

    @property
    def first_op(self) -> int:
        return self.nodes[0].step.op.index

    @property
    def last_op(self) -> int:
        return self.nodes[-1].out_op

    def readers(self) -> dict[int, list[int]]:
        """Tensor -> the indices (into nodes) of the nodes that read it."""
        result: dict[int, list[int]] = {}
        for k, node in enumerate(self.nodes):
            for t in node.inputs:
                result.setdefault(t, []).append(k)
        return result


def section(graph: Graph, steps: list[Step], lo: int, hi: int,
            cut_list: list[Cut] | None = None) -> Section:
    """The section steps[lo:hi], or NotTileable."""
    by_position = {c.position: c.tensor for c in (cut_list or cuts(graph, steps))}
    if lo not in by_position or hi not in by_position or hi <= lo:
        raise NotTileable(f"steps {lo}..{hi} are not between two cuts of the network")
    x, t = by_position[lo], by_position[hi]
    for tid in (x, t):
        if not is_activation_4d(graph, tid):
            raise NotTileable(f"tensor '{graph.t(tid).name}' at a cut is not int8 NHWC")
    nodes = tuple(node_of(graph, steps[i], i) for i in range(lo, hi))
    known = {x}
    outputs = set(graph.outputs)
    for node in nodes:
        if any(i not in known for i in node.inputs):
            raise NotTileable(f"op {node.name} reads a tensor from outside the section")
        if node.output in known or (node.output in outputs and node.output != t):
            raise NotTileable(f"op {node.name} writes a tensor needed elsewhere")
        known.add(node.output)
    if nodes[-1].output != t:
        raise NotTileable("the section's last step does not write the tensor at its end")
    return Section(lo, hi, x, t, nodes)


def _first_op_position(steps: list[Step], cut_list: list[Cut], op: int | None) -> int:
    positions = {c.position for c in cut_list}
    if op is None:
        return min(p for p in positions if p < len(steps))
    for i, step in enumerate(steps):
        if step.op.index == op and i in positions:
            return i
    return -1


def _last_op_position(steps: list[Step], op: int) -> int:
    for i, step in enumerate(steps):
        fused = getattr(step.layer, "fused_add", None)
        if step.op.index == op or (fused is not None and fused.op == op):
            return i + 1
    return -1


def valid_ends(graph: Graph, steps: list[Step], lo: int, cut_list: list[Cut]) -> list[int]:
    """The ops that can end a section starting at position lo (their index, as plan lists them)."""
    result = []
    for c in cut_list:
        if c.position <= lo:
            continue
        try:
            sec = section(graph, steps, lo, c.position, cut_list)
        except NotTileable:
            continue
        result.append(sec.last_op)
    return result


def locate(graph: Graph, steps: list[Step], spec,
           cut_list: list[Cut] | None = None) -> Section:
    """The section a spec names, or a McunetError that lists the possible choices."""
    cut_list = cut_list if cut_list is not None else cuts(graph, steps)
    what = spec.what
    lo = _first_op_position(steps, cut_list, spec.first_op)
    if lo < 0:
        starts = ", ".join(str(steps[c.position].op.index) for c in cut_list
                           if c.position < len(steps)) or "none"
        raise McunetError(f"--patch {spec}: op {spec.first_op} cannot start a {what} (it must "
                          f"follow a point that only one tensor crosses; possible first ops: "
                          f"{starts})")
    hi = _last_op_position(steps, spec.last_op)
    try:
        return section(graph, steps, lo, hi, cut_list)
    except NotTileable as e:
        ends = ", ".join(str(i) for i in valid_ends(graph, steps, lo, cut_list)) or "none"
        raise McunetError(f"--patch {spec}: op {spec.last_op} cannot end a {what} from op "
                          f"{steps[lo].op.index} ({e}; the stage must be a sub-graph of conv, "
                          f"depthwise, pooling, elementwise and concatenation layers between two "
                          f"points that one tensor crosses; possible last ops: {ends})") from None


def needs(graph: Graph, sec: Section, tile: Region) -> dict[int, Region]:
    """The region of every tensor of the section that computing `tile` of its output reads
    (the hull of what its readers need), through the whole sub-graph."""
    need: dict[int, Region] = {sec.t: tile}
    for node in reversed(sec.nodes):
        out = need.get(node.output)
        if out is None:
            continue
        for tid, r in zip(node.inputs, node.needs(out)):
            need[tid] = hull(need.get(tid), r)
    return need


@dataclass
class PatchStage:
    """A section rewritten to run a region at a time (patch by patch, or streamed), for the
    planner and the reports."""
    spec: object  # a PatchSpec or StreamSpec
    stage_steps: int  # layers in the section
    num_steps: int  # steps it became
    stage_macs: int  # their MACs layer by layer
    patched_macs: int  # their MACs region by region (recomputed halos included)
    model_macs: int  # the whole model's MACs layer by layer
    overlap: Overlap | None = None  # patches: T over the part of X that later patches skip
    kind: str = "patch"  # "patch" or "stream"
    start: int = 0  # index of its first step in the step list
    x: int = -1  # the tensor it reads
    t: int = -1  # the tensor it writes
    whole: tuple[int, ...] = ()  # tensors stored whole that its steps touch in pieces
    ops: tuple[int, ...] = ()  # the source ops it runs
    blame: list = field(default_factory=list)  # (op, share of the extra MACs its window causes)
    # Estimated extra instructions (mcunet.work, with its margin) over the same layers run
    # whole, and the whole model's layer by layer: set by the compiler once kernels are chosen.
    work: float = 0.0
    base_work: float = 1.0

    @property
    def mac_overhead(self) -> float:
        return (self.patched_macs - self.stage_macs) / max(self.model_macs, 1)

    @property
    def extra_calls(self) -> int:
        return self.num_steps - self.stage_steps

    @property
    def end(self) -> int:
        return self.start + self.num_steps

    @property
    def extra_work(self) -> float:
        """Estimated extra instructions (the compiler's mcunet.work estimate)."""
        return self.work
