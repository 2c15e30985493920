"""Property tests for the data-movement and (de)quantisation ops: MEAN, CONCATENATION, PAD,
PADV2, QUANTIZE (float32 -> int8 and int8 -> int8) and DEQUANTIZE, each bit-exact with TFLite's
reference kernels over shapes, axes, paddings, scales and zero points, plus a small float-in,
float-out chain through them."""
from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings, strategies as st

from mcunet.compiler import compile_graph
from mcunet.errors import McunetError
from mcunet.frontend import parse_tflite
from mcunet.passes import run_passes

from .modelgen import ModelBuilder
from .opcheck import assert_bit_exact


def _settings(n: int):
    return settings(max_examples=n, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow])


zero_points = st.integers(-128, 127)


def f32(v: float) -> float:
    return float(np.float32(v))


def log_uniform(lo: float, hi: float):
    return st.floats(math.log(lo), math.log(hi)).map(lambda v: f32(math.exp(v)))


@st.composite
def shapes(draw, min_rank=1, max_rank=4, max_dim=7):
    """A tensor shape with batch 1 (rank counts the batch dimension)."""
    rank = draw(st.integers(min_rank, max_rank))
    return (1,) + tuple(draw(st.integers(1, max_dim)) for _ in range(rank - 1))


def compile_bytes(data: bytes):
    return compile_graph(run_passes(parse_tflite(data)))


# --- MEAN ------------------------------------------------------------------------------------

def mean_model(shape, axes, keep, in_s, in_zp, out_s, out_zp, axes_dtype=np.int32) -> bytes:
    rank = len(shape)
    reduced = {a % rank for a in axes}
    out_shape = [1 if i in reduced else d for i, d in enumerate(shape)] if keep else \
        [d for i, d in enumerate(shape) if i not in reduced]
    m = ModelBuilder()
    x = m.input(shape, "int8", scale=in_s, zero_point=in_zp)
    a = m.const(np.array(axes, dtype=axes_dtype))
    y = m.tensor(out_shape, "int8", scale=out_s, zero_point=out_zp)
    m.op("MEAN", [x, a], [y], keep_dims=keep)
    if not keep and 0 in reduced:  # the batch axis is gone: give the output one back
        size = int(np.prod(out_shape, dtype=np.int64))
        z = m.tensor((1, size), "int8", scale=out_s, zero_point=out_zp)
        m.op("RESHAPE", [y, m.const(np.array([1, size], dtype=np.int32))], [z])
        y = z
    m.output(y)
    return m.build()


@st.composite
def mean_case(draw):
    shape = draw(shapes(min_rank=2, max_rank=4, max_dim=9))
    rank = len(shape)
    # Any non-empty set of axes (the batch axis included), each written as positive or
    # negative, in any order.
    axes = draw(st.lists(st.integers(0, rank - 1), min_size=1, max_size=rank, unique=True))
    axes = [a - rank if draw(st.booleans()) else a for a in draw(st.permutations(axes))]
    if draw(st.booleans()):  # TFLite removes duplicates
        axes.append(axes[0])
    return shape, axes


@given(case=mean_case(), keep=st.booleans(), in_s=log_uniform(1e-3, 1), in_zp=zero_points,
       ratio=log_uniform(1e-3, 1e3), out_zp=zero_points, pow2=st.booleans(),
       seed=st.integers(0, 2**16))
@example(case=((1, 6, 5, 4), [1, 2]), keep=True, in_s=0.05, in_zp=-3, ratio=1.0, out_zp=-3,
         pow2=False, seed=0)
@example(case=((1, 6, 5, 4), [1, 2]), keep=False, in_s=0.02, in_zp=0, ratio=0.8, out_zp=5,
         pow2=False, seed=1)
@example(case=((1, 3, 4, 5), [0, 1, 2, 3]), keep=False, in_s=0.1, in_zp=-128, ratio=3.0,
         out_zp=127, pow2=False, seed=2)
@example(case=((1, 8, 4, 2), [1, 2]), keep=True, in_s=0.25, in_zp=1, ratio=2.0, out_zp=0,
         pow2=True, seed=3)
@_settings(60)
def test_mean(case, keep, in_s, in_zp, ratio, out_zp, pow2, seed):
    shape, axes = case
    if pow2:  # power-of-two scales with power-of-two counts make exact rounding ties common
        in_s = 2.0 ** round(math.log2(in_s))
        ratio = 2.0 ** round(math.log2(ratio))
    out_s = f32(in_s / ratio)
    assert_bit_exact(mean_model(shape, axes, keep, in_s, in_zp, out_s, out_zp), rows=3, seed=seed)


def test_mean_large_spatial_window():
    """A global average over 40x40 (n = 1600, a large fold of 1/n into the multiplier)."""
    assert_bit_exact(mean_model((1, 40, 40, 3), [2, 1], False, 0.07, -20, 0.003, 9), rows=2)


def test_mean_rejects_int64_axes():
    """TFLite's MEAN fails in Prepare unless the axes are int32; mcunet says so up front."""
    data = mean_model((1, 4, 4, 3), [1, 2], True, 0.1, 0, 0.1, 0, axes_dtype=np.int64)
    with pytest.raises(McunetError, match=r"MEAN at index 0: input 1 \(tensor 1 .*\), the axes, has type int64"):
        compile_bytes(data)


def test_mean_over_size_one_axis_is_a_requantisation():
    assert_bit_exact(mean_model((1, 4, 1, 6), [2], True, 0.04, 7, 0.01, -3), rows=4)


# --- CONCATENATION ---------------------------------------------------------------------------

def concat_model(shapes_, axis, s, zp, const_mask=None, seed=0) -> bytes:
    rng = np.random.default_rng(seed)
    rank = len(shapes_[0])
    ax = axis % rank
    out_shape = list(shapes_[0])
    out_shape[ax] = sum(sh[ax] for sh in shapes_)
    m = ModelBuilder()
    ins = []
    for k, sh in enumerate(shapes_):
        if const_mask and const_mask[k]:
            ins.append(m.const(rng.integers(-128, 128, sh).astype(np.int8), scale=s, zero_point=zp))
        else:
            ins.append(m.input(sh, "int8", scale=s, zero_point=zp))
    y = m.tensor(out_shape, "int8", scale=s, zero_point=zp)
    m.op("CONCATENATION", ins, [y], axis=axis)
    m.output(y)
    return m.build()


@st.composite
def concat_case(draw):
    base = draw(shapes(min_rank=2, max_rank=4, max_dim=5))
    rank = len(base)
    # The batch axis stays 1 in every input (the test harness batches on it).
    axis_pos = draw(st.integers(1, rank - 1))
    axis = axis_pos - rank if draw(st.booleans()) else axis_pos
    n = draw(st.integers(1, 4))
    shapes_ = []
    for _ in range(n):
        sh = list(base)
        sh[axis_pos] = draw(st.integers(1, 5))
        shapes_.append(tuple(sh))
    const_mask = [False] + [draw(st.integers(0, 4)) == 0 for _ in range(n - 1)]
    return shapes_, axis, const_mask


@given(case=concat_case(), s=log_uniform(1e-3, 1), zp=zero_points, seed=st.integers(0, 2**16))
@_settings(30)
def test_concat(case, s, zp, seed):
    shapes_, axis, const_mask = case
    assert_bit_exact(concat_model(shapes_, axis, s, zp, const_mask, seed), rows=2, seed=seed)


@pytest.mark.parametrize("axis", [1, 2, 3, -1, -2, -3])
def test_concat_three_inputs_along_each_axis(axis):
    shapes_ = []
    for k in range(3):
        sh = [1, 3, 4, 2]
        sh[axis % 4] = k + 1
        shapes_.append(tuple(sh))
    assert_bit_exact(concat_model(shapes_, axis, 0.05, -17), rows=2, seed=axis + 10)


def test_concat_along_batch_axis_then_reshape():
    """Axis 0 (the batch) grows the batch: seen through a RESHAPE back to batch 1."""
    m = ModelBuilder()
    a = m.input((1, 2, 3), "int8", scale=0.1, zero_point=2)
    b = m.const(np.arange(12, dtype=np.int8).reshape(2, 2, 3), scale=0.1, zero_point=2)
    y = m.tensor((3, 2, 3), "int8", scale=0.1, zero_point=2)
    m.op("CONCATENATION", [a, b], [y], axis=0)
    shape = m.const(np.array([1, 18], dtype=np.int32))
    z = m.tensor((1, 18), "int8", scale=0.1, zero_point=2)
    m.op("RESHAPE", [y, shape], [z])
    m.output(z)
    assert_bit_exact(m.build(), rows=2)


def test_concat_rejects_different_quantisation():
    m = ModelBuilder()
    a = m.input((1, 2, 2, 3), "int8", scale=0.1, zero_point=0)
    b = m.input((1, 2, 2, 3), "int8", scale=0.2, zero_point=0)
    y = m.tensor((1, 2, 2, 6), "int8", scale=0.1, zero_point=0)
    m.op("CONCATENATION", [a, b], [y], axis=3)
    m.output(y)
    with pytest.raises(McunetError, match=r"CONCATENATION at index 0: input 1 .* has scale 0.2 .*"
                       r"TFLite requires equal scale and zero point"):
        compile_bytes(m.build())


def test_concat_rejects_fused_activation():
    m = ModelBuilder()
    a = m.input((1, 2, 3), "int8", scale=0.1, zero_point=0)
    y = m.tensor((1, 2, 6), "int8", scale=0.1, zero_point=0)
    m.op("CONCATENATION", [a, a], [y], axis=2, fused_activation="RELU")
    m.output(y)
    with pytest.raises(McunetError, match="fused activation RELU"):
        compile_bytes(m.build())


# --- PAD / PADV2 -----------------------------------------------------------------------------

def pad_model(shape, pads, in_q, out_q, kind="PAD", value=None, pads_dtype=np.int32) -> bytes:
    out_shape = [d + b + a for d, (b, a) in zip(shape, pads)]
    m = ModelBuilder()
    x = m.input(shape, "int8", scale=in_q[0], zero_point=in_q[1])
    p = m.const(np.array(pads, dtype=pads_dtype).reshape(len(shape), 2))
    ins = [x, p]
    if value is not None:
        ins.append(m.const(np.array([value], dtype=np.int8), scale=out_q[0], zero_point=out_q[1]))
    y = m.tensor(out_shape, "int8", scale=out_q[0], zero_point=out_q[1])
    m.op(kind, ins, [y])
    m.output(y)
    return m.build()


@st.composite
def pad_case(draw):
    shape = draw(shapes(min_rank=2, max_rank=4, max_dim=6))
    pads = [(0, 0)] + [(draw(st.integers(0, 3)), draw(st.integers(0, 3)))
                       for _ in range(len(shape) - 1)]
    return shape, pads


@given(case=pad_case(), s=log_uniform(1e-3, 1), zp=zero_points, same_q=st.booleans(),
       out_s=log_uniform(1e-3, 1), out_zp=zero_points,
       kind=st.sampled_from(["PAD", "PADV2"]), value=st.integers(-128, 127),
       pads_dtype=st.sampled_from([np.int32, np.int64]), seed=st.integers(0, 2**16))
@example(case=((1, 3, 4, 2), [(0, 0), (0, 0), (0, 0), (0, 0)]), s=0.1, zp=3, same_q=True,
         out_s=0.1, out_zp=3, kind="PAD", value=0, pads_dtype=np.int32, seed=0)
@example(case=((1, 3, 4, 2), [(0, 0), (1, 0), (0, 3), (2, 1)]), s=0.1, zp=-7, same_q=False,
         out_s=0.2, out_zp=5, kind="PAD", value=0, pads_dtype=np.int64, seed=1)
@_settings(40)
def test_pad(case, s, zp, same_q, out_s, out_zp, kind, value, pads_dtype, seed):
    shape, pads = case
    out_q = (s, zp) if same_q else (out_s, out_zp)  # values are copied raw either way
    data = pad_model(shape, pads, (s, zp), out_q, kind, value if kind == "PADV2" else None,
                     pads_dtype)
    assert_bit_exact(data, rows=2, seed=seed)


def test_pad_before_max_pool_is_not_folded():
    """A PAD feeding a pool (not a VALID conv) stays an op of its own."""
    m = ModelBuilder()
    x = m.input((1, 5, 5, 3), "int8", scale=0.1, zero_point=-128)
    p = m.const(np.array([[0, 0], [1, 1], [1, 1], [0, 0]], dtype=np.int32))
    y = m.tensor((1, 7, 7, 3), "int8", scale=0.1, zero_point=-128)
    m.op("PAD", [x, p], [y])
    z = m.tensor((1, 3, 3, 3), "int8", scale=0.1, zero_point=-128)
    m.op("MAX_POOL_2D", [y], [z], padding="VALID", stride_h=2, stride_w=2, filter_height=3,
         filter_width=3)
    m.output(z)
    compiled, _ = assert_bit_exact(m.build(), rows=3)
    assert [s.op.kind for s in compiled.steps] == ["PAD", "MAX_POOL_2D"]


def test_pad_of_batch_axis_then_reshape():
    m = ModelBuilder()
    x = m.input((1, 2, 3), "int8", scale=0.1, zero_point=4)
    p = m.const(np.array([[1, 2], [0, 1], [1, 0]], dtype=np.int32))
    y = m.tensor((4, 3, 4), "int8", scale=0.1, zero_point=4)
    m.op("PAD", [x, p], [y])
    shape = m.const(np.array([1, 48], dtype=np.int32))
    z = m.tensor((1, 48), "int8", scale=0.1, zero_point=4)
    m.op("RESHAPE", [y, shape], [z])
    m.output(z)
    assert_bit_exact(m.build(), rows=2, sanitize=True)


def test_padv2_without_value_fills_with_output_zero_point():
    assert_bit_exact(pad_model((1, 3, 4, 2), [(0, 0), (1, 0), (0, 3), (2, 1)], (0.1, 3),
                               (0.1, -9), "PADV2", None), rows=2)


def test_pad_and_mean_of_constants():
    """PAD and MEAN of constant tensors read their input from flash."""
    rng = np.random.default_rng(5)
    m = ModelBuilder()
    x = m.input((1, 4, 3), "int8", scale=0.1, zero_point=1)
    c = m.const(rng.integers(-128, 128, (1, 2, 3)).astype(np.int8), scale=0.1, zero_point=1)
    p = m.const(np.array([[0, 0], [1, 1], [0, 0]], dtype=np.int32))
    cp = m.tensor((1, 4, 3), "int8", scale=0.1, zero_point=1)
    m.op("PAD", [c, p], [cp])
    c2 = m.const(rng.integers(-128, 128, (1, 5, 4, 3)).astype(np.int8), scale=0.3, zero_point=-2)
    cm = m.tensor((1, 4, 3), "int8", scale=0.1, zero_point=1)
    m.op("MEAN", [c2, m.const(np.array([1], dtype=np.int32))], [cm], keep_dims=False)
    y = m.tensor((1, 12, 3), "int8", scale=0.1, zero_point=1)
    m.op("CONCATENATION", [x, cp, cm], [y], axis=1)
    m.output(y)
    assert_bit_exact(m.build(), rows=2, sanitize=True)


def test_padv2_rejects_value_quantised_unlike_output():
    m = ModelBuilder()
    x = m.input((1, 2, 2, 1), "int8", scale=0.1, zero_point=0)
    p = m.const(np.array([[0, 0], [1, 1], [1, 1], [0, 0]], dtype=np.int32))
    v = m.const(np.array([9], dtype=np.int8), scale=0.3, zero_point=0)
    y = m.tensor((1, 4, 4, 1), "int8", scale=0.1, zero_point=0)
    m.op("PADV2", [x, p, v], [y])
    m.output(y)
    with pytest.raises(McunetError, match=r"PADV2 at index 0: input 2 .*the pad value, is not quantised "
                       "like the output"):
        compile_bytes(m.build())


# --- QUANTIZE / DEQUANTIZE -------------------------------------------------------------------

def quantize_model(n: int, scale: float, zp: int) -> bytes:
    m = ModelBuilder()
    x = m.input((1, n), "float32")
    y = m.tensor((1, n), "int8", scale=scale, zero_point=zp)
    m.op("QUANTIZE", [x], [y])
    m.output(y)
    return m.build()


def tie_inputs(scale: float, zp: int, rows: int, n: int, seed: int) -> np.ndarray:
    """Exact halves k + 0.5 of the scale, their float neighbours, exact multiples, and values
    far outside the int8 range, as float32."""
    rng = np.random.default_rng(seed)
    s = np.float32(scale)
    k = rng.integers(-140 - zp, 140 - zp, size=rows * n).astype(np.float64)
    ties = ((k + 0.5) * np.float64(s)).astype(np.float32)
    kind = rng.integers(0, 6, size=rows * n)
    x = ties.copy()
    x[kind == 1] = np.nextafter(ties[kind == 1], np.float32(np.inf))
    x[kind == 2] = np.nextafter(ties[kind == 2], np.float32(-np.inf))
    x[kind == 3] = (k[kind == 3] * np.float64(s)).astype(np.float32)
    x[kind == 4] = (rng.standard_normal((kind == 4).sum()) * 1000 * s).astype(np.float32)
    return x.reshape(rows, n).astype(np.float32)


@given(scale=log_uniform(1e-4, 10), zp=zero_points, pow2=st.booleans(), seed=st.integers(0, 2**16))
@example(scale=0.1, zp=0, pow2=False, seed=0)
@example(scale=0.25, zp=-128, pow2=True, seed=1)
@_settings(30)
def test_quantize_float_to_int8(scale, zp, pow2, seed):
    if pow2:  # x / scale is exact: every k + 0.5 is a true tie
        scale = 2.0 ** round(math.log2(scale))
    n = 96
    assert_bit_exact(quantize_model(n, scale, zp), inputs=[tie_inputs(scale, zp, 3, n, seed)])


@pytest.mark.parametrize("zp", [0, -5, 7, 127, -128])
def test_quantize_float_extremes(zp):
    """Infinities, NaN and values beyond int32 after scaling: TFLite's reference converts the
    rounded quotient to int32 the x86 way (INT32_MIN when out of range) before adding the zero
    point; the generated code reproduces that (and the sanitiser checks that it is defined C)."""
    vals = np.array([1e12, -1e12, np.inf, -np.inf, np.nan, 3e9, -3e9, 2.1e8, -2.1e8,
                     214748364.0, -214748364.8, 0.0, -0.0, 1e-30, 12.75, -12.85],
                    dtype=np.float32)
    assert_bit_exact(quantize_model(vals.size, 0.1, zp), inputs=[vals.reshape(1, -1)],
                     sanitize=True)


def requantize_model(in_q, out_q) -> bytes:
    m = ModelBuilder()
    x = m.input((1, 256), "int8", scale=in_q[0], zero_point=in_q[1])
    y = m.tensor((1, 256), "int8", scale=out_q[0], zero_point=out_q[1])
    m.op("QUANTIZE", [x], [y])
    m.output(y)
    return m.build()


ALL_INT8 = np.arange(-128, 128, dtype=np.int8).reshape(1, 256)


@given(in_s=log_uniform(1e-3, 1), in_zp=zero_points, ratio=log_uniform(1e-3, 1e3),
       out_zp=zero_points, pow2=st.booleans())
@example(in_s=0.1, in_zp=3, ratio=1.0, out_zp=-4, pow2=False)  # equal scales: a shift
@example(in_s=0.5, in_zp=0, ratio=4.0, out_zp=0, pow2=True)  # ties at every 4th value
@_settings(30)
def test_requantize(in_s, in_zp, ratio, out_zp, pow2):
    if pow2:
        in_s, ratio = 2.0 ** round(math.log2(in_s)), 2.0 ** round(math.log2(ratio))
    out_s = f32(in_s / ratio)
    assert_bit_exact(requantize_model((in_s, in_zp), (out_s, out_zp)), inputs=[ALL_INT8])


@given(scale=log_uniform(1e-6, 1e3), zp=zero_points)
@example(scale=1.0, zp=-128)
@_settings(12)
def test_dequantize(scale, zp):
    m = ModelBuilder()
    x = m.input((1, 256), "int8", scale=scale, zero_point=zp)
    y = m.tensor((1, 256), "float32")
    m.op("DEQUANTIZE", [x], [y])
    m.output(y)
    assert_bit_exact(m.build(), inputs=[ALL_INT8])


def test_quantize_rejects_per_axis_output():
    m = ModelBuilder()
    x = m.input((1, 2, 3), "float32")
    y = m.tensor((1, 2, 3), "int8", scale=[0.1, 0.2, 0.3], zero_point=[0, 0, 0],
                 quantized_dimension=2)
    m.op("QUANTIZE", [x], [y])
    m.output(y)
    with pytest.raises(McunetError, match="QUANTIZE at index 0: .*per axis"):
        compile_bytes(m.build())


# --- a float-in, float-out chain -------------------------------------------------------------

@given(in_s=log_uniform(5e-3, 0.1), in_zp=zero_points, c_zp=zero_points, m_zp=zero_points,
       seed=st.integers(0, 2**16))
@_settings(8)
def test_float_chain(in_s, in_zp, c_zp, m_zp, seed):
    """QUANTIZE -> CONV_2D, and a requantised copy of the input, -> CONCATENATION -> PAD ->
    MAX_POOL_2D -> MEAN -> DEQUANTIZE, with the padded tensor as a second (int8) output."""
    rng = np.random.default_rng(seed)
    m = ModelBuilder()
    xf = m.input((1, 6, 6, 3), "float32")
    xq = m.tensor((1, 6, 6, 3), "int8", scale=in_s, zero_point=in_zp)
    m.op("QUANTIZE", [xf], [xq])
    w_scales = [f32(s) for s in rng.uniform(0.005, 0.05, 4)]
    w = m.const(rng.integers(-127, 128, (4, 3, 3, 3)).astype(np.int8), scale=w_scales,
                zero_point=[0] * 4, quantized_dimension=0)
    b = m.const(rng.integers(-2000, 2000, 4).astype(np.int32),
                scale=[in_s * s for s in w_scales], zero_point=[0] * 4)
    c_s = f32(in_s * 0.03 * 3 * 30)
    c = m.tensor((1, 6, 6, 4), "int8", scale=c_s, zero_point=c_zp)
    m.op("CONV_2D", [xq, w, b], [c], padding="SAME", fused_activation="NONE")
    xr = m.tensor((1, 6, 6, 3), "int8", scale=c_s, zero_point=c_zp)
    m.op("QUANTIZE", [xq], [xr])
    cat = m.tensor((1, 6, 6, 7), "int8", scale=c_s, zero_point=c_zp)
    m.op("CONCATENATION", [c, xr], [cat], axis=-1)
    p = m.const(np.array([[0, 0], [1, 1], [1, 1], [0, 0]], dtype=np.int32))
    padded = m.tensor((1, 8, 8, 7), "int8", scale=c_s, zero_point=c_zp)
    m.op("PAD", [cat, p], [padded])
    pooled = m.tensor((1, 4, 4, 7), "int8", scale=c_s, zero_point=c_zp)
    m.op("MAX_POOL_2D", [padded], [pooled], padding="VALID", stride_h=2, stride_w=2,
         filter_height=2, filter_width=2)
    axes = m.const(np.array([1, 2], dtype=np.int32))
    mean = m.tensor((1, 7), "int8", scale=f32(c_s * 0.7), zero_point=m_zp)
    m.op("MEAN", [pooled, axes], [mean], keep_dims=False)
    out = m.tensor((1, 7), "float32")
    m.op("DEQUANTIZE", [mean], [out])
    m.output(out)
    m.output(padded)
    x = (rng.standard_normal((3, 6, 6, 3)) * 40 * in_s).astype(np.float32)
    compiled, _ = assert_bit_exact(m.build(), inputs=[x])
    assert [s.op.kind for s in compiled.steps] == [
        "QUANTIZE", "CONV_2D", "QUANTIZE", "CONCATENATION", "PAD", "MAX_POOL_2D", "MEAN",
        "DEQUANTIZE"]
