"""Property tests: MUL, LOGISTIC, HARD_SWISH, RELU and RELU6 compile to C that is bit-exact
with TFLite's reference kernels over shapes, broadcast patterns, scales, zero points and
fused activations. The elementwise activations are run over every one of the 256 input values."""
from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings, strategies as st

from mcunet.codegen.ops.activations import hard_swish_params, lut_table, sigmoid_f32
from mcunet.compiler import compile_graph
from mcunet.errors import McunetError
from mcunet.frontend import parse_tflite
from mcunet.passes import run_passes
from mcunet.reference import reference_outputs

from .modelgen import ModelBuilder
from .opcheck import assert_bit_exact


def examples(n: int):
    return settings(max_examples=n, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow])


ACTIVATIONS = st.sampled_from(["NONE", "RELU", "RELU6", "RELU_N1_TO_1"])
zero_points = st.integers(-128, 127)


def log_uniform(lo: float, hi: float):
    return st.floats(math.log(lo), math.log(hi)).map(lambda v: float(np.float32(math.exp(v))))


def f32(x: float) -> float:
    return float(np.float32(x))


shapes = st.lists(st.integers(1, 7), min_size=0, max_size=3).map(lambda dims: (1, *dims))


def every_int8(shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    """Enough rows of `shape` to hold each int8 value at least once, shuffled."""
    size = int(np.prod(shape))
    rows = -(-256 // size)
    values = np.resize(np.arange(-128, 128, dtype=np.int8), rows * size)
    np.random.default_rng(seed).shuffle(values)
    return values.reshape((rows,) + tuple(shape[1:]))


def unary_model(kind: str, shape, in_s, in_zp, out_s, out_zp) -> bytes:
    m = ModelBuilder()
    x = m.input(shape, "int8", scale=in_s, zero_point=in_zp)
    y = m.tensor(shape, "int8", scale=out_s, zero_point=out_zp)
    m.op(kind, [x], [y])
    m.output(y)
    return m.build()


def compile_bytes(data: bytes):
    return compile_graph(run_passes(parse_tflite(data)))


# --- MUL -------------------------------------------------------------------------------------

@st.composite
def mul_shapes(draw):
    """(output, input1, input2) shapes, numpy-broadcast, batch 1, rank 1..4."""
    out = draw(shapes)
    a, b = [], []
    for d in out:
        who = draw(st.sampled_from(["both", "both", "a", "b"])) if d > 1 else "both"
        a.append(d if who != "b" else 1)
        b.append(d if who != "a" else 1)
    return tuple(out), tuple(a), tuple(b)


def strip_leading_ones(shape: tuple[int, ...], k: int) -> tuple[int, ...]:
    while k and shape and shape[0] == 1:
        shape, k = shape[1:], k - 1
    return shape


def mul_model(rng, out_shape, a_shape, b_shape, s1, z1, s2, z2, so, zo, act, const,
              strip=0, small=False):
    """MUL(a, b); `const` (None, 0 or 1) makes that operand a constant, which may then have a
    lower rank. Returns (model, inputs)."""
    m = ModelBuilder()
    high = 9 if small else 128
    operands, feeds = [], []
    for k, (shape, s, z) in enumerate(((a_shape, s1, z1), (b_shape, s2, z2))):
        if const == k:
            data = rng.integers(-high, high, strip_leading_ones(shape, strip)).astype(np.int8)
            operands.append(m.const(data, scale=s, zero_point=z))
        else:
            operands.append(m.input(shape, "int8", scale=s, zero_point=z))
            feeds.append(rng.integers(-high, high, (3,) + shape[1:]).astype(np.int8))
    y = m.tensor(out_shape, "int8", scale=so, zero_point=zo)
    m.op("MUL", operands, [y], fused_activation=act)
    m.output(y)
    return m.build(), feeds


@given(shapes=mul_shapes(), s1=log_uniform(1e-3, 1), s2=log_uniform(1e-3, 1),
       gain=log_uniform(0.05, 5000), z1=zero_points, z2=zero_points, zo=zero_points,
       act=ACTIVATIONS, const=st.sampled_from([None, None, 0, 1]), strip=st.integers(0, 3),
       seed=st.integers(0, 2**16))
@examples(45)
def test_mul(shapes, s1, s2, gain, z1, z2, zo, act, const, strip, seed):
    out_shape, a_shape, b_shape = shapes
    so = f32(s1 * s2 * gain)  # the output scale relative to the product's
    model, feeds = mul_model(np.random.default_rng(seed), out_shape, a_shape, b_shape,
                             s1, z1, s2, z2, so, zo, act, const, strip)
    assert_bit_exact(model, inputs=feeds)


@given(shapes=mul_shapes(), e1=st.integers(-8, 0), e2=st.integers(-8, 0), eo=st.integers(-12, 0),
       z1=st.integers(-4, 4), z2=st.integers(-4, 4), zo=st.integers(-10, 10), act=ACTIVATIONS,
       small=st.booleans(), seed=st.integers(0, 2**16))
@example(shapes=((1, 4, 5, 6), (1, 4, 5, 6), (1, 1, 1, 6)), e1=-1, e2=-2, eo=0, z1=1, z2=-3,
         zo=-5, act="RELU", small=True, seed=0)
@examples(25)
def test_mul_power_of_two_scales_round_ties_twice(shapes, e1, e2, eo, z1, z2, zo, act, small, seed):
    """Power-of-two scales make the multiplier exactly 2^30 * 2^k: every odd product is an exact
    tie, which only TFLite's double rounding (rounding high multiply, then rounding shift)
    resolves the same way."""
    out_shape, a_shape, b_shape = shapes
    model, feeds = mul_model(np.random.default_rng(seed), out_shape, a_shape, b_shape,
                             2.0 ** e1, z1, 2.0 ** e2, z2, 2.0 ** eo, zo, act, None, small=small)
    assert_bit_exact(model, inputs=feeds, sanitize=seed % 3 == 0)


def test_mul_sanitized_constant_broadcast():
    model, feeds = mul_model(np.random.default_rng(3), (1, 3, 4, 5), (1, 3, 4, 5), (1, 1, 1, 5),
                             0.02, -7, 0.004, 0, 0.0003, 12, "RELU6", const=1, strip=3)
    assert_bit_exact(model, inputs=feeds, sanitize=True)


# --- LOGISTIC --------------------------------------------------------------------------------

@given(shape=shapes, in_s=log_uniform(1e-3, 2.0), in_zp=zero_points,
       out_zp=st.sampled_from([-128, -128, 0, 37]), seed=st.integers(0, 2**16))
@examples(20)
def test_logistic(shape, in_s, in_zp, out_zp, seed):
    model = unary_model("LOGISTIC", shape, in_s, in_zp, 1.0 / 256, out_zp)
    assert_bit_exact(model, inputs=[every_int8(shape, seed)], sanitize=seed % 4 == 0)


def test_logistic_table_matches_tflite_over_many_scales():
    """The compile-time table equals TFLite's for 150 input scales and zero points (the
    reference interpreter only, so many scales are cheap)."""
    rng = np.random.default_rng(11)
    x = np.arange(-128, 128, dtype=np.int8).reshape(1, 1, 256)
    for trial in range(150):
        in_s = f32(math.exp(rng.uniform(math.log(1e-4), math.log(8.0))))
        in_zp = int(rng.integers(-128, 128))
        out_zp = -128 if trial % 3 else int(rng.integers(-128, 128))
        model = unary_model("LOGISTIC", (1, 256), in_s, in_zp, 1.0 / 256, out_zp)
        expected = reference_outputs(model, [x])[0].reshape(-1)
        table = lut_table(in_s, in_zp, 1.0 / 256, out_zp, sigmoid_f32)
        assert np.array_equal(table, expected), (in_s, in_zp, out_zp)


@given(shape=shapes, in_s=log_uniform(1e-3, 2.0), in_zp=zero_points, seed=st.integers(0, 2**16))
@examples(12)
def test_tanh(shape, in_s, in_zp, seed):
    """A new elementwise operator: one lowering (a table through the existing lut_s8 kernel)."""
    model = unary_model("TANH", shape, in_s, in_zp, 1.0 / 128, 0)
    assert_bit_exact(model, inputs=[every_int8(shape, seed)], sanitize=seed % 4 == 0)


def test_logistic_rejects_other_output_scales():
    with pytest.raises(McunetError, match="1/256"):
        compile_bytes(unary_model("LOGISTIC", (1, 8), 0.05, 0, 1.0 / 128, -128))


# --- HARD_SWISH ------------------------------------------------------------------------------

@given(shape=shapes, in_s=log_uniform(1e-4, 2.0), in_zp=zero_points,
       ratio=log_uniform(1.0 / 100, 2000.0), out_zp=zero_points, seed=st.integers(0, 2**16))
# The "reluish" exponent is positive for input scales >= 3/256 and negative below 3/512.
@example(shape=(1, 256), in_s=0.5, in_zp=0, ratio=0.6, out_zp=-100, seed=0)
@example(shape=(1, 256), in_s=0.002, in_zp=-20, ratio=1.1, out_zp=-120, seed=0)
@example(shape=(1, 256), in_s=3.0 / 256, in_zp=5, ratio=1.0, out_zp=0, seed=0)
# Output exponent <= -16: TFLite's int16 rounding shift gives +-1 instead of 0 here.
@example(shape=(1, 256), in_s=0.001, in_zp=3, ratio=1000.0, out_zp=5, seed=0)
@examples(35)
def test_hard_swish(shape, in_s, in_zp, ratio, out_zp, seed):
    out_s = f32(in_s * ratio)  # HARD_SWISH needs out_s > in_s / 128
    model = unary_model("HARD_SWISH", shape, in_s, in_zp, out_s, out_zp)
    assert_bit_exact(model, inputs=[every_int8(shape, seed)], sanitize=seed % 4 == 0)


def test_hard_swish_examples_cover_both_reluish_exponent_signs():
    assert hard_swish_params(0.5, 0.3)["reluish_exponent"] > 0
    assert hard_swish_params(0.002, 0.0022)["reluish_exponent"] < 0
    assert hard_swish_params(0.001, 1.0)["output_exponent"] <= -16


def test_hard_swish_rejects_output_multipliers_above_one():
    with pytest.raises(McunetError, match="too large"):
        compile_bytes(unary_model("HARD_SWISH", (1, 8), 1.0, 0, 0.001, 0))


# --- RELU, RELU6 -----------------------------------------------------------------------------

@given(kind=st.sampled_from(["RELU", "RELU6"]), shape=shapes, in_s=log_uniform(1e-3, 1.0),
       in_zp=zero_points, ratio=log_uniform(0.1, 10.0), out_zp=zero_points,
       same_quant=st.booleans(), seed=st.integers(0, 2**16))
@examples(30)
def test_relu(kind, shape, in_s, in_zp, ratio, out_zp, same_quant, seed):
    out_s, out_zp = (in_s, in_zp) if same_quant else (f32(in_s * ratio), out_zp)
    model = unary_model(kind, shape, in_s, in_zp, out_s, out_zp)
    assert_bit_exact(model, inputs=[every_int8(shape, seed)], sanitize=seed % 4 == 0)


@pytest.mark.parametrize("kind, in_s, in_zp, out_s, out_zp", [
    ("RELU", 0.98214656, -23, 0.010177685, -76),
    ("RELU6", 0.103656, -2, 0.005349987, 29),
    ("RELU", 0.0010172733, -120, 0.002649087, 33),
])
def test_relu_divides_the_scales_in_float32(kind, in_s, in_zp, out_s, out_zp):
    """For these scales the float32 and the double quotient give multipliers that requantise one
    input differently; TFLite's ReluPrepare divides in float32."""
    model = unary_model(kind, (1, 256), in_s, in_zp, out_s, out_zp)
    assert_bit_exact(model, inputs=[every_int8((1, 256))])


@pytest.mark.parametrize("s1, z1, s2, z2, so, zo", [
    (0.2622080445289612, -57, 0.008899308741092682, 50, 0.20218132436275482, 20),
    (0.002799722133204341, -118, 0.004374267999082804, -62, 0.001295842812396586, -116),
])
def test_mul_every_pair_of_values_and_float32_scale_product(s1, z1, s2, z2, so, zo):
    """All 65536 pairs of int8 values, through a (256, 1) x (1, 256) broadcast. For these scales
    the multiplier of s1 * s2 / so in float32 (as TFLite computes it) and in double differ in
    the result for a product or two."""
    values = np.arange(-128, 128, dtype=np.int8)
    assert_bit_exact(mul_pairs_model(s1, z1, s2, z2, so, zo),
                     inputs=[values.reshape(1, 256, 1), values.reshape(1, 1, 256)])


def mul_pairs_model(s1, z1, s2, z2, so, zo) -> bytes:
    """MUL of a (1, 256, 1) by a (1, 1, 256) int8 input: fed every int8 value along each, it
    multiplies all 65536 pairs."""
    m = ModelBuilder()
    a = m.input((1, 256, 1), "int8", scale=s1, zero_point=z1)
    b = m.input((1, 1, 256), "int8", scale=s2, zero_point=z2)
    y = m.tensor((1, 256, 256), "int8", scale=so, zero_point=zo)
    m.op("MUL", [a, b], [y], fused_activation="NONE")
    m.output(y)
    return m.build()


@pytest.mark.parametrize("in_s, in_zp, out_s, out_zp", [
    (0.02, -3, 0.01, 5), (0.1, 0, 0.1, 0), (0.004, 100, 0.0078125, -1)])
def test_standalone_relu_n1_to_1(in_s, in_zp, out_s, out_zp):
    """A lowering that the frontend's own list of operators once rejected as unsupported."""
    model = unary_model("RELU_N1_TO_1", (1, 256), in_s, in_zp, out_s, out_zp)
    assert_bit_exact(model, inputs=[every_int8((1, 256))])
