"""Property tests: generated single-op and small multi-op models are bit-exact with TFLite's
reference kernels over shapes, strides, paddings, channel counts, scales and zero points."""
from __future__ import annotations

import math

import numpy as np
from hypothesis import HealthCheck, given, settings, strategies as st

from .modelgen import ModelBuilder
from .opcheck import assert_bit_exact

SETTINGS = settings(max_examples=15, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow])
ACTIVATIONS = st.sampled_from(["NONE", "RELU", "RELU6", "RELU_N1_TO_1"])
zero_points = st.integers(-128, 127)


def log_uniform(lo: float, hi: float):
    return st.floats(math.log(lo), math.log(hi)).map(lambda v: float(np.float32(math.exp(v))))


def out_size(n: int, k: int, stride: int, dilation: int, padding: str) -> int:
    if padding == "SAME":
        return (n + stride - 1) // stride
    return (n - (k - 1) * dilation - 1) // stride + 1


@st.composite
def window(draw, max_hw=12):
    """Input H, W and a kernel/stride/dilation/padding giving a non-empty output."""
    h, w = draw(st.integers(1, max_hw)), draw(st.integers(1, max_hw))
    kh, kw = draw(st.integers(1, 5)), draw(st.integers(1, 5))
    sh, sw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    dh, dw = draw(st.sampled_from([1, 1, 2])), draw(st.sampled_from([1, 1, 2]))
    padding = draw(st.sampled_from(["SAME", "VALID"]))
    oh, ow = out_size(h, kh, sh, dh, padding), out_size(w, kw, sw, dw, padding)
    if oh < 1 or ow < 1:  # VALID window larger than the input: fall back to SAME
        padding = "SAME"
        oh, ow = out_size(h, kh, sh, dh, padding), out_size(w, kw, sw, dw, padding)
    return dict(h=h, w=w, kh=kh, kw=kw, sh=sh, sw=sw, dh=dh, dw=dw, padding=padding, oh=oh, ow=ow)


def weights(rng, shape, channels, axis):
    """int8 weights with per-channel scales, symmetric."""
    scales = [float(np.float32(s)) for s in rng.uniform(0.002, 0.05, channels)]
    data = rng.integers(-127, 128, shape).astype(np.int8)
    return data, scales, axis


def conv2d_model(win, c, oc, in_s, in_zp, out_gain, out_zp, act, seed) -> bytes:
    """One CONV_2D with per-channel weights; the output scale keeps most outputs in range."""
    rng = np.random.default_rng(seed)
    m = ModelBuilder()
    x = m.input((1, win["h"], win["w"], c), "int8", scale=in_s, zero_point=in_zp)
    data, scales, _ = weights(rng, (oc, win["kh"], win["kw"], c), oc, 0)
    w = m.const(data, scale=scales, zero_point=[0] * oc, quantized_dimension=0)
    b = m.const(rng.integers(-5000, 5000, oc).astype(np.int32),
                scale=[in_s * s for s in scales], zero_point=[0] * oc)
    out_s = in_s * float(np.mean(scales)) * math.sqrt(win["kh"] * win["kw"] * c) * 40 * out_gain
    y = m.tensor((1, win["oh"], win["ow"], oc), "int8", scale=out_s, zero_point=out_zp)
    m.op("CONV_2D", [x, w, b], [y], padding=win["padding"], stride_h=win["sh"], stride_w=win["sw"],
         dilation_h=win["dh"], dilation_w=win["dw"], fused_activation=act)
    m.output(y)
    return m.build()


@given(win=window(), c=st.integers(1, 8), oc=st.integers(1, 8), in_s=log_uniform(1e-3, 1),
       in_zp=zero_points, out_gain=log_uniform(0.05, 20), out_zp=zero_points,
       act=ACTIVATIONS, seed=st.integers(0, 2**16))
@SETTINGS
def test_conv2d(win, c, oc, in_s, in_zp, out_gain, out_zp, act, seed):
    assert_bit_exact(conv2d_model(win, c, oc, in_s, in_zp, out_gain, out_zp, act, seed),
                     rows=2, seed=seed)


@given(win=window(), c=st.integers(1, 8), mult=st.integers(1, 3), in_s=log_uniform(1e-3, 1),
       in_zp=zero_points, out_gain=log_uniform(0.05, 20), out_zp=zero_points, act=ACTIVATIONS,
       seed=st.integers(0, 2**16))
@SETTINGS
def test_depthwise_conv2d(win, c, mult, in_s, in_zp, out_gain, out_zp, act, seed):
    rng = np.random.default_rng(seed)
    oc = c * mult
    m = ModelBuilder()
    x = m.input((1, win["h"], win["w"], c), "int8", scale=in_s, zero_point=in_zp)
    data, scales, _ = weights(rng, (1, win["kh"], win["kw"], oc), oc, 3)
    w = m.const(data, scale=scales, zero_point=[0] * oc, quantized_dimension=3)
    b = m.const(rng.integers(-3000, 3000, oc).astype(np.int32),
                scale=[in_s * s for s in scales], zero_point=[0] * oc)  # the runtime requires it
    out_s = in_s * float(np.mean(scales)) * math.sqrt(win["kh"] * win["kw"]) * 40 * out_gain
    y = m.tensor((1, win["oh"], win["ow"], oc), "int8", scale=out_s, zero_point=out_zp)
    m.op("DEPTHWISE_CONV_2D", [x, w, b], [y], padding=win["padding"], stride_h=win["sh"],
         stride_w=win["sw"], dilation_h=win["dh"], dilation_w=win["dw"], depth_multiplier=mult,
         fused_activation=act)
    m.output(y)
    assert_bit_exact(m.build(), rows=2, seed=seed)


@given(rows=st.integers(1, 3), depth=st.integers(1, 64), units=st.integers(1, 32),
       per_channel=st.booleans(), bias=st.booleans(), in_s=log_uniform(1e-3, 1),
       in_zp=zero_points, out_gain=log_uniform(0.05, 20), out_zp=zero_points, act=ACTIVATIONS,
       pow2=st.booleans(), seed=st.integers(0, 2**16))
@SETTINGS
def test_fully_connected(rows, depth, units, per_channel, bias, in_s, in_zp, out_gain, out_zp,
                         act, pow2, seed):
    """A (1, rows, depth) input: FULLY_CONNECTED treats it as `rows` vectors (keep_num_dims)."""
    rng = np.random.default_rng(seed)
    if pow2:  # power-of-two scales put many results exactly on rounding ties
        in_s, out_gain = 2.0 ** -7, 1.0
    m = ModelBuilder()
    x = m.input((1, rows, depth), "int8", scale=in_s, zero_point=in_zp)
    n = units if per_channel else 1
    scales = [2.0 ** -6] * n if pow2 else [float(np.float32(s)) for s in rng.uniform(0.002, 0.05, n)]
    w = m.const(rng.integers(-127, 128, (units, depth)).astype(np.int8), scale=scales,
                zero_point=[0] * n, quantized_dimension=0)
    b = m.const(rng.integers(-4000, 4000, units).astype(np.int32),
                scale=[in_s * s for s in scales], zero_point=[0] * n) if bias else -1
    out_s = 2.0 ** -4 if pow2 else in_s * float(np.mean(scales)) * math.sqrt(depth) * 40 * out_gain
    y = m.tensor((1, rows, units), "int8", scale=out_s, zero_point=out_zp)
    m.op("FULLY_CONNECTED", [x, w, b], [y], fused_activation=act, keep_num_dims=True)
    m.output(y)
    assert_bit_exact(m.build(), rows=2, seed=seed)


@st.composite
def broadcast_pair(draw):
    shape = (1, draw(st.integers(1, 6)), draw(st.integers(1, 6)), draw(st.integers(1, 8)))
    other = draw(st.sampled_from(["same", "channel", "pixel", "scalar", "swap"]))
    b = {"same": shape, "channel": (1, 1, 1, shape[3]), "pixel": (1, shape[1], shape[2], 1),
         "scalar": (1, 1, 1, 1), "swap": (1, shape[1], 1, shape[3])}[other]
    return (b, shape) if draw(st.booleans()) else (shape, b)


@given(shapes=broadcast_pair(), s1=log_uniform(1e-3, 1), s2=log_uniform(1e-3, 1),
       so=log_uniform(1e-3, 1), z1=zero_points, z2=zero_points, zo=zero_points,
       act=ACTIVATIONS, seed=st.integers(0, 2**16))
@SETTINGS
def test_add(shapes, s1, s2, so, z1, z2, zo, act, seed):
    a_shape, b_shape = shapes
    out_shape = tuple(np.broadcast_shapes(a_shape, b_shape))
    m = ModelBuilder()
    a = m.input(a_shape, "int8", scale=s1, zero_point=z1)
    b = m.input(b_shape, "int8", scale=s2, zero_point=z2)
    y = m.tensor(out_shape, "int8", scale=max(so, (s1 + s2) / 200), zero_point=zo)
    m.op("ADD", [a, b], [y], fused_activation=act)
    m.output(y)
    assert_bit_exact(m.build(), rows=3, seed=seed)


@given(kind=st.sampled_from(["ADD", "MUL"]), first=st.booleans(), s1=log_uniform(1e-3, 1),
       s2=log_uniform(1e-3, 1), so=log_uniform(1e-3, 1), z1=zero_points, z2=zero_points,
       zo=zero_points, value=st.integers(-128, 127), act=ACTIVATIONS,
       seed=st.integers(0, 2**16))
@SETTINGS
def test_add_and_mul_of_a_one_value_constant(kind, first, s1, s2, so, z1, z2, zo, value, act,
                                             seed):
    """A tensor and a constant of one value (either operand; Keras' Rescaling): the table
    kernel, bit-exact with TFLite's ADD and MUL."""
    shape = (1, 5, 7, 3)
    m = ModelBuilder()
    x = m.input(shape, "int8", scale=s1, zero_point=z1)
    c = m.const(np.full((1,), value, dtype=np.int8), scale=s2, zero_point=z2)
    out_s = max(so, (s1 + s2) / 200) if kind == "ADD" else max(so, s1 * s2 / 100)
    y = m.tensor(shape, "int8", scale=out_s, zero_point=zo)
    m.op(kind, [c, x] if first else [x, c], [y], fused_activation=act)
    m.output(y)
    compiled, _ = assert_bit_exact(m.build(), rows=3, seed=seed)
    kernels_used = {st_.kernel.name for st_ in compiled.steps if st_.kernel}
    assert kernels_used <= {"lut_s8", "add_s8", "mul_s8"}, kernels_used


def test_rescaling_of_an_input_runs_as_tables():
    """MUL then ADD by one-value constants (Keras' Rescaling(1 / 127.5, offset=-1)) take the
    table kernel, bit-exact."""
    m = ModelBuilder()
    x = m.input((1, 6, 6, 3), "int8", scale=1.0, zero_point=-128)
    k = m.const(np.array([127], dtype=np.int8), scale=1 / 127.5 / 127, zero_point=0)
    h = m.tensor((1, 6, 6, 3), "int8", scale=1 / 127.5, zero_point=-128)
    m.op("MUL", [x, k], [h])
    off = m.const(np.array([-127], dtype=np.int8), scale=1 / 127, zero_point=0)
    y = m.tensor((1, 6, 6, 3), "int8", scale=2 / 255, zero_point=0)
    m.op("ADD", [h, off], [y])
    m.output(y)
    compiled, _ = assert_bit_exact(m.build(), rows=3, seed=1)
    assert [s.kernel.name for s in compiled.steps if s.kernel] == ["lut_s8", "lut_s8"]


@given(win=window(max_hw=10), c=st.integers(1, 6), kind=st.sampled_from(["AVERAGE_POOL_2D", "MAX_POOL_2D"]),
       s=log_uniform(1e-3, 1), zp=zero_points, act=ACTIVATIONS, seed=st.integers(0, 2**16))
@SETTINGS
def test_pooling(win, c, kind, s, zp, act, seed):
    m = ModelBuilder()
    x = m.input((1, win["h"], win["w"], c), "int8", scale=s, zero_point=zp)
    # Pools have no dilation: recompute the output size without it.
    oh = out_size(win["h"], win["kh"], win["sh"], 1, win["padding"])
    ow = out_size(win["w"], win["kw"], win["sw"], 1, win["padding"])
    y = m.tensor((1, oh, ow, c), "int8", scale=s, zero_point=zp)
    m.op(kind, [x], [y], padding=win["padding"], stride_h=win["sh"], stride_w=win["sw"],
         filter_height=win["kh"], filter_width=win["kw"], fused_activation=act)
    m.output(y)
    assert_bit_exact(m.build(), rows=3, seed=seed)


@given(shape=st.sampled_from([(1, 10), (1, 1), (1, 3, 7), (1, 2, 3, 12), (1, 200)]),
       s=log_uniform(1e-3, 2), zp=zero_points, beta=st.sampled_from([1.0, 0.5, 2.0]),
       seed=st.integers(0, 2**16))
@SETTINGS
def test_softmax(shape, s, zp, beta, seed):
    m = ModelBuilder()
    x = m.input(shape, "int8", scale=s, zero_point=zp)
    y = m.tensor(shape, "int8", scale=1.0 / 256, zero_point=-128)
    m.op("SOFTMAX", [x], [y], beta=beta)
    m.output(y)
    assert_bit_exact(m.build(), rows=4, seed=seed)


def test_softmax_saturating_scale():
    # An input scale of 64 caps the multiplier: only the row maximum survives.
    m = ModelBuilder()
    x = m.input((1, 16), "int8", scale=64.0, zero_point=0)
    y = m.tensor((1, 16), "int8", scale=1.0 / 256, zero_point=-128)
    m.op("SOFTMAX", [x], [y], beta=1.0)
    m.output(y)
    assert_bit_exact(m.build(), rows=4)


def test_pad_folds_into_a_valid_conv():
    rng = np.random.default_rng(5)
    m = ModelBuilder()
    x = m.input((1, 7, 6, 3), "int8", scale=0.02, zero_point=-7)
    pads = m.const(np.array([[0, 0], [2, 1], [0, 3], [0, 0]], np.int32))
    p = m.tensor((1, 10, 9, 3), "int8", scale=0.02, zero_point=-7)
    m.op("PAD", [x, pads], [p])
    w = m.const(rng.integers(-127, 128, (5, 3, 3, 3)).astype(np.int8), scale=[0.01] * 5,
                zero_point=[0] * 5, quantized_dimension=0)
    b = m.const(np.zeros(5, np.int32), scale=[0.0002] * 5, zero_point=[0] * 5)
    y = m.tensor((1, 4, 4, 5), "int8", scale=0.05, zero_point=3)
    m.op("CONV_2D", [p, w, b], [y], padding="VALID", stride_h=2, stride_w=2)
    m.output(y)
    compiled, _ = assert_bit_exact(m.build(), rows=4)
    assert [s.op.kind for s in compiled.steps] == ["CONV_2D"]
    window = compiled.steps[0].layer.window
    assert window.pad_top == 2 and window.pad_left == 0


def test_flatten_shape_arithmetic_folds_away():
    """SHAPE -> STRIDED_SLICE -> PACK -> RESHAPE, as Keras' Flatten exports, then a dense layer."""
    rng = np.random.default_rng(6)
    m = ModelBuilder()
    x = m.input((1, 4, 3, 2), "int8", scale=0.05, zero_point=1)
    shape = m.tensor((4,), "int32")
    m.op("SHAPE", [x], [shape])
    batch = m.tensor((), "int32")
    m.op("STRIDED_SLICE", [shape, m.const(np.array([0], np.int32)), m.const(np.array([1], np.int32)),
                           m.const(np.array([1], np.int32))], [batch], shrink_axis_mask=1)
    packed = m.tensor((2,), "int32")
    m.op("PACK", [batch, m.const(np.array(-1, np.int32))], [packed], values_count=2, axis=0)
    flat = m.tensor((1, 24), "int8", scale=0.05, zero_point=1)
    m.op("RESHAPE", [x, packed], [flat])
    w = m.const(rng.integers(-127, 128, (6, 24)).astype(np.int8), scale=0.01, zero_point=0)
    b = m.const(np.zeros(6, np.int32), scale=0.0005, zero_point=0)
    y = m.tensor((1, 6), "int8", scale=0.1, zero_point=0)
    m.op("FULLY_CONNECTED", [flat, w, b], [y])
    m.output(y)
    compiled, _ = assert_bit_exact(m.build(), rows=3)
    assert [s.op.kind for s in compiled.steps] == ["RESHAPE", "FULLY_CONNECTED"]
    assert compiled.steps[0].kernel is None  # a view: no code, no copy


def test_residual_block_shares_one_arena():
    """conv -> depthwise -> conv -> add(skip): the skip tensor stays live across the block."""
    rng = np.random.default_rng(7)
    m = ModelBuilder()
    x = m.input((1, 8, 8, 4), "int8", scale=0.04, zero_point=-3)

    def conv(src, cin, cout, k, name):
        w = m.const(rng.integers(-127, 128, (cout, k, k, cin)).astype(np.int8), scale=[0.01] * cout,
                    zero_point=[0] * cout, quantized_dimension=0)
        b = m.const(rng.integers(-500, 500, cout).astype(np.int32), scale=[0.0004] * cout,
                    zero_point=[0] * cout)
        y = m.tensor((1, 8, 8, cout), "int8", scale=0.05, zero_point=-10, name=name)
        m.op("CONV_2D", [src, w, b], [y], padding="SAME", fused_activation="RELU6")
        return y

    a = conv(x, 4, 12, 1, "expand")
    w = m.const(rng.integers(-127, 128, (1, 3, 3, 12)).astype(np.int8), scale=[0.02] * 12,
                zero_point=[0] * 12, quantized_dimension=3)
    d = m.tensor((1, 8, 8, 12), "int8", scale=0.06, zero_point=-20)
    m.op("DEPTHWISE_CONV_2D", [a, w, m.const(np.zeros(12, np.int32), scale=[0.0012] * 12,
                                             zero_point=[0] * 12)], [d], padding="SAME",
         depth_multiplier=1, fused_activation="RELU6")
    p = conv(d, 12, 4, 1, "project")
    y = m.tensor((1, 8, 8, 4), "int8", scale=0.07, zero_point=2)
    m.op("ADD", [x, p], [y])
    m.output(y)
    model = m.build()
    assert_bit_exact(model, rows=3)  # with the stages auto chooses (the block may be streamed)
    compiled, _ = assert_bit_exact(model, rows=3, patch="none")
    plan = compiled.plan
    # Layer by layer, the input (skip) must not be overwritten before the ADD reads it.
    skip = plan.tensor_offset(compiled.graph.inputs[0])
    expand_out = compiled.steps[0].op.outputs[0]
    assert plan.tensor_offset(expand_out) != skip
