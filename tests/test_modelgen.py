"""tests/modelgen.py builds models that TFLite's reference interpreter accepts and runs."""
from __future__ import annotations

import math

import numpy as np
import pytest
import tflite

from .modelgen import ModelBuilder, run_reference

RNG = np.random.default_rng(1234)


def rand(shape, dtype="int8"):
    if dtype == "float32":
        return RNG.uniform(-3, 3, shape).astype(np.float32)
    info = np.iinfo(dtype)
    return RNG.integers(info.min, info.max, shape, endpoint=True).astype(dtype)


def conv_weights(shape, channels):
    return rand(shape), list(RNG.uniform(0.005, 0.03, channels))


# Each builder returns (model builder, feeds, expected output shape, expected output dtype).

def build_conv(padding="SAME", stride=1, act="RELU"):
    m = ModelBuilder()
    x = m.input((1, 8, 8, 3), "int8", scale=0.05, zero_point=-3)
    data, ws = conv_weights((4, 3, 3, 3), 4)
    w = m.const(data, scale=ws, zero_point=[0] * 4, quantized_dimension=0)
    b = m.const(rand(4, "int16").astype(np.int32), scale=[0.05 * s for s in ws], zero_point=[0] * 4)
    o = 8 // stride if padding == "SAME" else (8 - 3) // stride + 1
    y = m.tensor((1, o, o, 4), "int8", scale=0.1, zero_point=2)
    m.op("CONV_2D", [x, w, b], [y], padding=padding, stride_w=stride, stride_h=stride,
         fused_activation=act, dilation_w=1, dilation_h=1)
    m.output(y)
    return m, [rand((1, 8, 8, 3))], (1, o, o, 4), np.int8


def build_depthwise_no_bias():
    # litert quirks: int8 CONV_2D insists on a bias (conv.cc "has_bias was not true"), and int8
    # (DEPTHWISE_)CONV_2D reject a -1 bias ("Tensor at index 2 was optional but was
    # expected"); DEPTHWISE_CONV_2D with the bias input left out works. FULLY_CONNECTED takes -1.
    m = ModelBuilder()
    x = m.input((1, 5, 5, 2), "int8", scale=0.05, zero_point=0)
    data, ws = conv_weights((1, 3, 3, 2), 2)
    w = m.const(data, scale=ws, zero_point=[0] * 2, quantized_dimension=3)
    y = m.tensor((1, 3, 3, 2), "int8", scale=0.05, zero_point=0)
    m.op("DEPTHWISE_CONV_2D", [x, w], [y], padding="VALID")
    m.output(y)
    return m, [rand((1, 5, 5, 2))], (1, 3, 3, 2), np.int8


def build_depthwise():
    m = ModelBuilder()
    x = m.input((1, 6, 6, 2), "int8", scale=0.04, zero_point=5)
    data, ws = conv_weights((1, 3, 3, 4), 4)
    w = m.const(data, scale=ws, zero_point=[0] * 4, quantized_dimension=3)
    b = m.const(np.arange(4, dtype=np.int32) * 100, scale=[0.04 * s for s in ws], zero_point=[0] * 4)
    y = m.tensor((1, 3, 3, 4), "int8", scale=0.08, zero_point=-1)
    m.op("DEPTHWISE_CONV_2D", [x, w, b], [y], padding="SAME", stride_w=2, stride_h=2,
         depth_multiplier=2, fused_activation="RELU6")
    m.output(y)
    return m, [rand((1, 6, 6, 2))], (1, 3, 3, 4), np.int8


def build_fully_connected():
    m = ModelBuilder()
    x = m.input((1, 2, 8), "int8", scale=0.05, zero_point=1)
    w = m.const(rand((5, 8)), scale=0.02, zero_point=0)
    y = m.tensor((1, 2, 5), "int8", scale=0.2, zero_point=-4)
    m.op("FULLY_CONNECTED", [x, w, -1], [y], keep_num_dims=True, fused_activation="NONE")
    m.output(y)
    return m, [rand((1, 2, 8))], (1, 2, 5), np.int8


def build_binary(kind):
    def build():
        m = ModelBuilder()
        a = m.input((1, 4, 4, 3), "int8", scale=0.05, zero_point=3)
        c = m.const(rand((1, 1, 1, 3)), scale=0.03, zero_point=-2)
        y = m.tensor((1, 4, 4, 3), "int8", scale=0.07, zero_point=0)
        m.op(kind, [a, c], [y], fused_activation="RELU_N1_TO_1")
        m.output(y)
        return m, [rand((1, 4, 4, 3))], (1, 4, 4, 3), np.int8
    return build


def build_pool(kind, padding, out_hw):
    def build():
        m = ModelBuilder()
        x = m.input((1, 8, 8, 3), "int8", scale=0.05, zero_point=-7)
        y = m.tensor((1, out_hw, out_hw, 3), "int8", scale=0.05, zero_point=-7)
        m.op(kind, [x], [y], padding=padding, stride_w=2, stride_h=2, filter_width=3,
             filter_height=3, fused_activation="RELU6")
        m.output(y)
        return m, [rand((1, 8, 8, 3))], (1, out_hw, out_hw, 3), np.int8
    return build


def build_mean():
    m = ModelBuilder()
    x = m.input((1, 4, 5, 3), "int8", scale=0.05, zero_point=2)
    axis = m.const(np.array([1, 2], np.int32))
    y = m.tensor((1, 1, 1, 3), "int8", scale=0.03, zero_point=-1)
    m.op("MEAN", [x, axis], [y], keep_dims=True)
    m.output(y)
    return m, [rand((1, 4, 5, 3))], (1, 1, 1, 3), np.int8


def build_pad(**builder_kw):
    m = ModelBuilder(**builder_kw)
    x = m.input((1, 3, 4, 2), "int8", scale=0.05, zero_point=-9)
    pads = m.const(np.array([[0, 0], [1, 2], [0, 1], [0, 0]], np.int32))
    y = m.tensor((1, 6, 5, 2), "int8", scale=0.05, zero_point=-9)
    m.op("PAD", [x, pads], [y])
    m.output(y)
    return m, [rand((1, 3, 4, 2))], (1, 6, 5, 2), np.int8


def build_reshape(with_shape_input):
    def build():
        m = ModelBuilder()
        x = m.input((1, 2, 3, 4), "int8", scale=0.05, zero_point=0)
        y = m.tensor((1, 24), "int8", scale=0.05, zero_point=0)
        if with_shape_input:
            m.op("RESHAPE", [x, m.const(np.array([1, 24], np.int32))], [y], new_shape=[1, 24])
        else:
            m.op("RESHAPE", [x], [y], new_shape=[1, 24])
        m.output(y)
        return m, [rand((1, 2, 3, 4))], (1, 24), np.int8
    return build


def build_softmax():
    m = ModelBuilder()
    x = m.input((1, 10), "int8", scale=0.1, zero_point=4)
    y = m.tensor((1, 10), "int8", scale=1 / 256, zero_point=-128)
    m.op("SOFTMAX", [x], [y], beta=1.0)
    m.output(y)
    return m, [rand((1, 10))], (1, 10), np.int8


def build_concat():
    m = ModelBuilder()
    a = m.input((1, 2, 2, 3), "int8", scale=0.05, zero_point=1)
    b = m.input((1, 2, 2, 5), "int8", scale=0.05, zero_point=1)
    y = m.tensor((1, 2, 2, 8), "int8", scale=0.05, zero_point=1)
    m.op("CONCATENATION", [a, b], [y], axis=3, fused_activation="NONE")
    m.output(y)
    return m, [rand((1, 2, 2, 3)), rand((1, 2, 2, 5))], (1, 2, 2, 8), np.int8


def build_quantize(src):
    def build():
        m = ModelBuilder()
        if src == "float32":
            x = m.input((1, 16), "float32")
        else:
            x = m.input((1, 16), src, scale=0.05, zero_point=128 if src == "uint8" else 3)
        out_dtype = "int16" if src == "float32" else "int8"
        y = m.tensor((1, 16), out_dtype, scale=0.02, zero_point=0 if out_dtype == "int16" else -5)
        m.op("QUANTIZE", [x], [y])
        m.output(y)
        return m, [rand((1, 16), src)], (1, 16), np.dtype(out_dtype)
    return build


def build_dequantize():
    m = ModelBuilder()
    x = m.input((1, 16), "int8", scale=0.05, zero_point=3)
    y = m.tensor((1, 16), "float32")
    m.op("DEQUANTIZE", [x], [y])
    m.output(y)
    return m, [rand((1, 16))], (1, 16), np.float32


def build_unary(kind, out_scale, out_zp):
    def build():
        m = ModelBuilder()
        x = m.input((1, 4, 4, 2), "int8", scale=0.06, zero_point=-2)
        y = m.tensor((1, 4, 4, 2), "int8", scale=out_scale, zero_point=out_zp)
        m.op(kind, [x], [y])
        m.output(y)
        return m, [rand((1, 4, 4, 2))], (1, 4, 4, 2), np.int8
    return build


def build_shape(out_type):
    def build():
        m = ModelBuilder()
        x = m.input((1, 4, 3, 2), "int8", scale=0.05, zero_point=0)
        y = m.tensor((4,), out_type)
        m.op("SHAPE", [x], [y])  # out_type defaults to the output tensor's dtype
        m.output(y)
        return m, [rand((1, 4, 3, 2))], (4,), np.dtype(out_type)
    return build


def build_strided_slice():
    m = ModelBuilder()
    x = m.input((1, 6, 5, 3), "int8", scale=0.05, zero_point=0)
    begin = m.const(np.array([0, 1, 0, 0], np.int32))
    end = m.const(np.array([1, 5, 5, 2], np.int32))
    strides = m.const(np.array([1, 2, 1, 1], np.int32))
    y = m.tensor((2, 5, 2), "int8", scale=0.05, zero_point=0)
    m.op("STRIDED_SLICE", [x, begin, end, strides], [y], begin_mask=0b0100, end_mask=0,
         shrink_axis_mask=0b0001)
    m.output(y)
    return m, [rand((1, 6, 5, 3))], (2, 5, 2), np.int8


def build_pack():
    m = ModelBuilder()
    a = m.input((1, 3), "int8", scale=0.05, zero_point=0)
    b = m.input((1, 3), "int8", scale=0.05, zero_point=0)
    y = m.tensor((1, 2, 3), "int8", scale=0.05, zero_point=0)
    m.op("PACK", [a, b], [y], values_count=2, axis=1)
    m.output(y)
    return m, [rand((1, 3)), rand((1, 3))], (1, 2, 3), np.int8


def build_shape_chain():
    """SHAPE -> STRIDED_SLICE (scalar) -> PACK -> RESHAPE(shape tensor): a Keras Flatten."""
    m = ModelBuilder()
    x = m.input((1, 4, 3, 2), "int8", scale=0.05, zero_point=1)
    shape = m.tensor((4,), "int32")
    m.op("SHAPE", [x], [shape], out_type="int32")
    batch = m.tensor((), "int32")
    one = m.const(np.array([1], np.int32))
    m.op("STRIDED_SLICE", [shape, m.const(np.array([0], np.int32)), one, one], [batch],
         shrink_axis_mask=1)
    packed = m.tensor((2,), "int32")
    m.op("PACK", [batch, m.const(np.array(-1, np.int32))], [packed], axis=0)
    y = m.tensor((1, 24), "int8", scale=0.05, zero_point=1)
    m.op("RESHAPE", [x, packed], [y])
    m.output(y)
    return m, [rand((1, 4, 3, 2))], (1, 24), np.int8


def build_gather():
    m = ModelBuilder()
    x = m.input((1, 5, 2), "int8", scale=0.05, zero_point=0)
    idx = m.const(np.array([4, 0, 2], np.int32))
    y = m.tensor((1, 3, 2), "int8", scale=0.05, zero_point=0)
    m.op("GATHER", [x, idx], [y], axis=1)
    m.output(y)
    return m, [rand((1, 5, 2))], (1, 3, 2), np.int8


CASES = {
    "CONV_2D": build_conv,
    "DEPTHWISE_CONV_2D": build_depthwise,
    "DEPTHWISE_CONV_2D-no-bias": build_depthwise_no_bias,
    "FULLY_CONNECTED": build_fully_connected,
    "ADD": build_binary("ADD"),
    "MUL": build_binary("MUL"),
    "AVERAGE_POOL_2D": build_pool("AVERAGE_POOL_2D", "VALID", 3),
    "MAX_POOL_2D": build_pool("MAX_POOL_2D", "SAME", 4),
    "MEAN": build_mean,
    "PAD": build_pad,
    "RESHAPE-options": build_reshape(False),
    "RESHAPE-shape-tensor": build_reshape(True),
    "SOFTMAX": build_softmax,
    "CONCATENATION": build_concat,
    "QUANTIZE-f32-to-i16": build_quantize("float32"),
    "QUANTIZE-i8-to-i8": build_quantize("int8"),
    "QUANTIZE-u8-to-i8": build_quantize("uint8"),
    "DEQUANTIZE": build_dequantize,
    "LOGISTIC": build_unary("LOGISTIC", 1 / 256, -128),
    "HARD_SWISH": build_unary("HARD_SWISH", 0.03, -20),
    "TANH": build_unary("TANH", 1 / 128, 0),  # no options table: the generic path
    "SHAPE-int32": build_shape("int32"),
    "SHAPE-int64": build_shape("int64"),
    "STRIDED_SLICE": build_strided_slice,
    "PACK": build_pack,
    "shape-chain": build_shape_chain,
    "GATHER": build_gather,
}


@pytest.mark.parametrize("case", CASES)
def test_op_runs_in_reference_interpreter(case):
    m, feeds, shape, dtype = CASES[case]()
    (out,) = run_reference(m.build(), feeds)
    assert out.shape == shape
    assert out.dtype == dtype


# ------------------------------------------------- bit-exact CONV_2D check
def quantize_multiplier(m: float) -> tuple[int, int]:
    """TFLite's QuantizeMultiplier: m = q * 2^(shift - 31), q in [2^30, 2^31)."""
    if m == 0:
        return 0, 0
    frac, shift = math.frexp(m)
    q = math.floor(frac * (1 << 31) + 0.5)
    if q == 1 << 31:
        q, shift = q // 2, shift + 1
    if shift < -31:
        return 0, 0
    return q, shift


def multiply_by_quantized_multiplier(x: int, q: int, shift: int) -> int:
    """gemmlowp-style double rounding, as in TFLite's reference integer kernels."""
    x *= 1 << max(shift, 0)
    ab = x * q
    nudge = (1 << 30) if ab >= 0 else 1 - (1 << 30)
    n = ab + nudge
    high = abs(n) // (1 << 31) * (1 if n >= 0 else -1)  # C division truncates toward zero
    exponent = max(-shift, 0)
    mask = (1 << exponent) - 1
    remainder, threshold = high & mask, (mask >> 1) + (1 if high < 0 else 0)
    return (high >> exponent) + (1 if remainder > threshold else 0)


def conv_reference(x, in_scale, in_zp, w, w_scales, bias, out_scale, out_zp, stride, padding, relu):
    _, h, wd, _ = x.shape
    oc, kh, kw, _ = w.shape
    if padding == "SAME":
        oh, ow = -(-h // stride), -(-wd // stride)
        ph = max((oh - 1) * stride + kh - h, 0) // 2
        pw = max((ow - 1) * stride + kw - wd, 0) // 2
    else:
        oh, ow, ph, pw = (h - kh) // stride + 1, (wd - kw) // stride + 1, 0, 0
    xs = np.pad(x.astype(np.int64) - in_zp, ((0, 0), (ph, kh), (pw, kw), (0, 0)))  # zeros == zp
    out = np.zeros((1, oh, ow, oc), np.int8)
    lo = max(-128, out_zp) if relu else -128
    mults = [quantize_multiplier(float(np.float32(in_scale)) * float(np.float32(s))
                                 / float(np.float32(out_scale))) for s in w_scales]
    for i in range(oh):
        for j in range(ow):
            patch = xs[0, i * stride:i * stride + kh, j * stride:j * stride + kw, :]
            acc = np.einsum("hwc,ohwc->o", patch, w.astype(np.int64)) + bias
            for c in range(oc):
                v = multiply_by_quantized_multiplier(int(acc[c]), *mults[c]) + out_zp
                out[0, i, j, c] = min(max(v, lo), 127)
    return out


@pytest.mark.parametrize("padding,stride", [("SAME", 1), ("VALID", 2), ("SAME", 2)])
def test_conv2d_matches_numpy_reference(padding, stride):
    m, (x,), _, _ = build_conv(padding, stride, act="RELU")
    x_t, w_t, b_t, y_t = (m.tensors[i] for i in range(4))
    w = np.frombuffer(m.buffers[w_t.buffer], np.int8).reshape(w_t.shape)
    bias = np.frombuffer(m.buffers[b_t.buffer], np.int32)
    (out,) = run_reference(m.build(), [x])
    expected = conv_reference(x, x_t.scale[0], x_t.zero_point[0], w, w_t.scale, bias,
                              y_t.scale[0], y_t.zero_point[0], stride, padding, relu=True)
    assert len(np.unique(out)) > 3
    np.testing.assert_array_equal(out, expected)


# --------------------------------------------------- flatbuffer structure
def test_flatbuffer_fields():
    m, _, _, _ = build_depthwise()
    m.op("TANH", [3], [m.tensor((1, 3, 3, 4), "int8", scale=1 / 128, zero_point=0)])
    model = tflite.Model.GetRootAsModel(m.build(), 0)
    assert model.Version() == 3
    assert model.Description() and model.SubgraphsLength() == 1
    assert model.Buffers(0).DataLength() == 0
    codes = [model.OperatorCodes(i) for i in range(model.OperatorCodesLength())]
    assert [(c.BuiltinCode(), c.DeprecatedBuiltinCode()) for c in codes] == [
        (tflite.BuiltinOperator.DEPTHWISE_CONV_2D, tflite.BuiltinOperator.DEPTHWISE_CONV_2D),
        (tflite.BuiltinOperator.TANH, tflite.BuiltinOperator.TANH)]
    sg = model.Subgraphs(0)
    w = sg.Tensors(1)
    assert w.Type() == tflite.TensorType.INT8 and w.ShapeAsNumpy().tolist() == [1, 3, 3, 4]
    q = w.Quantization()
    assert q.ScaleLength() == 4 and q.ZeroPointAsNumpy().tolist() == [0] * 4
    assert q.QuantizedDimension() == 3
    assert sg.Tensors(0).Quantization().ScaleAsNumpy().tolist() == [np.float32(0.04)]
    assert model.Buffers(w.Buffer()).DataAsNumpy().size == 36
    op = sg.Operators(0)
    assert op.BuiltinOptionsType() == tflite.BuiltinOptions.DepthwiseConv2DOptions
    opts = tflite.DepthwiseConv2DOptions()
    opts.Init(op.BuiltinOptions().Bytes, op.BuiltinOptions().Pos)
    assert (opts.DepthMultiplier(), opts.StrideW(), opts.Padding()) == (2, 2, tflite.Padding.SAME)
    assert opts.FusedActivationFunction() == tflite.ActivationFunctionType.RELU6
    assert sg.Operators(1).BuiltinOptionsType() == tflite.BuiltinOptions.NONE


def test_large_builtin_code_uses_placeholder():
    # Codes above 127 only fit builtin_code; deprecated_builtin_code saturates at 127.
    m = ModelBuilder()
    x = m.input((1, 4), "int8", scale=0.1, zero_point=0)
    y = m.tensor((1, 4), "int8", scale=0.1, zero_point=0)
    m.op("GELU", [x], [y])
    m.output(y)
    code = tflite.Model.GetRootAsModel(m.build(), 0).OperatorCodes(0)
    assert code.BuiltinCode() == tflite.BuiltinOperator.GELU > 127
    assert code.DeprecatedBuiltinCode() == 127


@pytest.mark.parametrize("how", ["constructor", "build-flag"])
def test_two_subgraphs(how):
    if how == "constructor":
        m, feeds, shape, _ = build_pad(num_subgraphs=2)
        data = m.build()
    else:
        m, feeds, shape, _ = build_pad()
        data = m.build(extra_subgraph=True)
    assert tflite.Model.GetRootAsModel(data, 0).SubgraphsLength() == 2
    (out,) = run_reference(data, feeds)  # the interpreter runs subgraph 0
    assert out.shape == shape


def test_bad_arguments_raise():
    m = ModelBuilder()
    x = m.input((1, 4), "int8", scale=0.1, zero_point=0)
    with pytest.raises(ValueError):
        m.op("NOT_AN_OP", [x], [x])
    with pytest.raises(TypeError):
        m.op("CONV_2D", [x], [x], stride=2)
    with pytest.raises(TypeError):
        m.op("LOGISTIC", [x], [x], beta=2.0)
    with pytest.raises(ValueError):
        m.tensor((2,), "bfloat16")
