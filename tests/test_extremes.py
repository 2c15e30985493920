"""Defined C for every valid model: extreme biases, accumulators, multipliers, shifts and zero
points, built with -fsanitize=address,undefined (any report fails the run) and bit-exact with
TFLite's reference kernels, on the portable and on the DSP (SMLAD) kernels.

TFLite's reference adds in int32 and, on its x86-64 build, wraps (acc + bias, the requantised
value + the output zero point) and turns an out-of-range double into INT32_MIN (the
FULLY_CONNECTED rescale); the generated C does the same in defined arithmetic."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from mcunet.compiler import compile_graph
from mcunet.frontend import parse_tflite
from mcunet.passes import run_passes
from mcunet.reference import reference_outputs
from mcunet.host import build_host, random_inputs

from .modelgen import ModelBuilder

SETTINGS = settings(max_examples=3, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow])
INT32_MAX, INT32_MIN = (1 << 31) - 1, -(1 << 31)


def extreme_bias(rng, n: int) -> np.ndarray:
    """Biases at and near both ends of int32 (acc + bias overflows either way), some ordinary."""
    pool = [INT32_MAX, INT32_MIN, INT32_MAX - 100, INT32_MIN + 100, INT32_MAX - 40000,
            INT32_MIN + 40000, 1 << 30, -(1 << 30), 0, 1234]
    return np.array([pool[i] for i in rng.integers(0, len(pool), n)], np.int64).astype(np.int32)


# Ranges of real multipliers (log2): from flushed-to-zero (below 2^-32) to a left shift of 29
# bits; the right shifts of 2 to 31 that the DSP kernels requantise without branches; and those
# of 2 to 23, where they fold the output zero point into the constants.
MULTIPLIER_RANGES = ((-36, 29), (-32, -3), (-24, -3))


def extreme_multipliers(rng, n: int, mode: int = 0) -> list[float]:
    lo, hi = MULTIPLIER_RANGES[mode]
    return [2.0 ** float(rng.uniform(lo, hi)) * float(rng.choice([1.0, 1.5, 1.999]))
            for _ in range(n)]


def assert_exact_sanitized(data: bytes, dsp: bool, rows: int = 3, seed: int = 0):
    compiled = compile_graph(run_passes(parse_tflite(data)), patch="none",
                             target="cortex-m4" if dsp else "host")
    inputs = random_inputs(compiled.graph, rows, seed)
    # Both ends of the input range too: the largest accumulators.
    for x in inputs:
        x[0] = -128
        if rows > 1:
            x[1] = 127
    ours, _ = build_host(compiled, sanitize=True, extra_flags=["-O1"]).run(inputs)
    for k, (mine, ref) in enumerate(zip(ours, reference_outputs(data, inputs))):
        bad = np.flatnonzero(mine.reshape(-1) != ref.reshape(-1))
        assert bad.size == 0, (f"output {k}: {bad.size} of {mine.size} values differ from "
                               f"TFLite (first at {bad[0]}: ours {mine.reshape(-1)[bad[0]]}, "
                               f"reference {ref.reshape(-1)[bad[0]]})")
    return compiled


def weights_model(seed: int, wide: bool = False) -> bytes:
    """CONV_2D, DEPTHWISE_CONV_2D and FULLY_CONNECTED side by side on one input, each with
    extreme biases, per-channel multipliers in one of MULTIPLIER_RANGES, +-127 weights and extreme
    zero points. `wide`: many channels on a small plane (the DSP in-place depthwise)."""
    rng = np.random.default_rng(seed)
    mode = seed % len(MULTIPLIER_RANGES)
    h, w, c = (5, 4, 24) if wide else (int(rng.integers(3, 7)), int(rng.integers(3, 7)),
                                       int(rng.integers(1, 9)))
    in_s, in_zp = 0.5, int(rng.choice([-128, 127, 0, int(rng.integers(-128, 128))]))
    m = ModelBuilder()
    x = m.input((1, h, w, c), "int8", scale=in_s, zero_point=in_zp)

    def layer(kind, shape, axis, oc, out_shape):
        out_s = 1.0
        scales = [float(np.float32(r * out_s / in_s)) for r in extreme_multipliers(rng, oc, mode)]
        data = rng.choice([-127, 127, 0, 1], shape).astype(np.int8)
        wt = m.const(data, scale=scales, zero_point=[0] * oc, quantized_dimension=axis)
        b = m.const(extreme_bias(rng, oc), scale=[in_s * s for s in scales], zero_point=[0] * oc)
        y = m.tensor(out_shape, "int8", scale=out_s,
                     zero_point=int(rng.choice([-128, 127, int(rng.integers(-128, 128))])))
        act = str(rng.choice(["NONE", "RELU", "RELU6", "RELU_N1_TO_1"]))
        if kind == "FULLY_CONNECTED":
            m.op(kind, [x, wt, b], [y], fused_activation=act, keep_num_dims=True)
        else:
            extra = {"depth_multiplier": oc // c} if kind == "DEPTHWISE_CONV_2D" else {}
            m.op(kind, [x, wt, b], [y], padding="SAME", fused_activation=act, **extra)
        m.output(y)

    oc = int(rng.integers(1, 7))
    layer("CONV_2D", (oc, 3, 3, c), 0, oc, (1, h, w, oc))
    layer("DEPTHWISE_CONV_2D", (1, 3, 3, c), 3, c, (1, h, w, c))
    layer("FULLY_CONNECTED", (3, c), 0, 3, (1, h, w, 3))
    return m.build()


def fc_per_tensor_model(seed: int) -> bytes:
    """A per-tensor FULLY_CONNECTED (its bias scale must equal input x filter scale, as TFLite
    checks) whose double-precision rescale leaves the int32 range both ways."""
    rng = np.random.default_rng(seed)
    depth, units = int(rng.integers(1, 40)), int(rng.integers(1, 9))
    in_s, w_s = 0.5, float(np.float32(0.25))
    m = ModelBuilder()
    x = m.input((1, depth), "int8", scale=in_s, zero_point=int(rng.choice([-128, 127, 3])))
    wt = m.const(rng.choice([-127, 127, 5], (units, depth)).astype(np.int8), scale=w_s,
                 zero_point=int(rng.choice([0, -128, 127, 9])))
    b = m.const(extreme_bias(rng, units), scale=float(np.float32(in_s * w_s)), zero_point=0)
    out_s = float(np.float32(in_s * w_s / extreme_multipliers(rng, 1)[0]))
    y = m.tensor((1, units), "int8", scale=out_s, zero_point=int(rng.choice([-128, 127, 0])))
    m.op("FULLY_CONNECTED", [x, wt, b], [y])
    m.output(y)
    return m.build()


def requantising_model(seed: int) -> bytes:
    """MUL, MEAN, RELU, RELU6 and an int8 QUANTIZE whose requantisation multipliers are large
    (left shifts of up to 29 bits, which wrap in int32 as in TFLite), and an ADD with its output
    multiplier from 2^-20 to just below 1 (TFLite's limit)."""
    rng = np.random.default_rng(seed)
    shape = (1, 3, 4, 5)
    m = ModelBuilder()
    zp = lambda: int(rng.choice([-128, 127, int(rng.integers(-128, 128))]))  # noqa: E731
    a = m.input(shape, "int8", scale=1.0, zero_point=zp())
    b = m.input(shape, "int8", scale=float(rng.choice([1.0, 0.5, 2.0])), zero_point=zp())

    def small():  # an output scale giving a multiplier of 2^0 .. 2^29
        return float(np.float32(2.0 ** -float(rng.uniform(0, 29))))

    # ADD's output multiplier must stay below 1 (TFLite aborts otherwise): 2^-20 .. 2^-1.
    y = m.tensor(shape, "int8", scale=float(np.float32(2.0 ** float(rng.uniform(-19, 1)))),
                 zero_point=zp())
    m.op("ADD", [a, b], [y], fused_activation=str(rng.choice(["NONE", "RELU"])))
    m.output(y)
    y = m.tensor(shape, "int8", scale=small() * 4, zero_point=zp())
    m.op("MUL", [a, b], [y], fused_activation=str(rng.choice(["NONE", "RELU"])))
    m.output(y)
    axes = m.const(np.array([1, 2], np.int32))
    y = m.tensor((1, 1, 1, 5), "int8", scale=small(), zero_point=zp())
    m.op("MEAN", [a, axes], [y], keep_dims=True)
    m.output(y)
    for kind in ("RELU", "RELU6", "QUANTIZE"):
        y = m.tensor(shape, "int8", scale=small() * 8, zero_point=zp())
        m.op(kind, [b], [y])
        m.output(y)
    return m.build()


@pytest.mark.parametrize("dsp", [False, True], ids=["portable", "dsp"])
@pytest.mark.parametrize("mode", range(len(MULTIPLIER_RANGES)))
@given(seed=st.integers(0, 2**16))
@settings(SETTINGS, max_examples=1)
def test_weights_layers_with_extreme_values(dsp, mode, seed):
    seed = seed - seed % len(MULTIPLIER_RANGES) + mode
    assert_exact_sanitized(weights_model(seed), dsp=dsp, seed=seed)


@pytest.mark.parametrize("dsp", [False, True], ids=["portable", "dsp"])
@pytest.mark.parametrize("mode", range(len(MULTIPLIER_RANGES)))
def test_in_place_depthwise_with_extreme_values(dsp, mode):
    compiled = assert_exact_sanitized(weights_model(mode, wide=True), dsp=dsp, seed=mode)
    kernel = "depthwise_conv_inplace_s8" + ("_dsp" if dsp else "")
    assert kernel in {s.kernel.name for s in compiled.steps if s.kernel}


@pytest.mark.parametrize("dsp", [False, True], ids=["portable", "dsp"])
@given(seed=st.integers(0, 2**16))
@SETTINGS
def test_per_tensor_fully_connected_out_of_range(dsp, seed):
    assert_exact_sanitized(fc_per_tensor_model(seed), dsp=dsp, seed=seed)


@given(seed=st.integers(0, 2**16))
@SETTINGS
def test_large_requantisation_multipliers(seed):
    assert_exact_sanitized(requantising_model(seed), dsp=False, seed=seed)


def test_fully_connected_rescale_out_of_range_is_int32_min():
    """Pinned: x86's conversion of an out-of-range double gives INT32_MIN, so a positive
    overflow with zero point 0 yields -128 in TFLite, not 127 (and -5 wraps it to 127)."""
    m = ModelBuilder()
    x = m.input((1, 2), "int8", scale=1.0, zero_point=0)
    w = m.const(np.array([[1, 1]], np.int8), scale=1.0, zero_point=0)
    b = m.const(np.array([INT32_MAX - 10], np.int32), scale=1.0, zero_point=0)
    outs = []
    for zp in (0, -5):
        y = m.tensor((1, 1), "int8", scale=0.5, zero_point=zp)  # x2: out of range
        m.op("FULLY_CONNECTED", [x, w, b], [y])
        m.output(y)
        outs.append(y)
    data = m.build()
    zeros = [np.zeros((2, 2), np.int8)]
    assert [r.reshape(-1).tolist() for r in reference_outputs(data, zeros)] == [[-128] * 2,
                                                                                 [127] * 2]
    assert_exact_sanitized(data, dsp=False, rows=2)
    assert_exact_sanitized(data, dsp=True, rows=2)
