"""Patch-based inference (MCUNetV2): run a memory-heavy section of the network patch by patch,
the rest layer by layer (or streamed, mcunet/stream.py).

The section (mcunet/tiling.py) lies between two cuts of the network: it reads one tensor X and
hands on one tensor T, and inside it may hold residual blocks, concatenations, pooling and
elementwise ops. T is cut into a rows x cols grid of tiles; for each tile, going backwards
through the sub-graph, every tensor's needed region is the hull of what its readers need (a
window's receptive field with its halo, clipped to the tensor: the clipped part becomes
per-patch padding; the same pixels for a residual, an elementwise op or a concatenation).
Every step then runs once per patch on its region, in small per-patch buffers: steps reading X
read their region straight out of it, the last writes its tile straight into T. A residual
block's skip travels with the patch: its tile is part of the block input's per-patch buffer,
and the fused conv+ADD writes the block's output over it, at the same pixels. Each patch
computes exactly the values the whole layer computes there, so the rewrite is exact and outputs
stay bit-exact.

Memory: the full-size tensors inside the section never exist; X is consumed patch by patch,
so T can be placed over the part of X that later patches no longer read (an Overlap of kind
"patch"). The price is the recomputed halos: extra MACs, bounded when the sections and grids
are chosen automatically.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, replace

from .errors import McunetError
from .graph import Graph, Tensor
from .layers import Region
from .memory import Overlap
from .step import Step
from .stream import StreamSpec
from .tiling import (WINDOW, Cut, NotTileable, PatchStage, Section, Storage, full, locate,
                     needs)

DEFAULT_MAX_OVERHEAD = 0.15  # extra work (MACs, and kernel calls) as a fraction of the model's
MAX_GRID = 8  # grids up to 8x8 are tried by "auto"


@dataclass(frozen=True)
class PatchSpec:
    """An rows x cols grid over the output of the section that ends with op `last_op` and
    starts with op `first_op` (None: with the network's first op)."""
    rows: int
    cols: int
    last_op: int
    first_op: int | None = None
    what = "patch stage"

    def __str__(self) -> str:
        ops = f"{self.first_op}-{self.last_op}" if self.first_op is not None else f"{self.last_op}"
        return f"{self.rows}x{self.cols}@{ops}"


RegionSpec = PatchSpec | StreamSpec

SPEC_HELP = ("none, auto, or one or more of RxC@LAST, RxC@FIRST-LAST (patches) and "
             "stream@FIRST-LAST (streamN@...: N rows a band), separated by commas, such as "
             "4x4@5 or 8x8@0-7,stream@8-11")


def parse_patch(text: str) -> str | RegionSpec | tuple[RegionSpec, ...]:
    """'none', 'auto', one region ('RxC@LAST', 'RxC@FIRST-LAST': a patch grid over the section
    from op FIRST (default: the first) to op LAST, as `mcunet plan` numbers them;
    'stream@FIRST-LAST': that section streamed row by row, 'streamN@FIRST-LAST' N rows of its
    output a band), or several separated by commas."""
    text = text.strip().lower()
    if text in ("none", "auto"):
        return text
    specs = []
    for item in text.split(","):
        item = item.strip()
        m = re.fullmatch(r"(\d+)x(\d+)@(?:(\d+)-)?(\d+)", item)
        s = re.fullmatch(r"stream(\d*)@(\d+)-(\d+)", item)
        if m and int(m.group(1)) >= 1 and int(m.group(2)) >= 1:
            first = int(m.group(3)) if m.group(3) is not None else None
            specs.append(PatchSpec(int(m.group(1)), int(m.group(2)), int(m.group(4)), first))
        elif s and s.group(1) != "0":
            specs.append(StreamSpec(int(s.group(2)), int(s.group(3)), int(s.group(1) or 1)))
        else:
            raise McunetError(f"--patch {text!r}: expected {SPEC_HELP} (RxC@LAYER: an RxC grid "
                              "over the stage ending with op LAYER)")
    return specs[0] if len(specs) == 1 else tuple(specs)


def _cuts(n: int, parts: int) -> list[tuple[int, int]]:
    return [(i * n // parts, (i + 1) * n // parts) for i in range(parts)]


def tiles(graph: Graph, sec: Section, rows: int, cols: int) -> list[Region]:
    _, th, tw, _ = graph.t(sec.t).shape
    return [Region(y0, y1, x0, x1) for y0, y1 in _cuts(th, rows) for x0, x1 in _cuts(tw, cols)]


def apply_patches(graph: Graph, steps: list[Step], spec: PatchSpec,
                  cut_list: list[Cut] | None = None) -> tuple[Graph, list[Step], PatchStage]:
    """Rewrite the section that spec names into per-patch steps."""
    sec = locate(graph, steps, spec, cut_list)
    _, th, tw, _ = graph.t(sec.t).shape
    if spec.rows > th or spec.cols > tw:
        raise McunetError(f"--patch {spec}: the stage output is {th}x{tw}, smaller than the "
                          f"{spec.rows}x{spec.cols} grid")
    return patch_section(graph, steps, sec, spec)


def patch_section(graph: Graph, steps: list[Step], sec: Section,
                  spec: PatchSpec) -> tuple[Graph, list[Step], PatchStage]:
    t_out, x_in = graph.t(sec.t), graph.t(sec.x)
    _, _, tw, tc = t_out.shape
    grid = tiles(graph, sec, spec.rows, spec.cols)
    last_reader = {tid: max(ks) for tid, ks in sec.readers().items()}
    tensors = list(graph.tensors)
    new_steps: list[Step] = []
    first_reads, write_ends, own = [], [], []
    for p, tile in enumerate(grid):
        emitted = patch_steps(graph, sec, tile, tensors, last_reader, p,
                              (sec.t,) if p == len(grid) - 1 else ())
        reads = [(j, a.offset) for j, s in enumerate(emitted) for a in s.inputs if a.tid == sec.x]
        first_reads.append(min(off for _, off in reads))
        out_arg = emitted[-1].outputs[0]
        write_ends.append(out_arg.offset + ((tile.h - 1) * tw + tile.w) * tc)
        own.append(any(j == len(emitted) - 1 for j, _ in reads))
        new_steps += emitted
    # T may sit over the bytes of X that no later patch reads (nor this one, where the step
    # writing the tile also reads X: reading and writing interleave there).
    n = len(grid)
    needed_after = [min(first_reads[q + (0 if own[q] else 1):] or [x_in.nbytes]) for q in range(n)]
    max_delta = min(a - w for a, w in zip(needed_after, write_ends))
    k = len(sec.nodes)
    overlap = Overlap(src=sec.x, dst=sec.t, max_delta=max_delta, src_last=sec.lo + n * k - 1,
                      dst_first=sec.lo, kind="patch")
    stage_macs = sum(s.macs for s in steps[sec.lo:sec.hi])
    info = PatchStage(spec=spec, stage_steps=k, num_steps=len(new_steps), stage_macs=stage_macs,
                      patched_macs=sum(s.macs for s in new_steps),
                      model_macs=sum(s.macs for s in steps), overlap=overlap, kind="patch",
                      start=sec.lo, x=sec.x, t=sec.t, whole=(sec.x, sec.t),
                      ops=tuple(s.op.index for s in steps[sec.lo:sec.hi]),
                      blame=blame(graph, steps, sec, spec.rows, spec.cols))
    patched = Graph(tensors=tensors, ops=graph.ops, inputs=graph.inputs, outputs=graph.outputs,
                    name=graph.name)
    return patched, list(steps[:sec.lo]) + new_steps + list(steps[sec.hi:]), info


def patch_steps(graph: Graph, sec: Section, tile: Region, tensors: list[Tensor] | None,
                last_reader: dict[int, int], p: int, trace: tuple[int, ...] = ()) -> list[Step]:
    """The section's steps for one tile of its output (per-patch tensors appended to
    `tensors`); NotTileable where a residual or an elementwise op cannot run on the tile.
    Without `tensors`, only the check: no steps."""
    need = needs(graph, sec, tile)
    store = {sec.x: Storage(sec.x, full(graph, sec.x)), sec.t: Storage(sec.t, full(graph, sec.t))}
    emitted = []
    for k, node in enumerate(sec.nodes):
        out = need[node.output]
        if node.output != sec.t:
            store[node.output] = _patch_buffer(graph, tensors, sec, node, k, out, store,
                                               last_reader, p)
        if tensors is None:
            node.check(out, store)
        else:
            emitted.append(node.emit(graph, out, store, trace if node.output == sec.t else ()))
    return emitted


def columns_fit(graph: Graph, sec: Section, cols: int) -> bool:
    """Whether a grid of this many columns can run (needs are separable: the columns decide
    every buffer's width, so one full-height strip per column shows it)."""
    _, th, tw, _ = graph.t(sec.t).shape
    last_reader = {tid: max(ks) for tid, ks in sec.readers().items()}
    try:
        for x0, x1 in _cuts(tw, cols):
            patch_steps(graph, sec, Region(0, th, x0, x1), None, last_reader, 0)
    except NotTileable:
        return False
    return True


def _patch_buffer(graph: Graph, tensors: list[Tensor] | None, sec: Section, node, k: int, out: Region,
                  store: dict[int, Storage], last_reader: dict[int, int], p: int) -> Storage:
    """Where a node's output lives in one patch: over its residual's per-patch buffer when the
    node is a conv with a fused ADD and the last to read the residual (the sum is written over
    the skip's tile, at the same pixels), else in a per-patch buffer of its own."""
    if node.kind == WINDOW and len(node.inputs) == 2:
        res = node.inputs[1]
        s = store[res]
        if s.tid not in (sec.x, sec.t) and last_reader[res] == k and res != node.inputs[0]:
            return s
    src = graph.t(node.output)
    if tensors is None:  # a check only: any id that is not X's or T's
        return Storage(-1 - k, out)
    tid = len(tensors)
    tensors.append(Tensor(id=tid, name=f"{src.name}#patch{p}", shape=(1, out.h, out.w, src.shape[3]),
                          dtype=src.dtype, quant=src.quant))
    return Storage(tid, out)


# ---------------------------------------------------------------------------------------------
# The cost of a grid without rewriting: MACs from the separable row and column needs


def _axis_needs(graph: Graph, sec: Section, parts: int, axis: int) -> list[dict[int, tuple[int, int]]]:
    """For each of `parts` strips of T along axis 0 (rows) or 1 (columns): every tensor's needed
    interval along that axis (needs are separable: a tile's are its row strip's rows times its
    column strip's columns)."""
    _, th, tw, _ = graph.t(sec.t).shape
    result = []
    for a, b in _cuts(th if axis == 0 else tw, parts):
        tile = Region(a, b, 0, tw) if axis == 0 else Region(0, th, a, b)
        need = needs(graph, sec, tile)
        result.append({t: (r.y0, r.y1) if axis == 0 else (r.x0, r.x1) for t, r in need.items()})
    return result


def grid_macs(graph: Graph, sec: Section, rows: int, cols: int,
              axis_cache: dict | None = None) -> int:
    """The section's MACs patch by patch on a rows x cols grid (recomputed halos included)."""
    cache = axis_cache if axis_cache is not None else {}
    if (0, rows) not in cache:
        cache[(0, rows)] = _axis_needs(graph, sec, rows, 0)
    if (1, cols) not in cache:
        cache[(1, cols)] = _axis_needs(graph, sec, cols, 1)
    rn, cn = cache[(0, rows)], cache[(1, cols)]
    total = 0
    for node in sec.nodes:
        if not node.step.macs:
            continue
        o = node.output
        _, oh, ow, _ = graph.t(o).shape
        hs = sum(n[o][1] - n[o][0] for n in rn)
        ws = sum(n[o][1] - n[o][0] for n in cn)
        total += node.step.macs * hs * ws // (oh * ow)
    return total


def blame(graph: Graph, steps: list[Step], sec: Section, rows: int, cols: int) -> list[tuple[int, float]]:
    """Which windows cause the recomputed halos (MCUNetV2's receptive-field redistribution
    moves them after the patch stage): for each layer whose window is wider than its stride,
    the share of the grid's extra MACs that would go if its window were just its stride (then
    neighbouring outputs read no input in common), largest first."""
    base = grid_macs(graph, sec, rows, cols)
    extra = base - sum(s.macs for s in steps[sec.lo:sec.hi])
    if extra <= 0:
        return []
    result = []
    for k, node in enumerate(sec.nodes):
        if node.kind != WINDOW:
            continue
        w = node.step.layer.window
        if (w.kh, w.kw, w.dh, w.dw) == (w.sh, w.sw, 1, 1):
            continue
        tight = replace(w, kh=w.sh, kw=w.sw, dh=1, dw=1, pad_top=0, pad_left=0)
        node2 = replace(node, step=replace(node.step, layer=node.step.layer.on_window(tight)))
        nodes = sec.nodes[:k] + (node2,) + sec.nodes[k + 1:]
        saved = base - grid_macs(graph, replace(sec, nodes=nodes), rows, cols)
        if saved > 0:
            result.append((node.out_op, min(saved / extra, 1.0)))
    result.sort(key=lambda r: -r[1])
    return result
