"""The arena plan: every activation and scratch buffer gets a constant offset in one static arena.

This is the one source of truth for RAM: codegen emits ``ArenaPlan.arena_bytes`` as
``MCUNET_ARENA_BYTES``, reports print it, and tests check the generated code against it.

Lifetimes are measured in schedule steps. A buffer written by step i and last read by
step j is live over [i, j]; a step's inputs and outputs are therefore never placed on top
of each other. Views (RESHAPE) share their source's buffer. Placement is first-fit by
decreasing size, TinyEngine-style.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, Sequence

ALIGN = 4  # every buffer starts on a 4-byte boundary (int32 scratch, float I/O)


def align(n: int, a: int = ALIGN) -> int:
    return (n + a - 1) // a * a


class PlannedStep(Protocol):
    """What the planner needs from a schedule step (codegen.step.Step satisfies it)."""
    reads: list[int]
    writes: list[int]
    scratch_bytes: int
    view_of: int | None


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


@dataclass
class ArenaPlan:
    buffers: list[Buffer]
    arena_bytes: int
    num_steps: int

    def tensor_offset(self, tid: int) -> int:
        for b in self.buffers:
            if tid in b.tensors:
                return b.offset
        raise KeyError(f"tensor {tid} has no buffer")

    def scratch_offset(self, step: int) -> int:
        for b in self.buffers:
            if b.scratch_of == step:
                return b.offset
        raise KeyError(f"step {step} has no scratch")

    def live_bytes(self, step: int) -> int:
        """Bytes of all buffers live at a step: what any placement must fit at that moment."""
        return sum(align(b.size) for b in self.buffers if b.first <= step <= b.last)

    @property
    def lower_bound(self) -> int:
        """The layer-wise lower bound: no placement can use less than the busiest step."""
        return max((self.live_bytes(i) for i in range(-1, self.num_steps + 1)), default=0)


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


def place_first_fit(buffers: list[Buffer]) -> int:
    """Give each buffer the lowest offset where it collides with no placed buffer that is
    live at the same time; largest first. Returns the arena size."""
    placed: list[Buffer] = []
    for buf in sorted(buffers, key=lambda b: (-b.size, b.first, b.name)):
        busy = sorted((b.offset, b.offset + align(b.size)) for b in placed if b.overlaps_in_time(buf))
        offset = 0
        for start, end in busy:
            if offset + align(buf.size) <= start:
                break
            offset = max(offset, end)
        buf.offset = offset
        placed.append(buf)
    return max((b.offset + align(b.size) for b in buffers), default=0)


def plan_arena(steps: Sequence[PlannedStep], inputs: Sequence[int], outputs: Sequence[int],
               sizes: dict[int, int]) -> ArenaPlan:
    """Plan every activation (sizes: tensor id -> bytes) and scratch buffer of a schedule."""
    buffers = buffers_for(steps, inputs, outputs, sizes)
    arena = place_first_fit(buffers)
    return ArenaPlan(buffers=buffers, arena_bytes=max(arena, ALIGN), num_steps=len(steps))
