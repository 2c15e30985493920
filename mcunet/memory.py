"""The arena plan: every activation and scratch buffer gets a constant offset in one static arena.

This is the one source of truth for RAM: codegen emits ``ArenaPlan.arena_bytes`` as
``MCUNET_ARENA_BYTES``, reports print it, and tests check the generated code against it.

Lifetimes are measured in schedule steps. A buffer written by step i and last read by step j
is live over [i, j]. Two buffers live at the same time never share a byte, with one
exception, the *overlap*: a step's output may be placed over the input it consumes for the
last time, at an offset that the step's data flow makes safe (see ``window_max_delta``). A
pointwise conv then needs its output plus one pixel, a 3x3 depthwise its input plus a row, an
elementwise ADD nothing more than its output. An overlap is a permission, not a tie: the
output may also go anywhere that collides with nothing.

The interface is narrow, as TF Lite Micro's micro_memory_planner.h: buffers with lifetimes
(and the overlaps allowed between them) in, offsets and a total out (``plan_buffers``;
``plan_arena`` derives the buffers from a schedule). Each placement strategy is a named
object (``FitPlacement``: an order, a direction, best or first fit, like TinyEngine's
first-fit allocator); the planner tries several (largest first, longest-lived first,
earliest first, latest first, and every order for small graphs), each with and without
overlaps, and keeps the smallest arena. ``verify`` checks any plan independently.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Protocol, Sequence

import numpy as np

ALIGN = 4  # every buffer starts on a 4-byte boundary (int32 scratch, float I/O)
EXHAUSTIVE_BUFFERS = 7  # up to this many buffers, every placement order is tried (7! = 5040)
COMPACTED = 4  # the best placements that are then compacted
# A full plan's work: where overlaps are allowed, the same strategies without them are also
# tried for graphs of up to this many buffers only (it halves the work of a large plan). On
# the benchmark corpus and the depth-scaled networks of scripts/bench_plan.py no layout
# without overlaps beats one with them above 21 buffers.
NO_OVERLAP_BUFFERS = 64


def align(n: int, a: int = ALIGN) -> int:
    return (n + a - 1) // a * a


class PlannedStep(Protocol):
    """What the planner needs from a schedule step (codegen.step.Step satisfies it)."""
    reads: list[int]
    writes: list[int]
    scratch_bytes: int
    view_of: int | None


@dataclass(frozen=True)
class Overlap:
    """Tensor `dst` may be placed at offset(src) + delta for any delta <= max_delta, provided
    src is last read by step `src_last` (or earlier) and dst first written at `dst_first` (or
    later). A step overlapping its own input has src_last == dst_first == its index."""
    src: int
    dst: int
    max_delta: int
    src_last: int
    dst_first: int
    kind: str = "alias"  # "alias" (output over input at an offset), "in-place", "patch"
    exact: bool = False  # only delta == max_delta is safe (an in-place depthwise)


@dataclass
class Buffer:
    name: str
    size: int
    first: int  # first step at which the bytes are live
    last: int  # last step at which they are live
    tensors: list[int] = field(default_factory=list)  # tensor ids stored here (views share)
    scratch_of: int | None = None  # the step index, for scratch buffers
    offset: int = -1

    def overlaps_in_time(self, other: "Buffer") -> bool:
        return self.first <= other.last and other.first <= self.last

    @property
    def end(self) -> int:
        return self.offset + align(self.size)


@dataclass
class ArenaPlan:
    buffers: list[Buffer]
    arena_bytes: int
    num_steps: int
    overlaps: list[tuple[Overlap, int]] = field(default_factory=list)  # used, with the delta
    strategy: str = "first-fit"

    def _buffer_of(self, tid: int) -> Buffer:
        for b in self.buffers:
            if tid in b.tensors:
                return b
        raise KeyError(f"tensor {tid} has no buffer")

    def tensor_offset(self, tid: int) -> int:
        return self._buffer_of(tid).offset

    def tensor_span(self, tid: int) -> tuple[int, int]:
        """[start, end) of the bytes holding tensor tid (its buffer, which views share)."""
        b = self._buffer_of(tid)
        return b.offset, b.end

    def _scratch_of(self, step: int) -> Buffer:
        for b in self.buffers:
            if b.scratch_of == step:
                return b
        raise KeyError(f"step {step} has no scratch")

    def scratch_offset(self, step: int) -> int:
        return self._scratch_of(step).offset

    def scratch_span(self, step: int) -> tuple[int, int]:
        b = self._scratch_of(step)
        return b.offset, b.end

    def live_bytes(self, step: int) -> int:
        """Bytes of the arena in use at a step (overlapping buffers counted once)."""
        spans = sorted((b.offset, b.end) for b in self.buffers if b.first <= step <= b.last)
        total, reach = 0, 0
        for start, end in spans:
            if end > reach:
                total += end - max(start, reach)
                reach = end
        return total

    def overlap_kind(self, tid: int) -> str | None:
        """How tensor tid shares bytes with the input it was computed from, if it does."""
        for ov, _ in self.overlaps:
            if ov.dst == tid:
                return ov.kind
        return None

    lower_bound: int = 0  # the layer-wise lower bound (layerwise_bound; full-effort plans)
    # Other valid layouts the planner found (a larger arena, laid out differently): what a
    # caller joining plans of pieces of a network may pick from.
    alternatives: list = field(default_factory=list)


# ---------------------------------------------------------------------------------------------
# Overlap arithmetic


def window_max_delta(ih: int, iw: int, ic: int, oh: int, ow: int, oc: int, kh: int = 1,
                     kw: int = 1, sh: int = 1, sw: int = 1, pad_top: int = 0, pad_left: int = 0,
                     block: int = 1) -> int:
    """The largest byte offset of an int8 output relative to its int8 input (both dense,
    HWC) at which a windowed kernel never overwrites an input byte it will read again.

    Contract of the kernels (codegen.step.STREAM_DEFAULTS): output pixels are produced in
    raster order, `block` at a time; while writing pixel n, a kernel reads no input below the
    first byte of the window of any pixel in n's block or later. Window origins are clamped
    to the tensor: padding is never read.
    """
    n = np.arange(oh * ow)
    oy, ox = np.divmod(n, ow)
    first = (np.maximum(oy * sh - pad_top, 0) * iw + np.maximum(ox * sw - pad_left, 0)) * ic
    first = np.minimum(first, ih * iw * ic)
    # Lowest input byte still to be read from pixel m on: origins are not monotone at the
    # borders (clamping), so take the minimum over all later pixels.
    needed_from = np.minimum.accumulate(first[::-1])[::-1]
    group_start = (n // block) * block
    write_end = (n + 1) * oc
    return int(np.min(needed_from[group_start] - write_end))


def elementwise_max_delta() -> int:
    """An elementwise kernel reads element i before it writes element i: in place is safe."""
    return 0


# ---------------------------------------------------------------------------------------------
# Lifetimes


def buffers_for(steps: Sequence[PlannedStep], inputs: Sequence[int], outputs: Sequence[int],
                sizes: dict[int, int]) -> list[Buffer]:
    """Group tensors into buffers (views join their source) and give each a lifetime."""
    root: dict[int, int] = {}

    def find(t: int) -> int:
        while root.get(t, t) != t:
            t = root[t]
        return t

    for step in steps:
        if step.view_of is not None:
            for w in step.writes or []:
                root[find(w)] = find(step.view_of)
    first: dict[int, int] = {}
    last: dict[int, int] = {}

    def touch(t: int, i: int) -> None:
        r = find(t)
        first[r] = min(first.get(r, i), i)
        last[r] = max(last.get(r, i), i)

    n = len(steps)
    for t in inputs:
        touch(t, -1)  # written by the caller before the first step
    for i, step in enumerate(steps):
        for t in list(step.reads) + list(step.writes):
            touch(t, i)
    for t in outputs:
        touch(t, n)  # read by the caller after the last step
    members: dict[int, list[int]] = {}
    for t in sizes:
        members.setdefault(find(t), []).append(t)
    buffers = [Buffer(name=f"t{r}", size=max(sizes[m] for m in ms), first=first[r], last=last[r],
                      tensors=sorted(ms))
               for r, ms in members.items() if r in first]
    for i, step in enumerate(steps):
        if step.scratch_bytes:
            buffers.append(Buffer(name=f"scratch{i}", size=step.scratch_bytes, first=i, last=i,
                                  scratch_of=i))
    return buffers


# ---------------------------------------------------------------------------------------------
# Placement


def _permissions(buffers: list[Buffer], overlaps: Sequence[Overlap]) -> dict[tuple[str, str], Overlap]:
    """The overlaps that are legal for these lifetimes, keyed by (source, destination) buffer."""
    by_tensor = {t: b for b in buffers for t in b.tensors}
    allowed = {}
    for ov in overlaps:
        src, dst = by_tensor.get(ov.src), by_tensor.get(ov.dst)
        if src is None or dst is None or src is dst:
            continue
        if src.last > ov.src_last or dst.first < ov.dst_first:
            continue  # the source is still needed later, or the destination lives earlier
        key = (src.name, dst.name)
        if key not in allowed or ov.max_delta > allowed[key].max_delta:
            allowed[key] = ov
    return allowed


def _delta(src: Buffer, dst: Buffer, src_off: int, dst_off: int, mirrored: bool) -> int:
    """dst's offset minus src's in the real arena (a mirrored placement counts offsets down
    from the top: the real offset is arena - offset - size)."""
    if mirrored:
        return (src_off + align(src.size)) - (dst_off + align(dst.size))
    return dst_off - src_off


def _fits(buf: Buffer, offset: int, live: list[Buffer],
          allowed: dict[tuple[str, str], Overlap], mirrored: bool) -> bool:
    """Whether buf fits at offset beside the placed buffers `live`, each live at some step
    while buf is (the callers pass _concurrent's lists: the innermost loop of planning)."""
    end = offset + align(buf.size)
    for p in live:
        p_offset = p.offset
        if end <= p_offset or p_offset + align(p.size) <= offset:
            continue
        ov = allowed.get((p.name, buf.name))  # buf is the output, over its input p
        if ov is not None and _safe(ov, _delta(p, buf, p.offset, offset, mirrored)):
            continue
        ov = allowed.get((buf.name, p.name))  # buf is the input, under its output p
        if ov is not None and _safe(ov, _delta(buf, p, offset, p.offset, mirrored)):
            continue
        return False
    return True


def _concurrent(buffers: Sequence[Buffer]) -> dict[str, list[Buffer]]:
    """For each buffer, the others live at some step while it is (one comparison of every
    pair at once: planning asks this of a few hundred buffers many times)."""
    first = np.array([b.first for b in buffers])
    last = np.array([b.last for b in buffers])
    live = (first[:, None] <= last[None, :]) & (last[:, None] >= first[None, :])
    np.fill_diagonal(live, False)
    rows, cols = np.nonzero(live)  # row-major: each buffer's partners in order
    groups = np.split(cols, np.cumsum(np.bincount(rows, minlength=len(buffers)))[:-1])
    return {b.name: [buffers[j] for j in g.tolist()] for b, g in zip(buffers, groups)}


def _safe(ov: Overlap, delta: int) -> bool:
    return delta == ov.max_delta if ov.exact else delta <= ov.max_delta


def _place(order: Sequence[Buffer], allowed: dict[tuple[str, str], Overlap],
           mirrored: bool = False, best_fit: bool = True,
           pinned: dict[str, int] | None = None,
           concurrent: dict[str, list[Buffer]] | None = None) -> int:
    """Best fit: each buffer where it collides with no placed buffer live at the same time
    (except where an overlap allows it) and widens the arena least, lowest first. Offsets may
    go below zero while placing (an output that must sit a few bytes under its input); they
    are shifted up at the end. First fit (best_fit False): the lowest offset from zero up. Mirrored, offsets count from the top of the arena (outputs
    then settle above their inputs instead of below). Returns the arena size."""
    placed: list[Buffer] = []
    done: set[str] = set()
    concurrent = concurrent if concurrent is not None else _concurrent(order)
    low, high = 0, 0
    for buf in order:
        live = [p for p in concurrent[buf.name] if p.name in done]
        buf.offset = _next_offset(buf, live, low, high, allowed, mirrored, best_fit, pinned)
        low, high = min(low, buf.offset), max(high, buf.end)
        placed.append(buf)
        done.add(buf.name)
    for b in placed:
        b.offset = (high - b.end) if mirrored else (b.offset - low)
    return high - low


def _next_offset(buf: Buffer, live: list[Buffer], low: int, high: int,
                 allowed: dict[tuple[str, str], Overlap], mirrored: bool, best_fit: bool,
                 pinned: dict[str, int] | None) -> int:
    """Where _place puts buf, with the buffers `live` (those placed, live while buf is)
    already spanning low..high."""
    size = align(buf.size)
    candidates = {low, high - size}
    name = buf.name
    for p in live:
        p_offset = p.offset
        p_end = p_offset + align(p.size)
        candidates.add(p_end)
        candidates.add(p_offset - size)
        if allowed:
            for key, sign in (((p.name, name), 1), ((name, p.name), -1)):
                if key in allowed:  # the offsets where the allowed overlap just holds
                    d = allowed[key].max_delta // ALIGN * ALIGN
                    candidates.add(p_end - size - sign * d if mirrored else p_offset + sign * d)
    if not best_fit:
        candidates = {c for c in candidates if c >= 0} | {0}
    if pinned and buf.name in pinned and _fits(buf, pinned[buf.name], live, allowed, mirrored):
        candidates = {pinned[buf.name]}
    # The best candidate that fits: rank them all (cheap), then test in rank order
    # (each test is a pass over the live buffers) and stop at the first that fits.
    ranked = sorted((max(high, c + size) - min(low, c) if best_fit else 0, abs(c - low), c)
                    for c in candidates)
    return next(c for _, _, c in ranked if _fits(buf, c, live, allowed, mirrored))


def _place_every_order(buffers: list[Buffer], allowed: dict[tuple[str, str], Overlap],
                       mirrored: bool, best_fit: bool,
                       concurrent: dict[str, list[Buffer]]) -> list[tuple[tuple[int, ...], int, dict[str, int]]]:
    """What _place gives for every order of the buffers, without placing each order anew:
    (the order as indices into `buffers`, arena, offsets), one per distinct layout, each from
    the first order (in itertools.permutations' order) that gives it. _place's next offset
    depends only on which buffers are placed where, so orders that reach the same partial
    layout go on identically: a depth-first walk over the orders (in that same order) visits
    each partial layout once. The buffers' offsets are left changed."""
    index = {b.name: i for i, b in enumerate(buffers)}
    seen: set[frozenset] = set()
    layouts: set[tuple[int, ...]] = set()
    found = []
    path: list[int] = []

    def walk(low: int, high: int) -> None:
        if len(path) == len(buffers):
            offsets = {b.name: (high - b.end) if mirrored else (b.offset - low) for b in buffers}
            key = tuple(offsets[b.name] for b in buffers)
            if key not in layouts:
                layouts.add(key)
                found.append((tuple(path), high - low, offsets))
            return
        placed = set(path)
        for i, buf in enumerate(buffers):
            if i in placed:
                continue
            live = [p for p in concurrent[buf.name] if index[p.name] in placed]
            buf.offset = _next_offset(buf, live, low, high, allowed, mirrored, best_fit, None)
            state = frozenset([(j, buffers[j].offset) for j in path] + [(i, buf.offset)])
            if state in seen:
                continue
            seen.add(state)
            path.append(i)
            walk(min(low, buf.offset), max(high, buf.end))
            path.pop()

    walk(0, 0)
    return found


def _compact(buffers: list[Buffer], allowed: dict[tuple[str, str], Overlap],
             passes: int = 8) -> int:
    """Gravity: move each buffer, lowest first, down to the lowest offset where it still fits,
    until nothing moves. A buffer pinned high by a chain of overlaps often only needs a
    neighbour moved first: repeated passes let the chain settle. Returns the arena size."""
    concurrent = _concurrent(buffers)
    # Only a buffer whose neighbours moved can move in the next pass (its candidates and its
    # fit depend on nothing else): the others are skipped, with the same outcome.
    dirty = {b.name for b in buffers}
    for _ in range(passes):
        moved = set()
        for buf in sorted(buffers, key=lambda b: (b.offset, b.name)):
            if buf.name not in dirty:
                continue
            live = concurrent[buf.name]
            candidates = {0}
            for p in live:
                candidates.add(p.end)
                for key, sign in (((p.name, buf.name), 1), ((buf.name, p.name), -1)):
                    if key in allowed:
                        candidates.add(p.offset + sign * (allowed[key].max_delta // ALIGN * ALIGN))
            for c in sorted(c for c in candidates if 0 <= c < buf.offset):
                if _fits(buf, c, live, allowed, False):
                    buf.offset = c
                    moved.add(buf.name)
                    break
        if not moved:
            break
        dirty = moved | {p.name for name in moved for p in concurrent[name]}
    return max((b.end for b in buffers), default=0)


ORDERS = {
    "largest-first": lambda b: (-align(b.size), b.first, b.name),
    "longest-first": lambda b: (-(b.last - b.first), -b.size, b.name),
    "earliest-first": lambda b: (b.first, -b.size, b.name),
    "latest-first": lambda b: (-b.last, -b.size, b.name),
}


@dataclass(frozen=True)
class FitPlacement:
    """A placement strategy: the buffers in one order (ORDERS), each put where it collides
    with nothing placed (best fit: where it widens the arena least; first fit: lowest offset),
    offsets counted up from the bottom or, when mirrored, down from the top. (Every order of a
    small graph is placed by _place_every_order; its results are named as order
    "exhaustive".)"""
    order: str
    mirrored: bool = False
    best_fit: bool = True
    # For order "given": offsets to put buffers at (where they fit), the others placed after.
    given: tuple[tuple[str, int], ...] | None = None

    @property
    def name(self) -> str:
        return ", ".join([self.order] + ["mirrored"] * self.mirrored
                         + ["first fit"] * (not self.best_fit))

    def place(self, buffers: list[Buffer], allowed: dict[tuple[str, str], Overlap],
              concurrent: dict[str, list[Buffer]] | None = None) -> int:
        """Set every buffer's offset; returns the arena size. concurrent: _concurrent(buffers),
        where the caller places the same buffers several times."""
        pinned = dict(self.given) if self.given is not None else None
        if pinned is not None:
            order = sorted(buffers, key=lambda b: (b.name not in pinned, pinned.get(b.name, 0),
                                                   ORDERS["largest-first"](b)))
        else:
            order = sorted(buffers, key=ORDERS[self.order])
        return _place(order, allowed, self.mirrored, self.best_fit, pinned, concurrent)


def every_order(buffers: list[Buffer], effort: str) -> bool:
    """Whether plan_buffers places every order of the buffers (_every_order_results): effort
    "full" on a graph of up to EXHAUSTIVE_BUFFERS buffers."""
    return effort == "full" and len(buffers) <= EXHAUSTIVE_BUFFERS


def strategies(buffers: list[Buffer], effort: str) -> list[FitPlacement]:
    """The named placements tried: effort "full": every order of ORDERS, both directions, best
    and first fit (none where every_order holds: ORDERS' orders are among every order);
    "quick": largest first, both directions."""
    if every_order(buffers, effort):
        return []
    orders = ORDERS if effort == "full" else ["largest-first"]
    fits = (True, False) if effort == "full" else (True,)
    return [FitPlacement(name, mirrored, best_fit)
            for name, mirrored, best_fit in itertools.product(orders, (False, True), fits)]


def _every_order_results(buffers: list[Buffer], allowed: dict[tuple[str, str], Overlap],
                         label: str, concurrent: dict[str, list[Buffer]]) -> list[tuple]:
    """plan_buffers' results for every order of the buffers, both directions, best and first
    fit: permutation-major, as placing them one by one in that order would give, less the
    repeats of a layout within one direction and fit (_place_every_order)."""
    combos = [(mirrored, best_fit) for mirrored in (False, True) for best_fit in (True, False)]
    ranked = []
    for c, (mirrored, best_fit) in enumerate(combos):
        name = FitPlacement("exhaustive", mirrored, best_fit).name
        for order, arena, offsets in _place_every_order(buffers, allowed, mirrored, best_fit,
                                                        concurrent):
            ranked.append((order, c, arena, f"{name}, {label}", offsets))
    ranked.sort(key=lambda r: (r[0], r[1]))  # permutation-major
    results = []
    for _, _, arena, how, offsets in ranked:
        placed = [Buffer(**{**vars(b), "offset": offsets[b.name]}) for b in buffers]
        results.append((arena, how, placed, allowed))
    return results


def _used_overlaps(buffers: list[Buffer], allowed: dict[tuple[str, str], Overlap]):
    by_name = {b.name: b for b in buffers}
    used = []
    for (s, d), ov in allowed.items():
        src, dst = by_name[s], by_name[d]
        if src.offset < dst.end and dst.offset < src.end:
            used.append((ov, dst.offset - src.offset))
    return used


def _pair_footprint(src: int, dst: int, max_delta: int) -> int:
    """The fewest bytes an input and the output allowed over it can occupy together."""
    if max_delta >= 0:
        return max(src, dst)
    d = max_delta // ALIGN * ALIGN
    return max(src - d, dst)


def layerwise_bound(buffers: list[Buffer], allowed: dict[tuple[str, str], Overlap],
                    num_steps: int) -> int:
    """No placement can use less than the busiest step: the sum of what is live there, less
    what the allowed overlaps between live buffers can save at best. Buffers that a streamed
    section lays over one another (overlaps of kind "stream") count together as their largest."""
    by_name = {b.name: b for b in buffers}
    streamed = [(s, d) for (s, d), ov in allowed.items() if ov.kind == "stream"]
    bound = 0
    for i in range(-1, num_steps + 1):
        live = {b.name for b in buffers if b.first <= i <= b.last}
        group = {n: n for n in live}

        def find(n: str) -> str:
            while group[n] != n:
                n = group[n]
            return n

        for s, d in streamed:
            if s in live and d in live:
                group[find(s)] = find(d)
        largest: dict[str, int] = {}
        for n in live:
            r = find(n)
            largest[r] = max(largest.get(r, 0), align(by_name[n].size))
        total = sum(largest.values())
        savings = []
        for (s, d), ov in allowed.items():
            if s in live and d in live and ov.kind != "stream":
                a, b = align(by_name[s].size), align(by_name[d].size)
                savings.append((a + b - _pair_footprint(a, b, ov.max_delta), s, d))
        used: set[str] = set()
        for saving, s, d in sorted(savings, reverse=True):
            if s not in used and d not in used:
                total -= saving
                used.update((s, d))
        bound = max(bound, total)
    return bound


def plan_arena(steps: Sequence[PlannedStep], inputs: Sequence[int], outputs: Sequence[int],
               sizes: dict[int, int], overlaps: Sequence[Overlap] = (),
               effort: str = "full", hints: dict[int, int] | None = None) -> ArenaPlan:
    """Plan every activation (sizes: tensor id -> bytes) and scratch buffer of a schedule.
    hints: offsets (tensor id -> bytes) one more placement starts from, where they fit."""
    buffers = buffers_for(steps, inputs, outputs, sizes)
    given = None
    if hints:
        by_tensor = {t: b.name for b in buffers for t in b.tensors}
        given = {by_tensor[t]: off for t, off in hints.items() if t in by_tensor}
    return plan_buffers(buffers, len(steps), overlaps, effort, given)


def plan_buffers(buffers: list[Buffer], num_steps: int, overlaps: Sequence[Overlap] = (),
                 effort: str = "full", given: dict[str, int] | None = None) -> ArenaPlan:
    """The planner's interface: buffers with lifetimes (and the overlaps allowed between
    them) in, offsets and a total out. The smallest arena over the placement strategies,
    each with and without overlaps (effort "full"; without only up to NO_OVERLAP_BUFFERS
    buffers; "quick" compares many candidate schedules); the best few are then compacted
    under gravity."""
    results = []
    allowed_all = _permissions(buffers, overlaps)
    variants = [("overlaps", allowed_all)] if allowed_all else []
    if not allowed_all or (effort == "full" and len(buffers) <= NO_OVERLAP_BUFFERS):
        variants.append(("no overlaps", {}))
    tried = strategies(buffers, effort)
    if given:  # a layout made elsewhere (sections planned alone, then joined at their cuts)
        tried.append(FitPlacement("given", given=tuple(sorted(given.items()))))
    concurrent = _concurrent(buffers)
    for label, allowed in variants:
        if every_order(buffers, effort):
            results += _every_order_results(buffers, allowed, label, concurrent)
        for strategy in tried:
            arena = strategy.place(buffers, allowed, concurrent)
            results.append((arena, f"{strategy.name}, {label}", [Buffer(**vars(b)) for b in buffers],
                            allowed))
    results.sort(key=lambda r: r[0])
    chosen = results[:COMPACTED if effort == "full" else 1]
    # Also the best layout of the other direction (as an alternative), and a given one.
    chosen += [r for r in results if r[1].startswith("given") and r not in chosen][:1]
    chosen += [r for r in results if ("mirrored" in r[1]) != ("mirrored" in chosen[0][1])][:1]
    plans = []
    for arena, how, placed, allowed in chosen:
        compacted = _compact(placed, allowed)
        if compacted < arena:
            arena, how = compacted, how + ", compacted"
        plans.append(ArenaPlan(buffers=placed, arena_bytes=max(arena, ALIGN), num_steps=num_steps,
                               overlaps=_used_overlaps(placed, allowed), strategy=how))
    plans.sort(key=lambda p: p.arena_bytes)
    best = plans[0]
    best.alternatives = plans[1:]
    if effort == "full":  # quick plans are only ranked against each other
        best.lower_bound = layerwise_bound(buffers, allowed_all, num_steps)
    return best


class PlanError(AssertionError):
    """A plan that breaks the planner's own rules: a bug in mcunet, never the user's input."""


def verify(plan: ArenaPlan) -> None:
    """Raise PlanError unless every buffer lies aligned inside the arena and no two buffers
    live at the same time share a byte, other than an overlap the plan chose, placed within
    its safe delta."""
    allowed = {}
    for ov, _ in plan.overlaps:
        src, dst = plan._buffer_of(ov.src), plan._buffer_of(ov.dst)
        allowed[(src.name, dst.name)] = ov
    for a in plan.buffers:
        if a.offset < 0 or a.offset % ALIGN or a.end > plan.arena_bytes:
            raise PlanError(f"buffer {a.name} at {a.offset}..{a.end} is not an aligned part of "
                            f"the {plan.arena_bytes}-byte arena")
    for a, b in itertools.combinations(plan.buffers, 2):
        if not a.overlaps_in_time(b) or a.end <= b.offset or b.end <= a.offset:
            continue
        ov = allowed.get((a.name, b.name)) or allowed.get((b.name, a.name))
        if ov is None:
            raise PlanError(f"{a.name} and {b.name} share bytes while both are live")
        src, dst = (a, b) if (a.name, b.name) in allowed else (b, a)
        if not _safe(ov, dst.offset - src.offset):
            raise PlanError(f"{dst.name} lies over {src.name} at an unsafe offset")
