"""Operator order. Where the graph branches (ResNet shortcuts, Inception-like blocks) the order
in which branches run changes which tensors are live together, hence the peak. Candidate
orders: the model's own, a greedy one that frees memory as early as it can, and, when the graph
has few of them, every topological order. The planner keeps the order with the smallest arena.
"""
from __future__ import annotations

from typing import Sequence

from .memory import PlannedStep

MAX_ORDERS = 64  # enumerate every topological order only when there are at most this many


def dependencies(steps: Sequence[PlannedStep]) -> list[set[int]]:
    """For each step, the steps that must run before it: every earlier writer of what it
    reads or writes (a patch stage writes its output piece by piece, in order) and every
    earlier reader of what it writes."""
    writers: dict[int, list[int]] = {}
    readers: dict[int, list[int]] = {}
    deps: list[set[int]] = []
    for i, step in enumerate(steps):
        d: set[int] = set()
        for t in step.reads:
            d.update(writers.get(t, []))
        for t in step.writes:
            d.update(writers.get(t, []))
            d.update(readers.get(t, []))
        d.discard(i)
        deps.append(d)
        for t in step.reads:
            readers.setdefault(t, []).append(i)
        for t in step.writes:
            writers.setdefault(t, []).append(i)
    return deps


def _all_orders(deps: list[set[int]], limit: int) -> list[list[int]] | None:
    """Every topological order, or None if there are more than `limit`."""
    n = len(deps)
    orders: list[list[int]] = []
    order: list[int] = []
    done = [False] * n

    def visit() -> bool:
        if len(order) == n:
            orders.append(list(order))
            return len(orders) <= limit
        for i in range(n):
            if not done[i] and all(done[d] for d in deps[i]):
                done[i] = True
                order.append(i)
                ok = visit()
                order.pop()
                done[i] = False
                if not ok:
                    return False
        return True

    return orders if visit() else None


def _greedy(steps: Sequence[PlannedStep], deps: list[set[int]], sizes: dict[int, int]) -> list[int]:
    """Run next the ready step that adds the fewest live bytes (outputs minus inputs it frees)."""
    readers: dict[int, set[int]] = {}
    for i, step in enumerate(steps):
        for t in step.reads:
            readers.setdefault(t, set()).add(i)
    done: set[int] = set()
    order: list[int] = []
    while len(order) < len(steps):
        ready = [i for i in range(len(steps)) if i not in done and deps[i] <= done]

        def growth(i: int) -> tuple[int, int]:
            freed = sum(sizes.get(t, 0) for t in steps[i].reads
                        if readers.get(t, set()) - done <= {i})
            return sum(sizes.get(t, 0) for t in steps[i].writes) - freed, i

        best = min(ready, key=growth)
        done.add(best)
        order.append(best)
    return order


def candidate_orders(steps: Sequence[PlannedStep], sizes: dict[int, int]) -> list[list[int]]:
    """Distinct step orders worth planning, the model's own first."""
    deps = dependencies(steps)
    orders = [list(range(len(steps)))]
    every = _all_orders(deps, MAX_ORDERS)
    orders += every if every is not None else [_greedy(steps, deps, sizes)]
    unique: list[list[int]] = []
    for o in orders:
        if o not in unique:
            unique.append(o)
    return unique
