"""The Cortex-M DSP kernels (SMLAD/SXTB16) are bit-exact with TFLite's reference kernels.
On the host they compile against the plain-C versions of the instructions in mcunet_common.h;
the firmware tests run the real instructions under QEMU."""
from __future__ import annotations

import math
import shutil
import subprocess
import unittest.mock

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from mcunet.codegen import kernels
from mcunet.compiler import compile_graph, compile_model
from mcunet.frontend import parse_tflite
from mcunet.passes import run_passes
from mcunet.reference import reference_outputs
from mcunet.host import build_host, random_inputs

from .conftest import MLPERF, mlperf_model
from .modelgen import ModelBuilder
from .test_ops_core import (ACTIVATIONS, conv2d_model, log_uniform, out_size, weights, window,
                            zero_points)

SETTINGS = settings(max_examples=12, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow])
DSP_KERNELS = {"conv2d_s8_dsp", "conv2d_s8_dsp_lean", "conv2d_s8_dsp_wide", "depthwise_conv_s8_dsp",
               "depthwise_conv_s8_dsp_lean", "depthwise_conv_inplace_s8_dsp",
               "fully_connected_s8_dsp", "fully_connected_s8_dsp_col"}
# The DSP conv's registry entries render one template (the lean one without the per-channel
# records in scratch, where the scratch would set the arena's peak; the wide one on an int16
# filter, where a flash budget has room): an expected "conv2d_s8_dsp" is met by any.
DSP_CONV_VARIANTS = {"conv2d_s8_dsp", "conv2d_s8_dsp_lean", "conv2d_s8_dsp_wide",
                     "conv2d_s8_dsp_wide_lean"}
WIDE_CONV_VARIANTS = {"conv2d_s8_dsp_wide", "conv2d_s8_dsp_wide_lean"}  # met "conv2d_s8_dsp_wide"
ROOMY_FLASH = 64 << 20  # a flash budget with room for every filter widened
# The same for the DSP depthwise (the lean one with bands of up to 1 KB).
DSP_DEPTHWISE_VARIANTS = {"depthwise_conv_s8_dsp", "depthwise_conv_s8_dsp_lean"}


def assert_dsp_bit_exact(data: bytes, rows: int = 2, seed: int = 0, patch: str = "none",
                         sanitize: bool = False, expect: set[str] = frozenset(),
                         flash_budget: int | None = None):
    """Compile with the DSP variants (the convolutions' filters widened to int16 where
    flash_budget has room), run on the host, compare every byte with TFLite."""
    compiled = compile_graph(run_passes(parse_tflite(data)), patch=patch, target="cortex-m4",
                             flash_budget=flash_budget)
    used = {s.kernel.name for s in compiled.steps if s.kernel}
    if used & DSP_CONV_VARIANTS:
        used.add("conv2d_s8_dsp")
    if used & WIDE_CONV_VARIANTS:
        used.add("conv2d_s8_dsp_wide")
    if used & DSP_DEPTHWISE_VARIANTS:
        used.add("depthwise_conv_s8_dsp")
    assert expect <= used, f"expected DSP kernels {expect - used} were not chosen"
    inputs = random_inputs(compiled.graph, rows, seed)
    ours, _ = build_host(compiled, sanitize=sanitize, extra_flags=["-O1"]).run(inputs)
    for mine, ref in zip(ours, reference_outputs(data, inputs)):
        assert np.array_equal(mine, ref), \
            f"{np.count_nonzero(mine != ref)} of {mine.size} values differ from TFLite"
    return compiled


@pytest.mark.parametrize("name", MLPERF)
def test_mlperf_models_dsp_path(name):
    data = mlperf_model(name).read_bytes()
    # ad01's first and last layers are the arena's peak: they take the DSP kernel without
    # scratch; every other FC layer the one with the input row widened into scratch.
    expect = {"fully_connected_s8_dsp_col"}
    if name == "ad01_int8.tflite":
        expect.add("fully_connected_s8_dsp")
    if name != "ad01_int8.tflite":
        expect.add("conv2d_s8_dsp")
    # vww with the patch stage: its patches read rows of wider tensors (in_row/out_row).
    patch = "auto" if name == "vww_96_int8.tflite" else "none"
    assert_dsp_bit_exact(data, rows=2, seed=5, patch=patch, expect=expect)
    if name != "ad01_int8.tflite":
        assert_dsp_bit_exact(data, rows=2, seed=6, patch=patch, flash_budget=ROOMY_FLASH,
                             expect=expect | {"conv2d_s8_dsp_wide"})


@pytest.mark.slow
@pytest.mark.parametrize("name", MLPERF)
def test_mlperf_models_dsp_path_sanitized_layer_by_layer(name):
    assert_dsp_bit_exact(mlperf_model(name).read_bytes(), rows=2, seed=9, sanitize=True)


@given(win=window(), c=st.integers(1, 9), oc=st.integers(1, 9), in_s=log_uniform(1e-3, 1),
       in_zp=zero_points, out_gain=log_uniform(0.05, 20), out_zp=zero_points,
       act=ACTIVATIONS, seed=st.integers(0, 2**16))
@SETTINGS
def test_conv2d_dsp(win, c, oc, in_s, in_zp, out_gain, out_zp, act, seed):
    """Every kernel size, stride, dilation, padding; channel counts off the groups of four;
    odd pixel and channel counts (the unpaired last pixel and channel)."""
    data = conv2d_model(win, c, oc, in_s, in_zp, out_gain, out_zp, act, seed)
    assert_dsp_bit_exact(data, seed=seed, expect={"conv2d_s8_dsp"})
    assert_dsp_bit_exact(data, seed=seed, expect={"conv2d_s8_dsp"}, flash_budget=ROOMY_FLASH)


@given(win=window(), c=st.integers(1, 13), in_s=log_uniform(1e-3, 1), in_zp=zero_points,
       out_gain=log_uniform(0.05, 20), out_zp=zero_points, act=ACTIVATIONS,
       seed=st.integers(0, 2**16))
@SETTINGS
def test_depthwise_dsp(win, c, in_s, in_zp, out_gain, out_zp, act, seed):
    """Four channels per SIMD group and the last c % 4 one by one; every window, stride,
    dilation and padding."""
    rng = np.random.default_rng(seed)
    m = ModelBuilder()
    x = m.input((1, win["h"], win["w"], c), "int8", scale=in_s, zero_point=in_zp)
    data, scales, _ = weights(rng, (1, win["kh"], win["kw"], c), c, 3)
    w = m.const(data, scale=scales, zero_point=[0] * c, quantized_dimension=3)
    b = m.const(rng.integers(-3000, 3000, c).astype(np.int32),
                scale=[in_s * s for s in scales], zero_point=[0] * c)
    out_s = in_s * float(np.mean(scales)) * math.sqrt(win["kh"] * win["kw"]) * 40 * out_gain
    y = m.tensor((1, win["oh"], win["ow"], c), "int8", scale=out_s, zero_point=out_zp)
    m.op("DEPTHWISE_CONV_2D", [x, w, b], [y], padding=win["padding"], stride_h=win["sh"],
         stride_w=win["sw"], dilation_h=win["dh"], dilation_w=win["dw"], depth_multiplier=1,
         fused_activation=act)
    m.output(y)
    data = m.build()
    compiled = compile_graph(run_passes(parse_tflite(data)), patch="none", target="cortex-m4")
    used = {s.kernel.name for s in compiled.steps if s.kernel}
    assert used & {"depthwise_conv_s8_dsp", "depthwise_conv_s8_dsp_lean",
                   "depthwise_conv_inplace_s8_dsp", "depthwise_conv_inplace_s8"}
    assert_dsp_bit_exact(data, seed=seed)


def _depthwise_model(h, w, c, padding, in_zp, out_zp, act, seed, extreme=False, stride=1, k=3):
    """conv 1x1 -> depthwise kxk (wide channels, small planes: planned in place) -> output."""
    rng = np.random.default_rng(seed)
    m = ModelBuilder()
    x = m.input((1, h, w, 4), "int8", scale=0.05, zero_point=in_zp)
    cw = m.const(rng.integers(-127, 128, (c, 1, 1, 4)).astype(np.int8), scale=[0.02] * c,
                 zero_point=[0] * c, quantized_dimension=0)
    cb = m.const(rng.integers(-500, 500, c).astype(np.int32), scale=[0.001] * c, zero_point=[0] * c)
    a = m.tensor((1, h, w, c), "int8", scale=0.06, zero_point=in_zp)
    m.op("CONV_2D", [x, cw, cb], [a], padding="SAME")
    data = (rng.choice([-127, 127], (1, k, k, c)) if extreme
            else rng.integers(-127, 128, (1, k, k, c))).astype(np.int8)
    scales = [float(np.float32(s)) for s in rng.uniform(0.002, 0.05, c)]
    dw = m.const(data, scale=scales, zero_point=[0] * c, quantized_dimension=3)
    db = m.const(rng.integers(-3000, 3000, c).astype(np.int32), scale=[0.06 * s for s in scales],
                 zero_point=[0] * c)
    oh, ow = (out_size(h, k, stride, 1, padding), out_size(w, k, stride, 1, padding))
    y = m.tensor((1, oh, ow, c), "int8", scale=0.06 * 0.03 * 3 * 20, zero_point=out_zp)
    m.op("DEPTHWISE_CONV_2D", [a, dw, db], [y], padding=padding, depth_multiplier=1,
         stride_h=stride, stride_w=stride, fused_activation=act)
    m.output(y)
    return m.build()


@given(h=st.integers(3, 9), w=st.integers(3, 9), c=st.integers(24, 48),
       padding=st.sampled_from(["SAME", "VALID"]), stride=st.sampled_from([1, 2, 3]),
       k=st.sampled_from([3, 5, 7]), in_zp=zero_points, out_zp=zero_points, act=ACTIVATIONS,
       seed=st.integers(0, 2**16))
@SETTINGS
def test_depthwise_in_place_dsp(h, w, c, padding, stride, k, in_zp, out_zp, act, seed):
    """The plane kernel: 3x3 stride 1 (two outputs per load) and every other window and
    stride (groups of four taps)."""
    if padding == "VALID" and min(h, w) < k:
        padding = "SAME"
    data = _depthwise_model(h, w, c, padding, in_zp, out_zp, act, seed, stride=stride, k=k)
    # (Where the planner prefers the offset layout over in place, the portable kernel runs.)
    assert_dsp_bit_exact(data, seed=seed)


# (h, w, c, padding, stride, k): the plane kernels' blocks of four outputs (kernel rows of 4 to
# 8 taps at a column stride of 1 or 2: each group size of the last group of taps), rows of
# ow % 4 = 0..3 (the partial last block), odd channel counts, SAME padding that is
# asymmetric; wide channels over small planes (in place) and a few over larger ones (bands).
QUAD_CASES = [(7, 9, 27, "SAME", 1, 4), (6, 10, 37, "VALID", 1, 5), (9, 11, 25, "SAME", 1, 6),
              (8, 8, 29, "SAME", 1, 7), (9, 13, 31, "SAME", 1, 8), (11, 13, 27, "SAME", 2, 5),
              (12, 12, 33, "VALID", 2, 7), (10, 17, 26, "SAME", 2, 6), (9, 12, 35, "SAME", 2, 6),
              (13, 15, 25, "VALID", 2, 8), (14, 19, 5, "SAME", 1, 6), (15, 21, 3, "SAME", 2, 7),
              (20, 26, 7, "SAME", 1, 5), (19, 22, 6, "SAME", 2, 5)]


@pytest.mark.parametrize("h,w,c,padding,stride,k", QUAD_CASES)
def test_depthwise_dsp_blocks_of_four_outputs(h, w, c, padding, stride, k):
    """The plane kernels' blocks of four neighbouring outputs sharing their loads
    (codegen/kernels.py's shares_loads_wide), bit-exact with TFLite, extreme weights too."""
    for extreme, zp in ((False, -3), (True, -128), (True, 127)):
        data = _depthwise_model(h, w, c, padding, zp, 4, "RELU" if extreme else "NONE", k + c,
                                extreme=extreme, stride=stride, k=k)
        compiled = assert_dsp_bit_exact(data, rows=2, seed=c)
        planes = [s for s in compiled.steps if s.kernel and s.kernel.name in
                  ({"depthwise_conv_inplace_s8_dsp"} | DSP_DEPTHWISE_VARIANTS)
                  and s.kernel.constants(s.layer).get("quads")]
        assert planes, "no plane kernel with blocks of four outputs was chosen"


def test_depthwise_in_place_dsp_is_chosen_and_extreme_values():
    """Weights of +-127 with inputs at both ends of the range: the folded offset and the
    16-bit halves hold the largest products."""
    for zp in (-128, 127):
        for stride, k in ((1, 3), (2, 3), (1, 5), (2, 7)):
            data = _depthwise_model(6, 5, 40, "SAME", zp, 0, "NONE", 3, extreme=True,
                                    stride=stride, k=k)
            assert_dsp_bit_exact(data, rows=3, expect={"depthwise_conv_inplace_s8_dsp"})


@pytest.mark.parametrize("out_zp", [-128, 0, 127])
@pytest.mark.parametrize("kind", ["CONV_2D", "DEPTHWISE_CONV_2D"])
def test_every_requantisation_path(kind, out_zp):
    """Per-channel scales chosen so that one layer's shifts fall in each of the DSP kernels'
    cases: right shifts of 2..23 (the output offset folded into the constants), 24..31 (the
    offset added after) and none (the general path); then each case alone."""
    rng = np.random.default_rng(11)
    in_s, out_s = 0.05, 0.1
    # real multipliers 2^(shift - 1) * 1.5: shifts -2, -9, -23, -24, -31 and 0.
    reals = {"fold": [2.0 ** -3 * 1.5, 2.0 ** -10 * 1.5, 2.0 ** -24 * 1.5, 2.0 ** -3],
             "add": [2.0 ** -3 * 1.5, 2.0 ** -25 * 1.5, 2.0 ** -32 * 1.5, 2.0 ** -20],
             "general": [2.0 ** -1 * 1.5, 2.0 ** -10 * 1.5, 2.0 ** -25 * 1.5, 2.0 ** -5]}
    for case, real in reals.items():
        scales = [float(np.float32(r * out_s / in_s)) for r in real]
        m = ModelBuilder()
        x = m.input((1, 6, 7, 4), "int8", scale=in_s, zero_point=-3)
        if kind == "CONV_2D":
            w = m.const(rng.integers(-127, 128, (4, 3, 3, 4)).astype(np.int8), scale=scales,
                        zero_point=[0] * 4, quantized_dimension=0)
        else:
            w = m.const(rng.integers(-127, 128, (1, 3, 3, 4)).astype(np.int8), scale=scales,
                        zero_point=[0] * 4, quantized_dimension=3)
        b = m.const(rng.integers(-2000, 2000, 4).astype(np.int32),
                    scale=[in_s * s for s in scales], zero_point=[0] * 4)
        y = m.tensor((1, 6, 7, 4), "int8", scale=out_s, zero_point=out_zp)
        attrs = {"depth_multiplier": 1} if kind == "DEPTHWISE_CONV_2D" else {}
        m.op(kind, [x, w, b], [y], padding="SAME", **attrs)
        m.output(y)
        compiled = assert_dsp_bit_exact(m.build(), rows=4, seed=2)
        step = next(s for s in compiled.steps if hasattr(s.layer, "shift_min"))
        lo, hi = step.layer.shift_min, step.layer.shift_max
        assert {"fold": -23 <= lo and hi <= -2, "add": lo < -23 and hi <= -2,
                "general": hi > -2}[case], (case, lo, hi)


def test_portable_path_without_dsp():
    compiled = compile_model(mlperf_model("kws_ref_model.tflite"), target="cortex-m3")
    assert not {s.kernel.name for s in compiled.steps if s.kernel} & DSP_KERNELS


@pytest.mark.skipif(not shutil.which("arm-none-eabi-gcc"), reason="needs arm-none-eabi-gcc")
def test_cortex_m4_build_uses_the_dsp_instructions(tmp_path):
    """For an ARMv7E-M core the helpers become SMLAD/SXTB16; for the M3 the plain C."""
    compiled = compile_model(mlperf_model("kws_ref_model.tflite"), target="cortex-m4")
    compiled.library().write(tmp_path)
    kernel = next(tmp_path.glob("kernels/mcunet_conv2d_s8_dsp_*.c"))
    for cpu, expected in (("cortex-m4", True), ("cortex-m3", False)):
        obj = tmp_path / f"{cpu}.o"
        subprocess.run(["arm-none-eabi-gcc", f"-mcpu={cpu}", "-mthumb", "-O2", "-std=c99",
                        "-Wall", "-Wextra", "-Werror", "-I", str(tmp_path), "-c", str(kernel),
                        "-o", str(obj)], check=True)
        asm = subprocess.run(["arm-none-eabi-objdump", "-d", str(obj)], capture_output=True,
                             text=True, check=True).stdout
        assert ("smlad" in asm and "sxtb16" in asm) == expected, cpu


@given(rows=st.integers(1, 3), depth=st.integers(1, 70), units=st.integers(1, 17),
       per_channel=st.booleans(), in_s=log_uniform(1e-3, 1), in_zp=zero_points,
       out_gain=log_uniform(0.05, 20), out_zp=zero_points, act=ACTIVATIONS,
       widened=st.booleans(), seed=st.integers(0, 2**16))
@SETTINGS
def test_fully_connected_dsp(rows, depth, units, per_channel, in_s, in_zp, out_gain, out_zp, act,
                             widened, seed):
    """Depths off the groups of four, odd unit counts, several rows (batches); both DSP
    variants: a lone FC layer is the arena's peak, so its input row is widened per block
    (no scratch); with the leaner choice off, the row is widened once into scratch."""
    rng = np.random.default_rng(seed)
    m = ModelBuilder()
    x = m.input((1, rows, depth), "int8", scale=in_s, zero_point=in_zp)
    n = units if per_channel else 1
    scales = [float(np.float32(s)) for s in rng.uniform(0.002, 0.05, n)]
    w = m.const(rng.integers(-127, 128, (units, depth)).astype(np.int8), scale=scales,
                zero_point=[0] * n, quantized_dimension=0)
    b = m.const(rng.integers(-4000, 4000, units).astype(np.int32),
                scale=[in_s * s for s in scales], zero_point=[0] * n)
    out_s = in_s * float(np.mean(scales)) * math.sqrt(depth) * 40 * out_gain
    y = m.tensor((1, rows, units), "int8", scale=out_s, zero_point=out_zp)
    m.op("FULLY_CONNECTED", [x, w, b], [y], fused_activation=act, keep_num_dims=True)
    m.output(y)
    if not widened:
        assert_dsp_bit_exact(m.build(), seed=seed, expect={"fully_connected_s8_dsp"})
        return
    with unittest.mock.patch("mcunet.compiler.leaner_variant", lambda step: None):
        assert_dsp_bit_exact(m.build(), seed=seed, expect={"fully_connected_s8_dsp_col"})


@pytest.mark.parametrize("h,w,c,padding,stride,k", [
    (12, 12, 6, "SAME", 2, 3), (13, 11, 5, "VALID", 2, 3), (12, 12, 6, "SAME", 2, 5),
    (10, 9, 7, "SAME", 1, 3), (12, 12, 6, "SAME", 2, 7), (11, 13, 3, "SAME", 1, 5)])
def test_depthwise_dsp_output_over_its_input(h, w, c, padding, stride, k):
    """The DSP depthwise with its output placed over its input (few channels, so not in
    place): the band plane with its outputs staged (stride 1, 5x5/7x7) and the direct path
    with an output row staged (3x3 stride 2), border columns and rows unrolled; the planner
    must have overlapped them, bit-exact under the sanitizers."""
    data = _depthwise_model(h, w, c, padding, -3, 4, "NONE", c, stride=stride, k=k)
    compiled = assert_dsp_bit_exact(data, rows=3, seed=c, sanitize=True,
                                    expect={"depthwise_conv_s8_dsp"})
    step = next(s for s in compiled.steps if s.kernel and s.kernel.name in DSP_DEPTHWISE_VARIANTS)
    (i, o), plan, g = (step.inputs[0].tid, step.outputs[0].tid), compiled.plan, compiled.graph
    a0, b0 = plan.tensor_offset(i), plan.tensor_offset(o)
    assert a0 < b0 + g.t(o).nbytes and b0 < a0 + g.t(i).nbytes, "the output was not placed over the input"


@pytest.mark.parametrize("c,k", [(1, 3), (3, 5), (6, 3), (7, 3), (7, 7)])
def test_depthwise_dsp_channels_not_in_fours_with_the_input_still_live(c, k):
    """The DSP depthwise where the input is read again afterwards (a residual ADD), so the
    output cannot lie over it: the channel-major path, groups of four then the last c % 4
    (and the in-place plane kernel where the planner prefers it), bit-exact under the
    sanitizers."""
    rng = np.random.default_rng(c * 10 + k)
    m = ModelBuilder()
    x = m.input((1, 9, 8, c), "int8", scale=0.05, zero_point=-3)
    data, scales, _ = weights(rng, (1, k, k, c), c, 3)
    w = m.const(data, scale=scales, zero_point=[0] * c, quantized_dimension=3)
    b = m.const(rng.integers(-3000, 3000, c).astype(np.int32), scale=[0.05 * s for s in scales],
                zero_point=[0] * c)
    y = m.tensor((1, 9, 8, c), "int8", scale=0.05 * float(np.mean(scales)) * k * 40, zero_point=5)
    m.op("DEPTHWISE_CONV_2D", [x, w, b], [y], padding="SAME", stride_h=1, stride_w=1,
         dilation_h=1, dilation_w=1, depth_multiplier=1, fused_activation="NONE")
    z = m.tensor((1, 9, 8, c), "int8", scale=0.1, zero_point=0)
    m.op("ADD", [x, y], [z], fused_activation="NONE")
    m.output(z)
    data = m.build()
    compiled = compile_graph(run_passes(parse_tflite(data)), patch="none", target="cortex-m4")
    used = {s.kernel.name for s in compiled.steps if s.kernel}
    assert used & ({"depthwise_conv_inplace_s8_dsp"} | DSP_DEPTHWISE_VARIANTS)
    assert_dsp_bit_exact(data, rows=3, seed=c, sanitize=True)


@pytest.mark.parametrize("below", [4, 12, 28, 40, 100])
def test_fused_add_sum_below_its_residual_is_bit_exact(below):
    """The planner lets a fused ADD's sum lie over its residual or anywhere below it, as an
    elementwise kernel's. The DSP conv computes a block of pixels channel pair by channel
    pair, so a sum a few bytes below the residual used to overwrite residual values of the
    block's later channels before they were read (found on a network of bench_shapes.py's
    corpus, 48 bytes below); the block's sums are now staged. Each offset below, placed by
    hand in an otherwise valid plan, bit-exact."""
    from dataclasses import replace

    from mcunet.memory import verify
    from mcunet.overlaps import step_overlaps

    from .netgen import Net
    net = Net(7, "below")
    x = net.input(3, 5, 6)
    r = net.conv(x, 10, 1)
    t = net.conv(r, 9, 3)
    data = net.build(net.head(net.add(r, net.conv(t, 10, 1, act="NONE")), 4))
    compiled = compile_graph(run_passes(parse_tflite(data)), patch="none", target="cortex-m4")
    step = next(s for s in compiled.steps if s.layer is not None
                and getattr(s.layer, "fused_add", None) is not None)
    assert step.kernel.name in DSP_CONV_VARIANTS and step.kernel.overlap.block(step.layer) > 1
    plan = compiled.plan
    buf = {b.tensors[0]: b for b in plan.buffers if b.tensors}
    res, out = buf[step.inputs[-1].tid], buf[step.outputs[0].tid]
    top = max(b.end for b in plan.buffers)
    out.offset = top + 64  # the sum, then the residual `below` bytes above its start
    res.offset = out.offset + below
    permitted = step_overlaps(compiled.graph, step, compiled.steps.index(step))
    plan = replace(plan, arena_bytes=max(b.end for b in plan.buffers),
                   overlaps=plan.overlaps + [(permitted[0], -below)])
    verify(plan)  # a plan the planner could have made
    moved = replace(compiled, plan=plan)
    inputs = random_inputs(moved.graph, 3, 5)
    ours, _ = build_host(moved, extra_flags=["-O1"]).run(inputs)
    for mine, ref in zip(ours, reference_outputs(data, inputs)):
        assert np.array_equal(mine, ref), f"{np.count_nonzero(mine != ref)} values differ"


# (h, w, kh, kw, stride, dilation, padding, c, oc): one case for each path of the DSP conv.
CONV_PATHS = [
    (9, 8, 1, 1, 1, 1, "VALID", 8, 16),    # pointwise, 2 groups written out, P = 4
    (9, 9, 1, 1, 2, 1, "VALID", 16, 7),    # pointwise stride 2, odd channel count
    (11, 10, 3, 3, 2, 1, "SAME", 3, 8),    # a first conv: 27 values (28 with the zero)
    (7, 9, 10, 4, 1, 1, "SAME", 1, 6),     # KWS-like 10x4 on one channel: 40 values
    (8, 7, 3, 3, 1, 1, "SAME", 4, 5),      # 36 values: 9 groups written out
    (7, 8, 3, 3, 1, 1, "SAME", 9, 4),      # 81 values: one turn of the loop, 5 groups after
    (9, 9, 3, 3, 1, 1, "SAME", 14, 5),     # 126 values, channels off the fours: words per row
    (10, 9, 3, 3, 1, 2, "SAME", 7, 3),     # dilated: the taps of a row are not side by side
    (6, 6, 1, 1, 1, 1, "VALID", 300, 3),   # 300 values: P = 2, 4 turns and 11 groups after
    (37, 1, 1, 1, 1, 1, "VALID", 12, 5),   # one channel at a time, a partial last block
    (11, 5, 3, 3, 1, 1, "SAME", 1, 6),     # 9 values (12), one channel at a time, padded
]


@pytest.mark.parametrize("h,w,kh,kw,stride,dilation,padding,c,oc", CONV_PATHS)
@pytest.mark.parametrize("act,out_zp", [("NONE", 5), ("RELU", -128), ("RELU", 17)])
@pytest.mark.parametrize("wide", [False, True])
def test_conv2d_dsp_paths(h, w, kh, kw, stride, dilation, padding, c, oc, act, out_zp, wide):
    """The DSP conv's layouts: windows padded to groups of four (the filter then carries
    (-K) % 4 zero bytes after its last channel), the small windows written out, the loop's
    turns and the groups after them, windows whose groups cross taps or kernel rows; with the
    requantisation that drops its negative terms where a ReLU's bound is at or above the
    output offset. `wide`: with room in flash, the channel pair path on its int16 filter
    (kernels.conv_wide_filter_words), the one-channel path as it was."""
    oh = out_size(h, kh, stride, dilation, padding)
    ow = out_size(w, kw, stride, dilation, padding)
    win = dict(h=h, w=w, kh=kh, kw=kw, sh=stride, sw=stride, dh=dilation, dw=dilation,
               padding=padding, oh=oh, ow=ow)
    data = conv2d_model(win, c, oc, 0.05, -7, 1.0, out_zp, act, seed=h * oc + c)
    compiled = assert_dsp_bit_exact(data, rows=3, seed=c, expect={"conv2d_s8_dsp"},
                                    flash_budget=ROOMY_FLASH if wide else None)
    step = next(s for s in compiled.steps if s.kernel and s.kernel.name in DSP_CONV_VARIANTS)
    k = kh * kw * c
    filt = next(a for a in step.args if getattr(a, "name", None) == "filter")
    values = next(a.values for a in compiled.consts if a.symbol == filt.symbol)
    if step.kernel.name in WIDE_CONV_VARIANTS:
        assert wide and filt.ctype == "uint32_t" and len(values) == oc * (k + (-k) % 4) // 2
    else:
        assert not (wide and kernels.conv_dsp_wide_applies(step.layer))
        assert len(values) == oc * k + (-k) % 4 and not values[oc * k:].any()


@pytest.mark.parametrize("h,w,kh,kw,stride,dilation,padding,c,oc", [
    (11, 10, 3, 3, 2, 1, "SAME", 3, 8),   # 27 values: groups of 1 + 3 and 2 + 2 across rows, 3 + 1 zero
    (7, 6, 3, 3, 1, 1, "VALID", 5, 4),    # 45 values: runs of 15, groups across rows, 1 + 3 zeros
    (8, 7, 2, 2, 1, 1, "SAME", 7, 3),     # 28 values: rows of 14
    (6, 9, 1, 3, 1, 2, "SAME", 3, 5),     # dilated: runs of 3 (one tap), groups across taps
    (9, 5, 3, 3, 1, 1, "VALID", 2, 6),    # 18 values: runs of 6, 2 + 2 across rows, 2 zeros
])
def test_conv2d_dsp_merged_loads_sanitized(h, w, kh, kw, stride, dilation, padding, c, oc):
    """Windows with channels off the groups of four, inside the input: a group of two runs
    of side-by-side values is two 4-byte loads merged, the last group's values past the
    window a load ending at the window's last value, shifted; bit-exact under the
    sanitizers, with int8 and int16 filters."""
    oh = out_size(h, kh, stride, dilation, padding)
    ow = out_size(w, kw, stride, dilation, padding)
    win = dict(h=h, w=w, kh=kh, kw=kw, sh=stride, sw=stride, dh=dilation, dw=dilation,
               padding=padding, oh=oh, ow=ow)
    data = conv2d_model(win, c, oc, 0.05, 9, 1.0, -3, "RELU", seed=h + c)
    for budget in (None, ROOMY_FLASH):
        assert_dsp_bit_exact(data, rows=3, seed=c, sanitize=True, flash_budget=budget,
                             expect={"conv2d_s8_dsp"})


def test_wide_filter_words():
    """The int16 filter's words: per channel group g, (w[4g] | w[4g+2] << 16) and (w[4g+1] |
    w[4g+3] << 16), the window padded with zeros to whole groups, a pair's channels side by
    side group by group, an odd last channel after the pairs."""
    oc, k = 3, 5
    filt = np.arange(1, oc * k + 1, dtype=np.int8) * np.int8(-1) ** np.arange(oc * k)
    words = kernels.conv_wide_filter_words(np.concatenate([filt, np.zeros(3, np.int8)]), oc, k)
    half = words.view("<i2").reshape(-1, 2)  # (lo, hi) per word
    w = filt.reshape(oc, k).astype(int)
    pad = lambda c: list(w[c]) + [0] * 3  # noqa: E731
    # pair (0, 1): group 0 of 0, group 0 of 1, group 1 of 0, group 1 of 1; then channel 2
    expect = []
    for g in range(2):
        for c in (0, 1):
            v = pad(c)[4 * g:4 * g + 4]
            expect += [(v[0], v[2]), (v[1], v[3])]
    for g in range(2):
        v = pad(2)[4 * g:4 * g + 4]
        expect += [(v[0], v[2]), (v[1], v[3])]
    assert [tuple(map(int, h)) for h in half] == expect


def test_filters_widen_only_within_the_flash_budget():
    """No flash budget: int8 filters. A budget with room for some: the convolutions with the
    most MACs per extra byte, the constants and code within the budget; every output
    bit-exact either way."""
    from mcunet.boards import get_board
    data = mlperf_model("kws_ref_model.tflite").read_bytes()
    graph = run_passes(parse_tflite(data))
    target = get_board("mps2-an386").target
    narrow = compile_graph(graph, patch="none", target=target)
    assert not any(s.kernel.name in WIDE_CONV_VARIANTS for s in narrow.steps if s.kernel)
    roomy = compile_graph(graph, patch="none", target=target, flash_budget=ROOMY_FLASH)
    wide = [s for s in roomy.steps if s.kernel and s.kernel.name in WIDE_CONV_VARIANTS]
    assert len(wide) == 5 and roomy.plan.arena_bytes == narrow.plan.arena_bytes
    budget = narrow.flash_total_bytes + (roomy.flash_bytes - narrow.flash_bytes) // 2
    some = compile_graph(graph, patch="none", target=target, flash_budget=budget)
    n = sum(s.kernel.name in WIDE_CONV_VARIANTS for s in some.steps if s.kernel)
    assert 0 < n < 5 and some.flash_total_bytes <= budget
    for compiled in (roomy, some):
        inputs = random_inputs(compiled.graph, 2, 4)
        ours, _ = build_host(compiled, extra_flags=["-O1"]).run(inputs)
        for mine, ref in zip(ours, reference_outputs(data, inputs)):
            assert np.array_equal(mine, ref)


def test_fused_add_in_a_patch_stage_is_bit_exact():
    """A residual ADD fused into a DSP conv of a patch stage, whose output rows are not
    contiguous (out_row != ow): the kernel used to declare an output pointer that only its
    staged path left unused, and gcc's -Werror stopped the build (found by
    scripts/fit_costmodel.py on its corpus). Built for the M4's board, it matches the
    portable kernels layer by layer, byte for byte."""
    import sys
    from pathlib import Path

    from mcunet.boards import get_board

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))
    from corpus import search_networks

    _, graph = search_networks(5, 0)[4]
    compiled = compile_graph(graph, patch="auto", target=get_board("mps2-an386").target)
    fused = [s for s in compiled.steps if s.kernel and s.kernel.name in DSP_CONV_VARIANTS
             and s.layer.fused_add is not None and s.layer.window.out_row != s.layer.window.ow]
    assert fused
    inputs = random_inputs(compiled.graph, 2, 3)
    ours, _ = build_host(compiled, extra_flags=["-O1"]).run(inputs)
    portable, _ = build_host(compile_graph(graph, patch="none", target="host")).run(inputs)
    for mine, ref in zip(ours, portable):
        assert np.array_equal(mine, ref)
