"""The arena planner: lifetimes, views, overlaps (outputs over the inputs they consume), the
placement strategies, operator order and the layer-wise lower bound."""
import itertools
from dataclasses import dataclass

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from mcunet.compiler import compile_model
from mcunet.memory import (ORDERS, Overlap, _concurrent, _permissions, _place, _place_every_order, align, buffers_for, plan_arena,
                           verify, window_max_delta)
from mcunet.schedule import candidate_orders

from .conftest import MLPERF, mlperf_model


@dataclass
class FakeStep:
    reads: list
    writes: list
    scratch_bytes: int = 0
    view_of: int | None = None


def test_chain_reuses_memory():
    # 0 -> 1 -> 2 -> 3: at most two tensors are live at once.
    steps = [FakeStep([0], [1]), FakeStep([1], [2]), FakeStep([2], [3])]
    sizes = {0: 100, 1: 200, 2: 100, 3: 40}
    plan = plan_arena(steps, [0], [3], sizes)
    verify(plan)
    assert plan.lower_bound == 300
    assert plan.arena_bytes == 300


def test_residual_keeps_the_skip_tensor_alive():
    # 0 -> 1 -> 2, then add(0, 2) -> 3: tensor 0 lives until step 2.
    steps = [FakeStep([0], [1]), FakeStep([1], [2]), FakeStep([0, 2], [3])]
    sizes = {0: 64, 1: 64, 2: 64, 3: 64}
    plan = plan_arena(steps, [0], [3], sizes)
    verify(plan)
    assert plan.arena_bytes == 192
    assert len({plan.tensor_offset(t) for t in (0, 2, 3)}) == 3


def test_in_place_add_shares_its_operand():
    steps = [FakeStep([0], [1]), FakeStep([1], [2]), FakeStep([0, 2], [3])]
    sizes = {0: 64, 1: 16, 2: 64, 3: 64}
    overlaps = [Overlap(0, 3, 0, 2, 2, "in-place"), Overlap(2, 3, 0, 2, 2, "in-place")]
    assert plan_arena(steps, [0], [3], sizes).arena_bytes == 192  # the sum beside both
    plan = plan_arena(steps, [0], [3], sizes, overlaps)
    verify(plan)
    assert plan.arena_bytes == 144  # step 1 is now the busiest: 64 + 16 + 64
    assert plan.tensor_offset(3) in (plan.tensor_offset(0), plan.tensor_offset(2))
    assert plan.overlaps and plan.overlaps[0][0].kind == "in-place"


def test_views_share_their_source_and_scratch_is_planned():
    steps = [FakeStep([0], [1], scratch_bytes=10), FakeStep([1], [2], view_of=1), FakeStep([2], [3])]
    plan = plan_arena(steps, [0], [3], {0: 16, 1: 16, 2: 16, 3: 16})
    verify(plan)
    assert plan.tensor_offset(1) == plan.tensor_offset(2)
    assert plan.scratch_offset(0) not in (plan.tensor_offset(0), plan.tensor_offset(1))
    assert plan.arena_bytes == 16 + 16 + 12


def test_an_overlap_is_refused_while_the_input_is_still_needed():
    # Step 0 may write 1 over 0, but 0 is read again by step 1: no overlap.
    steps = [FakeStep([0], [1]), FakeStep([0, 1], [2])]
    plan = plan_arena(steps, [0], [2], {0: 64, 1: 64, 2: 64}, [Overlap(0, 1, -4, 0, 0)])
    verify(plan)
    assert not plan.overlaps
    assert plan.arena_bytes == 192  # step 1 reads 0 and 1 and writes 2


# ---------------------------------------------------------------------------------------------
# The overlap arithmetic against a byte-level model of the kernels' access order


def _unsafe_write(ih, iw, ic, oh, ow, oc, kh, kw, sh, sw, pt, pl, block, delta) -> bool:
    """Simulate a windowed kernel's reads and writes with the output `delta` bytes from the
    input: True if some write hits an input byte that is read at that moment or later."""
    size_in = ih * iw * ic
    last_read = np.full(size_in, -1)
    for n in range(oh * ow):
        oy, ox = divmod(n, ow)
        for ky in range(kh):
            for kx in range(kw):
                iy, ix = oy * sh - pt + ky, ox * sw - pl + kx
                if 0 <= iy < ih and 0 <= ix < iw:
                    base = (iy * iw + ix) * ic
                    # The block's pixels are read before any of them is written.
                    last_read[base:base + ic] = max(last_read[base], (n // block) * block)
    for n in range(oh * ow):
        lo, hi = delta + n * oc, delta + (n + 1) * oc
        lo, hi = max(lo, 0), min(hi, size_in)
        # written while pixel n is computed: unsafe if read at n's block or later
        if hi > lo and np.any(last_read[lo:hi] >= (n // block) * block):
            return True
    return False


@settings(max_examples=40, deadline=None)
@given(ih=st.integers(1, 7), iw=st.integers(1, 7), ic=st.integers(1, 4), oc=st.integers(1, 5),
       k=st.sampled_from([1, 3, 5]), s=st.sampled_from([1, 2]), same=st.booleans(),
       block=st.sampled_from([1, 2]))
def test_window_max_delta_is_exactly_the_safe_limit(ih, iw, ic, oc, k, s, same, block):
    if same:
        oh, ow = -(-ih // s), -(-iw // s)
        pt = max(((oh - 1) * s + k - ih) // 2, 0)
        pl = max(((ow - 1) * s + k - iw) // 2, 0)
    else:
        oh, ow, pt, pl = (ih - k) // s + 1, (iw - k) // s + 1, 0, 0
        if oh < 1 or ow < 1:
            return
    args = (ih, iw, ic, oh, ow, oc, k, k, s, s, pt, pl, block)
    delta = window_max_delta(*args)
    assert not _unsafe_write(*args, delta)
    if delta + oh * ow * oc > 0:  # one byte further would still overlap the input
        assert _unsafe_write(*args, delta + 1)


def test_window_max_delta_closed_forms():
    # Pointwise, same channels: the output starts one pixel before the input.
    assert window_max_delta(8, 8, 16, 8, 8, 16) == -16
    # Pointwise expansion: the output ends one input pixel past the input's end.
    n, ci, co = 64, 8, 48
    assert window_max_delta(8, 8, ci, 8, 8, co) == -((n - 1) * (co - ci) + co)
    # 3x3 depthwise, stride 1, same padding: a row and two pixels.
    assert window_max_delta(10, 10, 8, 10, 10, 8, 3, 3, 1, 1, 1, 1) == -(10 + 2) * 8


# ---------------------------------------------------------------------------------------------
# Placement strategies


def _random_schedule(rng, n):
    """A random chain with skip connections, and overlaps on some steps."""
    steps, sizes, overlaps = [], {0: int(rng.integers(1, 40)) * 4}, []
    for i in range(n):
        reads = [i] + ([int(rng.integers(0, i))] if i > 1 and rng.random() < 0.3 else [])
        steps.append(FakeStep(reads, [i + 1], scratch_bytes=int(rng.integers(0, 3)) * 8))
        sizes[i + 1] = int(rng.integers(1, 40)) * 4
        if rng.random() < 0.6:
            overlaps.append(Overlap(i, i + 1, -4 * int(rng.integers(0, 4)), i, i))
    return steps, sizes, overlaps


@pytest.mark.parametrize("seed", range(6))
def test_every_strategy_gives_a_valid_plan_and_the_best_is_kept(seed):
    rng = np.random.default_rng(seed)
    steps, sizes, overlaps = _random_schedule(rng, 8)
    best = plan_arena(steps, [0], [len(steps)], sizes, overlaps)
    verify(best)
    assert best.lower_bound <= best.arena_bytes
    buffers = buffers_for(steps, [0], [len(steps)], sizes)
    allowed = _permissions(buffers, overlaps)
    for key, mirrored, best_fit in itertools.product(ORDERS.values(), (False, True), (False, True)):
        fresh = buffers_for(steps, [0], [len(steps)], sizes)
        arena = _place(sorted(fresh, key=key), allowed, mirrored, best_fit)
        assert arena >= best.arena_bytes
        plan = plan_arena(steps, [0], [len(steps)], sizes, overlaps)  # a fresh copy to verify
        assert plan.arena_bytes == best.arena_bytes


def test_exhaustive_search_on_small_graphs_beats_largest_first():
    # Largest first puts the 40-byte buffers side by side and the 24s on top of them; the
    # best order nests them: the exhaustive search over orders must find it.
    steps = [FakeStep([0], [1]), FakeStep([1], [2]), FakeStep([2], [3]), FakeStep([3, 1], [4])]
    sizes = {0: 40, 1: 24, 2: 40, 3: 24, 4: 8}
    full = plan_arena(steps, [0], [4], sizes)
    quick = plan_arena(steps, [0], [4], sizes, effort="quick")
    verify(full)
    assert full.arena_bytes <= quick.arena_bytes
    assert full.arena_bytes == full.lower_bound


@pytest.mark.parametrize("seed", range(8))
def test_every_order_at_once_gives_what_placing_each_order_gives(seed):
    """_place_every_order walks the orders sharing their common prefixes: it must give
    exactly the distinct layouts of placing every permutation one by one, each from the
    first permutation that gives it."""
    rng = np.random.default_rng(100 + seed)
    while True:  # 5 or 6 buffers (tensors and scratch): every order of them is placed here
        steps, sizes, overlaps = _random_schedule(rng, int(rng.integers(4, 7)))
        buffers = buffers_for(steps, [0], [len(steps)], sizes)
        if 5 <= len(buffers) <= 6:
            break
    for allowed in (_permissions(buffers, overlaps), {}):
        for mirrored, best_fit in itertools.product((False, True), (True, False)):
            expected, layouts = [], set()
            for order in itertools.permutations(range(len(buffers))):
                fresh = buffers_for(steps, [0], [len(steps)], sizes)
                arena = _place([fresh[i] for i in order], allowed, mirrored, best_fit)
                key = tuple(b.offset for b in fresh)
                if key not in layouts:
                    layouts.add(key)
                    expected.append((order, arena, key))
            fresh = buffers_for(steps, [0], [len(steps)], sizes)
            walked = _place_every_order(fresh, allowed, mirrored, best_fit, _concurrent(fresh))
            assert [(o, a, tuple(off[b.name] for b in fresh)) for o, a, off in walked] == expected
            assert len(expected) > 1


# ---------------------------------------------------------------------------------------------
# Operator order


def test_candidate_orders_are_topological_and_include_the_models_own():
    # Two branches from 0 joined at the end: 0 -> 1 -> 2 and 0 -> 3, then add(2, 3) -> 4.
    steps = [FakeStep([0], [1]), FakeStep([1], [2]), FakeStep([0], [3]), FakeStep([2, 3], [4])]
    orders = candidate_orders(steps, {t: 10 for t in range(5)})
    assert orders[0] == [0, 1, 2, 3]
    assert sorted(map(tuple, orders)) == [(0, 1, 2, 3), (0, 2, 1, 3), (2, 0, 1, 3)]


def test_the_order_with_the_smaller_peak_wins():
    # x -> a -> b and x -> c -> d, then add(b, d). The model lists x -> c second, so a and c
    # (100 bytes each) would be live together; finishing one branch first avoids that.
    steps = [FakeStep([0], [1]), FakeStep([0], [3]), FakeStep([1], [2]), FakeStep([3], [4]),
             FakeStep([2, 4], [5])]
    sizes = {0: 8, 1: 100, 2: 8, 3: 100, 4: 8, 5: 8}
    orders = candidate_orders(steps, sizes)
    plans = [plan_arena([steps[i] for i in o], [0], [5], sizes) for o in orders]
    assert plans[0].arena_bytes == 208
    assert min(p.arena_bytes for p in plans) == 116


# ---------------------------------------------------------------------------------------------
# The MLPerf Tiny models


@pytest.mark.parametrize("patch", ["none", "auto"])
@pytest.mark.parametrize("name", MLPERF)
def test_mlperf_plans_are_valid_and_above_the_bound(name, patch):
    model = compile_model(mlperf_model(name), patch=patch)
    plan = model.plan
    verify(plan)
    assert plan.lower_bound <= plan.arena_bytes
    # Every tensor a step touches has exactly one buffer.
    touched = {t for s in model.steps for t in s.reads + s.writes}
    planned = [t for b in plan.buffers for t in b.tensors]
    assert touched <= set(planned) and len(planned) == len(set(planned))


def test_overlaps_lower_the_peak_of_every_conv_model():
    for name in ("vww_96_int8.tflite", "kws_ref_model.tflite", "pretrainedResnet_quant.tflite"):
        model = compile_model(mlperf_model(name), patch="none")
        sizes = {t.id: t.nbytes for t in model.graph.activations()}
        plain = plan_arena(model.steps, model.graph.inputs, model.graph.outputs, sizes)
        assert plain.overlaps == [] or model.plan.arena_bytes <= plain.arena_bytes
        assert model.plan.overlaps, name
        assert model.plan.arena_bytes < max(
            sum(align(model.graph.t(t).nbytes) for t in s.reads + s.writes) for s in model.steps)
