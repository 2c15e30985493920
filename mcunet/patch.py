"""Patch-based inference (MCUNetV2): run the first, memory-heavy stage of the network patch by
patch, then the rest layer by layer.

The stage is a chain of windowed layers (conv, depthwise, pooling) starting at the network's
input. Its output tensor T is cut into a rows x cols grid of tiles; for each tile the layers
run backwards to find the input region each needs (the receptive field, with its halo, clipped
to the tensor: the clipped part becomes per-patch padding). Every layer then runs once per
patch on its region, in small per-patch buffers: the first reads its region straight out of
the stage input, the last writes its tile straight into T. Each patch computes exactly the
values the whole layer computes there, so the rewrite is exact and outputs stay bit-exact.

Memory: the full-size stage tensors never exist; the stage input is consumed patch by patch,
so T can be placed over the part of the input that later patches no longer read (an Overlap
of kind "patch"). The price is the recomputed halos: extra MACs, bounded when the split and
grid are chosen automatically.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, replace

from .errors import McunetError
from .graph import Graph, Tensor
from .layers import Region, Windowed
from .memory import Overlap
from .step import Step, TensorArg

DEFAULT_MAX_OVERHEAD = 0.15  # extra MACs from halos, as a fraction of the model's MACs
GRIDS = range(2, 9)  # square grids tried by "auto"


@dataclass(frozen=True)
class PatchSpec:
    rows: int
    cols: int
    last_op: int  # source-model index of the stage's last op

    def __str__(self) -> str:
        return f"{self.rows}x{self.cols}@{self.last_op}"


def parse_patch(text: str) -> str | PatchSpec:
    """'none', 'auto' or 'RxC@LAYER' (LAYER: index of the stage's last op, as `mcunet plan`
    lists them)."""
    text = text.strip().lower()
    if text in ("none", "auto"):
        return text
    m = re.fullmatch(r"(\d+)x(\d+)@(\d+)", text)
    if not m or int(m.group(1)) < 1 or int(m.group(2)) < 1:
        raise McunetError(f"--patch {text!r}: expected none, auto or RxC@LAYER such as 3x3@5 "
                          "(a 3x3 grid, the stage ending with op 5)")
    return PatchSpec(int(m.group(1)), int(m.group(2)), int(m.group(3)))


@dataclass
class PatchStage:
    """What a patch rewrite did, for reports."""
    spec: PatchSpec
    stage_steps: int  # layers in the stage
    num_steps: int  # steps the stage became (layers x patches)
    stage_macs: int  # their MACs layer by layer
    patched_macs: int  # their MACs patch by patch (halos included)
    model_macs: int  # the whole model's MACs layer by layer
    overlap: Overlap | None = None

    @property
    def mac_overhead(self) -> float:
        return (self.patched_macs - self.stage_macs) / max(self.model_macs, 1)


@dataclass
class _Layer:
    """One stage step seen as a window: output region -> input region."""
    step: Step
    inp: int
    out: int
    channels_in: int
    channels_out: int


def stage_lengths(graph: Graph, steps: list) -> list[int]:
    """Every k such that steps[:k] can run patch by patch: a chain of windowed kernels from an
    activation, each output read only by the next step."""
    readers: dict[int, int] = {}
    for step in steps:
        for t in step.reads:
            readers[t] = readers.get(t, 0) + 1
    outputs = set(graph.outputs)
    lengths = []
    prev_out = None
    for k, step in enumerate(steps):
        if step.kernel is None or not isinstance(step.layer, Windowed):
            break
        ins, outs = step.inputs, step.outputs
        if len(ins) != 1 or len(outs) != 1:
            break
        x, y = graph.t(ins[0].tid), graph.t(outs[0].tid)
        if x.dtype != "int8" or y.dtype != "int8" or len(x.shape) != 4 or len(y.shape) != 4:
            break
        if prev_out is not None and ins[0].tid != prev_out:
            break
        lengths.append(k + 1)
        if readers.get(outs[0].tid, 0) != 1 or outs[0].tid in outputs:
            break  # the chain ends here: this output is needed whole
        prev_out = outs[0].tid
    return lengths


def _cuts(n: int, parts: int) -> list[tuple[int, int]]:
    return [(i * n // parts, (i + 1) * n // parts) for i in range(parts)]


def apply_patches(graph: Graph, steps: list, spec: PatchSpec) -> tuple[Graph, list, PatchStage]:
    """Rewrite steps[:k] (the stage ending with op spec.last_op) into per-patch steps."""
    ends = {steps[k - 1].op.index: k for k in stage_lengths(graph, steps)}
    if spec.last_op not in ends:
        valid = ", ".join(str(i) for i in ends) or "none"
        raise McunetError(f"--patch {spec}: op {spec.last_op} cannot end a patch stage (the "
                          f"stage must be a chain of conv/depthwise/pool layers from the input; "
                          f"possible last ops: {valid})")
    k = ends[spec.last_op]
    stage = steps[:k]
    layers = []
    for step in stage:
        ins, outs = step.inputs, step.outputs
        x, y = graph.t(ins[0].tid), graph.t(outs[0].tid)
        layers.append(_Layer(step, ins[0].tid, outs[0].tid, x.shape[3], y.shape[3]))
    t_out = graph.t(layers[-1].out)
    x_in = graph.t(layers[0].inp)
    _, th, tw, _ = t_out.shape
    if spec.rows > th or spec.cols > tw:
        raise McunetError(f"--patch {spec}: the stage output is {th}x{tw}, smaller than the "
                          f"{spec.rows}x{spec.cols} grid")
    tensors = list(graph.tensors)
    new_steps: list = []
    patches = [(r, c) for r in _cuts(th, spec.rows) for c in _cuts(tw, spec.cols)]
    first_reads, write_ends = [], []
    for p, ((y0, y1), (x0, x1)) in enumerate(patches):
        # Backwards: the region each layer must produce for this tile.
        out_region = Region(y0, y1, x0, x1)
        plan = []
        for layer in reversed(layers):
            in_region, pad_top, pad_left = layer.step.layer.window.input_region(out_region)
            plan.append((layer, in_region, out_region, pad_top, pad_left))
            out_region = in_region
        plan.reverse()
        first_in = plan[0][1]
        first_reads.append((first_in.y0 * x_in.shape[2] + first_in.x0) * x_in.shape[3])
        write_ends.append(((y1 - 1) * tw + x1) * t_out.shape[3])
        prev_tid = None
        for j, (layer, rin, rout, pad_top, pad_left) in enumerate(plan):
            step = layer.step
            last = j == len(plan) - 1
            if last:
                out_arg = TensorArg(layer.out, "output", output=True,
                                    offset=(rout.y0 * tw + rout.x0) * layer.channels_out)
                out_row = tw
            else:
                src = graph.t(layer.out)
                tid = len(tensors)
                tensors.append(Tensor(id=tid, name=f"{src.name}#patch{p}",
                                      shape=(1, rout.h, rout.w, layer.channels_out),
                                      dtype=src.dtype, quant=src.quant))
                out_arg = TensorArg(tid, "output", output=True)
                out_row = rout.w
            if j == 0:
                in_arg = TensorArg(layer.inp, "input",
                                   offset=(rin.y0 * x_in.shape[2] + rin.x0) * layer.channels_in)
                in_row = x_in.shape[2]
            else:
                in_arg = TensorArg(prev_tid, "input")
                in_row = rin.w
            window = step.layer.window
            patch_layer = step.layer.on_window(
                window.on_patch(rin, rout, pad_top, pad_left, in_row, out_row))
            args = tuple(a if not isinstance(a, TensorArg) else out_arg if a.output else in_arg
                         for a in step.args)
            macs = step.macs * rout.h * rout.w // max(window.oh * window.ow, 1)
            trace = (layer.out,) if (last and p == len(patches) - 1) else ()
            new_steps.append(replace(step, layer=patch_layer, args=args, macs=macs,
                                     trace=trace))
            prev_tid = out_arg.tid
    # The stage output may sit over the input bytes that no later patch reads. With one
    # layer, reading and writing a patch interleave, so the patch's own input counts too.
    own = 1 if k > 1 else 0
    needed_after = [min(first_reads[q + own:] or [x_in.nbytes]) for q in range(len(patches))]
    max_delta = min(n - w for n, w in zip(needed_after, write_ends))
    overlap = Overlap(src=layers[0].inp, dst=layers[-1].out, max_delta=max_delta,
                      src_last=(len(patches) - 1) * k, dst_first=k - 1, kind="patch")
    info = PatchStage(spec=spec, stage_steps=k, num_steps=len(new_steps), stage_macs=sum(s.macs for s in stage),
                      patched_macs=sum(s.macs for s in new_steps),
                      model_macs=sum(s.macs for s in steps), overlap=overlap)
    patched = Graph(tensors=tensors, ops=graph.ops, inputs=graph.inputs, outputs=graph.outputs,
                    name=graph.name)
    return patched, new_steps + list(steps[k:]), info


def candidates(graph: Graph, steps: list, max_overhead: float = DEFAULT_MAX_OVERHEAD):
    """(spec, stage) pairs worth planning: every stage end and square grid whose recomputed
    halos stay within max_overhead of the model's MACs."""
    result = []
    for k in stage_lengths(graph, steps):
        last = steps[k - 1]
        th, tw = last.layer.window.oh, last.layer.window.ow
        for n in GRIDS:
            if n > min(th, tw):
                break
            spec = PatchSpec(n, n, last.op.index)
            patched = apply_patches(graph, steps, spec)
            if patched[2].mac_overhead <= max_overhead:
                result.append((spec, patched))
    return result
