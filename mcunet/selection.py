"""How each section of the network runs: layer by layer, patch by patch, or streamed row by row,
chosen by peak memory and by the work each adds (`--patch auto`).

The cuts of the network (mcunet.tiling.cuts: places that one tensor crosses) split it into
segments. A plan is a path from the first cut to the last whose edges are either one segment
run layer by layer or a section of one or more segments run with a grid of patches
(mcunet/patch.py) or streamed (mcunet/stream.py). Each edge is planned (or estimated) on its
own: its arena, and where in it the tensors at its two cuts lie (the bytes below and above
each). Only the tensor at a cut crosses it, so two neighbouring edges share nothing but that
tensor: laid out together they need the larger room below it plus the larger room above it.
The peak of a path is the largest of its edges' arenas and of these joins; the work it adds is
the sum of its edges' extra instructions (mcunet.work: recomputed halos, the set-up of every
extra kernel call, other kernel variants), bounded by max_overhead of the model's layer by
layer.

Estimates: a segment layer by layer is planned alone (quickly); a patch grid is estimated from
its MACs (separable row and column needs, no rewrite) and the footprint of its input with the
output laid over it plus the per-patch buffers of its largest patch; a stream starts at the
lower bound of its largest tensor. Once a best path is found, every estimated edge on it is
planned (rewritten, then planned alone) and the search runs again, until the best path holds
only planned edges.

Without a budget the plan is the path with the smallest peak whose work stays within
max_overhead (the least work among those); with a budget, the path of least work whose peak
fits. The compiler then plans the few best paths in full and keeps the best whole plan.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable

import numpy as np

from .graph import Graph
from .memory import ALIGN, Overlap, plan_arena
from .overlaps import overlap_candidates, stream_overlaps
from .patch import MAX_GRID, PatchSpec, _cuts, columns_fit, grid_macs, patch_section
from .step import Step
from .stream import StreamSpec, stream_section
from .tiling import WINDOW, Cut, NotTileable, Section, cuts, section
from .work import MARGIN, cost, work as steps_work

STREAM_SEGMENTS = 8  # a streamed section spans at most this many segments
PATCH_SEGMENTS = 16  # a patch section spans at most this many segments
GRIDS_PER_SECTION = 8  # patch grids kept per section (on the peak / work frontier)
REFINE_LIMIT = 48  # edges planned in full per search (each is a rewrite and a quick plan)
ALTERNATIVES = 3  # paths the compiler plans in full
HOT_SHARE = 0.25  # sections whose every segment needs less than this share of the largest
# segment's peak layer by layer get no stages (the peak will not be there)


@dataclass
class Edge:
    lo: int  # cut positions
    hi: int
    spec: PatchSpec | StreamSpec | None  # None: layer by layer
    peak: int  # the section's own arena (estimated unless `exact`)
    work: int  # extra work, in MACs
    x_below: int = 0  # bytes of the arena below the input at the first cut
    x_above: int = 0  # bytes from the input's start to the arena's top
    t_below: int = 0  # the same for the output at the second cut
    t_above: int = 0
    exact: bool = True  # planned, rather than estimated
    sec: Section | None = None
    offsets: dict | None = None  # where the plan alone put each tensor (planned edges)
    others: list | None = None  # the planner's other layouts: (arena, offsets) pairs

    def laid_out(self, arena: int, offsets: dict[int, int], x: int, t: int) -> "Edge":
        """This edge with the layout (arena, offsets) of a plan of it alone."""
        return replace(self, peak=arena, x_below=offsets[x], x_above=arena - offsets[x],
                       t_below=offsets[t], t_above=arena - offsets[t], exact=True,
                       offsets=offsets, others=None)


def join(left: Edge, right: Edge) -> int:
    """The room two neighbouring edges need together around the tensor they share."""
    return max(left.t_below, right.x_below) + max(left.t_above, right.x_above)


def _local(graph: Graph, steps: list[Step], inputs: list[int], outputs: list[int],
           extra=(), keep: int | None = None) -> list[tuple[int, dict[int, int]]]:
    """Plan steps alone (quickly): (arena, offset of every tensor below id `keep`) for the
    best layout and for the planner's alternatives (laid out the other way)."""
    used = set(inputs) | set(outputs)
    for step in steps:
        used.update(step.reads, step.writes)
    sizes = {t: graph.t(t).nbytes for t in used if not graph.t(t).is_const}
    plan = plan_arena(steps, inputs, outputs, sizes,
                      overlap_candidates(graph, steps) + list(extra), effort="quick")
    return [(p.arena_bytes, {t: b.offset for b in p.buffers for t in b.tensors
                             if keep is None or t < keep})
            for p in [plan, *plan.alternatives]]


class Planner:
    """The edges of one network and the paths through them."""

    def __init__(self, graph: Graph, steps: list[Step],
                 finish: Callable[[list[Step]], list[Step]], max_overhead: float):
        self.graph, self.steps, self.finish = graph, steps, finish
        self.model_macs = sum(s.macs for s in steps)
        self.layer_steps = finish(list(steps))  # one per step: the kernels layer by layer
        self.base_work = steps_work(self.layer_steps)
        self.allowance = max_overhead * self.base_work
        self.cut_list: list[Cut] = cuts(graph, steps)
        self.positions = [c.position for c in self.cut_list]
        self.tensor_at = {c.position: c.tensor for c in self.cut_list}
        self.edges: list[Edge] = []
        self.head: Edge | None = None  # what runs before the first cut
        self.tail: Edge | None = None  # and after the last
        self.refined = 0

    # ------------------------------------------------------------------ edges
    def _layerwise(self, a: int, b: int, inputs: list[int], outputs: list[int]) -> Edge:
        layouts = _local(self.graph, self.finish(self.steps[a:b]), inputs, outputs)
        arena, offsets = layouts[0]
        edge = Edge(a, b, None, arena, 0, offsets=offsets, others=layouts[1:])
        if a in self.tensor_at:
            edge.x_below, edge.x_above = offsets[self.tensor_at[a]], arena - offsets[self.tensor_at[a]]
        if b in self.tensor_at:
            edge.t_below, edge.t_above = offsets[self.tensor_at[b]], arena - offsets[self.tensor_at[b]]
        return edge

    def build(self) -> None:
        g, steps, pos = self.graph, self.steps, self.positions
        if len(pos) < 2:
            return
        if pos[0] > 0:
            self.head = self._layerwise(0, pos[0], list(g.inputs), [self.tensor_at[pos[0]]])
        if pos[-1] < len(steps):
            self.tail = self._layerwise(pos[-1], len(steps), [self.tensor_at[pos[-1]]],
                                        list(g.outputs))
        for a, b in zip(pos, pos[1:]):
            self.edges.append(self._layerwise(a, b, [self.tensor_at[a]], [self.tensor_at[b]]))
        # Stages only where they can matter: a section with a segment whose layer-by-layer
        # peak is at least HOT_SHARE of the largest.
        peaks = [e.peak for e in self.edges]
        hot = HOT_SHARE * max(peaks)
        for i, a in enumerate(pos):
            for j in range(i + 1, min(len(pos), i + 1 + PATCH_SEGMENTS)):
                if max(peaks[i:j]) < hot:
                    continue
                try:
                    sec = section(g, steps, a, pos[j], self.cut_list)
                except NotTileable as e:
                    if str(e).startswith("op "):
                        break  # a step that cannot be tiled: so are all longer sections
                    continue
                if j - i <= STREAM_SEGMENTS and len(sec.nodes) > 1:
                    self._stream_edge(sec)
                self._patch_edges(sec)

    def _stream_edge(self, sec: Section) -> None:
        g = self.graph
        largest = max(g.t(t).nbytes for t in (sec.x, *(n.output for n in sec.nodes)))
        _, th, _, _ = g.t(sec.t).shape
        # Streamed, each layer pays its calls' set-up once per band it has rows in.
        extra = 0.0
        for n in sec.nodes:
            step = self.layer_steps[n.position]
            if step.kernel is not None:
                oc = g.t(n.output).shape[3]
                extra += cost(step.kernel.name, 0, 0, 0, oc, min(th, g.t(n.output).shape[1]) - 1)
        # Optimistic until planned: no room below either tensor, the largest one's above.
        self.edges.append(Edge(sec.lo, sec.hi, StreamSpec(sec.first_op, sec.last_op), largest,
                               MARGIN * extra, 0, g.t(sec.x).nbytes, 0, g.t(sec.t).nbytes,
                               exact=False, sec=sec))

    def _patch_edges(self, sec: Section) -> None:
        g = self.graph
        _, th, tw, tc = g.t(sec.t).shape
        _, xh, xw, xc = g.t(sec.x).shape
        x_bytes, t_bytes = xh * xw * xc, th * tw * tc
        layer_macs = sum(n.step.macs for n in sec.nodes)
        cache: dict = {}
        own = 0 if sec.x in sec.nodes[-1].inputs else 1
        found = []
        fits = {}
        for rows in range(1, min(MAX_GRID, th) + 1):
            affordable = False
            for cols in range(1, min(MAX_GRID, tw) + 1):
                if rows * cols == 1:
                    continue
                if cols not in fits:
                    fits[cols] = columns_fit(g, sec, cols)
                if not fits[cols]:
                    continue
                grid_macs(g, sec, rows, cols, cache)  # fills the needs cache
                work = self._grid_work(sec, cache[(0, rows)], cache[(1, cols)], rows * cols)
                if work > self.allowance:
                    break  # more columns only add work
                affordable = True
                rn, cn = cache[(0, rows)], cache[(1, cols)]
                # T over X: each tile must end below the first byte of X a later patch reads.
                first_reads, write_ends = [], []
                for (y0, y1), r in zip(_cuts(th, rows), rn):
                    for (x0, x1), c in zip(_cuts(tw, cols), cn):
                        first_reads.append((r[sec.x][0] * xw + c[sec.x][0]) * xc)
                        write_ends.append(((y1 - 1) * tw + x1) * tc)
                n = len(first_reads)
                delta = min(min(first_reads[q + own:] or [x_bytes]) - write_ends[q]
                            for q in range(n)) // ALIGN * ALIGN
                low = min(0, delta)
                footprint = max(x_bytes, delta + t_bytes) - low
                peak = footprint + self._patch_buffers(sec, rn, cn)
                found.append(Edge(sec.lo, sec.hi, PatchSpec(rows, cols, sec.last_op,
                                                             sec.first_op),
                                  peak, work, -low, peak + low, delta - low, peak - delta + low,
                                  exact=False, sec=sec))
            if not affordable and rows > 1:
                break  # more rows only add work
        # The grids no other beats on both peak and work, at most GRIDS_PER_SECTION of them
        # spread over the range of work.
        found.sort(key=lambda e: (e.peak, e.work))
        front = []
        for e in found:
            if not front or e.work < front[-1].work:
                front.append(e)
        if len(front) > GRIDS_PER_SECTION:
            step = (len(front) - 1) / (GRIDS_PER_SECTION - 1)
            front = [front[round(i * step)] for i in range(GRIDS_PER_SECTION)]
        self.edges += front

    def _grid_work(self, sec: Section, rn, cn, patches: int) -> float:
        """The extra instructions of a grid (mcunet.work) from the separable needs, each layer
        with the kernel it has layer by layer (the rewrite may pick another: refine())."""
        g = self.graph
        total = 0.0
        for node in sec.nodes:
            o = node.output
            _, oh, ow, oc = g.t(o).shape
            hs = sum(r[o][1] - r[o][0] for r in rn)
            ws = sum(c[o][1] - c[o][0] for c in cn)
            i = node.inputs[0]
            ins = sum(r[i][1] - r[i][0] for r in rn) * sum(c[i][1] - c[i][0] for c in cn) * \
                g.t(i).shape[3]
            step = self.layer_steps[node.position]
            if step.kernel is not None:
                total += cost(step.kernel.name, node.step.macs * hs * ws / (oh * ow),
                              hs * ws * oc, ins, oc, patches)
        extra = total - steps_work(self.layer_steps[sec.lo:sec.hi])
        return extra * MARGIN if extra > 0 else extra

    def _patch_buffers(self, sec: Section, rn, cn) -> int:
        """The per-patch buffers live at once in the largest patch (no overlaps counted)."""
        g = self.graph
        size = {}
        for node in sec.nodes:
            o = node.output
            if o == sec.t:
                continue
            h = max(r[o][1] - r[o][0] for r in rn)
            w = max(c[o][1] - c[o][0] for c in cn)
            in_place = node.kind == WINDOW and len(node.inputs) == 2 and node.inputs[1] != sec.x
            size[o] = 0 if in_place else (h * w * g.t(o).shape[3] + ALIGN - 1) // ALIGN * ALIGN
        last = {}
        for k, node in enumerate(sec.nodes):
            for t in node.inputs:
                last[t] = k
        live, peak = {}, 0
        for k, node in enumerate(sec.nodes):
            if node.output in size:
                live[node.output] = size[node.output]
            peak = max(peak, sum(live.values()))
            for t in node.inputs:
                if last.get(t) == k:
                    live.pop(t, None)
        return peak

    def refine(self, edge: Edge) -> None:
        """Rewrite the edge's section and plan it alone: its real arena and profile."""
        g = self.graph
        self.refined += 1
        if isinstance(edge.spec, StreamSpec):
            pg, new_steps, stage = stream_section(g, self.steps, edge.sec, edge.spec)
        else:
            pg, new_steps, stage = patch_section(g, self.steps, edge.sec, edge.spec)
        local = self.finish(new_steps[stage.start:stage.end], pg)
        if stage.kind == "stream":
            extra = stream_overlaps(pg, local, 0, len(local), stage.whole, [stage.t])
        else:
            n = len(local)
            extra = [Overlap(stage.x, stage.t, stage.overlap.max_delta, n - 1, 0, "patch")]
        layouts = _local(pg, local, [stage.x], [stage.t], extra, keep=len(g.tensors))
        planned = edge.laid_out(*layouts[0], stage.x, stage.t)
        edge.__dict__.update(planned.__dict__)
        edge.others = layouts[1:]  # per-patch buffers are placed afresh in the whole plan
        extra = steps_work(local) - steps_work(self.layer_steps[edge.lo:edge.hi])
        edge.work = extra * MARGIN if extra > 0 else extra

    # ------------------------------------------------------------------ paths
    def _arrays(self) -> None:
        """The edges as arrays, each planned edge once per layout its plan offers."""
        edges = []
        for e in self.edges:
            edges.append(e)
            for arena, offsets in e.others or []:
                if e.lo in self.tensor_at and e.hi in self.tensor_at:
                    edges.append(e.laid_out(arena, offsets, self.tensor_at[e.lo],
                                            self.tensor_at[e.hi]))
        self._all = edges
        self._lo = np.array([e.lo for e in edges])
        self._hi = np.array([e.hi for e in edges])
        self._peak = np.array([e.peak for e in edges], dtype=np.float64)
        self._work = np.array([e.work for e in edges], dtype=np.float64)
        self._xb = np.array([e.x_below for e in edges], dtype=np.float64)
        self._xa = np.array([e.x_above for e in edges], dtype=np.float64)
        self._tb = np.array([e.t_below for e in edges], dtype=np.float64)
        self._ta = np.array([e.t_above for e in edges], dtype=np.float64)
        self._rigid = np.array([e.spec is not None for e in edges])
        self._by_lo = {p: np.flatnonzero(self._lo == p) for p in self.positions}
        self._by_hi = {p: np.flatnonzero(self._hi == p) for p in self.positions}

    def _joins(self, into: np.ndarray, out: np.ndarray) -> np.ndarray:
        """join() for every pair: 0 between two edges run layer by layer (the planner lays
        consecutive layers out freely)."""
        j = np.maximum(self._tb[into][:, None], self._xb[out][None, :]) + \
            np.maximum(self._ta[into][:, None], self._xa[out][None, :])
        free = ~self._rigid[into][:, None] & ~self._rigid[out][None, :]
        return np.where(free, 0, j)

    def _edge_join(self, left: Edge, k: np.ndarray, left_first: bool) -> np.ndarray:
        """join() of a fixed head or tail edge with the edges k."""
        if left_first:
            j = np.maximum(left.t_below, self._xb[k]) + np.maximum(left.t_above, self._xa[k])
        else:
            j = np.maximum(self._tb[k], left.x_below) + np.maximum(self._ta[k], left.x_above)
        return np.where(self._rigid[k], j, 0)

    def _cheapest(self, limit: float) -> tuple[float, list[Edge]] | None:
        """The path of least work whose edges' arenas and joins are all at most `limit`."""
        pos = self.positions
        n = len(self._all)
        work = np.full(n, np.inf)
        back = np.full(n, -1)
        ok = self._peak <= limit
        first = self._by_lo[pos[0]]
        start_ok = ok[first]
        if self.head is not None:
            start_ok &= self._edge_join(self.head, first, True) <= limit
        work[first[start_ok]] = self._work[first[start_ok]]
        for p in pos[1:-1]:
            into, out = self._by_hi[p], self._by_lo[p]
            if not into.size or not out.size:
                continue
            reach = np.isfinite(work[into])
            if not reach.any():
                continue
            into = into[reach]
            cost = np.where(self._joins(into, out) <= limit, work[into][:, None], np.inf)
            best = cost.argmin(axis=0)
            value = cost[best, np.arange(out.size)]
            good = np.isfinite(value) & ok[out]
            work[out[good]] = value[good] + self._work[out[good]]
            back[out[good]] = into[best[good]]
        ends = self._by_hi[pos[-1]]
        finals = work[ends]
        if self.tail is not None:
            finals = np.where(self._edge_join(self.tail, ends, False) <= limit, finals, np.inf)
        if not ends.size or not np.isfinite(finals).any():
            return None
        k = int(ends[int(np.argmin(finals))])
        total = float(work[k])
        path = []
        while k >= 0:
            path.append(self._all[k])
            k = int(back[k])
        return total, path[::-1]

    def _fixed(self) -> int:
        return max((e.peak for e in (self.head, self.tail) if e is not None), default=0)

    def _limits(self) -> np.ndarray:
        """Every value the peak of a path can take: the edges' arenas and their joins."""
        values = [self._peak, np.array([self._fixed()], dtype=np.float64)]
        for p in self.positions:
            into, out = self._by_hi[p], self._by_lo[p]
            if into.size and out.size:
                values.append(self._joins(into, out).ravel())
        for fixed, k, first in ((self.head, self._by_lo[self.positions[0]], True),
                                (self.tail, self._by_hi[self.positions[-1]], False)):
            if fixed is not None and k.size:
                values.append(self._edge_join(fixed, k, first))
        return np.unique(np.concatenate(values))

    def smallest(self) -> list[Edge] | None:
        """The path with the smallest peak whose work fits the allowance (least work among
        them): bisection over the values a path's peak can take."""
        self._arrays()
        limits = self._limits()
        found = self._cheapest(limits[-1])
        if found is None or found[0] > self.allowance:
            return None
        lo, hi = 0, len(limits) - 1
        while lo < hi:
            mid = (lo + hi) // 2
            r = self._cheapest(limits[mid])
            if r is not None and r[0] <= self.allowance:
                hi, found = mid, r
            else:
                lo = mid + 1
        return found[1]

    def fastest(self, budget: int) -> list[Edge] | None:
        self._arrays()
        r = self._cheapest(budget)
        return r[1] if r is not None and r[0] <= self.allowance else None

    def resolve(self, pick: Callable[[], list[Edge] | None]) -> list[Edge] | None:
        """Pick a path, planning the estimated edges it uses, until it uses none (or the
        refinement limit is reached)."""
        while True:
            path = pick()
            if path is None:
                return None
            rough = [e for e in path if not e.exact]
            if not rough or self.refined >= REFINE_LIMIT:
                return path
            for e in rough:
                try:
                    self.refine(e)
                except NotTileable:
                    self.edges.remove(e)


def _specs(path: list[Edge]) -> tuple:
    return tuple(e.spec for e in path if e.spec is not None)


def stitch(planner: Planner, path: list[Edge]) -> dict[int, int] | None:
    """Where the streamed sections of a path put their tensors when planned alone: the
    planner's heuristics lay out one tensor over another well, but not a dozen tensors that
    each slide over the others row by row. Consecutive streams are joined at their cut (each
    shifted so the tensor there lies where the previous plan put it; nothing else crosses a
    cut, so the pieces cannot collide), each in the layout of its plan that keeps the group
    lowest; groups apart from each other are never live together and each starts at 0."""
    hints: dict[int, int] = {}
    group: dict[int, int] = {}
    low = high = 0
    prev = None
    for e in [*path, None]:
        if e is None or not isinstance(e.spec, StreamSpec) or e.offsets is None:
            if group:
                base = min(group.values())
                hints.update((t, off - base) for t, off in group.items())
            group, prev = {}, None
            continue
        best = None
        for arena, way in [(e.peak, e.offsets), *(e.others or [])]:
            c = planner.tensor_at[e.lo]
            shift = 0 if prev is None else group[c] - way[c]
            lo, hi = min(low, shift), max(high, shift + arena)
            if best is None or hi - lo < best[0]:
                best = (hi - lo, shift, way, lo, hi)
        _, shift, way, lo, hi = best
        if prev is None:
            low, high = lo, hi
        else:
            low, high = min(low, lo), max(high, hi)
        group.update((t, off + shift) for t, off in way.items())
        prev = e
    return hints or None


def choose_regions(graph: Graph, steps: list[Step], finish: Callable[[list[Step]], list[Step]],
                   max_overhead: float, sram_budget: int | None = None) -> list[tuple]:
    """Candidate plans for `--patch auto`, best first: (specs, hints) pairs, the specs
    (patch and stream) for mcunet.compiler.apply_regions and the layout stitched from the
    sections' own plans for the planner to start from."""
    planner = Planner(graph, steps, finish, max_overhead)
    planner.build()
    if not planner.edges:
        return []
    result: list[tuple] = []

    def add(path):
        if path is not None and all(_specs(path) != r[0] for r in result):
            result.append((_specs(path), stitch(planner, path)))

    if sram_budget is not None:
        add(planner.resolve(lambda: planner.fastest(sram_budget)))
    best = planner.resolve(planner.smallest)
    add(best)
    # Hedges against the estimates: the best paths without the previous one's largest edge.
    for _ in range(ALTERNATIVES - 1):
        if best is None:
            break
        worst = max(best, key=lambda e: e.peak)
        if worst.spec is None:
            break
        planner.edges = [e for e in planner.edges if e.spec != worst.spec or e.lo != worst.lo]
        best = planner.resolve(planner.smallest)
        add(best)
    return result
