"""The validated graph (mcunet.validate): every broken model of issue 10's list ends in one
`error:` line naming the op, the tensor and the rule, with exit code 2; valid neighbours of
those models still compile."""
from __future__ import annotations

import struct
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import tflite

from mcunet.compiler import compile_graph
from mcunet.errors import McunetError
from mcunet.codegen.lower import supported_ops
from mcunet.frontend import parse_tflite
from mcunet.passes import FOLDABLE_OPS
from mcunet.passes import run_passes
from mcunet.validate import MAX_TENSOR_BYTES, RULES

from .conftest import run_cli
from .modelgen import ModelBuilder
from .opcheck import assert_bit_exact
from .test_errors import assert_clean_error


def conv_builder(act="RELU", in_shape=(1, 8, 8, 3), out_shape=(1, 8, 8, 4), out_s=0.1,
                 scales=(0.01, 0.02, 0.01, 0.02), w_quant=True, stride=1):
    """x (1x8x8x3) -> CONV_2D 3x3 SAME -> y (1x8x8x4): tensors x=0, w=1, b=2, y=3."""
    rng = np.random.default_rng(0)
    m = ModelBuilder()
    x = m.input(in_shape, "int8", scale=0.05, zero_point=-2)
    q = {"scale": list(scales), "zero_point": [0] * len(scales)} if w_quant else {}
    w = m.const(rng.integers(-127, 128, (4, 3, 3, 3)).astype(np.int8), quantized_dimension=0, **q)
    b = m.const(rng.integers(-100, 100, 4).astype(np.int32), scale=[0.0005] * 4, zero_point=[0] * 4)
    y = m.tensor(out_shape, "int8", scale=out_s, zero_point=3)
    m.op("CONV_2D", [x, w, b], [y], padding="SAME", fused_activation=act, stride_h=stride,
         stride_w=stride)
    m.output(y)
    return m


def two_convs():
    """x -> CONV_2D (a) -> CONV_2D (z): tensors x=0 w=1 b=2 a=3 w2=4 b2=5 z=6."""
    m = conv_builder()
    rng = np.random.default_rng(1)
    w2 = m.const(rng.integers(-127, 128, (2, 1, 1, 4)).astype(np.int8), scale=[0.01] * 2,
                 zero_point=[0] * 2, quantized_dimension=0)
    b2 = m.const(np.zeros(2, np.int32), scale=[0.001] * 2, zero_point=[0] * 2)
    z = m.tensor((1, 8, 8, 2), "int8", scale=0.1, zero_point=0)
    m.op("CONV_2D", [3, w2, b2], [z], padding="SAME")
    m.outputs = [z]
    return m


def fc_builder(bias_scale=None, out_s=0.1, filter_shape=(5, 16)):
    m = ModelBuilder()
    x = m.input((1, 16), "int8", scale=0.05, zero_point=0)
    w = m.const(np.ones(filter_shape, np.int8), scale=0.02, zero_point=0)
    b = m.const(np.zeros(filter_shape[0], np.int32),
                scale=0.001 if bias_scale is None else bias_scale, zero_point=0)
    y = m.tensor((1, filter_shape[0]), "int8", scale=out_s, zero_point=0)
    m.op("FULLY_CONNECTED", [x, w, b], [y])
    m.output(y)
    return m


def patch_tensor_type(data: bytes, tensor: int, code: int) -> bytes:
    """Overwrite tensor `tensor`'s type byte in place (modelgen writes it for int8)."""
    t = tflite.Model.GetRootAs(data, 0).Subgraphs(0).Tensors(tensor)
    pos = t._tab.Pos + t._tab.Offset(6)
    buf = bytearray(data)
    struct.pack_into("<b", buf, pos, code)
    return bytes(buf)


def mutated(build, mutate=None):
    def make():
        m = build()
        if mutate:
            mutate(m)
        return m.build()
    return make


def _set(attr, value):
    def f(m):
        obj, key = attr(m)
        obj[key] = value
    return f


def _swap_ops(m):
    m.ops.reverse()


def _reshape_of_constant():
    m = ModelBuilder()
    x = m.input((1, 4), "int8", scale=0.1, zero_point=0)
    c = m.const(np.arange(6, dtype=np.int8).reshape(1, 6), scale=0.1, zero_point=0)
    r = m.tensor((1, 4), "int8", scale=0.1, zero_point=0)
    m.op("RESHAPE", [c], [r])
    y = m.tensor((1, 4), "int8", scale=0.1, zero_point=0)
    m.op("ADD", [x, r], [y])
    m.output(y)
    return m


def _reshape_to(new_shape):
    def build():
        m = ModelBuilder()
        x = m.input((1, 6), "int8", scale=0.1, zero_point=0)
        s = m.const(np.array(new_shape, np.int32))
        y = m.tensor((1, 2, 3), "int8", scale=0.1, zero_point=0)
        m.op("RESHAPE", [x, s], [y])
        m.output(y)
        return m
    return build


def _pool(shape):
    def build():
        m = ModelBuilder()
        x = m.input(shape, "int8", scale=0.1, zero_point=0)
        y = m.tensor(shape, "int8", scale=0.1, zero_point=0)
        m.op("MAX_POOL_2D", [x], [y], padding="SAME")
        m.output(y)
        return m
    return build


def _softmax(in_scale, shape=(1, 10)):
    def build():
        m = ModelBuilder()
        x = m.input(shape, "int8", scale=in_scale, zero_point=0)
        y = m.tensor(shape, "int8", scale=1 / 256, zero_point=-128)
        m.op("SOFTMAX", [x], [y], beta=1.0)
        m.output(y)
        return m
    return build


def _concat(scale_b):
    def build():
        m = ModelBuilder()
        a = m.input((1, 2, 3), "int8", scale=0.1, zero_point=0)
        b = m.input((1, 2, 3), "int8", scale=scale_b, zero_point=0)
        y = m.tensor((1, 2, 6), "int8", scale=0.1, zero_point=0)
        m.op("CONCATENATION", [a, b], [y], axis=2)
        m.output(y)
        return m
    return build


def _add(out_scale=0.1, n_inputs=2):
    def build():
        m = ModelBuilder()
        a = m.input((1, 4, 4, 2), "int8", scale=0.1, zero_point=0)
        b = m.input((1, 4, 4, 2), "int8", scale=0.1, zero_point=0)
        y = m.tensor((1, 4, 4, 2), "int8", scale=out_scale, zero_point=0)
        m.op("ADD", [a, b][:n_inputs], [y])
        m.output(y)
        return m
    return build


def _opcode_swapped(m):
    m.ops[0].kind = "ADD"  # the conv's opcode now says ADD (3 inputs, conv options)
    m.ops[0].table = None
    m.ops[0].options = {}


def _quant(tid, scale=None, zero_point=None, dim=None):
    def f(m):
        t = m.tensors[tid]
        if scale is not None:
            t.scale = list(scale)
        if zero_point is not None:
            t.zero_point = list(zero_point)
        if dim is not None:
            t.quantized_dimension = dim
    return f


def _huge_dimension(m):
    m.tensors[0].shape = (1, 2147483647, 8, 3)


# (case id, model bytes builder, fragments the one error line must contain)
CASES = [
    ("op-input-out-of-range", mutated(conv_builder, _set(lambda m: (m.ops[0].inputs, 0), 2147483647)),
     ["CONV_2D at index 0: input 0 is tensor 2147483647, but the model has 4 tensors"]),
    ("omitted-input-not-optional", mutated(conv_builder, _set(lambda m: (m.ops[0].inputs, 1), -1)),
     ["CONV_2D at index 0: input 1 is tensor -1", "omitted input, which this one may not be"]),
    ("subgraph-output-out-of-range", mutated(conv_builder, _set(lambda m: (m.outputs, 0), 99)),
     ["the model's output 0 is tensor 99, but the model has 4 tensors"]),
    ("subgraph-output-constant", mutated(conv_builder, _set(lambda m: (m.outputs, 0), 1)),
     ["the model's output 0 (tensor 1", "is a constant"]),
    ("op-writes-constant", mutated(conv_builder, _set(lambda m: (m.ops[0].outputs, 0), 2)),
     ["CONV_2D at index 0: output 0 (tensor 2", "is a constant", "cannot write a constant"]),
    ("op-writes-model-input", mutated(conv_builder, _set(lambda m: (m.ops[0].outputs, 0), 0)),
     ["CONV_2D at index 0: output 0 (tensor 0", "is a model input"]),
    ("self-loop", mutated(conv_builder, _set(lambda m: (m.ops[0].inputs, 0), 3)),
     ["CONV_2D at index 0: input 0 (tensor 3", "is its own output"]),
    ("swapped-ops", mutated(two_convs, _swap_ops),
     ["CONV_2D at index 0: input 0 (tensor 3", "written by CONV_2D at index 1, which runs later",
      "does not reorder"]),
    ("output-nothing-computes",
     mutated(conv_builder, lambda m: m.outputs.append(m.tensor((1, 2), "int8", scale=0.1))),
     ["the model's output 1 (tensor 4", "nothing computes it"]),
    ("two-writers", mutated(two_convs, _set(lambda m: (m.ops[1].outputs, 0), 3)),
     ["CONV_2D at index 1: output 0 (tensor 3", "also written by CONV_2D at index 0"]),
    ("filter-without-quantisation", lambda: conv_builder(w_quant=False).build(),
     ["CONV_2D at index 0: input 1 (tensor 1", "the filter, has no quantisation parameters"]),
    ("unknown-dtype", lambda: patch_tensor_type(conv_builder().build(), 3, 99),
     ["CONV_2D at index 0: output 0 (tensor 3", "type#99, which mcunet does not support"]),
    ("int4-dtype", lambda: patch_tensor_type(conv_builder().build(), 3, 17),
     ["output 0 (tensor 3", "has type int4, which mcunet does not support"]),
    ("wrong-rank", mutated(lambda: conv_builder(in_shape=(1, 8, 3))),
     ["CONV_2D at index 0: input 0 (tensor 0", "has rank 3; CONV_2D needs a 4-D"]),
    ("fc-filter-rank", lambda: fc_builder(filter_shape=(5, 4, 4)).build(),
     ["FULLY_CONNECTED at index 0: input 1 (tensor 1", "has rank 3; FULLY_CONNECTED needs a 2-D filter"]),
    ("opcode-swapped", mutated(conv_builder, _opcode_swapped),
     ["ADD at index 0 has 3 inputs; ADD takes 2"]),
    ("missing-input", lambda: _add(n_inputs=1)().build(), ["ADD at index 0 has 1 inputs; ADD takes 2"]),
    ("pool-wrong-rank", lambda: _pool((1, 8, 3))().build(),
     ["MAX_POOL_2D at index 0: input 0 (tensor 0", "has rank 3; MAX_POOL_2D needs a 4-D"]),
    ("softmax-scalar", lambda: _softmax(0.1, shape=())().build(),
     ["SOFTMAX at index 0: input 0 (tensor 0", "is a scalar"]),
    ("zero-scale", mutated(conv_builder, _quant(0, scale=[0.0])),
     ["tensor 0 'tensor_0' has quantisation scale 0; scales must be finite and positive"]),
    ("negative-scale", mutated(conv_builder, _quant(3, scale=[-0.1])),
     ["tensor 3 'tensor_3' has quantisation scale -0.1"]),
    ("nan-scale", mutated(conv_builder, _quant(1, scale=[0.01, float("nan"), 0.01, 0.01])),
     ["tensor 1 'tensor_1' has quantisation scale nan"]),
    ("inf-scale", mutated(conv_builder, _quant(3, scale=[float("inf")])),
     ["tensor 3 'tensor_3' has quantisation scale inf"]),
    ("tiny-scale", lambda: conv_builder(out_s=1e-38).build(),
     ["CONV_2D at index 0: the requantisation multiplier", "is out of range"]),
    ("per-channel-wrong-length", mutated(conv_builder, _quant(1, scale=[0.01] * 3, zero_point=[0] * 3)),
     ["tensor 1 'tensor_1' has 3 scales along dimension 0 of size 4"]),
    ("scale-zero-point-lengths", mutated(conv_builder, _quant(1, zero_point=[0, 0])),
     ["tensor 1 'tensor_1' has 4 quantisation scales but 2 zero points"]),
    ("quantised-dimension", mutated(conv_builder, _quant(1, dim=7)),
     ["tensor 1 'tensor_1' is quantised along dimension 7, but it has rank 4"]),
    ("softmax-tiny-input-scale", lambda: _softmax(1e-12)().build(),
     ["SOFTMAX at index 0: beta x input scale = 1e-12 is too small", "must exceed 2^-26"]),
    ("fused-sign-bit", lambda: conv_builder(act=5).build(),
     ["CONV_2D at index 0: fused activation SIGN_BIT is not allowed"]),
    ("reshape-constant-does-not-fit", lambda: _reshape_of_constant().build(),
     ["RESHAPE at index 0: input 0 (tensor 1", "holds 6 values but output 0 (tensor 2", "holds 4"]),
    ("huge-stride", lambda: conv_builder(stride=1048576, out_shape=(1, 1, 1, 4)).build(),
     ["CONV_2D at index 0: stride h is 1048576; it must be 1 to 65536"]),
    ("huge-dimension", mutated(conv_builder, _huge_dimension),
     ["tensor 0 'tensor_0' of shape (1, 2147483647, 8, 3) needs", "at most 16 MiB"]),
    ("fc-bias-scale", lambda: fc_builder(bias_scale=0.05).build(),
     ["FULLY_CONNECTED at index 0: the bias scale 0.05 of input 2", "TFLite requires at most 0.02"]),
    ("reshape-negative-dimension", lambda: _reshape_to([-2, -3])().build(),
     ["RESHAPE at index 0: the new shape [-2, -3] has negative dimensions"]),
    ("concat-different-scales", lambda: _concat(0.2)().build(),
     ["CONCATENATION at index 0: input 1 (tensor 1", "TFLite requires equal scale and zero point"]),
    ("add-output-multiplier", lambda: _add(out_scale=1e-9)().build(),
     ["ADD at index 0: the output multiplier", "is not between 0 and 1"]),
    ("inconsistent-output-shape", lambda: conv_builder(out_shape=(1, 4, 4, 4)).build(),
     ["CONV_2D at index 0: output 0 (tensor 3", "has shape (1, 4, 4, 4), but CONV_2D computes "
      "(1, 8, 8, 4)"]),
    # Found by the 10,000-case campaign's sanitizer runs: TFLite rejects a SHAPE without its
    # options table (it takes the output type from there), mcunet compiled it.
    ("shape-without-options", lambda: _flatten_by_shape(drop_options=True).build(),
     ["SHAPE at index 0: has no ShapeOptions table, so it has no output type"]),
    ("shape-float-output-type", lambda: _flatten_by_shape(out_type="float32").build(),
     ["SHAPE at index 0: has output type 0 (a TensorType); SHAPE writes int32 (2) or int64 (4)"]),
    ("shape-output-type-mismatch", lambda: _flatten_by_shape(out_type="int64").build(),
     ["SHAPE at index 0: has output type int64 but output 0 (tensor 1", "is int32"]),
]


def _flatten_by_shape(drop_options: bool = False, **shape_options) -> ModelBuilder:
    """x -> SHAPE -> RESHAPE(x, shape): a reshape to x's own shape through SHAPE."""
    m = ModelBuilder()
    x = m.input((1, 4, 4, 2), "int8", scale=0.05, zero_point=0)
    shape = m.tensor((4,), "int32")
    m.op("SHAPE", [x], [shape], **shape_options)
    if drop_options:
        m.ops[-1].table, m.ops[-1].options = None, {}
    y = m.tensor((1, 4, 4, 2), "int8", scale=0.05, zero_point=0)
    m.op("RESHAPE", [x, shape], [y])
    m.output(y)
    return m


def test_shape_with_its_options_still_compiles():
    assert_bit_exact(_flatten_by_shape().build(), rows=2)


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_broken_model_is_rejected_naming_op_tensor_and_rule(case):
    _, make, fragments = case
    with pytest.raises(McunetError) as err:
        compile_graph(run_passes(parse_tflite(make())), patch="none")
    message = str(err.value)
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message, (fragment, message)


# The cases of issue 10's list, also through the command line.
ISSUE_LIST = {"op-input-out-of-range", "omitted-input-not-optional", "subgraph-output-constant",
              "op-writes-constant", "self-loop", "swapped-ops", "output-nothing-computes",
              "filter-without-quantisation", "unknown-dtype", "wrong-rank", "opcode-swapped",
              "missing-input", "zero-scale", "negative-scale", "nan-scale", "inf-scale",
              "tiny-scale", "per-channel-wrong-length", "scale-zero-point-lengths",
              "softmax-tiny-input-scale", "fused-sign-bit", "reshape-constant-does-not-fit",
              "huge-stride", "huge-dimension", "fc-bias-scale", "reshape-negative-dimension",
              "concat-different-scales"}


def test_the_issue_list_through_the_cli(tmp_path):
    """The issue's cases through `mcunet plan`: one error line each, exit code 2."""
    def plan(case):
        name, make, fragments = case
        path = tmp_path / f"{name}.tflite"
        path.write_bytes(make())
        return run_cli("plan", path, "--no-png"), fragments

    cases = [c for c in CASES if c[0] in ISSUE_LIST]
    assert len(cases) == len(ISSUE_LIST)
    with ThreadPoolExecutor(2) as pool:
        for result, fragments in pool.map(plan, cases):
            assert_clean_error(result, *fragments)


def test_valid_neighbours_still_compile():
    """What the rules must not reject: independent ops in any order, a bias scale within
    TFLite's tolerance, an ADD multiplier just below 1, a softmax just above its limit, -1 in a
    new shape, an intermediate tensor as an output."""
    m = ModelBuilder()
    a = m.input((1, 4), "int8", scale=0.1, zero_point=0)
    r1 = m.tensor((1, 4), "int8", scale=0.05, zero_point=1)
    r2 = m.tensor((1, 4), "int8", scale=0.2, zero_point=-1)
    m.op("QUANTIZE", [a], [r1])
    m.op("QUANTIZE", [a], [r2])
    y = m.tensor((1, 4), "int8", scale=0.3, zero_point=0)
    m.op("ADD", [r2, r1], [y])
    m.output(y)
    assert_bit_exact(m.build(), rows=2)
    assert_bit_exact(fc_builder(bias_scale=0.001 + 0.001).build(), rows=2)  # 0.01 output scales
    assert_bit_exact(_add(out_scale=0.2 / (1 << 20) * 1.01)().build(), rows=2)
    assert_bit_exact(_softmax(float(np.float32(2.0 ** -26 * 1.01)))().build(), rows=2)
    assert_bit_exact(_reshape_to([1, 2, -1])().build(), rows=2)
    intermediate = two_convs()
    intermediate.outputs = [3, 6]  # an intermediate tensor is an output too
    assert_bit_exact(intermediate.build(), rows=2)


def test_rules_cover_the_supported_ops():
    assert set(RULES) == set(supported_ops()) | set(FOLDABLE_OPS)


def test_limits_are_stated_in_the_message():
    assert MAX_TENSOR_BYTES == 16 << 20
