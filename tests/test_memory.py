"""The arena planner: lifetimes, views, first-fit placement and the lower bound."""
from dataclasses import dataclass, field

import pytest

from mcunet.compiler import compile_model
from mcunet.memory import align, plan_arena

from .conftest import MLPERF, mlperf_model


@dataclass
class FakeStep:
    reads: list
    writes: list
    scratch_bytes: int = 0
    view_of: int | None = None


def assert_no_collisions(plan):
    for a in plan.buffers:
        for b in plan.buffers:
            if a is b or not a.overlaps_in_time(b):
                continue
            assert a.offset + align(a.size) <= b.offset or b.offset + align(b.size) <= a.offset, \
                f"{a.name} and {b.name} are live together and overlap in the arena"


def test_chain_reuses_memory():
    # 0 -> 1 -> 2 -> 3: at most two tensors are live at once.
    steps = [FakeStep([0], [1]), FakeStep([1], [2]), FakeStep([2], [3])]
    sizes = {0: 100, 1: 200, 2: 100, 3: 40}
    plan = plan_arena(steps, [0], [3], sizes)
    assert_no_collisions(plan)
    assert plan.lower_bound == 300
    assert plan.arena_bytes == 300
    assert plan.tensor_offset(0) == plan.tensor_offset(2) or plan.tensor_offset(3) == plan.tensor_offset(1)


def test_residual_keeps_the_skip_tensor_alive():
    # 0 -> 1 -> 2, then add(0, 2) -> 3: tensor 0 lives until step 2.
    steps = [FakeStep([0], [1]), FakeStep([1], [2]), FakeStep([0, 2], [3])]
    sizes = {0: 64, 1: 64, 2: 64, 3: 64}
    plan = plan_arena(steps, [0], [3], sizes)
    assert_no_collisions(plan)
    assert plan.arena_bytes == 192
    assert len({plan.tensor_offset(t) for t in (0, 2, 3)}) == 3


def test_views_share_their_source_and_scratch_is_planned():
    steps = [FakeStep([0], [1], scratch_bytes=10), FakeStep([1], [2], view_of=1), FakeStep([2], [3])]
    plan = plan_arena(steps, [0], [3], {0: 16, 1: 16, 2: 16, 3: 16})
    assert_no_collisions(plan)
    assert plan.tensor_offset(1) == plan.tensor_offset(2)
    assert plan.scratch_offset(0) not in (plan.tensor_offset(0), plan.tensor_offset(1))
    assert plan.arena_bytes == 16 + 16 + 12


@pytest.mark.parametrize("name", MLPERF)
def test_mlperf_plans_are_collision_free_and_above_the_bound(name):
    model = compile_model(mlperf_model(name))
    plan = model.plan
    assert_no_collisions(plan)
    assert plan.lower_bound <= plan.arena_bytes
    for buf in plan.buffers:
        assert buf.offset % 4 == 0 and buf.offset + buf.size <= plan.arena_bytes
    # Every activation has exactly one buffer.
    planned = [t for b in plan.buffers for t in b.tensors]
    assert sorted(planned) == sorted(t.id for t in model.graph.activations())
